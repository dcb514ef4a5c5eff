"""Accuracy-preservation thresholds per quantizer (allowed drop in percentage points).

Defaults are data in ``qclip/expect/thresholds.yaml`` (shipped with the package, so an installed qclip
used from another repository has them);
the ini option ``qclip_thresholds`` and ``--qclip-threshold NAME=PP`` override them, in that order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

__all__ = ["DEFAULTS_FILE", "load_thresholds", "threshold_for"]

DEFAULTS_FILE = Path(__file__).resolve().parent / "thresholds.yaml"
_FALLBACK = 5.0


def load_thresholds(ini_lines: Iterable[str] = (), cli: Iterable[tuple[str, float]] = ()) -> dict[str, float]:
    data = yaml.safe_load(DEFAULTS_FILE.read_text()) or {}
    out = {str(k): float(v) for k, v in (data.get("thresholds") or {}).items()}
    for line in ini_lines:
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"Expected 'QUANTIZER=PP' lines in qclip_thresholds, but got {line!r}")
        out[name.strip()] = float(value)
    out.update(dict(cli))
    return out


def threshold_for(thresholds: dict[str, float], quantizer: str) -> float:
    """The threshold for ``quantizer``: its own entry, else an entry naming its last part (``nf4`` for
    ``bnb-nf4``, as in ``--qclip-threshold nf4=2.0``), else ``default``, else 5 pp."""
    if quantizer in thresholds:
        return thresholds[quantizer]
    short = [k for k in thresholds if k != "default" and quantizer.endswith("-" + k)]
    if short:
        return thresholds[max(short, key=len)]
    return thresholds.get("default", _FALLBACK)
