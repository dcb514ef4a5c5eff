"""Zero-shot classification: the prompt-ensemble classifier, logits, top-k accuracy, per-class recall.

Follows the CLIP recipe (Radford et al. 2021, "Learning Transferable Visual Models
From Natural Language Supervision", and open_clip's ``zero_shot_classifier``): the
classifier row of a class is the mean of its L2-normalised template embeddings,
re-normalised; logits = logit_scale · normalise(image) · Wᵀ.

Tie rule (used by every ranking in this module and by ``qclip.metrics.fairness``):
classes are ranked by score, higher first, and equal scores are broken by the
lower class index first, which is what a stable argsort of ``-logits`` gives. The
rank of the true class ``y`` of a sample is therefore

    rank = #{j : s_j > s_y} + #{j < y : s_j = s_y}

and the sample counts in the top k iff ``rank < k``. With this rule top-1 accuracy
equals ``mean(argmax(logits) == labels)`` (``np.argmax`` also returns the first
maximum), and a degenerate model that outputs constant logits gets no credit for
its ties beyond class order. Note that scikit-learn's ``top_k_accuracy_score``
breaks ties the other way (higher index first); both agree whenever there are no
ties.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import check_float, check_int, float_array, l2_normalize, label_array

__all__ = [
    "build_classifier",
    "zeroshot_logits",
    "predictions",
    "topk_hits",
    "topk_accuracy",
    "per_class_recall",
    "mean_per_class_recall",
    "zeroshot_metrics",
    "cosine_similarity",
]


def build_classifier(text_emb: Any, n_classes: int, validate_args: bool = True) -> np.ndarray:
    r"""Build the zero-shot classifier ``W`` [C, D] from prompt-template text embeddings.

    .. math::
        W_c = \frac{\bar t_c}{\lVert \bar t_c \rVert}, \qquad
        \bar t_c = \frac{1}{T} \sum_{j=1}^{T} \frac{t_{c,j}}{\lVert t_{c,j} \rVert}

    Source: Radford et al. 2021 (prompt ensembling); open_clip ``zero_shot_classifier``.

    Args:
        text_emb: ``[C*T, D]`` ordered class-major (class 0's T templates first, then
            class 1's, ...) or ``[C, T, D]``.
        n_classes: C.
        validate_args: check shapes and values.

    Returns:
        float32 array ``[C, D]`` with unit rows (an all-zero class mean stays zero).

    Example:
        >>> t = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0], [0.0, 3.0]])  # 2 classes x 2 templates
        >>> W = build_classifier(t, 2)
        >>> W.shape, W.dtype, bool(np.allclose(W, [[0.5**0.5, 0.5**0.5], [0.0, 1.0]]))
        ((2, 2), dtype('float32'), True)
    """
    if validate_args:
        n_classes = check_int(n_classes, "n_classes", lo=1)
    emb = float_array(text_emb, "text_emb", (2, 3), validate_args)
    if emb.ndim == 2:
        if validate_args and emb.shape[0] % n_classes != 0:
            raise ValueError(
                f"Expected `text_emb` to have a multiple of n_classes={n_classes} rows (class-major "
                f"[C*T, D]), but got {emb.shape[0]} rows."
            )
        emb = emb.reshape(n_classes, emb.shape[0] // n_classes, emb.shape[1])
    elif validate_args and emb.shape[0] != n_classes:
        raise ValueError(
            f"Expected `text_emb` of shape [C, T, D] with C={n_classes}, but got shape {tuple(emb.shape)}."
        )
    class_mean = l2_normalize(emb, axis=-1).mean(axis=1)
    return l2_normalize(class_mean, axis=-1).astype(np.float32)


def zeroshot_logits(
    image_emb: Any, W: Any, logit_scale: float = 100.0, validate_args: bool = True
) -> np.ndarray:
    r"""Zero-shot logits: ``logit_scale · normalise(image_emb) · Wᵀ``.

    .. math:: \ell_{n,c} = s \cdot \frac{x_n}{\lVert x_n \rVert} \cdot W_c

    ``W`` is used as given (``build_classifier`` returns unit rows). The result has
    dtype float32 for float16/float32 inputs and float64 if either input is float64.
    Source: Radford et al. 2021; FORMATS.md "ImageNet-1k zero-shot".

    Example:
        >>> W = np.eye(2, dtype=np.float32)
        >>> zeroshot_logits(np.array([[3.0, 4.0]]), W).round(3).tolist()
        [[60.0, 80.0]]
    """
    img = float_array(image_emb, "image_emb", 2, validate_args, dtype=None)
    w = float_array(W, "W", 2, validate_args, dtype=None)
    if validate_args:
        logit_scale = check_float(logit_scale, "logit_scale", lo=0.0, lo_open=True)
        if img.shape[1] != w.shape[1]:
            raise ValueError(
                f"Expected `image_emb` and `W` to share the embedding dimension, but got "
                f"{img.shape[1]} and {w.shape[1]}."
            )
    dtype = np.result_type(img.dtype, w.dtype, np.float32)
    img = l2_normalize(img.astype(np.float64)).astype(dtype)
    return (logit_scale * (img @ w.astype(dtype).T)).astype(dtype, copy=False)


def predictions(logits: Any, validate_args: bool = True) -> np.ndarray:
    """Predicted class per row: ``argmax(logits, axis=1)``, the lowest index on ties.

    Example:
        >>> predictions(np.array([[0.1, 0.9], [0.5, 0.5]])).tolist()
        [1, 0]
    """
    return np.argmax(float_array(logits, "logits", 2, validate_args), axis=1)


def _true_class_rank(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank (0 = first) of each sample's true class under the lower-index-first tie rule."""
    true = logits[np.arange(logits.shape[0]), labels][:, None]
    lower = np.arange(logits.shape[1])[None, :] < labels[:, None]
    return (logits > true).sum(axis=1) + ((logits == true) & lower).sum(axis=1)


