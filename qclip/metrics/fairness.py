"""Group fairness: per-group recall@K and disparity (FACET), skin tone from votes, retrieval skew (FairFace).

FACET (Gustafson et al. 2023, "FACET: Fairness in Computer Vision Evaluation
Benchmark"): for a class C and subgroups l1, l2,

    disparity(C) = recall@K(l1, C) − recall@K(l2, C),

recall@K = share of the class's people whose true class is among the top K
classes. Only classes with at least ``min_samples`` people in *both* subgroups
count; the benchmark reports the min and max over those classes. The top-K rule
is :func:`qclip.metrics.zeroshot.topk_hits` (ties: lower class index first).

Skin tone: FACET gives, per person, how many annotators chose each Monk tone
1..10 (``skin_tone_1`` ... ``skin_tone_10``) and ``skin_tone_na``. qclip's rule is
explicit and configurable, see :func:`skin_tone_from_votes`; groups are lighter
(Monk 1–4) vs darker (Monk 6–10), Monk 5 belongs to neither.

The retrieval-skew metrics (MaxSkew@k, MinSkew@k, NDKL@k, FairFace) live in
``qclip.metrics.skew`` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._validation import any_array, check_choice, check_int, float_array, to_numpy
from .skew import max_skew, min_skew, ndkl_at_k, prompt_skew, skew_at_k
from .zeroshot import _check_logits_labels, topk_hits

__all__ = [
    "recall_at_k_by_group",
    "disparity",
    "disparity_range",
    "skin_tone_from_votes",
    "skin_group",
    "skew_at_k",
    "max_skew",
    "min_skew",
    "ndkl_at_k",
    "prompt_skew",
]

_N_TONES = 10


def recall_at_k_by_group(
    logits: Any, labels: Any, groups: Any, k: int, validate_args: bool = True
) -> pd.DataFrame:
    r"""Recall@k per (true class, group): the share of a class's samples in a group hit in the top k.

    .. math:: \mathrm{recall@k}(g, c) = \frac{\#\{n : y_n = c, g_n = g, \mathrm{hit@k}_n\}}{\#\{n : y_n = c, g_n = g\}}

    Source: FACET (Gustafson et al. 2023). Every group value present is a group
    (including an "unknown" marker such as ``""``); missing values (None / NaN) are
    dropped, as pandas' groupby does; pairs without samples are absent.

    Returns:
        long DataFrame with columns ``class``, ``group``, ``n``, ``hits``, ``recall``,
        sorted by class then group.

    Example:
        >>> lg = np.array([[2.0, 1.0], [0.0, 1.0], [2.0, 1.0], [1.0, 0.0]])
        >>> recall_at_k_by_group(lg, np.array([0, 0, 1, 1]), np.array(["a", "b", "a", "a"]), k=1)
           class group  n  hits  recall
        0      0     a  1     1     1.0
        1      0     b  1     0     0.0
        2      1     a  2     0     0.0
    """
    lg, lb = _check_logits_labels(logits, labels, validate_args)
    grp = any_array(groups, "groups", validate_args, n=lb.shape[0])
    if validate_args:
        k = check_int(k, "k", lo=1, hi=lg.shape[1])
    hits = topk_hits(lg, lb, k, validate_args=False)
    frame = pd.DataFrame({"class": lb, "group": grp, "hit": hits.astype(np.int64)})
    table = frame.groupby(["class", "group"], sort=True, observed=True)["hit"].agg(["size", "sum"])
    table = table.reset_index().rename(columns={"size": "n", "sum": "hits"})
    table["n"] = table["n"].astype(np.int64)
    table["hits"] = table["hits"].astype(np.int64)
    table["recall"] = table["hits"] / table["n"]
    return table


def disparity(
    logits: Any,
    labels: Any,
    groups: Any,
    group_a: Any,
    group_b: Any,
    k: int,
    min_samples: int = 25,
    validate_args: bool = True,
) -> dict[str, Any]:
    r"""Per-class recall disparity between two groups, and its min and max over qualifying classes.

    .. math:: \mathrm{disparity}(c) = \mathrm{recall@k}(a, c) - \mathrm{recall@k}(b, c)

    for the classes with at least ``min_samples`` samples in group ``a`` *and* in
    group ``b``. Swapping the groups negates every value (min and max swap and
    change sign). Source: FACET (Gustafson et al. 2023), FORMATS.md "FACET".

    Returns:
        ``{"min": float, "max": float, "n_classes": int, "per_class": pd.Series}``;
        with no qualifying class, ``n_classes = 0``, ``min`` and ``max`` are NaN and
        ``per_class`` is empty.

    Example:
        >>> lg = np.array([[2.0, 1.0]] * 4 + [[0.0, 1.0]] * 4)
        >>> lb = np.zeros(8, dtype=int)
        >>> g = np.array(["m", "m", "m", "f", "f", "m", "f", "f"])
        >>> d = disparity(lg, lb, g, "m", "f", k=1, min_samples=2)
        >>> d["min"], d["max"], d["n_classes"]
        (0.5, 0.5, 1)
    """
    lg, lb = _check_logits_labels(logits, labels, validate_args)
    if validate_args:
        min_samples = check_int(min_samples, "min_samples", lo=1)
        if group_a == group_b:
            raise ValueError(f"Expected `group_b` to differ from `group_a`, but got {group_b!r} for both.")
    grp = any_array(groups, "groups", validate_args, n=lb.shape[0])
    if validate_args:
        k = check_int(k, "k", lo=1, hi=lg.shape[1])
    hits = topk_hits(lg, lb, k, validate_args=False).astype(np.float64)
    # recall@k per class within each group by counting (what recall_at_k_by_group's table holds for
    # the two groups, without building and pivoting it: a FACET cell calls this 16 times)
    n_classes = lg.shape[1]
    per_group = []
    for g in (group_a, group_b):
        mask = grp == g
        per_group.append((np.bincount(lb[mask], minlength=n_classes),
                          np.bincount(lb[mask], weights=hits[mask], minlength=n_classes)))
    (n_a, h_a), (n_b, h_b) = per_group
    ok = (n_a >= min_samples) & (n_b >= min_samples)
    classes = np.flatnonzero(ok)
    per_class = pd.Series(h_a[ok] / n_a[ok] - h_b[ok] / n_b[ok], index=pd.Index(classes, dtype=lb.dtype),
                          dtype=np.float64)
    per_class.index.name = "class"
    per_class.name = "disparity"
    empty = per_class.empty
    return {
        "min": float("nan") if empty else float(per_class.min()),
        "max": float("nan") if empty else float(per_class.max()),
        "n_classes": int(per_class.size),
        "per_class": per_class,
    }


def disparity_range(hits: Any, labels: Any, in_a: Any, in_b: Any, n_classes: int, min_samples: int = 25,
                    validate_args: bool = True) -> tuple[float, float]:
    r"""``(min, max)`` of :func:`disparity` from per-sample top-k hits, without the per-class Series.

    .. math:: \mathrm{disparity}(c) = \frac{\sum_{i \in a, y_i = c} h_i}{\#\{i \in a : y_i = c\}}
              - \frac{\sum_{i \in b, y_i = c} h_i}{\#\{i \in b : y_i = c\}}

    over the classes with at least ``min_samples`` samples in both groups (NaN, NaN when none). ``hits``:
    ``[N]`` 0/1, whether sample i's label is in its top k (:func:`qclip.metrics.zeroshot.topk_hits`);
    ``in_a``, ``in_b``: ``[N]`` group membership. The same numbers as :func:`disparity`'s ``min`` and ``max``
    (tested), at the cost of four ``bincount`` calls: what a bootstrap over the samples calls per resample.

    Example:
        >>> h = np.array([1, 1, 1, 1, 0, 0, 0, 0])
        >>> g = np.array(["m", "m", "m", "f", "f", "m", "f", "f"])
        >>> disparity_range(h, np.zeros(8, dtype=int), g == "m", g == "f", 2, min_samples=2)
        (0.5, 0.5)
    """
    h = np.asarray(hits, dtype=np.float64)
    lb = np.asarray(labels, dtype=np.int64)
    a, b = np.asarray(in_a, dtype=bool), np.asarray(in_b, dtype=bool)
    if validate_args:
        n_classes = check_int(n_classes, "n_classes", lo=1)
        min_samples = check_int(min_samples, "min_samples", lo=1)
        if not (h.shape == lb.shape == a.shape == b.shape) or h.ndim != 1:
            raise ValueError(f"Expected `hits`, `labels`, `in_a` and `in_b` of one length, but got shapes "
                             f"{h.shape}, {lb.shape}, {a.shape}, {b.shape}.")
    n_a = np.bincount(lb[a], minlength=n_classes)
    n_b = np.bincount(lb[b], minlength=n_classes)
    ok = (n_a >= min_samples) & (n_b >= min_samples)
    if not ok.any():
        return float("nan"), float("nan")
    h_a = np.bincount(lb[a], weights=h[a], minlength=n_classes)
    h_b = np.bincount(lb[b], weights=h[b], minlength=n_classes)
    d = h_a[ok] / n_a[ok] - h_b[ok] / n_b[ok]
    return float(d.min()), float(d.max())


def skin_tone_from_votes(
    votes: Any, na_votes: Any = None, rule: str = "plurality", validate_args: bool = True
) -> np.ndarray:
    r"""One Monk skin tone (1..10) per person from annotator vote counts, 0 for unknown.

    Rules (qclip's choice; FACET ships counts, not a tone):

    * ``"plurality"``: the tone with the most votes. Unknown (0) when no tone has a
      vote, when two or more tones tie for the most votes, or when
      ``na_votes >= max tone votes`` (``na`` is at least as popular as the winner).
    * ``"mean"``: the vote-weighted mean tone :math:`\sum_t t\,v_t / \sum_t v_t`,
      rounded half up (``floor(x + 0.5)``). Unknown when there is no tone vote or
      when ``na_votes >= sum of tone votes``.

    Args:
        votes: ``[N, 10]`` non-negative counts for tones 1..10 (``skin_tone_1`` ... ``skin_tone_10``).
        na_votes: ``[N]`` counts of ``skin_tone_na`` (None = no ``na`` votes).
        rule: ``"plurality"`` or ``"mean"``.

    Example:
        >>> v = np.zeros((4, 10), dtype=int)
        >>> v[0, 2] = 2; v[1, [0, 4]] = 1; v[2, 5] = 1; v[3, [1, 2]] = [1, 2]
        >>> skin_tone_from_votes(v, np.array([0, 0, 1, 0])).tolist()
        [3, 0, 0, 3]
        >>> skin_tone_from_votes(v, np.array([0, 0, 1, 0]), rule="mean").tolist()
        [3, 3, 0, 3]
    """
    v = float_array(votes, "votes", 2, validate_args)
    n = v.shape[0]
    na = (
        np.zeros(n)
        if na_votes is None
        else float_array(na_votes, "na_votes", 1, validate_args, nonempty=False)
    )
    if validate_args:
        check_choice(rule, "rule", ("plurality", "mean"))
        if v.shape[1] != _N_TONES:
            raise ValueError(
                f"Expected `votes` to have {_N_TONES} columns (Monk tones 1..10), but got {v.shape[1]}."
            )
        if na.shape[0] != n:
            raise ValueError(f"Expected `na_votes` to have length {n}, but got length {na.shape[0]}.")
        if (v < 0).any() or (na < 0).any():
            raise ValueError(
                "Expected `votes` and `na_votes` to be non-negative counts, but got negative values."
            )
    if rule == "plurality":
        top = v.max(axis=1)
        tone = np.argmax(v, axis=1) + 1
        unknown = (top <= 0) | ((v == top[:, None]).sum(axis=1) > 1) | (na >= top)
    else:
        total = v.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (v @ np.arange(1, _N_TONES + 1)) / total
        tone = np.floor(np.nan_to_num(mean) + 0.5).astype(np.int64)
        unknown = (total <= 0) | (na >= total)
    return np.where(unknown, 0, tone).astype(np.int64)


def skin_group(
    tone: Any,
    lighter: tuple[int, int] = (1, 4),
    darker: tuple[int, int] = (6, 10),
    validate_args: bool = True,
) -> Any:
    """Map Monk tones to ``"lighter"`` / ``"darker"`` / ``""`` (neither or unknown).

    A tone t is lighter if ``lighter[0] <= t <= lighter[1]``, darker if
    ``darker[0] <= t <= darker[1]`` (inclusive ranges, FORMATS.md: 1–4 vs 6–10).
    A scalar gives a ``str``, an array an array of ``str``.

    Example:
        >>> skin_group(np.array([1, 4, 5, 6, 10, 0])).tolist()
        ['lighter', 'lighter', '', 'darker', 'darker', '']
        >>> skin_group(3)
        'lighter'
    """
    if validate_args:
        for name, rng in (("lighter", lighter), ("darker", darker)):
            if len(rng) != 2 or rng[0] > rng[1]:
                raise ValueError(
                    f"Expected `{name}` to be an inclusive (lo, hi) range with lo <= hi, but got {rng!r}."
                )
        if lighter[1] >= darker[0] and darker[1] >= lighter[0]:
            raise ValueError(
                f"Expected `lighter` and `darker` not to overlap, but got {lighter!r} and {darker!r}."
            )
    t = to_numpy(tone)
    out = np.where(
        (t >= lighter[0]) & (t <= lighter[1]),
        "lighter",
        np.where((t >= darker[0]) & (t <= darker[1]), "darker", ""),
    )
    return str(out) if out.ndim == 0 else out
