"""Draw every figure of a report into its folder: ``{role: file name}`` for the document.

Each figure is a PNG file beside the report (and embedded in the HTML). A figure
that has no data is skipped; one whose drawing fails is skipped too and its error
is returned, so a plotting problem costs a figure, never the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qclip.report import plots, plots_fairness, plots_reliability, plots_robustness

__all__ = ["FIGURES", "write_figures"]

FIGURES = (
    ("accuracy", "accuracy.png", plots.accuracy_figure),
    ("facet", "facet.png", plots_fairness.facet_figure),
    ("fairface", "fairface.png", plots_fairness.fairface_figure),
    ("calibration_ece", "calibration_ece.png", plots_reliability.calibration_figure),
    ("reliability", "reliability_diagrams.png", plots_reliability.reliability_figure),
    ("ood", "ood.png", plots_reliability.ood_figure),
    ("spectral", "spectral.png", plots_robustness.spectral_figure),
    ("robustness", "robustness.png", plots_robustness.robustness_figure),
    ("delta", "delta.png", plots.delta_figure),
)
"""(role, file name, builder(rows, colors) -> Figure | None), in the order of the report."""


def write_figures(rows: pd.DataFrame, out: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Draw the figures of ``rows`` into ``out`` (old PNGs there are removed first).

    Returns ``(images, errors)``: role → file name of each figure written, and role →
    error message of each figure that failed."""
    for old in Path(out).glob("*.png"):
        old.unlink()
    images, errors = {}, {}
    if rows is None or rows.empty:
        return images, errors
    colors = plots.quantizer_colors(rows["quantizer"].unique())
    jobs = [(role, name, lambda b=builder: b(rows, colors)) for role, name, builder in FIGURES]
    for role, name, make in jobs:
        try:
            fig = make()
            if fig is None:
                continue
            plots.save_png(fig, Path(out) / name)
        except Exception as exc:  # noqa: BLE001
            errors[role] = f"{type(exc).__name__}: {exc}"
            continue
        images[role] = name
    return images, errors