def _check_logits_labels(logits: Any, labels: Any, validate_args: bool) -> tuple[np.ndarray, np.ndarray]:
    lg = float_array(logits, "logits", 2, validate_args)
    lb = label_array(labels, "labels", validate_args, n=lg.shape[0], n_classes=lg.shape[1])
    return lg, lb


def topk_hits(logits: Any, labels: Any, k: int, validate_args: bool = True) -> np.ndarray:
    r"""Per-sample top-k hit: whether the true class ranks among the k highest logits.

    .. math:: \mathrm{hit}_n = [\#\{j: s_{nj} > s_{ny_n}\} + \#\{j < y_n: s_{nj} = s_{ny_n}\} < k]

    Ties are broken by the lower class index first (module docstring).

    Example:
        >>> topk_hits(np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]), np.array([2, 1]), k=1).tolist()
        [False, False]
    """
    lg, lb = _check_logits_labels(logits, labels, validate_args)
    if validate_args:
        k = check_int(k, "k", lo=1, hi=lg.shape[1])
    return _true_class_rank(lg, lb) < k


def topk_accuracy(logits: Any, labels: Any, k: int = 1, validate_args: bool = True) -> float:
    r"""Top-k accuracy: the share of samples whose true class is among the k highest logits.

    .. math:: \mathrm{acc@k} = \frac{1}{N}\sum_n \mathrm{hit}_n

    ``1 <= k <= C`` is required. Ties: lower class index first (module docstring).
    Source: scikit-learn ``top_k_accuracy_score`` (agrees when no ties).

    Example:
        >>> lg = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
        >>> topk_accuracy(lg, np.array([2, 0]), k=1), topk_accuracy(lg, np.array([2, 0]), k=2)
        (0.5, 1.0)
    """
    return float(np.mean(topk_hits(logits, labels, k, validate_args)))


