"""Retrieval skew of a ranking w.r.t. a sensitive attribute: Skew@k, MaxSkew@k, MinSkew@k, NDKL@k.

Source: Geyik, Ambler & Kenthapadi 2019, "Fairness-Aware Ranking in Search &
Recommendation Systems with Application to LinkedIn Talent Search" (KDD), as used
for CLIP by Berg et al. 2022 ("A Prompt Array Keeps the Bias Away"); FORMATS.md
"FairFace".

For one prompt, all N images are ranked by similarity (higher first; equal scores
keep their index order, i.e. a stable argsort of ``-scores``) and the top
``k`` are taken; ``k`` larger than N is capped at N (``prompt_skew`` flags it).

* ``p_a`` = share of value ``a`` in the top k; ``p_a = 0`` is smoothed to ``1/k``.
* ``Skew_a@k = ln(p_a / desired_a)``; ``MaxSkew@k = max_a``, ``MinSkew@k = min_a``.
* ``desired``: ``"parity"`` (demographic parity: ``desired_a`` = share of ``a`` in
  the whole set), ``"uniform"`` (equal representation: ``1 / #values``), or a
  mapping value -> share (positive, summing to 1; its keys are the value set).
* ``NDKL@k = (1/Z) Σ_{i=1..k} KL(D_i || D_desired) / log2(i+1)``, ``Z = Σ_{i=1..k} 1/log2(i+1)``,
  ``D_i`` the value distribution of the top i, natural log, ``0 ln 0 = 0`` (no smoothing).

Properties (tested): MaxSkew@k >= 0 always (the unsmoothed shares and the desired
shares both sum to 1, and smoothing only raises shares). MinSkew@k <= 0 holds when
every value occurs in the top k, or when ``1/k <= desired_a`` for some absent
value; otherwise smoothing can push it above 0 (e.g. a rare value whose parity
share is below 1/k). NDKL@k >= 0, and it is 0 only if every prefix matches the
desired distribution, which for a single item (i = 1) requires a single value.
Adding items that score below the top k changes nothing with ``"uniform"`` (if
they add no new value) but changes ``"parity"`` shares, hence the skew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._validation import any_array, check_choice, check_int, float_array

__all__ = ["skew_at_k", "max_skew", "min_skew", "ndkl_at_k", "prompt_skew", "prompt_skews"]


def _py(value: Any) -> Any:
    """numpy scalar -> Python scalar, for clean dict keys."""
    return value.item() if isinstance(value, np.generic) else value


def _encode(attrs: np.ndarray, desired: Any, validate: bool) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Value set, integer codes of ``attrs`` and desired shares aligned with the value set."""
    if isinstance(desired, Mapping):
        values = list(desired.keys())
        index = {v: i for i, v in enumerate(values)}
        try:
            codes = np.array([index[_py(a)] for a in attrs], dtype=np.int64)
        except KeyError as err:
            raise ValueError(
                f"Expected every attribute value to be a key of `desired`, but got {err.args[0]!r}."
            ) from None
        shares = np.array([float(desired[v]) for v in values], dtype=np.float64)
        if validate and ((shares <= 0).any() or abs(shares.sum() - 1.0) > 1e-6):
            raise ValueError(
                f"Expected `desired` shares to be positive and sum to 1, but got {dict(desired)!r}."
            )
        return values, codes, shares
    if validate:
        check_choice(desired, "desired", ("parity", "uniform"))
    uniq, codes = np.unique(attrs, return_inverse=True)
    codes = codes.reshape(-1)
    if desired == "parity":
        shares = np.bincount(codes, minlength=uniq.size) / codes.size
    else:
        shares = np.full(uniq.size, 1.0 / uniq.size)
    return [_py(v) for v in uniq], codes, shares


