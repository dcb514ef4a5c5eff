"""Benchmark computations on embeddings: what a cell computes, for the fp32 reference and the quantized
model alike. One module per family group, the same groups as ``qclip/report/sections_<group>.py``:
:mod:`.accuracy` (zero-shot, retrieval), :mod:`.fairness` (FACET, FairFace), :mod:`.reliability`
(calibration, OOD) and :mod:`.robustness` (corruptions, worst group, spurious gap, spectral). No pytest here and no
metric math: the formulas live in :mod:`qclip.metrics`.
"""

from .accuracy import (
    ClassifierOutputs,
    class_prompts,
    classifier_outputs,
    prediction_agreement,
    retrieval,
    zeroshot,
)
from .base import EmbeddingSource, TaskResult
from .fairness import facet_delta_ci, facet_disparities, fairface_skews
from .reliability import calibration, ood_detection
from .robustness import corrupted_top1, corruption_arrays, normal_mask, spectral, spurious_gap, worst_group

__all__ = ["EmbeddingSource", "TaskResult", "ClassifierOutputs", "class_prompts", "classifier_outputs", "zeroshot",
           "prediction_agreement", "retrieval",
           "facet_disparities", "facet_delta_ci", "fairface_skews", "calibration", "ood_detection", "corrupted_top1", "corruption_arrays",
           "worst_group", "normal_mask", "spurious_gap", "spectral"]
