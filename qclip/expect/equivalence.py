"""Equivalence margins: how close to fp32 a population's mean Δ must be to call a quantizer equivalent.

Defaults are data in ``qclip/expect/equivalence.yaml``, one entry per metric family with its rationale
(first matching entry wins); ``--qclip-equivalence '[BENCHMARK/]METRIC[@SUBGROUP]:MARGIN'`` overrides them
(repeatable, the last matching one wins). :func:`margin_function` turns both into the
``margin(benchmark, metric, subgroup)`` that :func:`qclip.stats.population_stats` asks per finding.

METRIC and SUBGROUP are shell-style globs. A metric whose name carries ``@K`` keeps it: ``max_disparity@*``
is every K of MaxDisparity, every subgroup; ``max_disparity@1@gender`` is K = 1 in the gender contrast
only; ``top1@*`` is top-1 in every subgroup. MARGIN is a positive number in the metric's unit, or ``none``
(no equivalence test for what the rule selects).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from ..benchmarks import UnknownMetricError, metrics_matching

__all__ = ["DEFAULTS_FILE", "MarginRule", "default_rules", "margin_function", "parse_margin"]

DEFAULTS_FILE = Path(__file__).resolve().parent / "equivalence.yaml"
_FORM = "[BENCHMARK/]METRIC[@SUBGROUP]:MARGIN (e.g. 'max_disparity@*:0.02', 'facet/max_disparity@1@gender:0.03')"


@dataclass(frozen=True)
class MarginRule:
    """One margin: the findings it selects (globs) and ``margin`` (NaN: no equivalence test)."""

    metric: str
    margin: float
    benchmark: str = "*"
    subgroup: str = "*"
    why: str = ""
    source: str = "qclip/expect/equivalence.yaml"

    def matches(self, benchmark: str, metric: str, subgroup: str) -> bool:
        return (fnmatchcase(benchmark, self.benchmark) and fnmatchcase(metric, self.metric)
                and fnmatchcase(subgroup or "", self.subgroup))

    @property
    def selects(self) -> str:
        """The rule's selection as a user would write it."""
        head = "" if self.benchmark == "*" else f"{self.benchmark}/"
        tail = "" if self.subgroup == "*" else f"@{self.subgroup}"
        return f"{head}{self.metric}{tail}"


def _split_benchmark(text: str) -> tuple[str, str]:
    bench, sep, rest = text.partition("/")
    return (bench, rest) if sep else ("*", text)


def _margin_value(text: str) -> float:
    if text.strip().lower() in ("none", "null"):
        return math.nan
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


def _selects(metric: str, benchmark: str) -> bool:
    try:
        metrics_matching(metric, None if benchmark == "*" else benchmark)
    except UnknownMetricError:
        return False
    return True


def parse_margin(text: str) -> MarginRule:
    """``[BENCHMARK/]METRIC[@SUBGROUP]:MARGIN`` -> :class:`MarginRule`; ``argparse.ArgumentTypeError``
    naming the form, or the declared metrics, when it is malformed or selects no declared metric.

    The part before the last ``:`` is first read whole as a metric glob (``max_disparity@*``); only when that
    selects no declared metric is its last ``@`` taken as the subgroup separator (``top1@gender``).

    >>> parse_margin("max_disparity@*:0.02").selects, parse_margin("zeroshot/top1@*:0.005").subgroup
    ('max_disparity@*', '*')
    """
    left, sep, value = text.rpartition(":")
    try:
        if not sep or not left:
            raise ValueError
        margin = _margin_value(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"Expected {_FORM} with MARGIN > 0 or 'none', but got {text!r}") from None
    benchmark, rest = _split_benchmark(left)
    if not rest:
        raise argparse.ArgumentTypeError(f"Expected {_FORM}, but got {text!r}")
    if _selects(rest, benchmark):
        return MarginRule(rest, margin, benchmark, "*", source=f"--qclip-equivalence {text}")
    metric, at, subgroup = rest.rpartition("@")
    if at and metric and _selects(metric, benchmark):
        return MarginRule(metric, margin, benchmark, subgroup, source=f"--qclip-equivalence {text}")
    try:
        metrics_matching(rest, None if benchmark == "*" else benchmark)
    except UnknownMetricError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {exc} (a metric with @K keeps it before the subgroup: 'max_disparity@*@gender')") from None
    raise argparse.ArgumentTypeError(f"Expected {_FORM}, but got {text!r}")  # pragma: no cover


def default_rules(path: Path = DEFAULTS_FILE) -> list[MarginRule]:
    """The default margins of ``path`` (``qclip/expect/equivalence.yaml``), in their order."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    rules = []
    for entry in data.get("margins") or []:
        benchmark, metric = _split_benchmark(str(entry["metric"]))
        margin = entry.get("margin")
        rules.append(MarginRule(metric, math.nan if margin is None else float(margin), benchmark,
                                str(entry.get("subgroup", "*")), str(entry.get("why", "")).strip(), str(path.name)))
    return rules


def margin_function(overrides: Iterable[str | MarginRule] = (),
                    defaults: list[MarginRule] | None = None) -> Callable[[str, str, str], float]:
    """``margin(benchmark, metric, subgroup)``: the last override that matches, else the first default that
    matches, else NaN. ``overrides`` are option texts (checked with :func:`parse_margin`) or rules.

    >>> m = margin_function(["max_disparity@1@gender:0.05"])
    >>> m("facet", "max_disparity@1", "gender"), m("facet", "max_disparity@1", "skin_tone"), m("zeroshot", "top1", "")
    (0.05, 0.02, 0.01)
    """
    rules = [r if isinstance(r, MarginRule) else parse_margin(r) for r in overrides]
    base = default_rules() if defaults is None else defaults
    memo: dict[tuple[str, str, str], float] = {}

    def margin(benchmark: str, metric: str, subgroup: str) -> float:
        key = (benchmark, metric, subgroup or "")
        if key not in memo:
            hit = next((r for r in reversed(rules) if r.matches(*key)), None)
            hit = hit or next((r for r in base if r.matches(*key)), None)
            memo[key] = hit.margin if hit is not None else math.nan
        return memo[key]

    return margin
