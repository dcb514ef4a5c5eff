"""Module surgery shared by the module-swapping quantizers (bitsandbytes)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

__all__ = ["plain_linears", "replace_linears", "replace_named"]

_PLAIN = (nn.Linear, NonDynamicallyQuantizableLinear)


def plain_linears(root: nn.Module) -> list[tuple[str, nn.Module, str, nn.Linear]]:
    """``(qualified name, parent, attribute, layer)`` of every plain ``nn.Linear`` (not a subclass from a
    quantization library) under ``root``."""
    out = []
    for pname, parent in root.named_modules():
        for cname, child in parent.named_children():
            if type(child) in _PLAIN:
                out.append((f"{pname}.{cname}" if pname else cname, parent, cname, child))
    return out


def replace_named(root: nn.Module, names: list[str], make: Callable[[nn.Linear], nn.Module]) -> list[str]:
    """Replace the plain ``nn.Linear`` layers of ``root`` with these qualified names by ``make(layer)``
    (a tower's layers, :meth:`ClipModel.linear_layers`); others stay. Returns the names replaced."""
    wanted = set(names)
    done: dict[int, nn.Module] = {}
    out = []
    for name, parent, attr, layer in plain_linears(root):
        if name in wanted:
            if id(layer) not in done:
                done[id(layer)] = make(layer)
            setattr(parent, attr, done[id(layer)])
            out.append(name)
    return out


def replace_linears(root: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> list[str]:
    """Replace every plain ``nn.Linear`` under ``root`` by ``make(layer)``, in place; returns their names.

    A layer shared by several parents is converted once and the same new module set on each parent.
    """
    done: dict[int, nn.Module] = {}
    names = []
    for name, parent, attr, layer in plain_linears(root):
        if id(layer) not in done:
            done[id(layer)] = make(layer)
        setattr(parent, attr, done[id(layer)])
        names.append(name)
    return names