def _prepare(scores: Any, attribute_values: Any, k: int, desired: Any, ndim: int, validate: bool):
    s = float_array(scores, "scores" if ndim == 1 else "sim", ndim, validate)
    n = s.shape[-1]
    attrs = any_array(attribute_values, "attribute_values", validate, n=n)
    if validate:
        k = check_int(k, "k", lo=1)
    values, codes, shares = _encode(attrs, desired, validate)
    return s, values, codes, shares, min(int(k), n), int(k) > n


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the top k of each row of ``scores`` [P, N], by score descending, ties by lower index.

    Equal to ``np.argsort(-scores, axis=1, kind="stable")[:, :k]`` without sorting all N: a partition
    finds each row's k-th largest score, the items above it and the first (by index) of those equal to
    it make the top k, and only those k are sorted."""
    p, n = scores.shape
    if k >= n // 4:  # a full sort is as cheap
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kth = np.partition(scores, n - k, axis=1)[:, n - k][:, None]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    idx = np.nonzero(chosen)[1].reshape(p, k)  # row-major: each row's k indices in index order
    order = np.argsort(-np.take_along_axis(scores, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def _top_codes(scores: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Codes of the top k items, ranked by score descending, ties by lower index (stable).

    ``scores`` [N] gives [k]; [P, N] (one ranking per row) gives [P, k]."""
    if scores.ndim == 1:
        return codes[_top_indices(scores[None, :], k)[0]]
    return codes[_top_indices(scores, k)]


def _skews(top: np.ndarray, n_values: int, shares: np.ndarray) -> np.ndarray:
    """Skew@k of every value, for one top-k [k] ([V]) or one per row [P, k] ([P, V])."""
    k = top.shape[-1]
    p = (top[..., None] == np.arange(n_values)).sum(axis=-2) / k
    p = np.where(p == 0, 1.0 / k, p)
    return np.log(p / shares)


