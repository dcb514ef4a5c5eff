"""The benchmark families, declared once: their dataset kinds and every metric their cells record, with
the metric's direction and unit.

This is the one home of metric metadata. The cells (:meth:`qclip.run.context.CellContext.record` refuses an
undeclared metric), the regression gate (:mod:`qclip.expect.gate`), the fairness gate, ``qclip gate`` and the
report read it; nothing guesses a direction from a metric's name.

Directions:

* ``higher``: higher is better (accuracy, recall, AUROC, throughput);
* ``lower``: lower is better (calibration errors, FPR@95TPR, NDKL, noise-to-signal, bytes);
* ``zero``: closer to zero is better (signed disparities and skews, where 0 is parity; over-confidence);
* ``none``: descriptive, neither way is better (mean confidence, the fitted temperature, effective
  rank); no gate compares it.

A metric whose name carries a parameter is declared with a placeholder, ``max_disparity@K`` for
``max_disparity@1`` and ``max_disparity@5``; ``{score}`` in the OOD family stands for each of
:data:`OOD_SCORES`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

__all__ = [
    "DIRECTIONS",
    "FAMILIES",
    "OOD_SCORES",
    "Family",
    "Metric",
    "UnknownMetricError",
    "direction_of",
    "family",
    "find_metric",
    "known_metric_names",
    "metrics_matching",
]

DIRECTIONS = ("higher", "lower", "zero", "none")
#: the OOD scores every OOD cell records, in this order (qclip.tasks.reliability computes them)
OOD_SCORES = ("mcm", "msp", "max_logit", "energy")


class UnknownMetricError(ValueError):
    """A metric name or pattern that no benchmark family declares."""


@dataclass(frozen=True)
class Metric:
    """One recorded metric. ``name`` may hold the parameter placeholder ``K`` after an ``@``."""

    name: str
    direction: str
    unit: str
    description: str = ""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Expected direction in {DIRECTIONS}, but got {self.direction!r} for {self.name!r}")

    @property
    def _regex(self) -> re.Pattern:
        return re.compile("^" + re.escape(self.name).replace("@K", r"@\d+") + "$")

    def matches(self, recorded: str) -> bool:
        """Whether the recorded metric name ``recorded`` is this metric (``max_disparity@5`` is
        ``max_disparity@K``)."""
        return bool(self._regex.match(recorded))

    def matched_by(self, pattern: str) -> bool:
        """Whether the shell-style ``pattern`` of a gate could select this metric."""
        numbers = {"1", "10", *re.findall(r"@(\d+)", pattern)}
        examples = {self.name, *(self.name.replace("@K", f"@{k}") for k in numbers)}
        return any(fnmatchcase(e, pattern) for e in examples)

    @property
    def better(self) -> str:
        return {"higher": "higher is better", "lower": "lower is better", "zero": "closer to 0 is better",
                "none": "descriptive (no better direction)"}[self.direction]


@dataclass(frozen=True)
class Family:
    """A benchmark family: one cell file in ``bench/``, its dataset kinds ("" = needs no dataset), its
    metrics, and its group (``section``): the module of ``qclip/tasks/`` that computes it and the report
    sections it shares (``accuracy``, ``fairness``, ``reliability``, ``robustness``; ``cost`` is measured by
    ``qclip/perf``)."""

    name: str
    kinds: tuple[str, ...]
    metrics: tuple[Metric, ...]
    section: str
    title: str
    by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_name", {m.name: m for m in self.metrics})
        if len(self.by_name) != len(self.metrics):
            raise ValueError(f"{self.name}: a metric is declared twice")

    def metric(self, recorded: str) -> Metric | None:
        """The declaration of a recorded metric name, or None."""
        m = self.by_name.get(recorded)
        if m is not None:
            return m
        return next((m for m in self.metrics if m.matches(recorded)), None)


def _m(name, direction, unit, description=""):
    return Metric(name, direction, unit, description)


_FRACTION = "fraction"
_OOD = tuple(
    _m(f"{score}_{metric}", direction, _FRACTION, f"{desc} with the {score} score (ID positive)")
    for score in OOD_SCORES
    for metric, direction, desc in (("auroc", "higher", "area under the ROC curve"),
                                    ("fpr95", "lower", "false-positive rate at 95% true-positive rate"),
                                    ("aupr_in", "higher", "area under precision-recall, ID positive"),
                                    ("aupr_out", "higher", "area under precision-recall, OOD positive"))
)

_FAMILY_LIST = (
    Family("zeroshot", ("imagefolder",), (
        _m("top1", "higher", _FRACTION, "zero-shot top-1 accuracy"),
        _m("top5", "higher", _FRACTION, "zero-shot top-5 accuracy"),
        _m("mean_per_class_recall", "higher", _FRACTION, "recall averaged over classes"),
        _m("flip_rate", "lower", _FRACTION, "share of samples whose top-1 differs from fp32's"),
        _m("flip_right_to_wrong", "lower", _FRACTION, "share right under fp32 and wrong quantized"),
        _m("flip_wrong_to_right", "none", _FRACTION, "share wrong under fp32 and right quantized"),
        _m("mean_kl", "lower", "nats", "mean KL(fp32 ‖ quantized) of the predictive distributions"),
        _m("embedding_cosine", "higher", "cosine", "mean cosine of each image's fp32 and quantized embeddings"),
    ), "accuracy", "Zero-shot classification"),
    Family("retrieval", ("coco",), tuple(
        _m(f"{side}_retrieval_R@K", "higher", _FRACTION, f"{what} recall@k")
        for side, what in (("image", "text → image"), ("text", "image → text"))
    ), "accuracy", "Image–text retrieval"),
    Family("facet", ("facet",), (
        _m("min_disparity@K", "zero", _FRACTION, "smallest recall(a) − recall(b) over qualifying classes"),
        _m("max_disparity@K", "zero", _FRACTION, "largest recall(a) − recall(b) over qualifying classes"),
        _m("disparity@K", "zero", _FRACTION, "recall(a) − recall(b) of one class"),
    ), "fairness", "FACET recall disparity"),
    Family("fairface", ("fairface",), (
        _m("max_skew@K", "zero", "log ratio", "largest log(share in top-k / desired share)"),
        _m("min_skew@K", "zero", "log ratio", "smallest log(share in top-k / desired share)"),
        _m("ndkl@K", "lower", "nats", "normalized discounted KL divergence from the desired distribution"),
        _m("skew@K", "zero", "log ratio", "skew of one attribute value"),
    ), "fairness", "FairFace skew"),
    Family("calibration", ("imagefolder",), (
        _m("ece", "lower", _FRACTION, "expected calibration error, 15 equal-width bins"),
        _m("adaptive_ece", "lower", _FRACTION, "ECE over equal-mass bins"),
        _m("mce", "lower", _FRACTION, "maximum calibration error"),
        _m("rms_ce", "lower", _FRACTION, "root-mean-square calibration error"),
        _m("nll", "lower", "nats", "negative log-likelihood"),
        _m("brier", "lower", "score", "Brier score"),
        _m("accuracy", "higher", _FRACTION, "top-1 accuracy"),
        _m("mean_confidence", "none", _FRACTION, "mean top-label confidence"),
        _m("overconfidence", "zero", _FRACTION, "mean confidence − accuracy"),
        _m("temperature", "none", "ratio", "temperature fitted on the held-out half's complement"),
        _m("ece_heldout", "lower", _FRACTION, "ECE on the held-out half"),
        _m("ece_temp_scaled", "lower", _FRACTION, "ECE on the held-out half after temperature scaling"),
        _m("relative_ece_change", "lower", "ratio", "(ECE quantized − ECE fp32) / ECE fp32"),
        _m("logit_scale", "none", "scale", "the model's own logit scale"),
        _m("logit_scale_tuned", "none", "scale", "logit scale fitted on the calibration pairs (contrastive loss)"),
        _m("ece_logit_tuned", "lower", _FRACTION, "ECE with the logit scale fitted on the calibration pairs"),
    ), "reliability", "Calibration"),
    Family("ood", ("imagefolder",), _OOD, "reliability", "OOD detection"),
    Family("spectral", ("imagefolder",), (
        _m("effective_rank", "none", "rank", "effective rank of the centred image features"),
        _m("nsr_total", "lower", "ratio", "quantization noise energy / fp32 signal energy"),
        _m("band_nsr", "lower", "ratio", "noise-to-signal ratio in a band of principal ranks"),
        _m("band_sqnr_db", "higher", "dB", "mean per-rank SQNR of the quantized features in a band of fp32 ranks"),
        _m("band_top1", "higher", _FRACTION, "zero-shot top-1 with the features projected on a band of fp32 ranks"),
    ), "robustness", "Spectral analysis"),
    Family("robustness", ("imagefolder", "spurious", "counteranimal", "cifar-c"), (
        _m("top1", "higher", _FRACTION, "zero-shot top-1 under a corruption"),
        _m("relative_drop", "lower", "ratio", "(top-1 fp32 − top-1 quantized) / top-1 fp32"),
        _m("worst_group_accuracy", "higher", _FRACTION, "accuracy of the worst (label, place) group"),
        _m("average_accuracy", "higher", _FRACTION, "accuracy over all samples"),
        _m("mean_group_accuracy", "higher", _FRACTION, "accuracy averaged over groups"),
        _m("group_accuracy", "higher", _FRACTION, "accuracy of one group"),
        _m("normal_accuracy", "higher", _FRACTION, "accuracy on the normal split (each class on its common background)"),
        _m("counter_accuracy", "higher", _FRACTION, "accuracy on the counter split (uncommon backgrounds)"),
        _m("rsg", "lower", "ratio", "relative spurious gap (A_normal − A_counter) / A_normal"),
        _m("delta_rsg", "lower", "ratio", "RSG quantized − RSG fp32 (positive: quantization widens the gap)"),
        _m("vuln_add", "lower", "ratio", "added vulnerability δ_counter − δ_normal, δ = (A_fp32 − A_q) / A_fp32"),
    ), "robustness", "Robustness"),
    Family("throughput", ("",), (
        _m("image_items_per_s", "higher", "items/s", "images encoded per second"),
        _m("text_items_per_s", "higher", "items/s", "texts encoded per second"),
        _m("peak_memory_bytes", "lower", "bytes", "peak memory of an image pass"),
        _m("weight_bytes", "lower", "bytes", "weights as stored, quantization statistics included"),
    ), "cost", "Throughput"),
)

#: name → family, in the report's order (each family's section: qclip.report.document.SECTION_BUILDERS)
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILY_LIST}


def family(name: str) -> Family:
    """The family ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"Expected a benchmark family among {list(FAMILIES)}, but got {name!r}") from None


