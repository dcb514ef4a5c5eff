"""Robustness: relative accuracy change under shift or corruption, and worst-group accuracy.

* Relative change (FORMATS.md "Robustness"): ``δ = (A_fp − A_q) / A_fp``, positive
  when the second (quantized / corrupted) value is lower than the reference.
* Worst-group accuracy on a group-annotated set (Waterbirds-style ``group`` column;
  Sagawa et al. 2020, "Distributionally Robust Neural Networks for Group Shifts"):
  the lowest per-group accuracy, next to the overall (sample-weighted) accuracy
  and the unweighted mean over groups.

Inputs are predicted class ids (e.g. :func:`qclip.metrics.zeroshot.predictions`),
labels and a group value per sample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validation import any_array, check_float, label_array

__all__ = ["relative_change", "relative_increase", "group_accuracy", "worst_group_accuracy"]


def relative_change(reference: float, value: float, validate_args: bool = True) -> float:
    r"""Relative drop from ``reference`` to ``value``: :math:`\delta = (A_{ref} - A) / A_{ref}`.

    Positive = ``value`` is lower (a drop), negative = higher. A reference of 0 gives
    NaN (the ratio is undefined). Source: FORMATS.md "Robustness".

    Example:
        >>> relative_change(0.8, 0.4)
        0.5
        >>> relative_change(0.5, 0.6) < 0
        True
    """
    if validate_args:
        reference = check_float(reference, "reference")
        value = check_float(value, "value")
    if reference == 0:
        return math.nan
    return float((reference - value) / reference)


def _check(pred: Any, labels: Any, groups: Any, validate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = label_array(pred, "pred", validate)
    y = label_array(labels, "labels", validate, n=p.shape[0])
    g = any_array(groups, "groups", validate, n=p.shape[0])
    if validate and p.size == 0:
        raise ValueError("Expected `pred` to be non-empty, but got 0 samples.")
    return p, y, g


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def relative_increase(reference: float, value: float, validate_args: bool = True) -> float:
    r"""Relative rise from ``reference`` to ``value``: :math:`(x - x_{ref}) / x_{ref}`, the negative of
    :func:`relative_change`. For errors such as ECE a positive value is a degradation (the "relative
    ECE change" of Bouguerra et al.); a reference of 0 gives NaN.

    Example:
        >>> relative_increase(0.5, 0.75)
        0.5
    """
    if validate_args:
        reference = check_float(reference, "reference")
        value = check_float(value, "value")
    if reference == 0:
        return math.nan
    return float((value - reference) / reference)


def group_accuracy(
    pred: Any, labels: Any, groups: Any, validate_args: bool = True
) -> dict[Any, tuple[float, int]]:
    r"""Accuracy and sample count per group: ``{group: (acc_g, n_g)}``, groups in sorted order.

    .. math:: \mathrm{acc}_g = \frac{\#\{n : g_n = g,\ \hat y_n = y_n\}}{\#\{n : g_n = g\}}

    Example:
        >>> group_accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array([0, 0, 1, 1]))
        {0: (1.0, 2), 1: (0.5, 2)}
    """
    p, y, g = _check(pred, labels, groups, validate_args)
    values, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1)
    count = np.bincount(codes, minlength=values.size)
    hits = np.bincount(codes, weights=(p == y).astype(np.float64), minlength=values.size)
    return {_py(v): (float(h / c), int(c)) for v, h, c in zip(values, hits, count, strict=True)}


def worst_group_accuracy(pred: Any, labels: Any, groups: Any, validate_args: bool = True) -> dict[str, Any]:
    r"""Worst-group, average and mean-group accuracy.

    .. math:: \mathrm{WGA} = \min_g \mathrm{acc}_g, \quad
              \mathrm{average} = \frac1N \sum_n [\hat y_n = y_n], \quad
              \mathrm{mean\ group} = \frac{1}{|G|}\sum_g \mathrm{acc}_g

    Returns ``{"worst_group_accuracy", "average_accuracy", "mean_group_accuracy"}``
    (floats) and ``"worst_group"`` (the group value; the first in sorted order on
    ties). Source: Sagawa et al. 2020 (Waterbirds, group DRO).

    Example:
        >>> r = worst_group_accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array([0, 0, 1, 1]))
        >>> r["worst_group_accuracy"], r["average_accuracy"], r["mean_group_accuracy"], r["worst_group"]
        (0.5, 0.75, 0.75, 1)
    """
    p, y, g = _check(pred, labels, groups, validate_args)
    per_group = group_accuracy(p, y, g, validate_args=False)
    accs = [acc for acc, _ in per_group.values()]
    worst = int(np.argmin(accs))
    return {
        "worst_group_accuracy": float(accs[worst]),
        "average_accuracy": float(np.mean(p == y)),
        "mean_group_accuracy": float(np.mean(accs)),
        "worst_group": list(per_group)[worst],
    }
