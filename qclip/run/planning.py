"""Which cells a session runs: models × quantizers × datasets for one benchmark family."""

from __future__ import annotations

import fnmatch

from .cells import Cell
from .session import QclipSession

__all__ = ["plan_cells", "selected_quantizers", "selected_datasets", "group_by_variant", "item_cell"]


def _patterns(text: str) -> list[str]:
    return [p.strip() for p in (text or "*").split(",") if p.strip()]


def selected_quantizers(session: QclipSession) -> list[str]:
    """Registered quantizers matching ``--qclip-quantizers``; an exact name that is unknown fails fast."""
    from ..quantize import create_quantizer, list_quantizers

    out: list[str] = []
    for pat in _patterns(session.options.quantizers):
        if any(ch in pat for ch in "*?["):
            names = list_quantizers(pat)
        else:
            create_quantizer(pat)  # raises UnknownQuantizerError listing the known names
            names = [pat]
        out += [n for n in names if n not in out]
    return out


def selected_datasets(session: QclipSession, kinds: tuple[str, ...]) -> list[str]:
    if kinds == ("",):
        return [""]
    cfg = session.data_config
    pats = _patterns(session.options.datasets)
    names = []
    for kind in kinds:
        names += [n for n in cfg.names(kind) if any(fnmatch.fnmatchcase(n, p) for p in pats) and n not in names]
    return names


def quantizer_skip_reason(session: QclipSession, name: str) -> str:
    from ..quantize import quantizer_available

    q = session.make_quantizer(name)
    ok, reason = quantizer_available(q, session.options.device)
    if not ok:
        return f"quantizer {name} unavailable: {reason}"
    if getattr(q, "needs_calibration", False) and session.options.data and not session.options.calibration:
        return (f"quantizer {name} needs calibration data: name a COCO-format captions set of the dataset "
                "config with --qclip-calibration DATASET")
    needs_cuda = getattr(getattr(q, "spec", None), "requires_cuda", False)
    if needs_cuda and not session.options.device.startswith("cuda"):
        return f"quantizer {name} needs CUDA (run with --qclip-device cuda)"
    return ""


def plan_cells(session: QclipSession, benchmark: str, kinds: tuple[str, ...]) -> list[tuple[Cell, str]]:
    """Every (cell, skip reason) of a benchmark family; the reason is '' for cells that run."""
    from ..models import check_available, expand_models

    models = expand_models(session.options.models)
    quantizers = selected_quantizers(session)
    datasets = selected_datasets(session, kinds)
    q_reasons = {q: quantizer_skip_reason(session, q) for q in quantizers}
    out = []
    for spec in models:
        ok, m_reason = check_available(spec)
        for q in quantizers:
            for ds in datasets:
                cell = Cell(spec.spec, spec.short, q, benchmark, ds)
                out.append((cell, "" if ok and not q_reasons[q] else (m_reason or q_reasons[q])))
    return out


def item_cell(item) -> Cell | None:
    """The :class:`Cell` a collected pytest item runs, or None for other tests."""
    cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
    return cell if isinstance(cell, Cell) else None


def group_by_variant(items: list) -> None:
    """Reorder ``items`` in place so that the cells of one (model, quantizer) run one after another.

    Collection order is family by family (one test file each); run that way, every quantized variant is
    built again for every family. Grouped, a process quantizes each (model, quantizer) once and walks its
    datasets while the model is at hand. Groups keep the order of their first cell, cells keep their order
    inside a group, and other tests stay where they were. The order is deterministic, so xdist workers
    agree with the controller.
    """
    first: dict = {}
    keys = []
    for i, item in enumerate(items):
        cell = item_cell(item)
        group = (cell.model, cell.quantizer) if cell is not None else ("", i)
        keys.append((first.setdefault(group, i), i))
    order = sorted(range(len(items)), key=keys.__getitem__)
    items[:] = [items[i] for i in order]
