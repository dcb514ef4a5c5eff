"""Draw every figure of a report into its folder: ``{role: file name}`` for the document.

Each figure is a PNG file beside the report (and embedded in the HTML). A figure
that has no data is skipped; one whose drawing fails is skipped too and its error
is returned, so a plotting problem costs a figure, never the report.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

import pandas as pd

from qclip.report import plots, plots_fairness, plots_reliability, plots_robustness, plots_study

__all__ = ["FIGURES", "canonical_rows", "write_figures"]

FIGURES = (
    ("accuracy", "accuracy.png", plots.accuracy_figure),
    ("facet", "facet.png", plots_fairness.facet_figure),
    ("fairface", "fairface.png", plots_fairness.fairface_figure),
    ("calibration_ece", "calibration_ece.png", plots_reliability.calibration_figure),
    ("reliability", "reliability_diagrams.png", plots_reliability.reliability_figure),
    ("ood", "ood.png", plots_reliability.ood_figure),
    ("spectral", "spectral.png", plots_robustness.spectral_figure),
    ("robustness", "robustness.png", plots_robustness.robustness_figure),
    ("study_bits", "study_bits.png", plots_study.bits_figure),
    ("study_ece_source", "study_ece_source.png", plots_study.ece_by_source_figure),
    ("study_dichotomy", "study_dichotomy.png", plots_study.dichotomy_figure),
    ("delta", "delta.png", plots.delta_figure),
)
"""(role, file name, builder(rows, colors) -> Figure | None), in the order of the report."""


_SORT_COLUMNS = ("model", "quantizer", "benchmark", "dataset", "metric", "subgroup", "cell_id")
#: memoized PNGs kept per memo folder (the newest; one report has up to 12)
MEMO_KEEP = 200


def canonical_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` without the run id, in one fixed order: the same results always draw the same figures,
    whatever order xdist workers reported them in."""
    rows = rows.drop(columns=[c for c in ("run_id",) if c in rows])
    keys = [c for c in _SORT_COLUMNS if c in rows]
    return rows.sort_values(keys, kind="stable").reset_index(drop=True) if keys else rows.reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """What the figures' look depends on besides the rows: the report code and matplotlib."""
    import matplotlib

    h = hashlib.sha256(matplotlib.__version__.encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()


def _rows_digest(rows: pd.DataFrame) -> str:
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()


def _prune(memo: Path) -> None:
    files = sorted(memo.glob("*.png"), key=lambda f: f.stat().st_mtime, reverse=True)
    for f in files[MEMO_KEEP:]:
        f.unlink(missing_ok=True)


def write_figures(rows: pd.DataFrame, out: Path, memo: Path | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Draw the figures of ``rows`` into ``out`` (old PNGs there are removed first).

    With ``memo`` (a folder), a figure is drawn once per content: its PNG is kept there under the
    digest of the rows it draws, the report code and matplotlib's version, and a report of the same
    results (a warm rerun, ``qclip report`` again) copies it instead of drawing it (~15 s for a full
    report on 2 cores).

    Returns ``(images, errors)``: role → file name of each figure written, and role →
    error message of each figure that failed."""
    Path(out).mkdir(parents=True, exist_ok=True)
    for old in Path(out).glob("*.png"):
        old.unlink()
    images, errors = {}, {}
    if rows is None or rows.empty:
        return images, errors
    rows = canonical_rows(rows)
    digest = hashlib.sha256((_code_digest() + _rows_digest(rows)).encode()).hexdigest()[:32] if memo else ""
    colors = plots.quantizer_colors(rows["quantizer"].unique())
    jobs = [(role, name, lambda b=builder: b(rows, colors)) for role, name, builder in FIGURES]
    for role, name, make in jobs:
        target = Path(out) / name
        kept = Path(memo) / f"{digest}-{name}" if memo else None
        if kept is not None and kept.is_file():
            try:
                shutil.copyfile(kept, target)
                os.utime(kept)  # recently used: kept longest by _prune
                images[role] = name
                continue
            except OSError:  # an unreadable memo costs the copy, never the figure: draw it
                pass
        try:
            fig = make()
            if fig is None:
                continue
            plots.save_png(fig, target)
        except Exception as exc:  # noqa: BLE001
            errors[role] = f"{type(exc).__name__}: {exc}"
            continue
        images[role] = name
        if kept is not None:
            _keep(target, kept)
    if memo and Path(memo).is_dir():
        _prune(Path(memo))
    return images, errors


def _keep(png: Path, kept: Path) -> None:
    """Copy a drawn figure into the memo folder atomically; a failure there costs the memo only."""
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_name(f".{kept.name}.{os.getpid()}.tmp")
        shutil.copyfile(png, tmp)
        os.replace(tmp, kept)
    except OSError:
        pass
