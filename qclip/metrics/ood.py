"""Out-of-distribution detection: scores from CLIP outputs and the ID-vs-OOD detection metrics.

Convention: **in-distribution (ID) is the positive class and a higher score means
"more ID"**, as in MCM (Ming et al. 2022, "Delving into Out-of-Distribution
Detection with Vision-Language Representations"). OpenOOD (Yang et al. 2022)
makes OOD the positive class instead; its AUROC is the same number, its AUPR-In /
AUPR-Out are swapped in name, and its FPR@95 is the share of ID samples kept at
95% OOD recall. qclip reports (FORMATS.md "OOD detection"):

* ``auroc``: P(id > ood) + ½·P(id = ood) (Mann-Whitney; equals scikit-learn's
  ``roc_auc_score`` with ID labelled 1).
* ``fpr95``: the share of OOD samples scoring at or above the threshold that keeps
  95% of ID samples. The threshold is exactly ``t* = max{t : mean(id >= t) >= 0.95}``,
  i.e. the ``ceil(0.95·n_id)``-th largest ID score, and FPR = ``mean(ood >= t*)``.
  No interpolation between ROC points (unlike some OpenOOD versions).
* ``aupr_in``: average precision with ID positive and the scores as given.
* ``aupr_out``: average precision with OOD positive and the negated scores.

Average precision is scikit-learn's step-wise form (no interpolation):
``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score thresholds.

Scores (higher = more ID): MCM = max softmax(cos / T) with T = 1 and no logit
scale; MSP = max softmax(logits) (Hendrycks & Gimpel 2017); max-logit
(Hendrycks et al. 2022); energy = T·logsumexp(logits / T) (Liu et al. 2020, the
negative free energy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from ._validation import check_float, float_array, logsumexp, softmax

__all__ = [
    "mcm_score",
    "msp_score",
    "max_logit_score",
    "energy_score",
    "auroc",
    "fpr_at_tpr",
    "aupr_in",
    "aupr_out",
    "ood_metrics",
]


def mcm_score(cos_sims: Any, T: float = 1.0, validate_args: bool = True) -> np.ndarray:
    r"""Maximum concept matching: :math:`\max_c \mathrm{softmax}(s_c / T)` over cosine similarities [N, C].

    No logit scale is applied (pass raw cosines). Source: Ming et al. 2022 (MCM).

    Example:
        >>> mcm_score(np.array([[0.3, 0.2], [0.25, 0.25]])).round(4).tolist()
        [0.525, 0.5]
    """
    s = float_array(cos_sims, "cos_sims", 2, validate_args)
    if validate_args:
        T = check_float(T, "T", lo=0.0, lo_open=True)
    return softmax(s / T, axis=1).max(axis=1)


def msp_score(logits: Any, validate_args: bool = True) -> np.ndarray:
    r"""Maximum softmax probability :math:`\max_c \mathrm{softmax}(\ell)_c` (Hendrycks & Gimpel 2017).

    Example:
        >>> msp_score(np.array([[2.0, 0.0]])).round(4).tolist()
        [0.8808]
    """
    return softmax(float_array(logits, "logits", 2, validate_args), axis=1).max(axis=1)


def max_logit_score(logits: Any, validate_args: bool = True) -> np.ndarray:
    r"""Maximum logit :math:`\max_c \ell_c` (Hendrycks et al. 2022, "Scaling OOD detection").

    Example:
        >>> max_logit_score(np.array([[2.0, 0.0], [-1.0, 3.0]])).tolist()
        [2.0, 3.0]
    """
    return float_array(logits, "logits", 2, validate_args).max(axis=1)


def energy_score(logits: Any, T: float = 1.0, validate_args: bool = True) -> np.ndarray:
    r"""Negative free energy :math:`T \log \sum_c e^{\ell_c / T}` (Liu et al. 2020); higher = more ID.

    Example:
        >>> energy_score(np.array([[0.0, 0.0]])).round(4).tolist()
        [0.6931]
    """
    lg = float_array(logits, "logits", 2, validate_args)
    if validate_args:
        T = check_float(T, "T", lo=0.0, lo_open=True)
    return T * logsumexp(lg / T, axis=1)


def _pair(id_scores: Any, ood_scores: Any, validate: bool) -> tuple[np.ndarray, np.ndarray]:
    return (
        float_array(id_scores, "id_scores", 1, validate),
        float_array(ood_scores, "ood_scores", 1, validate),
    )


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """scikit-learn's average precision with ``pos`` as positives (step-wise, ties grouped)."""
    scores = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    scores, y = scores[order], y[order]
    # last index of each run of equal scores = one threshold
    ends = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tp = np.cumsum(y)[ends]
    fp = (ends + 1) - tp
    precision = tp / (tp + fp)
    # Σ (R_n − R_{n−1}) P_n with R = tp / n_pos, dividing once at the end (exactly 1.0 when P = 1)
    return float(np.sum(np.diff(np.r_[0.0, tp]) * precision) / pos.size)


