"""Selections of result rows for the report's sections and figures (pandas only, no drawing).

Rows of skipped or errored cells never enter a table or a figure (they carry NaN
placeholders); ``value``/``reference``/``delta`` follow :mod:`qclip.results`.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

__all__ = [
    "FP32",
    "as_floats",
    "extra_list",
    "finite_mean",
    "fp32_values",
    "model_count",
    "paired",
    "quantizer_order",
    "select",
    "short_model",
    "skipped_note",
    "stats_lookup",
    "usable",
]

FP32 = "fp32"
_EXCLUDED_STATUS = ("skipped", "error")


def usable(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of cells that ran (not skipped, not errored)."""
    if rows is None or rows.empty or "status" not in rows:
        return rows
    return rows[~rows["status"].isin(_EXCLUDED_STATUS)]


def select(
    rows: pd.DataFrame,
    benchmark: str,
    metrics=None,
    pattern: str | None = None,
    dataset: str | None = None,
    finite: bool = True,
) -> pd.DataFrame:
    """Rows of ``benchmark`` whose metric is in ``metrics`` or fully matches ``pattern``."""
    sel = rows[rows["benchmark"] == benchmark]
    if metrics is not None:
        sel = sel[sel["metric"].isin(list(metrics))]
    if pattern is not None:
        sel = sel[sel["metric"].str.fullmatch(pattern)]
    if dataset is not None:
        sel = sel[sel["dataset"] == dataset]
    if finite:
        sel = sel[np.isfinite(sel["value"].to_numpy(dtype=float))]
    return sel


def paired(sel: pd.DataFrame) -> pd.DataFrame:
    """The quantized rows of ``sel`` with a finite value and fp32 reference."""
    q = sel[sel["quantizer"] != FP32]
    ok = np.isfinite(q["value"].to_numpy(dtype=float)) & np.isfinite(q["reference"].to_numpy(dtype=float))
    return q[ok]


def fp32_values(sel: pd.DataFrame, keys=("model", "dataset", "metric", "subgroup")) -> pd.Series:
    """The fp32 value per ``keys``: the fp32 cell's own value, else the reference the
    quantized cells recorded (the fp32 cells may have been deselected with ``-k``)."""
    keys = list(keys)
    own = sel[sel["quantizer"] == FP32].groupby(keys)["value"].mean()
    refs = paired(sel).groupby(keys)["reference"].mean()
    return own.combine_first(refs)


def quantizer_order(quantizers) -> list[str]:
    """fp32 first, then the rest sorted."""
    qs = sorted(set(quantizers))
    return ([FP32] if FP32 in qs else []) + [q for q in qs if q != FP32]


def model_count(rows: pd.DataFrame) -> int:
    return int(rows["model"].nunique()) if rows is not None and not rows.empty else 0


def short_model(model: str) -> str:
    """``open_clip:ViT-B-32/laion2b`` → ``ViT-B-32/laion2b`` for labels; a spec without an
    ``arch/tag`` part (``tiny:a``) stays whole."""
    rest = model.split(":", 1)[-1]
    return rest if "/" in rest else model


def as_floats(values) -> np.ndarray:
    """A list from a row's ``extra`` (numbers, numeric strings or None) as a float array."""
    if values is None:
        return np.array([], dtype=float)
    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)


def extra_list(extra, *path) -> np.ndarray | None:
    """``extra[path[0]][path[1]]…`` as a float array, or None when absent."""
    obj = extra
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return as_floats(obj) if isinstance(obj, (list, tuple)) else None


def stats_lookup(stats: pd.DataFrame) -> dict[tuple, object]:
    """``{(quantizer, benchmark, dataset, metric, subgroup): stats row}`` (namedtuples)."""
    if stats is None or stats.empty:
        return {}
    return {(r.quantizer, r.benchmark, r.dataset, r.metric, r.subgroup): r for r in stats.itertuples(index=False)}


def skipped_note(cells: pd.DataFrame | None, benchmark: str) -> str:
    """One line on why ``benchmark``'s cells were skipped or errored, or ''."""
    if cells is None or cells.empty:
        return ""
    mine = cells[cells["cell_id"].str.contains(rf"(?:^|test_){re.escape(benchmark)}\[", regex=True)]
    bad = mine[mine["status"].isin(_EXCLUDED_STATUS)]
    if bad.empty:
        return ""
    first = next((str(m) for m in bad["message"] if isinstance(m, str) and m.strip()), "")
    first = first.strip().splitlines()[0][:220] if first else ""
    counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
    return f"{counts} of {len(mine)} `{benchmark}` cells" + (f" ({first})" if first else "") + "."


def finite_mean(x) -> float:
    arr = np.asarray(x, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan
