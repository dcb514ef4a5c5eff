"""Robustness computations: zero-shot accuracy under evaluation-time corruptions, worst-group accuracy on
group-annotated (spurious) sets, and the spectral analysis of the quantization noise (the report's
robustness group: ``report/sections_robustness.py``)."""

from __future__ import annotations

import numpy as np

from ..metrics import zeroshot as zs
from ..metrics.robustness import group_accuracy, worst_group_accuracy
from ..metrics.spectral import spectral_analysis
from .accuracy import classifier_outputs
from .corruptions import make_corruption

__all__ = ["corrupted_top1", "worst_group", "spectral"]


def corrupted_top1(src, dataset, corruption) -> float:
    """Zero-shot top-1 on ``dataset`` with an evaluation-time corruption (qclip.tasks.corruptions)."""

    mean, std = src.preprocess_stats()
    fn = make_corruption(corruption, mean, std)
    out = classifier_outputs(src, dataset, transform=fn, transform_id=corruption.id)
    return zs.zeroshot_metrics(out.logits, out.labels)["top1"]


def worst_group(src, dataset) -> tuple[dict, dict]:
    """Worst-group, average and mean-group accuracy on a group-annotated set, plus per-group accuracy."""
    out = classifier_outputs(src, dataset)
    pred = zs.predictions(out.logits)
    groups = dataset.table["group"].to_numpy()
    return worst_group_accuracy(pred, out.labels, groups), group_accuracy(pred, out.labels, groups)


def spectral(ref_src, q_src, dataset) -> dict:
    """Spectral analysis of the quantization noise on the image features of ``dataset``."""
    ref = ref_src.image_embeddings(dataset).numpy().astype(np.float64)
    got = q_src.image_embeddings(dataset).numpy().astype(np.float64)
    return spectral_analysis(ref, got)
