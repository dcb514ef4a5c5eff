"""Regression gates: compare a run's rows with a baseline run and fail on regressions.

``--qclip-compare-fail METRIC:X`` fails when a metric got worse than the
baseline's by more than ``X`` in the metric's own units; ``METRIC:X%`` when it got
worse by more than ``X`` percent of the baseline's magnitude. ``METRIC`` is a
metric name (``top1``) or ``benchmark/metric`` (``zeroshot/top1``); shell-style
wildcards are allowed (``'facet/*disparity@1:0.02'``).

"Worse" depends on the metric's direction, declared once per benchmark family in
:mod:`qclip.benchmarks` (nothing is guessed from the name):

* ``higher``: higher is better (accuracy, recall, AUROC...); worsening = baseline − current.
* ``lower``: lower is better (ECE, NLL, FPR@95TPR, NDKL, NSR, bytes); worsening = current − baseline.
* ``zero``: signed disparity and skew metrics, where 0 is fair and either sign is bias; a larger
  ``|x|`` is worse: worsening = |current| − |baseline|.
* ``none``: descriptive metrics (the fitted temperature, mean confidence, effective rank); never
  compared. A check that selects only such metrics, or no declared metric at all, is a usage error.

A relative threshold is a share of |baseline|, so a baseline of exactly 0 allows
no worsening at all.

Rows are matched on (model, quantizer, benchmark, dataset, metric, subgroup) and
only matched rows are compared (a cell deselected with ``-k`` is not a
regression). A current value that is NaN where the baseline's is finite counts as
a regression.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from qclip.benchmarks import UnknownMetricError, direction_of, find_metric, metrics_matching
from qclip.results import ResultStore, read_rows

__all__ = [
    "KEYS",
    "GateOutcome",
    "Regression",
    "RegressionCheck",
    "compare",
    "load_baseline",
    "check_metric_pattern",
    "parse_compare_fail",
    "run_gates",
]

KEYS = ("model", "quantizer", "benchmark", "dataset", "metric", "subgroup")

_FORM = (
    "METRIC:X (absolute, in the metric's units) or METRIC:X% (relative to the baseline), "
    "where METRIC is 'metric' or 'benchmark/metric', e.g. 'zeroshot/top1:0.01' or 'ece:10%'"
)
_RE = re.compile(
    r"^(?:(?P<benchmark>[^/:\s]+)/)?(?P<metric>[^/:\s]+):"
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?P<percent>%)?$"
)


@dataclass(frozen=True)
class RegressionCheck:
    """One parsed ``METRIC:X`` / ``METRIC:X%`` threshold."""

    metric: str
    threshold: float
    relative: bool = False
    benchmark: str | None = None

    @property
    def text(self) -> str:
        scope = f"{self.benchmark}/" if self.benchmark else ""
        return f"{scope}{self.metric}:{self.threshold:g}{'%' if self.relative else ''}"

    def __str__(self) -> str:
        return self.text

    def applies(self, benchmark: str, metric: str) -> bool:
        """Whether this check compares ``metric`` of ``benchmark`` (a declared metric with a direction)."""
        if self.benchmark is not None and not fnmatchcase(benchmark, self.benchmark):
            return False
        if not fnmatchcase(metric, self.metric):
            return False
        try:
            return direction_of(benchmark, metric) != "none"
        except (UnknownMetricError, KeyError):  # a row of an older qclip or another tool: not ours to judge
            return False

    def worsening(self, benchmark: str, metric: str, current: float, baseline: float) -> float:
        """How much worse ``current`` is than ``baseline`` (negative = better), by the metric's declared
        direction."""
        direction = direction_of(benchmark, metric)
        if direction == "lower":
            return current - baseline
        if direction == "zero":
            return abs(current) - abs(baseline)
        if direction == "higher":
            return baseline - current
        raise ValueError(f"{benchmark}/{metric} is descriptive: no direction to compare")

    def limit(self, baseline: float) -> float:
        """The largest worsening allowed against ``baseline``."""
        return abs(baseline) * self.threshold / 100.0 if self.relative else self.threshold


def parse_compare_fail(text: str) -> RegressionCheck:
    """Parse ``METRIC:X`` or ``METRIC:X%`` (argparse ``type=``); raises ``ArgumentTypeError``.

    >>> parse_compare_fail("zeroshot/top1:0.01")
    RegressionCheck(metric='top1', threshold=0.01, relative=False, benchmark='zeroshot')
    """
    m = _RE.match(str(text).strip())
    if not m:
        raise argparse.ArgumentTypeError(f"Expected {_FORM}, but got {text!r}")
    threshold = float(m["number"])
    if not math.isfinite(threshold):
        raise argparse.ArgumentTypeError(f"Expected a finite threshold in {_FORM}, but got {text!r}")
    check_metric_pattern(m["metric"], m["benchmark"], text)
    return RegressionCheck(m["metric"], threshold, bool(m["percent"]), m["benchmark"])


def check_metric_pattern(pattern: str, benchmark: str | None = None, text: str | None = None) -> None:
    """Raise ``ArgumentTypeError`` unless ``pattern`` (a glob, in ``benchmark`` if given) selects at
    least one declared metric that has a direction (see :mod:`qclip.benchmarks`)."""
    shown = text if text is not None else pattern
    try:
        found = metrics_matching(pattern, benchmark)
    except UnknownMetricError as exc:
        raise argparse.ArgumentTypeError(f"{shown!r}: {exc}") from None
    if all(m.direction == "none" for _, m in found):
        names = ", ".join(sorted({f"{b}/{m.name}" for b, m in found}))
        raise argparse.ArgumentTypeError(f"{shown!r} selects only descriptive metrics ({names}), which have no "
                                         "better direction to gate on")


@dataclass(frozen=True)
class Regression:
    """A matched row whose metric got worse than its check allows."""

    check: RegressionCheck
    model: str
    quantizer: str
    benchmark: str
    dataset: str
    metric: str
    subgroup: str
    current: float
    baseline: float
    worsening: float
    limit: float

    @property
    def cell(self) -> str:
        group = f"[{self.subgroup}]" if self.subgroup else ""
        return f"{self.benchmark}/{self.metric}{group} of {self.model} × {self.quantizer} on {self.dataset}"

    def __str__(self) -> str:
        direction = find_metric(self.benchmark, self.metric).better
        if not math.isfinite(self.current):
            change = "is not finite"
        else:
            change = f"got worse by {self.worsening:.4g} ({direction})"
        unit = (
            f"{self.check.threshold:g}% of |baseline| = {self.limit:.4g}"
            if self.check.relative
            else f"{self.limit:.4g}"
        )
        return (
            f"{self.cell}: {self.current:.4g} vs baseline {self.baseline:.4g} {change}; "
            f"allowed {unit} (check '{self.check.text}')"
        )


@dataclass
class GateOutcome:
    """The verdict of one gate, for the report: name, passed, and detail lines."""

    name: str
    passed: bool
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}"


def _merge(current: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    for name, df in (("current", current), ("baseline", baseline)):
        missing = [c for c in (*KEYS, "value") if c not in df.columns]
        if missing and not df.empty:
            raise ValueError(
                f"Expected {name} rows with columns {[*KEYS, 'value']}, but got none of {missing}"
            )
        if df.empty:
            return pd.DataFrame(columns=[*KEYS, "value_cur", "value_base"])
    cur = current[list(KEYS) + ["value"]].drop_duplicates(list(KEYS), keep="last")
    base = baseline[list(KEYS) + ["value"]].drop_duplicates(list(KEYS), keep="last")
    merged = cur.merge(base, on=list(KEYS), suffixes=("_cur", "_base"), how="inner")
    merged["value_cur"] = pd.to_numeric(merged["value_cur"], errors="coerce").astype(float)
    merged["value_base"] = pd.to_numeric(merged["value_base"], errors="coerce").astype(float)
    return merged


def _check(merged: pd.DataFrame, check: RegressionCheck) -> tuple[list[Regression], int]:
    applies = [check.applies(b, m) for b, m in zip(merged["benchmark"], merged["metric"], strict=True)]
    found, compared = [], 0
    for row in merged.loc[pd.Series(applies, index=merged.index, dtype=bool)].itertuples(index=False):
        base, cur = row.value_base, row.value_cur
        if not math.isfinite(base):
            continue
        compared += 1
        limit = check.limit(base)
        worse = check.worsening(row.benchmark, row.metric, cur, base) if math.isfinite(cur) else math.inf
        if worse > limit:
            found.append(
                Regression(
                    check,
                    row.model,
                    row.quantizer,
                    row.benchmark,
                    row.dataset,
                    row.metric,
                    row.subgroup,
                    cur,
                    base,
                    worse,
                    limit,
                )
            )
    return found, compared


def compare(current_rows: pd.DataFrame, baseline_rows: pd.DataFrame, checks) -> list[Regression]:
    """Every regression of ``current_rows`` against ``baseline_rows`` under ``checks``."""
    merged = _merge(current_rows, baseline_rows)
    return [r for check in checks for r in _check(merged, check)[0]]


def run_gates(current_rows: pd.DataFrame, baseline_rows: pd.DataFrame, checks) -> list[GateOutcome]:
    """One :class:`GateOutcome` per check (for the report), with its regressions as details."""
    merged = _merge(current_rows, baseline_rows)
    outcomes = []
    for check in checks:
        found, compared = _check(merged, check)
        details = [str(r) for r in found] or [f"{compared} matched row(s) within the threshold"]
        outcomes.append(GateOutcome(f"compare {check.text}", not found, details))
    return outcomes


def load_baseline(ref: str | Path, store: ResultStore | None = None) -> pd.DataFrame:
    """Baseline rows from a results file (``results.csv``/``.json`` of a report), a report
    folder holding one, or a run reference (id, ``'latest'``, unique prefix) in ``store``."""
    path = Path(ref)
    if path.is_dir():
        for name in ("results.csv", "results.json"):
            if (path / name).is_file():
                return read_rows(path / name)
        raise FileNotFoundError(f"Expected results.csv or results.json in {path}, but found neither")
    if path.suffix.lower() in (".csv", ".json"):
        if not path.is_file():
            raise FileNotFoundError(f"Expected a baseline results file at {path}, but it does not exist")
        return read_rows(path)
    if store is None:
        raise ValueError(
            f"Expected a results file or a results store to look up run {str(ref)!r}, but got no store"
        )
    return store.rows(store.resolve(str(ref)))
