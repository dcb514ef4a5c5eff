"""Calibration and OOD detection from cached embeddings ("Less Precise Can Be More Reliable"; the
spectral analysis is in :mod:`qclip.tasks.robustness`, with the robustness section). The zero-shot logits come from :func:`qclip.tasks.classifier_outputs`, so these share the
image embeddings of the zero-shot cells.

* Calibration: top-label confidence = max softmax of logit_scale · cosine; ECE (15 equal-width bins),
  adaptive ECE, MCE, RMS, NLL, Brier; temperature scaling fitted on one half of the set (even indices)
  and evaluated on the other (odd indices), so the report can show calibration before and after it.
  Logit-scale tuning (Bouguerra et al.): where the source has calibration pairs (image–caption), the logit
  scale fitted on them with the contrastive loss, everything else frozen, and the ECE with it
  (``logit_scale_tuned``, ``ece_logit_tuned``, beside the model's own ``logit_scale`` and ``ece``).
* OOD (ID positive): MCM = max softmax(cosine / T), T = 1 (Ming et al. 2022); MSP with the logit scale;
  max-logit; energy. AUROC, FPR@95TPR, AUPR-In, AUPR-Out per OOD set.
"""

from __future__ import annotations

import numpy as np

from ..benchmarks import OOD_SCORES
from ..metrics import calibration as cal
from ..metrics import ood
from ..metrics import zeroshot as zs
from .accuracy import classifier_outputs
from .base import EmbeddingSource, TaskResult

__all__ = ["calibration", "ood_detection", "OOD_SCORES"]



def calibration(src: EmbeddingSource, dataset, n_bins: int = 15) -> TaskResult:
    """Calibration metrics, the temperature-scaled ECE on a held-out half, and reliability-diagram data
    (``extra["reliability"]``)."""
    out = classifier_outputs(src, dataset)
    m = cal.calibration_metrics(out.logits, out.labels, n_bins=n_bins)
    fit, held = np.arange(0, len(out.labels), 2), np.arange(1, len(out.labels), 2)
    t = cal.fit_temperature(out.logits[fit], out.labels[fit])
    scaled = cal.calibration_metrics(out.logits[held] / t, out.labels[held], n_bins=n_bins)
    unscaled = cal.calibration_metrics(out.logits[held], out.labels[held], n_bins=n_bins)
    m.update({"temperature": t, "ece_heldout": unscaled["ece"], "ece_temp_scaled": scaled["ece"]})
    pairs = getattr(src, "calibration_pairs", lambda: None)()
    if pairs is not None:  # logit-scale tuning on the calibration pairs, the backbone frozen
        img, txt = (np.asarray(x, dtype=np.float64) for x in pairs)
        scale = cal.fit_logit_scale(zs.cosine_similarity(img, txt))
        tuned = cal.calibration_metrics(scale * out.cosine, out.labels, n_bins=n_bins)
        m.update({"logit_scale": float(src.logit_scale), "logit_scale_tuned": scale, "ece_logit_tuned": tuned["ece"]})
    conf, pred = cal.top_label(out.logits)
    diagram = cal.reliability_diagram(conf, pred == out.labels, n_bins=n_bins)
    return TaskResult(m, len(out.labels), extra={"reliability": diagram.to_dict(orient="list")})


def _scores(out) -> dict[str, np.ndarray]:
    return {
        "mcm": ood.mcm_score(out.cosine, T=1.0),
        "msp": ood.msp_score(out.logits),
        "max_logit": ood.max_logit_score(out.logits),
        "energy": ood.energy_score(out.logits),
    }


def ood_detection(src: EmbeddingSource, id_dataset, ood_datasets: dict) -> TaskResult:
    """``groups[(ood set, score)] = {auroc, fpr95, aupr_in, aupr_out}`` with ID = ``id_dataset``; ``n`` counts
    the ID images, ``extra["n_ood"][ood set]`` each OOD set's."""
    ident = classifier_outputs(src, id_dataset)
    id_scores = _scores(ident)
    res = {}
    for name, ds in ood_datasets.items():
        other = classifier_outputs(src, ds, classnames=id_dataset.classnames, templates=id_dataset.templates,
                                   labels=False)
        o_scores = _scores(other)
        for score in OOD_SCORES:
            res[(name, score)] = ood.ood_metrics(id_scores[score], o_scores[score])
    return TaskResult({}, len(ident.labels), groups=res,
                      extra={"n_ood": {name: len(ds) for name, ds in ood_datasets.items()}})
