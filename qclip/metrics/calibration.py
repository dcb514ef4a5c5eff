"""Calibration of top-label confidence: ECE (l1 / l2 / max), adaptive ECE, NLL, Brier, temperature.

Top-label confidence = max softmax probability; a prediction is correct when its
argmax (lowest index on ties) equals the label (FORMATS.md "Calibration").

Bin convention (equal-width, identical to torchmetrics' ``CalibrationError``,
edge values included): torchmetrics compares float32 confidences with float32
edges ``torch.linspace(0, 1, n_bins + 1)``, whose CPU kernel (AVX2/AVX512 builds,
which contract to a fused multiply-add) computes, with ``h = float32(1 / n_bins)``,
``e_b = fl32(b·h)`` for ``b < (n_bins + 1) // 2`` and ``e_b = fl32(1 − h·(n_bins − b))``
(one rounding) above; so does :func:`bin_edges`, without torch. A confidence ``c``
falls in bin ``b = searchsorted(e, fl32(c), side="right") - 1``
(= ``torch.bucketize(c.float(), e, right=True) - 1``): a confidence of exactly
0.6 with 10 bins is ``fl32(0.6) = 0.60000002 = e_6`` and lands in bin 6, where
float64 edges would put it in bin 5. (torchmetrics' *binary* variant bins float64
inputs in float64; qclip always bins as the multiclass one does, in float32.) Bins are left-closed ``[e_b, e_{b+1})`` and a
confidence of exactly 1.0 lands in an extra bin ``n_bins`` of its own. Then, with
``n_b`` samples, accuracy ``acc_b`` and mean confidence ``conf_b`` in bin b (empty
bins contribute 0):

* ECE (``norm="l1"``) = Σ_b (n_b/N)·|acc_b − conf_b|  (Guo et al. 2017; Naeini et al. 2015)
* RMS CE (``norm="l2"``) = sqrt(Σ_b (n_b/N)·(acc_b − conf_b)²)  (Hendrycks et al. 2019)
* MCE (``norm="max"``) = max_b |acc_b − conf_b| over non-empty bins (Naeini et al. 2015)

Only the bin assignment is made in float32; the statistics are accumulated in
float64 (torchmetrics uses float32; the two agree to ~1e-6 on the same inputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from ._validation import (
    bool_array,
    check_choice,
    check_float,
    check_int,
    float_array,
    label_array,
    logsumexp,
    softmax,
)

__all__ = [
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
]


def _check_probs(p: np.ndarray, name: str) -> None:
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(
            f"Expected `{name}` to be probabilities in [0, 1], but got values in [{p.min()}, {p.max()}]."
        )


def _conf_correct(probs: Any, target: Any, validate: bool) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correctness) from [N, C] probabilities + labels, or [N] confidences + 0/1 correctness."""
    p = float_array(probs, "probs", (1, 2), validate)
    if validate:
        _check_probs(p, "probs")
    if p.ndim == 2:
        labels = label_array(target, "target", validate, n=p.shape[0], n_classes=p.shape[1])
        return p.max(axis=1), np.argmax(p, axis=1) == labels
    return p, bool_array(target, "target", validate, n=p.shape[0])