def per_class_recall(
    logits: Any, labels: Any, n_classes: int | None = None, validate_args: bool = True
) -> np.ndarray:
    r"""Top-1 recall of each class: ``recall_c = #{n: y_n = c, ŷ_n = c} / #{n: y_n = c}``.

    Returns an array ``[n_classes]`` (default: the number of logit columns; labels
    must be below it) with NaN for classes that have no sample. Predictions are
    ``argmax(logits)``, the lowest index on ties.

    Example:
        >>> per_class_recall(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([0, 1, 1]), 3).tolist()
        [1.0, 0.5, nan]
    """
    lg, lb = _check_logits_labels(logits, labels, validate_args)
    c = lg.shape[1] if n_classes is None else n_classes
    if validate_args:
        c = check_int(c, "n_classes", lo=1)
        label_array(lb, "labels", True, n_classes=c)
    pred = np.argmax(lg, axis=1)
    support = np.bincount(lb, minlength=c).astype(np.float64)
    correct = np.bincount(lb[pred == lb], minlength=c).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, correct / np.where(support > 0, support, 1.0), np.nan)


def mean_per_class_recall(
    logits: Any, labels: Any, n_classes: int | None = None, validate_args: bool = True
) -> float:
    r"""Mean per-class (top-1) recall over the classes present in ``labels`` (balanced accuracy).

    .. math:: \mathrm{MPCR} = \frac{1}{|\mathcal C|}\sum_{c \in \mathcal C} \mathrm{recall}_c,
              \quad \mathcal C = \{c : \#\{n: y_n = c\} > 0\}

    Classes without samples are left out, as in scikit-learn's ``balanced_accuracy_score``.

    Example:
        >>> mean_per_class_recall(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([0, 1, 1]))
        0.75
    """
    return float(np.nanmean(per_class_recall(logits, labels, n_classes, validate_args)))


def zeroshot_metrics(logits: Any, labels: Any, validate_args: bool = True) -> dict[str, float]:
    """Top-1, top-5 (k capped at the number of classes) and mean per-class recall.

    Returns ``{"top1", "top5", "mean_per_class_recall"}``; see :func:`topk_accuracy`
    and :func:`mean_per_class_recall` for the formulas and the tie rule.
    Source: FORMATS.md "ImageNet-1k zero-shot".

    Example:
        >>> zeroshot_metrics(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]), np.array([2, 0]))
        {'top1': 0.5, 'top5': 1.0, 'mean_per_class_recall': 0.5}
    """
    lg, lb = _check_logits_labels(logits, labels, validate_args)
    rank = _true_class_rank(lg, lb)
    return {
        "top1": float(np.mean(rank < 1)),
        "top5": float(np.mean(rank < min(5, lg.shape[1]))),
        "mean_per_class_recall": mean_per_class_recall(lg, lb, validate_args=False),
    }


def cosine_similarity(a: Any, b: Any, validate_args: bool = True) -> np.ndarray:
    r"""Cosine similarity of every row of ``a`` [M, D] with every row of ``b`` [N, D]:
    :math:`S_{mn} = \frac{a_m \cdot b_n}{\lVert a_m \rVert \lVert b_n \rVert}`, an all-zero row giving 0.
    Used to rank images by a prompt (FairFace skew, Berg et al. 2022).

    Example:
        >>> cosine_similarity(np.array([[1.0, 0.0]]), np.array([[3.0, 4.0], [0.0, 2.0]])).round(2).tolist()
        [[0.6, 0.0]]
    """
    x = float_array(a, "a", 2, validate_args, dtype=None)
    y = float_array(b, "b", 2, validate_args, dtype=None)
    if validate_args and x.shape[1] != y.shape[1]:
        raise ValueError(f"Expected `a` and `b` to share the embedding dimension, but got {x.shape[1]} and {y.shape[1]}.")
    return l2_normalize(x, axis=1) @ l2_normalize(y, axis=1).T