def _ndkl(top: np.ndarray, n_values: int, shares: np.ndarray) -> float | np.ndarray:
    """NDKL of one top-k [k] (a float) or of each row of [P, k] (an array [P])."""
    k = top.shape[-1]
    i = np.arange(1, k + 1, dtype=np.float64)
    counts = np.cumsum(np.eye(n_values, dtype=np.float64)[top], axis=-2)  # [..., k, V]
    dist = counts / i[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(dist > 0, dist * np.log(dist / shares), 0.0)
    kl = terms.sum(axis=-1)  # [..., k]
    w = 1.0 / np.log2(i + 1.0)
    out = (kl @ w) / np.sum(w)
    return float(out) if top.ndim == 1 else out


def skew_at_k(
    scores: Any, attribute_values: Any, k: int, desired: Any = "parity", validate_args: bool = True
) -> dict[Any, float]:
    r"""Skew@k of every attribute value in the top k of a ranking.

    .. math:: \mathrm{Skew}_a@k = \ln\frac{p_a}{d_a}, \quad p_a = \frac{\#\{a \in \mathrm{top}\,k\}}{k}
              \ (p_a = 0 \to 1/k)

    Source: Geyik et al. 2019. ``k`` is capped at N; ties keep index order.

    Returns:
        ``{value: skew}`` for every value of the value set (sorted unless ``desired`` is a mapping).

    Example:
        >>> s = np.array([0.9, 0.8, 0.7, 0.1])
        >>> a = np.array(["x", "x", "y", "y"])
        >>> {v: round(x, 4) for v, x in skew_at_k(s, a, k=3).items()}
        {'x': 0.2877, 'y': -0.4055}
        >>> {v: round(x, 4) for v, x in skew_at_k(s, a, k=2).items()}  # p_y = 0 smoothed to 1/2
        {'x': 0.6931, 'y': 0.0}
    """
    s, values, codes, shares, k, _ = _prepare(scores, attribute_values, k, desired, 1, validate_args)
    sk = _skews(_top_codes(s, codes, k), len(values), shares)
    return {v: float(x) for v, x in zip(values, sk, strict=True)}


def max_skew(
    scores: Any, attribute_values: Any, k: int, desired: Any = "parity", validate_args: bool = True
) -> float:
    r"""MaxSkew@k = :math:`\max_a \mathrm{Skew}_a@k` (Geyik et al. 2019); >= 0 always.

    Example:
        >>> round(max_skew(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 0, 1, 1]), k=3), 4)
        0.2877
    """
    return max(skew_at_k(scores, attribute_values, k, desired, validate_args).values())


def min_skew(
    scores: Any, attribute_values: Any, k: int, desired: Any = "parity", validate_args: bool = True
) -> float:
    r"""MinSkew@k = :math:`\min_a \mathrm{Skew}_a@k` (Geyik et al. 2019); <= 0 when all values are in the top k.

    Example:
        >>> round(min_skew(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 0, 1, 1]), k=3), 4)
        -0.4055
    """
    return min(skew_at_k(scores, attribute_values, k, desired, validate_args).values())


def ndkl_at_k(
    scores: Any, attribute_values: Any, k: int, desired: Any = "parity", validate_args: bool = True
) -> float:
    r"""Normalised discounted KL divergence of the top-k prefixes from the desired distribution.

    .. math:: \mathrm{NDKL}@k = \frac{1}{Z}\sum_{i=1}^{k} \frac{\mathrm{KL}(D_i \,\|\, D)}{\log_2(i+1)},
              \quad Z = \sum_{i=1}^{k} \frac{1}{\log_2(i+1)}

    ``D_i`` = value shares among the top i (no smoothing, ``0 ln 0 = 0``), KL in nats.
    Source: Geyik et al. 2019, section 4.2.

    Example:
        >>> ndkl_at_k(np.array([0.9, 0.8]), np.array(["x", "x"]), k=2)
        0.0
        >>> round(ndkl_at_k(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 1, 0, 1]), k=4), 4)
        0.2816
    """
    s, values, codes, shares, k, _ = _prepare(scores, attribute_values, k, desired, 1, validate_args)
    return _ndkl(_top_codes(s, codes, k), len(values), shares)


def prompt_skew(
    sim: Any, attribute_values: Any, k: int = 1000, desired: Any = "parity", validate_args: bool = True
) -> dict[str, Any]:
    r"""MaxSkew@k, MinSkew@k, NDKL@k and per-value Skew@k, each averaged over prompts.

    .. math:: \mathrm{MaxSkew}@k = \frac{1}{P}\sum_{p} \max_a \mathrm{Skew}^{(p)}_a@k \quad (\text{same for the others})

    Each row of ``sim`` [P, N] ranks the N images for one prompt. Source: Berg et
    al. 2022 (prompt arrays), Geyik et al. 2019; FORMATS.md "FairFace" (k = 1000 by
    default, never the whole set with parity, where skew vanishes).

    Returns:
        ``{"max_skew", "min_skew", "ndkl"}`` (floats), ``"skew_by_value"``
        (``{value: mean skew}``), ``"k"`` (the k used), ``"k_capped"`` (True when
        k > N was capped at N) and ``"n_prompts"``.

    Example:
        >>> sim = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
        >>> r = prompt_skew(sim, np.array([0, 0, 1, 1]), k=3)
        >>> round(r["max_skew"], 4), round(r["min_skew"], 4), r["k"], r["k_capped"]
        (0.2877, -0.4055, 3, False)
    """
    s, values, codes, shares, k_eff, capped = _prepare(sim, attribute_values, k, desired, 2, validate_args)
    return _prompt_skew(_top_indices(s, k_eff), values, codes, shares, k_eff, capped)


def prompt_skews(
    sim: Any, attributes: Mapping[str, Any], k: int = 1000, desired: Sequence[Any] = ("parity", "uniform"),
    validate_args: bool = True,
) -> dict[tuple[str, Any], dict[str, Any]]:
    r""":func:`prompt_skew` for several attributes and desired distributions over the same ``sim``.

    ``{(attribute name, desired): prompt_skew(sim, attributes[name], k, desired)}``, equal to calling
    :func:`prompt_skew` for each pair; the top k of each prompt is found once, not once per pair.

    Example:
        >>> sim = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
        >>> r = prompt_skews(sim, {"g": np.array([0, 0, 1, 1])}, k=3, desired=["parity"])
        >>> round(r[("g", "parity")]["max_skew"], 4)
        0.2877
    """
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    top = None
    for name, values_in in attributes.items():
        for d in desired:
            s, values, codes, shares, k_eff, capped = _prepare(sim, values_in, k, d, 2, validate_args)
            if top is None:
                top = _top_indices(s, k_eff)
            out[(name, d if isinstance(d, str) else str(d))] = _prompt_skew(top, values, codes, shares, k_eff,
                                                                            capped)
    return out


def _prompt_skew(top_idx: np.ndarray, values: list, codes: np.ndarray, shares: np.ndarray, k_eff: int,
                 capped: bool) -> dict[str, Any]:
    n_values = len(values)
    top = codes[top_idx]  # [P, k], every prompt at once
    skews = _skews(top, n_values, shares)
    ndkl = _ndkl(top, n_values, shares)
    mean_skew = skews.mean(axis=0)
    return {
        "max_skew": float(skews.max(axis=1).mean()),
        "min_skew": float(skews.min(axis=1).mean()),
        "ndkl": float(ndkl.mean()),
        "skew_by_value": {v: float(x) for v, x in zip(values, mean_skew, strict=True)},
        "k": k_eff,
        "k_capped": capped,
        "n_prompts": int(top_idx.shape[0]),
    }