def bin_edges(n_bins: int, validate_args: bool = True) -> np.ndarray:
    r"""The float32 edges torchmetrics bins with: ``torch.linspace(0, 1, n_bins + 1, dtype=torch.float)``.

    .. math::
        h = \mathrm{fl}_{32}(1 / n), \qquad e_b = \begin{cases}
        \mathrm{fl}_{32}(b\,h) & b < \lfloor (n+1)/2 \rfloor \\
        \mathrm{fl}_{32}(1 - h\,(n - b)) & \text{otherwise (one rounding: a fused multiply-add)}
        \end{cases}

    Source: ATen's ``linspace_kernel`` (``RangeFactoriesKernel.cpp``), which fills
    the upper half from the end; equal to torch's CPU output for every
    ``n_bins < 5000`` on AVX2 and AVX512 builds (tests/metrics/test_calibration.py).

    Example:
        >>> e = bin_edges(10)
        >>> e.dtype, float(e[6]) == float(np.float32(0.6)), bool(e[6] > np.linspace(0, 1, 11)[6])
        (dtype('float32'), True, True)
    """
    if validate_args:
        n_bins = check_int(n_bins, "n_bins", lo=1)
    h = np.float32(1.0) / np.float32(n_bins)
    b = np.arange(n_bins + 1)
    low = (h * b.astype(np.float32)).astype(np.float32)
    high = (1.0 - np.float64(h) * (n_bins - b)).astype(np.float32)  # exact in float64, rounded once
    return np.where(b < (n_bins + 1) // 2, low, high)


def _bins(
    conf: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nominal edges [n_bins + 1], counts, accuracy sums and confidence sums per bin [n_bins + 1] (last: conf == 1).

    The bin of each confidence is found in float32 against :func:`bin_edges` (torchmetrics'
    comparison); the nominal float64 ``linspace`` edges are returned for display.
    """
    idx = np.searchsorted(bin_edges(n_bins, validate_args=False), conf.astype(np.float32), side="right") - 1
    count = np.bincount(idx, minlength=n_bins + 1).astype(np.float64)
    acc_sum = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins + 1)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins + 1)
    return np.linspace(0.0, 1.0, n_bins + 1), count, acc_sum, conf_sum


def _ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str) -> float:
    _, count, acc_sum, conf_sum = _bins(conf, correct, n_bins)
    nz = count > 0
    gap = np.abs(acc_sum[nz] - conf_sum[nz]) / count[nz]
    prop = count[nz] / conf.size
    if norm == "l1":
        return float(np.sum(prop * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(prop * gap**2)))
    return float(np.max(gap))


def ece(probs: Any, target: Any, n_bins: int = 15, norm: str = "l1", validate_args: bool = True) -> float:
    r"""Expected calibration error of the top-label confidence, equal-width bins.

    .. math:: \mathrm{ECE} = \sum_b \frac{n_b}{N}\,\lvert \mathrm{acc}_b - \mathrm{conf}_b \rvert

    ``norm="l2"`` gives the RMS calibration error, ``norm="max"`` the MCE; bins as in
    the module docstring (torchmetrics' convention, extra bin for confidence 1.0).
    Source: Naeini et al. 2015; Guo et al. 2017; torchmetrics ``MulticlassCalibrationError``.

    Args:
        probs: ``[N, C]`` probabilities, or ``[N]`` top-label confidences.
        target: ``[N]`` integer labels when ``probs`` is 2-D; ``[N]`` correctness
            (bool or 0/1) when ``probs`` is 1-D.
        n_bins: number of equal-width bins.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.

    Example:
        >>> conf = np.array([0.9, 0.9, 0.6, 0.6])
        >>> round(ece(conf, np.array([1, 0, 1, 0]), n_bins=10), 4)  # |0.5 - 0.9| / 2 + |0.5 - 0.6| / 2
        0.25
    """
    if validate_args:
        n_bins = check_int(n_bins, "n_bins", lo=1)
        check_choice(norm, "norm", ("l1", "l2", "max"))
    conf, correct = _conf_correct(probs, target, validate_args)
    return _ce(conf, correct, n_bins, norm)


def mce(probs: Any, target: Any, n_bins: int = 15, validate_args: bool = True) -> float:
    r"""Maximum calibration error :math:`\max_b \lvert\mathrm{acc}_b - \mathrm{conf}_b\rvert` (``ece(norm="max")``).

    Example:
        >>> round(mce(np.array([0.9, 0.9, 0.6, 0.6]), np.array([1, 0, 1, 0]), n_bins=10), 4)
        0.4
    """
    return ece(probs, target, n_bins, "max", validate_args)


def rms_ce(probs: Any, target: Any, n_bins: int = 15, validate_args: bool = True) -> float:
    r"""RMS calibration error :math:`\sqrt{\sum_b (n_b/N)(\mathrm{acc}_b - \mathrm{conf}_b)^2}` (``ece(norm="l2")``).

    Example:
        >>> round(rms_ce(np.array([0.9, 0.9, 0.6, 0.6]), np.array([1, 0, 1, 0]), n_bins=10), 4)
        0.2915
    """
    return ece(probs, target, n_bins, "l2", validate_args)


def adaptive_ece(probs: Any, target: Any, n_bins: int = 15, validate_args: bool = True) -> float:
    r"""ECE with equal-mass bins (adaptive ECE).

    .. math:: \mathrm{AdaECE} = \sum_b \frac{n_b}{N}\,\lvert \mathrm{acc}_b - \mathrm{conf}_b \rvert

    Samples are sorted by confidence, then by correctness (so equal confidences
    are ordered the same way whatever the input order), and split into
    ``n_bins`` consecutive groups whose sizes differ by at most one (the first
    ``N mod n_bins`` groups are one larger; ``np.array_split``). Empty groups
    (``N < n_bins``) are skipped. Source: Nguyen & O'Connor 2015; Nixon et al. 2019;
    Mukhoti et al. 2020 (AdaECE).

    Example:
        >>> round(adaptive_ece(np.array([0.9, 0.9, 0.6, 0.6]), np.array([1, 0, 1, 0]), n_bins=2), 4)
        0.25
    """
    if validate_args:
        n_bins = check_int(n_bins, "n_bins", lo=1)
    conf, correct = _conf_correct(probs, target, validate_args)
    order = np.lexsort((correct, conf))
    total = 0.0
    for chunk in np.array_split(order, n_bins):
        if chunk.size:
            total += chunk.size * abs(correct[chunk].mean() - conf[chunk].mean())
    return float(total / conf.size)


def nll(
    probs: Any, labels: Any, from_logits: bool = False, eps: float = 1e-12, validate_args: bool = True
) -> float:
    r"""Mean negative log-likelihood of the labels, :math:`-\frac1N\sum_n \ln p_{n,y_n}`.

    With ``from_logits=False`` the probabilities are clipped below at ``eps``
    (a probability that underflowed to 0 costs ``-ln eps``); with ``from_logits=True``
    ``probs`` holds logits and the exact log-softmax is used (no clipping).
    Source: the cross-entropy of Guo et al. 2017.

    Example:
        >>> round(nll(np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([0, 0])), 4)
        0.3993
    """
    p = float_array(probs, "probs", 2, validate_args)
    lb = label_array(labels, "labels", validate_args, n=p.shape[0], n_classes=p.shape[1])
    rows = np.arange(p.shape[0])
    if from_logits:
        return float(np.mean(logsumexp(p, axis=1) - p[rows, lb]))
    if validate_args:
        _check_probs(p, "probs")
        eps = check_float(eps, "eps", lo=0.0, hi=1.0, lo_open=True)
    return float(-np.mean(np.log(np.maximum(p[rows, lb], eps))))


def brier(probs: Any, labels: Any, validate_args: bool = True) -> float:
    r"""Multiclass Brier score: squared error summed over classes, averaged over samples.

    .. math:: \mathrm{BS} = \frac1N \sum_n \sum_c (p_{nc} - [c = y_n])^2 \in [0, 2]

    Source: Brier 1950 (the original multi-category form; scikit-learn's
    ``brier_score_loss`` for multiclass uses the same sum over classes).

    Example:
        >>> round(brier(np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([0, 0])), 4)
        0.26
    """
    p = float_array(probs, "probs", 2, validate_args)
    lb = label_array(labels, "labels", validate_args, n=p.shape[0], n_classes=p.shape[1])
    if validate_args:
        _check_probs(p, "probs")
    sq = np.sum(p**2, axis=1) - 2.0 * p[np.arange(p.shape[0]), lb] + 1.0
    return float(np.mean(sq))


def reliability_diagram(
    conf: Any, correct: Any, n_bins: int = 15, validate_args: bool = True
) -> pd.DataFrame:
    """Per-bin counts, accuracy and mean confidence for a reliability diagram.

    Rows are the ``n_bins`` equal-width bins ``[lo, hi)`` plus a last row
    ``lo = hi = 1.0`` for confidences of exactly 1.0 (``lo`` and ``hi`` are the
    nominal float64 edges; samples are assigned with :func:`bin_edges`, the module's convention, so
    ``Σ count/N · |acc − conf|`` over the rows equals :func:`ece`). ``acc`` and
    ``conf`` are NaN for empty bins.

    Returns:
        DataFrame with columns ``bin``, ``lo``, ``hi``, ``count``, ``acc``, ``conf``.

    Example:
        >>> d = reliability_diagram(np.array([0.95, 0.95, 0.3, 1.0]), np.array([1, 0, 0, 1]), n_bins=2)
        >>> d[["lo", "hi", "count", "acc"]].to_dict("list")
        {'lo': [0.0, 0.5, 1.0], 'hi': [0.5, 1.0, 1.0], 'count': [1, 2, 1], 'acc': [0.0, 0.5, 1.0]}
    """
    if validate_args:
        n_bins = check_int(n_bins, "n_bins", lo=1)
    c = float_array(conf, "conf", 1, validate_args)
    if validate_args:
        _check_probs(c, "conf")
    ok = bool_array(correct, "correct", validate_args, n=c.shape[0])
    edges, count, acc_sum, conf_sum = _bins(c, ok, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, acc_sum / count, np.nan)
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins + 1),
            "lo": np.append(edges[:-1], 1.0),
            "hi": np.append(edges[1:], 1.0),
            "count": count.astype(np.int64),
            "acc": acc,
            "conf": mean_conf,
        }
    )


def fit_temperature(
    logits: Any, labels: Any, bounds: tuple[float, float] = (1e-2, 1e2), validate_args: bool = True
) -> float:
    r"""Temperature scaling: the T minimising the NLL of ``softmax(logits / T)``.

    .. math:: T^* = \arg\min_{T \in [T_{lo}, T_{hi}]} -\frac1N \sum_n \log \mathrm{softmax}(\ell_n / T)_{y_n}

    Optimised over ``log T`` with scipy's bounded Brent method (``minimize_scalar``,
    ``xatol=1e-8``). ``T > 1`` softens (the model was over-confident), ``T < 1``
    sharpens. Source: Guo et al. 2017, "On Calibration of Modern Neural Networks".

    Example:
        >>> lg = np.array([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
        >>> fit_temperature(lg, np.array([0, 0, 1, 1])) > 1.0   # 75% right at 98% confidence
        True
    """
    lg = float_array(logits, "logits", 2, validate_args)
    lb = label_array(labels, "labels", validate_args, n=lg.shape[0], n_classes=lg.shape[1])
    if validate_args:
        lo = check_float(bounds[0], "bounds[0]", lo=0.0, lo_open=True)
        hi = check_float(bounds[1], "bounds[1]", lo=lo, lo_open=True)
        bounds = (lo, hi)
    true = lg[np.arange(lg.shape[0]), lb]

    def objective(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean(logsumexp(lg / t, axis=1) - true / t))

    res = minimize_scalar(
        objective, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded", options={"xatol": 1e-8}
    )
    return float(np.exp(res.x))


def fit_logit_scale(
    cosine: Any, bounds: tuple[float, float] = (1e-2, 1e3), validate_args: bool = True
) -> float:
    r"""Logit-scale tuning: the CLIP logit scale minimising the contrastive loss on image–caption pairs,
    everything else frozen ("Less Precise Can Be More Reliable", Bouguerra et al. 2026, who fit it on a
    proxy set of pairs to repair a quantized model's calibration).

    ``cosine[i, j]`` is the cosine similarity of image ``i`` and caption ``j``; pair ``i`` is the diagonal.

    .. math:: s^* = \arg\min_{s \in [s_{lo}, s_{hi}]} \frac{1}{2N} \sum_i \Big[
       \big(\mathrm{LSE}_j\, s\,c_{ij} - s\,c_{ii}\big) + \big(\mathrm{LSE}_j\, s\,c_{ji} - s\,c_{ii}\big)\Big]

    CLIP's symmetric InfoNCE (Radford et al. 2021) as a function of its logit scale ``s`` alone; optimised
    over ``log s`` with scipy's bounded Brent method (``minimize_scalar``, ``xatol=1e-8``). For a symmetric
    ``cosine`` it is ``1 / fit_temperature(cosine, arange(N))``.

    Example:
        >>> c = np.array([[0.9, 0.1], [0.2, 0.8]])
        >>> 1.0 < fit_logit_scale(c) < 1e3   # the pairs are told apart: a sharp scale
        True
    """
    c = float_array(cosine, "cosine", 2, validate_args)
    if validate_args:
        if c.shape[0] != c.shape[1] or c.shape[0] < 2:
            raise ValueError(f"Expected a square cosine matrix of at least 2 pairs, but got shape {c.shape}")
        lo = check_float(bounds[0], "bounds[0]", lo=0.0, lo_open=True)
        hi = check_float(bounds[1], "bounds[1]", lo=lo, lo_open=True)
        bounds = (lo, hi)
    diag = np.diag(c)

    def objective(log_s: float) -> float:
        s = np.exp(log_s)
        rows = logsumexp(s * c, axis=1) - s * diag
        cols = logsumexp(s * c.T, axis=1) - s * diag
        return float(0.5 * (np.mean(rows) + np.mean(cols)))

    res = minimize_scalar(
        objective, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded", options={"xatol": 1e-8}
    )
    return float(np.exp(res.x))


def confidence_direction(conf: Any, correct: Any, validate_args: bool = True) -> float:
    r"""Over-confidence: mean confidence − accuracy (> 0 over-confident, < 0 under-confident).

    .. math:: \frac1N\sum_n c_n - \frac1N\sum_n [\hat y_n = y_n]

    Example:
        >>> round(confidence_direction(np.array([0.9, 0.8]), np.array([1, 0])), 4)
        0.35
    """
    c = float_array(conf, "conf", 1, validate_args)
    ok = bool_array(correct, "correct", validate_args, n=c.shape[0])
    return float(np.mean(c) - np.mean(ok))


def calibration_metrics(
    logits: Any, labels: Any, n_bins: int = 15, validate_args: bool = True
) -> dict[str, float]:
    """All calibration numbers of a classifier from its logits (already multiplied by the logit scale).

    Probabilities are ``softmax(logits)`` in float64; NLL uses the exact
    log-softmax. Returns ``ece``, ``adaptive_ece``, ``mce``, ``rms_ce`` (``n_bins``
    bins), ``nll``, ``brier``, ``accuracy`` (top-1), ``mean_confidence`` and
    ``overconfidence`` (= mean_confidence − accuracy). Source: FORMATS.md "Calibration".

    Example:
        >>> m = calibration_metrics(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 0]))
        >>> round(m["accuracy"], 3), round(m["mean_confidence"], 3), round(m["ece"], 3)
        (0.5, 0.881, 0.381)
    """
    lg = float_array(logits, "logits", 2, validate_args)
    lb = label_array(labels, "labels", validate_args, n=lg.shape[0], n_classes=lg.shape[1])
    if validate_args:
        n_bins = check_int(n_bins, "n_bins", lo=1)
    p = softmax(lg, axis=1)
    conf, correct = p.max(axis=1), np.argmax(lg, axis=1) == lb
    return {
        "ece": _ce(conf, correct, n_bins, "l1"),
        "adaptive_ece": adaptive_ece(conf, correct, n_bins, validate_args=False),
        "mce": _ce(conf, correct, n_bins, "max"),
        "rms_ce": _ce(conf, correct, n_bins, "l2"),
        "nll": nll(lg, lb, from_logits=True, validate_args=False),
        "brier": brier(p, lb, validate_args=False),
        "accuracy": float(np.mean(correct)),
        "mean_confidence": float(np.mean(conf)),
        "overconfidence": float(np.mean(conf) - np.mean(correct)),
    }


def top_label(logits: Any, validate_args: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r"""Top-label confidence and prediction: :math:`\hat p_n = \max_c \operatorname{softmax}(\ell_n)_c`,
    :math:`\hat y_n = \arg\max_c \ell_n` (ties to the lower index), what a reliability diagram bins
    (Guo et al. 2017, "On Calibration of Modern Neural Networks").

    Example:
        >>> conf, pred = top_label(np.array([[0.0, 0.0], [2.0, 0.0]]))
        >>> conf.round(4).tolist(), pred.tolist()
        ([0.5, 0.8808], [0, 0])
    """
    x = float_array(logits, "logits", 2, validate_args)
    probs = softmax(x, axis=1)
    return probs.max(axis=1), np.argmax(x, axis=1)

