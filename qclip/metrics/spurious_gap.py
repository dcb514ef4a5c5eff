"""Spurious correlations on a common/counter split (CounterAnimal-style): the relative spurious gap.

Definitions of "Less Precise Can Be More Reliable" (Bouguerra et al., ICML 2026, §"Spurious
correlations"), with ``A(m, D)`` the accuracy of model ``m`` on split ``D``, ``D_N`` the normal
(common-background) split, ``D_C`` the counter split, ``f`` the full-precision and ``q`` the quantized
model:

* relative spurious gap ``RSG(m) = (A(m, D_N) − A(m, D_C)) / A(m, D_N)``: the share of a model's normal
  accuracy lost on unusual backgrounds (0: no gap; positive: the model leans on the background);
* ``ΔRSG = RSG(q) − RSG(f)``: positive when quantization widens the gap;
* relative change per split ``δ_D = (A(f, D) − A(q, D)) / A(f, D)`` (the study's sign: positive =
  degradation; :func:`qclip.metrics.robustness.relative_change`), and the added vulnerability
  ``Vuln_add = δ_C − δ_N``: how much more quantization costs on the counter split than on the normal one.

A zero denominator (a normal-split accuracy of 0) gives NaN: the ratio is undefined.
"""

from __future__ import annotations

import math
from typing import Any

from ._validation import check_float
from .robustness import relative_change

__all__ = ["relative_spurious_gap", "delta_rsg", "added_vulnerability", "spurious_gap_summary"]


def _acc(value: Any, name: str, validate: bool) -> float:
    return check_float(value, name, lo=0.0, hi=1.0) if validate else float(value)


def relative_spurious_gap(acc_normal: float, acc_counter: float, validate_args: bool = True) -> float:
    r"""Relative spurious gap :math:`RSG = (A_N - A_C) / A_N` of one model (see the module doc).

    Example:
        >>> relative_spurious_gap(0.8, 0.4)
        0.5
        >>> relative_spurious_gap(0.7, 0.7)
        0.0
    """
    a_n = _acc(acc_normal, "acc_normal", validate_args)
    a_c = _acc(acc_counter, "acc_counter", validate_args)
    if a_n == 0.0:
        return math.nan
    return (a_n - a_c) / a_n


def delta_rsg(ref_normal: float, ref_counter: float, q_normal: float, q_counter: float,
              validate_args: bool = True) -> float:
    r""":math:`\Delta RSG = RSG(q) - RSG(f)` from the four split accuracies (positive: quantization widens
    the gap).

    Example:
        >>> round(delta_rsg(0.8, 0.6, 0.8, 0.4), 6)
        0.25
    """
    return (relative_spurious_gap(q_normal, q_counter, validate_args)
            - relative_spurious_gap(ref_normal, ref_counter, validate_args))


def added_vulnerability(ref_normal: float, ref_counter: float, q_normal: float, q_counter: float,
                        validate_args: bool = True) -> float:
    r""":math:`Vuln_{add} = \delta_C - \delta_N`, :math:`\delta_D = (A(f, D) - A(q, D)) / A(f, D)`.

    Example:
        >>> round(added_vulnerability(0.8, 0.5, 0.8, 0.4), 6)
        0.2
    """
    for name, v in (("ref_normal", ref_normal), ("ref_counter", ref_counter), ("q_normal", q_normal),
                    ("q_counter", q_counter)):
        _acc(v, name, validate_args)
    return relative_change(ref_counter, q_counter, validate_args) - relative_change(ref_normal, q_normal, validate_args)


def spurious_gap_summary(ref_normal: float, ref_counter: float, q_normal: float, q_counter: float,
                         validate_args: bool = True) -> dict[str, float]:
    """All of the module's numbers for one (fp32, quantized) pair: ``rsg_ref``, ``rsg_q``, ``delta_rsg``,
    ``delta_normal``, ``delta_counter``, ``vuln_add``.

    Example:
        >>> s = spurious_gap_summary(0.8, 0.4, 0.8, 0.2)
        >>> {k: round(v, 6) for k, v in s.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'rsg_ref': 0.5, 'rsg_q': 0.75, 'delta_rsg': 0.25, 'delta_normal': 0.0, 'delta_counter': 0.5,
         'vuln_add': 0.5}
    """
    rsg_f = relative_spurious_gap(ref_normal, ref_counter, validate_args)
    rsg_q = relative_spurious_gap(q_normal, q_counter, validate_args)
    d_n = relative_change(ref_normal, q_normal, validate_args)
    d_c = relative_change(ref_counter, q_counter, validate_args)
    return {"rsg_ref": rsg_f, "rsg_q": rsg_q, "delta_rsg": rsg_q - rsg_f, "delta_normal": d_n,
            "delta_counter": d_c, "vuln_add": d_c - d_n}
