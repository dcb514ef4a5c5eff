"""Reports of a run: ``reports/<run_id>/`` with Markdown, self-contained HTML, CSV/JSON and plots.

:func:`write_report` is what the pytest plugin calls at session end and what
``qclip report`` calls later on any stored run; :func:`terminal_summary` gives
the few lines pytest prints in its terminal summary.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from qclip.report.data import usable
from qclip.report.document import build_document
from qclip.report.html import render_html
from qclip.report.markdown import render_markdown
from qclip.report.tables import fmt, fmt_p
from qclip.results import ResultStore, write_rows_csv, write_rows_json
from qclip.stats import population_stats

__all__ = ["REPORT_FILES", "terminal_summary", "write_report"]

REPORT_FILES = ("report.md", "report.html", "results.csv", "results.json", "stats.csv", "run.json")
"""Files every report folder holds (plus its PNG plots); ``run.json`` is the run's metadata (its provenance
travels with the folder when it serves as a baseline)."""

_MAX_LINES = 25


def _folder_name(run_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return name if name not in ("", ".", "..", "latest") else f"run-{name}"


def _refresh_latest(out: Path, out_root: Path) -> None:
    """Replace ``out_root/latest`` by a copy of ``out`` (a copy, not a symlink: it survives
    archiving and works on every filesystem), swapping it in by renames."""
    latest = out_root / "latest"
    tmp = out_root / f".latest-new-{os.getpid()}"
    old = out_root / f".latest-old-{os.getpid()}"
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    shutil.copytree(out, tmp)
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        latest.rename(old)
    tmp.rename(latest)
    shutil.rmtree(old, ignore_errors=True)


def write_report(
    store: ResultStore, run_id: str, out_root: Path = Path("reports"), gates: list | None = None,
    stats=None, figure_memo: Path | None = None,
) -> Path:
    """Write ``out_root/<run_id>/`` and refresh ``out_root/latest``; return the run's folder.

    ``run_id`` may be any reference :meth:`ResultStore.resolve` accepts. ``gates``
    is a list of :class:`qclip.expect.gate.GateOutcome` (or dicts with ``name``,
    ``passed``, ``details``, or :class:`qclip.expect.gate.Regression` objects, each a
    failure); None means no gate was configured. ``stats`` is the run's
    :func:`qclip.stats.population_stats` when the caller already has it. ``figure_memo`` is a
    folder where figures are kept by content (see :func:`qclip.report.figures.write_figures`).
    """
    run_id = store.resolve(run_id)
    rows, cells, meta = store.rows(run_id), store.cells(run_id), store.meta(run_id)
    if stats is None:
        from qclip.expect.equivalence import margin_function  # the margins the run was made with

        stats = population_stats(rows, margin_function(meta.get("equivalence") or ()))
    out_root = Path(out_root)
    out = out_root / _folder_name(run_id)
    out.mkdir(parents=True, exist_ok=True)

    write_rows_csv(rows, out / "results.csv")
    write_rows_json(rows, out / "results.json")
    (out / "run.json").write_text(json.dumps({"run_id": run_id, **meta}, indent=1, sort_keys=True, default=str) + "\n",
                                  encoding="utf-8")
    stats.to_csv(out / "stats.csv", index=False)
    from qclip.report.figures import write_figures  # matplotlib loads only when a report is written

    images, errors = write_figures(usable(rows), out, memo=figure_memo)

    sections = build_document(run_id, meta, rows, cells, stats, gates, images, errors)
    title = f"qclip report: run {run_id}"
    (out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, sections, out), encoding="utf-8")
    _refresh_latest(out, out_root)
    return out


def _mean_delta(df: pd.DataFrame, quantizer: str, benchmark: str, metric_re: str) -> float:
    sel = df[
        (df["quantizer"] == quantizer)
        & (df["benchmark"] == benchmark)
        & df["metric"].str.fullmatch(metric_re)
    ]
    d = sel["delta"].to_numpy(dtype=float)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else math.nan


def terminal_summary(df: pd.DataFrame, stats: pd.DataFrame) -> list[str]:
    """At most ~25 lines for pytest's terminal summary: per quantizer the mean Δ of
    zero-shot top-1 and retrieval R@1, the number of paired tests and of marks, then
    the smallest p values."""
    if df is None or df.empty:
        return ["qclip: no result rows recorded."]
    count = {c: df[c].nunique() for c in ("model", "quantizer", "benchmark")}
    lines = [
        f"qclip: {len(df)} rows · {count['model']} models · {count['quantizer']} quantizers · "
        f"{count['benchmark']} benchmarks"
    ]
    quantizers = sorted(q for q in df["quantizer"].unique() if q != "fp32")
    if not quantizers:
        return lines + ["(fp32 only: nothing to compare)"]
    width = max(9, *(len(q) for q in quantizers))
    lines.append(
        f"{'quantizer':<{width}}  {'top1 Δ':>8}  {'R@1 Δ':>8}  {'tests':>5}  {'p<.05':>5}  {'p<.10':>5}"
    )
    shown = quantizers[:10]
    for q in shown:
        s = stats[(stats["quantizer"] == q) & stats["p"].notna()] if not stats.empty else stats
        n05 = int((s["p"] < 0.05).sum()) if not s.empty else 0
        n10 = int((s["p"] < 0.10).sum()) if not s.empty else 0
        lines.append(
            f"{q:<{width}}  {fmt(_mean_delta(df, q, 'zeroshot', 'top1')):>8}  "
            f"{fmt(_mean_delta(df, q, 'retrieval', r'.*R@1')):>8}  {len(s):>5}  {n05:>5}  {n10:>5}"
        )
    if len(quantizers) > len(shown):
        lines.append(f"… and {len(quantizers) - len(shown)} more quantizers (see the report)")
    if not stats.empty and stats["p"].notna().any():
        top = stats[stats["p"] < 0.10].sort_values("p").head(_MAX_LINES - len(lines) - 2)
        if not top.empty:
            lines.append("smallest p (paired t-test, unadjusted; Holm-adjusted in stats.csv):")
            for r in top.itertuples():
                group = f" [{r.subgroup}]" if r.subgroup else ""
                lines.append(
                    f"  {r.quantizer} {r.benchmark}/{r.metric}{group}: Δ {fmt(r.mean_diff)} "
                    f"p {fmt_p(r.p)}{r.mark} CI [{fmt(r.ci_low)}, {fmt(r.ci_high)}] "
                    f"p_holm {fmt_p(r.p_holm)}"
                )
    return lines[:_MAX_LINES]