def auroc(id_scores: Any, ood_scores: Any, validate_args: bool = True) -> float:
    r"""Area under the ROC curve with ID positive (higher score = more ID).

    .. math:: \mathrm{AUROC} = P(s_{id} > s_{ood}) + \tfrac12 P(s_{id} = s_{ood})
              = \frac{R_{id} - n_{id}(n_{id}+1)/2}{n_{id}\, n_{ood}}

    with ``R_id`` the sum of the ID samples' mid-ranks in the pooled scores
    (Mann-Whitney U). Invariant to strictly increasing transforms of the scores.
    Source: Hanley & McNeil 1982; scikit-learn ``roc_auc_score``.

    Example:
        >>> auroc(np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.1]))
        0.8333333333333334
    """
    ids, oods = _pair(id_scores, ood_scores, validate_args)
    ranks = rankdata(np.concatenate([ids, oods]))
    r_id = ranks[: ids.size].sum()
    return float((r_id - ids.size * (ids.size + 1) / 2.0) / (ids.size * oods.size))


def fpr_at_tpr(id_scores: Any, ood_scores: Any, tpr: float = 0.95, validate_args: bool = True) -> float:
    r"""False-positive rate (OOD accepted as ID) at the threshold that keeps ``tpr`` of ID samples.

    .. math:: t^* = \max\{t : \tfrac{1}{n_{id}}\#\{s_{id} \ge t\} \ge \mathrm{tpr}\},
              \qquad \mathrm{FPR} = \tfrac{1}{n_{ood}}\#\{s_{ood} \ge t^*\}

    ``t*`` is the m-th largest ID score with m the smallest integer such that
    ``m / n_id >= tpr``. Requires ``0 < tpr <= 1``. Source: FORMATS.md "OOD
    detection"; the FPR95 of Liang et al. 2018 (ODIN) and MCM.

    Example:
        >>> fpr_at_tpr(np.arange(1, 21) / 20, np.array([0.0, 0.05, 0.1, 0.5]))  # t* = 0.1
        0.5
    """
    ids, oods = _pair(id_scores, ood_scores, validate_args)
    if validate_args:
        tpr = check_float(tpr, "tpr", lo=0.0, hi=1.0, lo_open=True)
    n = ids.size
    m = max(1, int(np.ceil(tpr * n)))
    while m > 1 and (m - 1) / n >= tpr:  # guard the float rounding of tpr * n
        m -= 1
    while m < n and m / n < tpr:
        m += 1
    threshold = np.sort(ids)[::-1][m - 1]
    return float(np.mean(oods >= threshold))


def aupr_in(id_scores: Any, ood_scores: Any, validate_args: bool = True) -> float:
    r"""Area under the precision-recall curve with ID positive (average precision, step-wise).

    .. math:: \mathrm{AP} = \sum_n (R_n - R_{n-1})\, P_n

    over the distinct thresholds, scores high to low. Source: scikit-learn
    ``average_precision_score``; OpenOOD calls this AUPR-Out (it makes OOD positive).

    Example:
        >>> aupr_in(np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.1]))
        0.9166666666666666
    """
    ids, oods = _pair(id_scores, ood_scores, validate_args)
    return _average_precision(ids, oods)


def aupr_out(id_scores: Any, ood_scores: Any, validate_args: bool = True) -> float:
    r"""Area under the precision-recall curve with OOD positive, ranking by the negated scores.

    Same formula as :func:`aupr_in` with the roles swapped: ``AP(ood positive, -scores)``.

    Example:
        >>> aupr_out(np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.1]))
        0.8333333333333333
    """
    ids, oods = _pair(id_scores, ood_scores, validate_args)
    return _average_precision(-oods, -ids)


def ood_metrics(id_scores: Any, ood_scores: Any, validate_args: bool = True) -> dict[str, float]:
    """``auroc``, ``fpr95``, ``aupr_in`` and ``aupr_out`` (ID positive, higher score = more ID).

    See the module docstring for the convention and each function for its formula.

    Example:
        >>> m = ood_metrics(np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.1]))
        >>> {k: round(v, 4) for k, v in m.items()}
        {'auroc': 0.8333, 'fpr95': 0.5, 'aupr_in': 0.9167, 'aupr_out': 0.8333}
    """
    ids, oods = _pair(id_scores, ood_scores, validate_args)
    return {
        "auroc": auroc(ids, oods, validate_args=False),
        "fpr95": fpr_at_tpr(ids, oods, 0.95, validate_args=False),
        "aupr_in": _average_precision(ids, oods),
        "aupr_out": _average_precision(-oods, -ids),
    }
