"""Pure metric math of qclip: numpy arrays (or CPU torch tensors) in, floats / dicts / DataFrames out.

One module per family, no pytest and no models imported:

* :mod:`~qclip.metrics.zeroshot` — prompt-ensemble classifier, logits, top-k, per-class recall
* :mod:`~qclip.metrics.retrieval` — COCO-style image/text retrieval recall@k (chunked)
* :mod:`~qclip.metrics.fairness` — FACET recall disparity, skin tone from votes (+ skew re-exports)
* :mod:`~qclip.metrics.skew` — FairFace Skew@k, MaxSkew@k, MinSkew@k, NDKL@k
* :mod:`~qclip.metrics.calibration` — ECE / adaptive ECE / MCE / RMS, NLL, Brier, temperature
* :mod:`~qclip.metrics.ood` — MCM / MSP / max-logit / energy scores, AUROC, FPR@95, AUPR
* :mod:`~qclip.metrics.spectral` — quantization noise per principal-rank band, per-rank SQNR, rank-band accuracy, effective rank
* :mod:`~qclip.metrics.robustness` — relative accuracy change, worst-group accuracy
* :mod:`~qclip.metrics.agreement` — per-sample prediction flips, KL divergence, embedding cosine (fp32 vs quantized)
* :mod:`~qclip.metrics.spurious_gap` — relative spurious gap, ΔRSG, added vulnerability (common/counter)

Every public function takes ``validate_args=True``; errors read
"Expected `arg` to be ..., but got ...". Ranking ties are broken by the lower
index first everywhere (a stable argsort of the negated scores).
"""

from __future__ import annotations

from .agreement import agreement_metrics, mean_cosine_similarity, mean_kl_divergence, prediction_flips
from .calibration import (
    adaptive_ece,
    bin_edges,
    brier,
    calibration_metrics,
    confidence_direction,
    ece,
    fit_logit_scale,
    fit_temperature,
    mce,
    nll,
    reliability_diagram,
    rms_ce,
    top_label,
)
from .fairness import disparity, disparity_range, recall_at_k_by_group, skin_group, skin_tone_from_votes
from .ood import (
    aupr_in,
    aupr_out,
    auroc,
    energy_score,
    fpr_at_tpr,
    max_logit_score,
    mcm_score,
    msp_score,
    ood_metrics,
)
from .retrieval import image_retrieval_ranks, retrieval_recall, text_retrieval_ranks
from .robustness import group_accuracy, relative_change, relative_increase, worst_group_accuracy
from .skew import max_skew, min_skew, ndkl_at_k, prompt_skew, prompt_skews, skew_at_k
from .spectral import (
    DEFAULT_BANDS,
    band_means,
    effective_rank,
    per_rank_sqnr,
    rank_band_accuracy,
    spectral_analysis,
    sqnr_from_analysis,
)
from .spurious_gap import added_vulnerability, delta_rsg, relative_spurious_gap, spurious_gap_summary
from .zeroshot import (
    build_classifier,
    cosine_similarity,
    mean_per_class_recall,
    per_class_recall,
    predictions,
    topk_accuracy,
    topk_hits,
    zeroshot_logits,
    zeroshot_metrics,
)

__all__ = [
    # agreement
    "prediction_flips",
    "mean_kl_divergence",
    "mean_cosine_similarity",
    "agreement_metrics",
    # zeroshot
    "build_classifier",
    "zeroshot_logits",
    "predictions",
    "topk_hits",
    "topk_accuracy",
    "per_class_recall",
    "mean_per_class_recall",
    "zeroshot_metrics",
    "cosine_similarity",
    # retrieval
    "image_retrieval_ranks",
    "text_retrieval_ranks",
    "retrieval_recall",
    # fairness
    "recall_at_k_by_group",
    "disparity",
    "disparity_range",
    "skin_tone_from_votes",
    "skin_group",
    # skew
    "skew_at_k",
    "max_skew",
    "min_skew",
    "ndkl_at_k",
    "prompt_skew",
    "prompt_skews",
    # calibration
    "ece",
    "adaptive_ece",
    "mce",
    "rms_ce",
    "nll",
    "brier",
    "reliability_diagram",
    "fit_temperature",
    "fit_logit_scale",
    "confidence_direction",
    "calibration_metrics",
    "top_label",
    "bin_edges",
    # ood
    "mcm_score",
    "msp_score",
    "max_logit_score",
    "energy_score",
    "auroc",
    "fpr_at_tpr",
    "aupr_in",
    "aupr_out",
    "ood_metrics",
    # spectral
    "DEFAULT_BANDS",
    "effective_rank",
    "spectral_analysis",
    "per_rank_sqnr",
    "sqnr_from_analysis",
    "band_means",
    "rank_band_accuracy",
    "relative_spurious_gap",
    "delta_rsg",
    "added_vulnerability",
    "spurious_gap_summary",
    # robustness
    "relative_change",
    "relative_increase",
    "group_accuracy",
    "worst_group_accuracy",
]
