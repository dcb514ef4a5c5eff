"""Robustness computations: zero-shot accuracy under evaluation-time corruptions, worst-group accuracy on
group-annotated (spurious) sets, and the spectral analysis of the quantization noise (the report's
robustness group: ``report/sections_robustness.py``)."""

from __future__ import annotations

import numpy as np

from ..metrics import zeroshot as zs
from ..metrics.robustness import group_accuracy, worst_group_accuracy
from ..metrics.spectral import (
    DEFAULT_BANDS,
    band_means,
    rank_band_accuracy,
    spectral_analysis,
    sqnr_from_analysis,
)
from .accuracy import classifier_outputs
from .base import EmbeddingSource, TaskResult
from .corruptions import make_corruption

__all__ = ["corrupted_top1", "worst_group", "spectral"]


def corrupted_top1(src: EmbeddingSource, dataset, corruption) -> TaskResult:
    """Zero-shot top-1 on ``dataset`` with an evaluation-time corruption (:mod:`qclip.tasks.corruptions`)."""
    mean, std = src.preprocess_stats()
    fn = make_corruption(corruption, mean, std)
    out = classifier_outputs(src, dataset, transform=fn, transform_id=corruption.id)
    return TaskResult({"top1": zs.zeroshot_metrics(out.logits, out.labels)["top1"]}, len(out.labels))


def worst_group(src: EmbeddingSource, dataset) -> TaskResult:
    """Worst-group, average and mean-group accuracy on a group-annotated set (``extra["worst_group"]``
    names the group), and ``groups[g] = {"accuracy", "n"}`` per group."""
    out = classifier_outputs(src, dataset)
    pred = zs.predictions(out.logits)
    groups = dataset.table["group"].to_numpy()
    summary = dict(worst_group_accuracy(pred, out.labels, groups))
    worst = summary.pop("worst_group")
    per_group = {g: {"accuracy": acc, "n": count} for g, (acc, count) in group_accuracy(pred, out.labels, groups).items()}
    return TaskResult(summary, len(out.labels), groups=per_group, extra={"worst_group": worst})


def spectral(ref_src: EmbeddingSource, q_src: EmbeddingSource, dataset) -> TaskResult:
    """Spectral analysis of the quantization noise on the image features of ``dataset``: the scalar results
    of :func:`qclip.metrics.spectral.spectral_analysis` in ``metrics``, its per-rank arrays and bands in
    ``extra``, with ``extra["band_sqnr_db"]`` (the mean per-rank SQNR of each band's finite ranks,
    :func:`~qclip.metrics.spectral.per_rank_sqnr`) and, on a labelled set, ``extra["band_top1_ref"]`` and
    ``extra["band_top1_q"]`` (zero-shot top-1 in each band of the fp32 basis,
    :func:`~qclip.metrics.spectral.rank_band_accuracy`)."""
    ref_out = classifier_outputs(ref_src, dataset)
    q_out = classifier_outputs(q_src, dataset)
    ref = ref_out.image_emb.astype(np.float64)
    got = q_out.image_emb.astype(np.float64)
    res = spectral_analysis(ref, got)
    scalars = {k: float(v) for k, v in res.items() if isinstance(v, float)}
    extra = {k: v for k, v in res.items() if k not in scalars}
    sqnr = sqnr_from_analysis(res)  # the same decomposition, not a second SVD
    extra["sqnr_per_rank_db"] = sqnr
    extra["band_sqnr_db"] = band_means(sqnr, DEFAULT_BANDS)
    # each model's own classifier, as its zero-shot cells use it
    extra["band_top1_ref"] = rank_band_accuracy(ref, ref, ref_out.classifier, ref_out.labels, DEFAULT_BANDS)
    extra["band_top1_q"] = rank_band_accuracy(ref, got, q_out.classifier, q_out.labels, DEFAULT_BANDS)
    return TaskResult(scalars, len(ref), extra=extra)
