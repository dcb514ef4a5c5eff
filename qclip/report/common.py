"""Pieces every section of the report shares: the significance caption, the empty-section and
small-population notes, figure blocks and the "largest changes" lists of detail rows."""

from __future__ import annotations

import math

import pandas as pd

from qclip.report.blocks import Image, Para, Section
from qclip.report.data import select, skipped_note
from qclip.report.tables import fmt, fmt_p
from qclip.stats import MIN_N

__all__ = ["SIG_CAPTION", "empty", "figure", "largest_changes", "n_models_note", "open_section"]

SIG_CAPTION = (
    "Each cell: mean Δ (quantized − fp32) across the n models, p of the paired t-test "
    "(two-sided, unadjusted as in the paper; Holm and Benjamini–Hochberg adjusted p in "
    "`stats.csv`), 95% CI of the mean Δ. * p < .10, ** p < .05."
)


def empty(benchmark: str, cells: pd.DataFrame | None, what: str = "rows with an fp32 reference") -> Para:
    """The one line of a section without data, with why the cells were skipped when known."""
    note = skipped_note(cells, benchmark)
    return Para(f"No `{benchmark}` {what} in this run." + (f" {note}" if note else ""))


def n_models_note(stats_sel: pd.DataFrame) -> Para | None:
    """A warning when the paired tests of a section had fewer than MIN_N models."""
    if stats_sel is None or stats_sel.empty:
        return None
    n = int(stats_sel["n"].max())
    if n >= MIN_N:
        return None
    return Para(
        f"**n too small:** only {n} model(s) with paired values; a paired t-test needs at least {MIN_N}, "
        "so cells show the mean Δ without p or CI. Treat every number below as anecdotal."
    )


def open_section(title: str, benchmark: str, rows: pd.DataFrame, stats: pd.DataFrame, about: str,
                 cells: pd.DataFrame | None = None) -> tuple[Section, pd.DataFrame | None, pd.DataFrame | None]:
    """The opening every benchmark section shares: ``(section, its stats rows, its result rows)``.

    The section already holds ``about`` and, when the population is small, the n-too-small note. With no
    stats or no result rows of ``benchmark`` it holds the empty-section line instead, and both frames are
    None: the caller returns the section as it is."""
    sec = Section(title)
    st = stats[stats["benchmark"] == benchmark] if not stats.empty else stats
    data = select(rows, benchmark)
    if st.empty or data.empty:
        sec.blocks.append(empty(benchmark, cells))
        return sec, None, None
    sec.blocks.append(Para(about))
    if (note := n_models_note(st)) is not None:
        sec.blocks.append(note)
    return sec, st, data


def figure(images: dict[str, str], role: str, alt: str, caption: str = "") -> list:
    """The image block of ``role`` if that figure was drawn, else nothing."""
    return [Image(images[role], alt, caption)] if role in images else []


def largest_changes(stats_sel: pd.DataFrame, label, top: int = 8) -> list[str]:
    """Bullet lines for the ``top`` detail rows with the largest |mean Δ|: ``label(row)`` names the row
    (one line saying so when nothing changed)."""
    if stats_sel is None or stats_sel.empty:
        return ["No detail rows with an fp32 reference."]
    sel = stats_sel[stats_sel["mean_diff"].map(lambda x: math.isfinite(x) and x != 0)]
    sel = sel.reindex(sel["mean_diff"].abs().sort_values(ascending=False).index).head(top)
    lines = []
    for r in sel.itertuples(index=False):
        pv = fmt_p(r.p)
        p = "" if r.n < MIN_N else f", p{'' if pv.startswith('<') else '='}{pv}{r.mark}"
        lines.append(
            f"{r.quantizer}: {label(r)}: fp32 {fmt(r.mean_ref)}, Δ {fmt(r.mean_diff)} (n={int(r.n)}{p})"
        )
    return lines or ["No mean change: every quantized model matches its fp32 model here (or the changes cancel)."]
