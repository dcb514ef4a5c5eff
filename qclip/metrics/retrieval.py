"""Image-text retrieval recall@k (COCO Karpathy-5k style), computed in chunks.

Scores are cosine similarities, ``S = normalise(text) · normalise(image)ᵀ``
[n_texts, n_images], computed in float64 (FORMATS.md "COCO captions retrieval").

* Image retrieval (text → image) R@k: mean over texts of "the text's image is
  among the k highest-scoring images".
* Text retrieval (image → text) R@k: mean over images of "at least one of the
  image's captions is among the k highest-scoring texts". Images with no caption
  are left out of the mean.

Tie rule: candidates are ranked by score, higher first, equal scores broken by the
lower candidate index first (a stable argsort of ``-scores``). The rank of a
positive with score ``s`` at index ``p`` is ``#{j : S_j > s} + #{j < p : S_j = s}``
and it is in the top k iff ``rank < k``. For text retrieval the image's best
caption (highest score, lowest index among equals) is ranked.

Exact ties under any chunking: a block matmul does not give bit-identical
candidates bit-identical scores (BLAS rounds a column differently by its place in
the tile, which moves with ``chunk_size``), so the "lower index first" rule would
depend on the chunking. The candidates are therefore scored once per *distinct*
embedding (``np.unique(..., axis=0)``) and each score is copied to every candidate
with that embedding: bit-identical candidates get the same float, and the rank is
counted from those same floats (strictly greater + equal at a lower index), so the
ranks do not depend on ``chunk_size``.

No argsort is done: each block of ``chunk_size`` queries is scored against all
candidates and the positive's rank is found by counting, so 25k texts × 5k images
needs ``chunk_size × 25k`` floats at a time, not the full matrix sorted. Source:
the rank-counting form of open_clip / CLIP_benchmark's retrieval recall.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._validation import check_int, float_array, l2_normalize, label_array

__all__ = ["image_retrieval_ranks", "text_retrieval_ranks", "retrieval_recall"]


def _prepare(
    image_emb: Any, text_emb: Any, text_to_image: Any, validate_args: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = float_array(image_emb, "image_emb", 2, validate_args)
    txt = float_array(text_emb, "text_emb", 2, validate_args)
    if validate_args and img.shape[1] != txt.shape[1]:
        raise ValueError(
            f"Expected `image_emb` and `text_emb` to share the embedding dimension, but got "
            f"{img.shape[1]} and {txt.shape[1]}."
        )
    t2i = label_array(text_to_image, "text_to_image", validate_args, n=txt.shape[0], n_classes=img.shape[0])
    return l2_normalize(img), l2_normalize(txt), t2i


def _distinct(cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``cand`` and, per row, the index of its distinct row (``u[inv] == cand``)."""
    u, inv = np.unique(cand, axis=0, return_inverse=True)
    return u, inv.reshape(-1)