def known_metric_names(benchmark: str | None = None) -> list[str]:
    """Declared metric names (with placeholders), of one family or of all, without repeats."""
    fams = [family(benchmark)] if benchmark else list(FAMILIES.values())
    return list(dict.fromkeys(m.name for f in fams for m in f.metrics))


def find_metric(benchmark: str, recorded: str) -> Metric:
    """The declaration of ``recorded`` in ``benchmark``; raises :class:`UnknownMetricError` naming the
    family's metrics and the closest names."""
    fam = family(benchmark)
    m = fam.metric(recorded)
    if m is None:
        names = known_metric_names(benchmark)
        close = difflib.get_close_matches(recorded, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownMetricError(f"Metric {recorded!r} is not declared for benchmark {benchmark!r}{hint}; "
                                 f"declared: {', '.join(names)} (qclip/benchmarks.py)")
    return m


def direction_of(benchmark: str, recorded: str) -> str:
    """``higher``, ``lower``, ``zero`` or ``none`` for a recorded metric of ``benchmark``."""
    return find_metric(benchmark, recorded).direction


def metrics_matching(pattern: str, benchmark: str | None = None) -> list[tuple[str, Metric]]:
    """``(family, metric)`` of every declared metric a gate pattern (``METRIC`` glob, optionally with a
    ``benchmark`` glob) can select; raises :class:`UnknownMetricError` when there is none, with the
    known names and the closest ones."""
    found = [(f.name, m) for f in FAMILIES.values() if benchmark is None or fnmatchcase(f.name, benchmark)
             for m in f.metrics if m.matched_by(pattern)]
    if not found:
        names = known_metric_names()
        close = difflib.get_close_matches(pattern, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        scope = f" in benchmark {benchmark!r}" if benchmark else ""
        raise UnknownMetricError(f"no recorded metric matches {pattern!r}{scope}{hint}; known metrics "
                                 f"(K = any integer): {', '.join(names)}")
    return found
