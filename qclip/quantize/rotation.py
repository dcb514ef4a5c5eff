"""Hadamard rotation (QuaRot-style, Ashkboos et al. 2024): outliers spread over every channel, exactly.

An orthogonal ``R`` changes nothing in float32, ``W x = (W R)(R^T x)``, but a randomised Hadamard
``R`` spreads an activation channel that is 30x the others over all channels, so one static scale per
tensor fits them all. Where it acts (:mod:`._sites`):

* attention's value → out projection: one rotation per head, folded into both weights (the value
  projection's rows, the out projection's columns): no cost at inference;
* a LayerNorm → its Linear layers (q/k/v, the MLP's first layer, the final projection): as in QuaRot the
  norm's gain and bias move into its consumers (``W diag(g)``, bias ``+ W b``; the norm keeps only its
  normalisation), the consumers' weights take ``R`` (folded) and the normalised output is rotated
  online, once for all its consumers (:class:`Rotate` after the norm). QuaRot folds this ``R`` into the
  residual stream instead, which needs every LayerNorm turned into an RMSNorm and every writer to the
  stream changed; the quantizers see the same rotated activations either way;
* the MLP's nonlinearity → its second layer: rotated online after the GELU (as QuaRot does before its
  down projection), folded into the layer's weight.

``R = D H / sqrt(n)`` with ``H`` Sylvester's Hadamard matrix and ``D`` seeded random signs; a width
``n = 2^k m`` with ``m > 1`` uses ``H_{2^k} ⊗ Q_m``, ``Q_m`` a seeded random orthogonal matrix. One
rotation per width and tower part, shared by the modules that use it (stored once, counted once).

:func:`rotate_model` works on a float32 model before the simulated family swaps its Linear layers
(``w4a8-rot``, ``w4a8-rot-gptq``: :mod:`.simulated`; ``w4a8-rot-lsq``: :mod:`.qat`).
"""

from __future__ import annotations

import torch
from torch import nn

from ._sites import find_sites

__all__ = ["Rotate", "hadamard", "random_hadamard", "rotate_model"]

_PARTS = {"head": 0, "norm": 1, "mlp": 2}  # each kind of site its own rotation (a fixed seed offset)


def hadamard(n: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix of order ``n`` (a power of two), entries ±1, float64."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"Expected a power of two, but got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def random_hadamard(n: int, seed: int = 0) -> torch.Tensor:
    """An ``n × n`` orthogonal matrix: seeded random signs times a normalised Hadamard matrix (see the
    module doc for widths that are not powers of two). float64."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + n)
    p2 = n & -n  # the largest power of two dividing n
    m = n // p2
    r = hadamard(p2) / p2 ** 0.5
    if m > 1:
        q, rr = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(rr))
        r = (r[:, None, :, None] * q[None, :, None, :]).reshape(n, n)  # r ⊗ q
    signs = torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2 - 1
    return signs[:, None] * r


class Rotate(nn.Module):
    """``module(x) @ R``: an online rotation after a norm or a nonlinearity (``R`` a shared buffer)."""

    def __init__(self, module: nn.Module, rotation: torch.Tensor):
        super().__init__()
        self.module = module
        self.register_buffer("rotation", rotation)

    def forward(self, *args, **kwargs):
        y = self.module(*args, **kwargs)
        return y @ self.rotation.to(y.dtype)

    def extra_repr(self) -> str:
        return f"online Hadamard rotation, n={self.rotation.shape[0]}"


def _replace_child(root: nn.Module, target: nn.Module, new: nn.Module) -> int:
    where = [(parent, cname) for parent in root.modules() for cname, child in parent.named_children()
             if child is target]
    for parent, cname in where:
        setattr(parent, cname, new)
    return len(where)


@torch.no_grad()
def rotate_model(model, scope: str = "both", seed: int = 0, sites=("value", "norm", "mlp")) -> dict:
    """Rotate every site of ``scope`` in place (``model`` prepared for quantization, float32
    ``nn.Linear`` layers); the float32 outputs stay the same. Returns what was done, for the report."""
    found = find_sites(model, scope)
    cache: dict[tuple, torch.Tensor] = {}

    def rot(n: int, part: str, like: torch.Tensor) -> torch.Tensor:
        key = (n, part)
        if key not in cache:
            cache[key] = random_hadamard(n, seed * 3 + _PARTS[part]).to(like.device, like.dtype)
        return cache[key]

    done = {"value": 0, "norm": 0, "mlp": 0}
    if "value" in sites:
        for s in found.values:
            hd = s.v.out_features // s.heads
            r = rot(hd, "head", s.v.weight)
            big = torch.block_diag(*[r] * s.heads)  # the same rotation in every head
            big = big.double()
            s.v.weight.copy_(big.T @ s.v.weight.double())  # v' = v R (channels of v rotated)
            if s.v.bias is not None:
                s.v.bias.copy_(s.v.bias.double() @ big)
            s.out.weight.copy_(s.out.weight.double() @ big)  # (z R) (W_o R)^T = z W_o^T
            done["value"] += 1
    if "norm" in sites:
        for s in found.norms:
            r = rot(s.norm.normalized_shape[-1], "norm", s.norm.weight)
            gain, shift = s.norm.weight.double(), s.norm.bias.double()
            for _, lin in s.sinks:  # QuaRot: the norm's gain and bias go into its consumers, then R
                w = lin.weight.double()
                bias = w @ shift if lin.bias is None else lin.bias.double() + w @ shift
                lin.bias = nn.Parameter(bias.to(lin.weight.dtype), requires_grad=lin.weight.requires_grad)
                lin.weight.copy_((w * gain) @ r.double())
            s.norm.weight.fill_(1.0)
            s.norm.bias.zero_()
            if _replace_child(model.module, s.norm, Rotate(s.norm, r)):
                done["norm"] += 1
    if "mlp" in sites:
        for s in found.mlps:
            r = rot(s.sink.in_features, "mlp", s.sink.weight)
            s.sink.weight.copy_(s.sink.weight.double() @ r.double())
            setattr(s.parent, s.attr, Rotate(getattr(s.parent, s.attr), r))
            done["mlp"] += 1
    return {"method": "hadamard rotation", "seed": seed, "sites": done}
