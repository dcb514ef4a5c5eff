"""Does a baseline come from the same population as this run? (as pytest-benchmark warns when a saved
benchmark's machine_info differs from the current machine's).

A gate compares numbers; numbers of other weights, other library versions or another CPU capability (torch,
MKL, oneDNN and the quantizers' kernels pick code paths by instruction set) differ by more than the
quantization under test can. :func:`provenance_differences` names every such difference between the
metadata of two runs (``meta["libraries"]`` and ``meta["provenance"]``, written by the pytest controller;
see :func:`qclip.models.provenance.run_provenance`); ``--qclip-baseline`` and ``qclip gate`` print them as
warnings. :func:`load_baseline_meta` finds a baseline's metadata: the run in the store, or the ``run.json``
of a report folder (beside its ``results.csv``/``.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from qclip.results import ResultStore

__all__ = ["QclipBaselineWarning", "load_baseline_meta", "provenance_differences", "warning_lines"]

RUN_META_FILE = "run.json"


class QclipBaselineWarning(UserWarning):
    """The baseline's weights, library versions or CPU capability differ from the current run's."""


def load_baseline_meta(ref: str | Path, store: ResultStore | None = None) -> dict | None:
    """The run metadata of a baseline reference (as :func:`qclip.expect.gate.load_baseline` takes it), or
    None when it has none (a results file without ``run.json`` beside it)."""
    path = Path(ref)
    if path.is_dir() or path.suffix.lower() in (".csv", ".json"):
        meta_file = (path if path.is_dir() else path.parent) / RUN_META_FILE
        if path.name == RUN_META_FILE or not meta_file.is_file():
            return None
        try:
            return json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    if store is None:
        return None
    try:
        return store.meta(store.resolve(str(ref)))
    except KeyError:
        return None


def _short(value) -> str:
    text = str(value)
    return text[:16] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def _model_line(spec: str, base: dict, cur: dict) -> str | None:
    keys = ("weights", "mode", "trained_cpu_capability")
    if base.get("weights") == cur.get("weights"):  # the same bits, wherever and however they were trained
        return None

    def describe(p: dict) -> str:
        extra = ", ".join(str(p[k]) if k == "mode" else f"trained on {p[k]}" for k in keys[1:] if p.get(k))
        return _short(p.get("weights", "?")) + (f" ({extra})" if extra else "")

    return f"model {spec}: weights {describe(base)} in the baseline, {describe(cur)} now"


def provenance_differences(baseline: dict | None, current: dict | None) -> list[str]:
    """One line per difference between two runs' metadata: each model's weights (checksum, tiny training mode,
    where trained), each library version, torch's CPU capability and the synthetic world. A baseline without
    provenance gives one line saying it cannot be checked."""
    current = current or {}
    if not baseline or "provenance" not in baseline:
        return ["the baseline records no provenance (model checksums, library versions, CPU capability): it "
                "cannot be checked against this run (store the baseline from a run of this qclip, or pass its "
                "report folder with run.json)"]
    lines: list[str] = []
    bp, cp = baseline.get("provenance") or {}, current.get("provenance") or {}
    bm, cm = bp.get("models") or {}, cp.get("models") or {}
    for spec in sorted(set(bm) & set(cm)):
        line = _model_line(spec, bm[spec], cm[spec])
        if line:
            lines.append(line)
    bl, cl = baseline.get("libraries") or {}, current.get("libraries") or {}
    for lib in sorted(set(bl) | set(cl)):
        if lib in bl and lib in cl and bl[lib] != cl[lib]:
            lines.append(f"library {lib}: {bl[lib]} in the baseline, {cl[lib]} now")
    if bp.get("cpu_capability") and cp.get("cpu_capability") and bp["cpu_capability"] != cp["cpu_capability"]:
        lines.append(f"torch CPU capability: {bp['cpu_capability']} in the baseline, {cp['cpu_capability']} now "
                     "(fp32 and quantized kernels pick other code paths)")
    bd, cd = bp.get("data") or {}, cp.get("data") or {}
    if bd.get("world_digest") and cd.get("world_digest") and bd["world_digest"] != cd["world_digest"]:
        lines.append(f"synthetic world: digest {_short(bd['world_digest'])} in the baseline, "
                     f"{_short(cd['world_digest'])} now")
    return lines


def warning_lines(baseline: dict | None, current: dict | None, name: str = "baseline") -> list[str]:
    """The warning as printed: a heading naming ``name`` and one indented line per difference; [] if none."""
    diffs = provenance_differences(baseline, current)
    if not diffs:
        return []
    return [f"WARNING: {name} differs from this run in what produced its numbers; the comparison mixes "
            "populations:"] + [f"  {d}" for d in diffs]