def _scores(queries: np.ndarray, distinct: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """[B, n_candidates] scores; equal candidate embeddings get bit-identical scores."""
    u, inv = distinct
    return (queries @ u.T)[:, inv]


def _rank_of(scores: np.ndarray, pos_score: np.ndarray, pos_index: np.ndarray) -> np.ndarray:
    """Rank of the positive in each row: strictly greater scores + equal scores at a lower index."""
    s = pos_score[:, None]
    lower = np.arange(scores.shape[1])[None, :] < pos_index[:, None]
    return (scores > s).sum(axis=1) + ((scores == s) & lower).sum(axis=1)


def _image_ranks(img: np.ndarray, txt: np.ndarray, t2i: np.ndarray, chunk_size: int) -> np.ndarray:
    ranks = np.empty(txt.shape[0], dtype=np.int64)
    images = _distinct(img)
    for start in range(0, txt.shape[0], chunk_size):
        stop = min(start + chunk_size, txt.shape[0])
        scores = _scores(txt[start:stop], images)  # [B, n_images]
        pos = t2i[start:stop]
        ranks[start:stop] = _rank_of(scores, scores[np.arange(stop - start), pos], pos)
    return ranks


def _text_ranks(img: np.ndarray, txt: np.ndarray, t2i: np.ndarray, chunk_size: int) -> np.ndarray:
    ranks = np.full(img.shape[0], -1, dtype=np.int64)
    order = np.argsort(t2i, kind="stable")  # texts grouped by image, text index ascending within
    bounds = np.searchsorted(t2i[order], np.arange(img.shape[0] + 1))
    texts = _distinct(txt)
    for start in range(0, img.shape[0], chunk_size):
        stop = min(start + chunk_size, img.shape[0])
        scores = _scores(img[start:stop], texts)  # [B, n_texts]
        cols = order[bounds[start] : bounds[stop]]
        if cols.size == 0:
            continue
        rows = t2i[cols] - start
        vals = scores[rows, cols]
        # best caption per image: highest score, then lowest text index
        pick = np.lexsort((cols, -vals, rows))
        first = np.ones(pick.size, dtype=bool)
        first[1:] = rows[pick][1:] != rows[pick][:-1]
        best_rows, best_cols = rows[pick][first], cols[pick][first]
        r = _rank_of(scores[best_rows], vals[pick][first], best_cols)
        ranks[start + best_rows] = r
    return ranks


def image_retrieval_ranks(
    image_emb: Any, text_emb: Any, text_to_image: Any, chunk_size: int = 256, validate_args: bool = True
) -> np.ndarray:
    r"""For each text, the 0-based rank of its image among all images (text → image).

    .. math:: r_t = \#\{i : S_{ti} > S_{t,g(t)}\} + \#\{i < g(t) : S_{ti} = S_{t,g(t)}\}

    with ``g = text_to_image``. Ties: lower image index first (module docstring).

    Example:
        >>> img = np.eye(3)
        >>> txt = np.array([[1.0, 0.1, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> image_retrieval_ranks(img, txt, np.array([0, 0, 2])).tolist()
        [0, 1, 0]
    """
    if validate_args:
        chunk_size = check_int(chunk_size, "chunk_size", lo=1)
    img, txt, t2i = _prepare(image_emb, text_emb, text_to_image, validate_args)
    return _image_ranks(img, txt, t2i, chunk_size)


def text_retrieval_ranks(
    image_emb: Any, text_emb: Any, text_to_image: Any, chunk_size: int = 256, validate_args: bool = True
) -> np.ndarray:
    r"""For each image, the 0-based rank of its best caption among all texts (image → text).

    .. math:: r_i = \min_{t : g(t) = i} \big(\#\{u : S_{ui} > S_{ti}\} + \#\{u < t : S_{ui} = S_{ti}\}\big)

    Images without any caption get ``-1``. Ties: lower text index first.

    Example:
        >>> img = np.eye(3)
        >>> txt = np.array([[1.0, 0.1, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> text_retrieval_ranks(img, txt, np.array([0, 0, 2])).tolist()
        [0, -1, 0]
    """
    if validate_args:
        chunk_size = check_int(chunk_size, "chunk_size", lo=1)
    img, txt, t2i = _prepare(image_emb, text_emb, text_to_image, validate_args)
    return _text_ranks(img, txt, t2i, chunk_size)


def retrieval_recall(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any,
    ks: Iterable[int] = (1, 5, 10),
    chunk_size: int = 256,
    validate_args: bool = True,
) -> dict[str, float]:
    r"""Image- and text-retrieval recall@k for every k in ``ks``.

    .. math::
        \mathrm{image\_retrieval\_R@k} = \frac{1}{n_T}\sum_t [r_t < k], \qquad
        \mathrm{text\_retrieval\_R@k} = \frac{1}{|\{i : \exists t, g(t)=i\}|}\sum_{i} [r_i < k]

    with the ranks of :func:`image_retrieval_ranks` and :func:`text_retrieval_ranks`
    (text retrieval averages over the images that have at least one caption).
    Source: FORMATS.md "COCO captions retrieval"; Karpathy & Fei-Fei 2015 split;
    open_clip / CLIP_benchmark zero-shot retrieval.

    Args:
        image_emb: ``[n_images, D]``.
        text_emb: ``[n_texts, D]``.
        text_to_image: ``[n_texts]`` index of each text's image.
        ks: the cut-offs k (k larger than the candidate count gives 1.0).
        chunk_size: queries scored per block (memory ~ chunk_size × candidates floats).
        validate_args: check shapes and values.

    Returns:
        ``{"image_retrieval_R@k": ..., "text_retrieval_R@k": ...}`` for each k.

    Example:
        >>> img = np.eye(3)
        >>> txt = np.array([[1.0, 0.1, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> r = retrieval_recall(img, txt, np.array([0, 0, 2]), ks=(1, 2))
        >>> [round(r[key], 4) for key in ("image_retrieval_R@1", "image_retrieval_R@2", "text_retrieval_R@1")]
        [0.6667, 1.0, 1.0]
    """
    ks = tuple(ks)
    if validate_args:
        chunk_size = check_int(chunk_size, "chunk_size", lo=1)
        if not ks:
            raise ValueError("Expected `ks` to hold at least one k, but got an empty sequence.")
        ks = tuple(check_int(k, "ks", lo=1) for k in ks)
    img, txt, t2i = _prepare(image_emb, text_emb, text_to_image, validate_args)
    img_ranks = _image_ranks(img, txt, t2i, chunk_size)
    txt_ranks = _text_ranks(img, txt, t2i, chunk_size)
    txt_ranks = txt_ranks[txt_ranks >= 0]
    out: dict[str, float] = {}
    for k in ks:
        out[f"image_retrieval_R@{k}"] = float(np.mean(img_ranks < k))
    for k in ks:
        out[f"text_retrieval_R@{k}"] = float(np.mean(txt_ranks < k)) if txt_ranks.size else float("nan")
    return out
