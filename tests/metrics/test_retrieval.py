"""Tests of qclip.metrics.retrieval against a full-argsort naive implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import retrieval as rt
from tests.metrics._inputs import RETRIEVAL, MetricTester, make_retrieval

# --- reference ---------------------------------------------------------------------------------


def _reference_recall(img: np.ndarray, txt: np.ndarray, t2i: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Full score matrix, stable argsort of -scores (lower index first on ties), loops over queries."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    scores = txt @ img.T
    out = {}
    for k in ks:
        hits = [t2i[t] in np.argsort(-scores[t], kind="stable")[:k] for t in range(len(t2i))]
        out[f"image_retrieval_R@{k}"] = float(np.mean(hits))
    for k in ks:
        hits = []
        for i in range(img.shape[0]):
            captions = set(np.flatnonzero(t2i == i).tolist())
            if captions:
                top = np.argsort(-scores[:, i], kind="stable")[:k]
                hits.append(bool(captions & set(top.tolist())))
        out[f"text_retrieval_R@{k}"] = float(np.mean(hits))
    return out


tester = MetricTester()


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", RETRIEVAL)
def test_retrieval_recall_matches_naive(inputs):
    ref = _reference_recall(*inputs)
    out = rt.retrieval_recall(*inputs)
    assert list(out) == [f"image_retrieval_R@{k}" for k in (1, 5, 10)] + [
        f"text_retrieval_R@{k}" for k in (1, 5, 10)
    ]
    tester.assert_close(out, ref)
    tester.run(rt.retrieval_recall, tuple(inputs), ref, ks=(1, 5, 10))


@pytest.mark.parametrize("inputs", RETRIEVAL)
@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_chunk_size_does_not_change_ranks(inputs, chunk_size):
    base_i = rt.image_retrieval_ranks(*inputs)
    base_t = rt.text_retrieval_ranks(*inputs)
    np.testing.assert_array_equal(rt.image_retrieval_ranks(*inputs, chunk_size=chunk_size), base_i)
    np.testing.assert_array_equal(rt.text_retrieval_ranks(*inputs, chunk_size=chunk_size), base_t)


def test_tie_rule_on_duplicate_images():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # images 0 and 1 identical
    txt = np.array([[1.0, 0.0], [1.0, 0.0]])
    ranks = rt.image_retrieval_ranks(img, txt, np.array([0, 1]))
    assert ranks.tolist() == [0, 1]  # image 0 ranks before its twin
    r = rt.retrieval_recall(img, txt, np.array([0, 1]), ks=(1, 2))
    assert r["image_retrieval_R@1"] == 0.5 and r["image_retrieval_R@2"] == 1.0
    # image->text: both captions tie for both twins; lower text index first
    assert rt.text_retrieval_ranks(img, txt, np.array([0, 1])).tolist() == [0, 1, -1]


def test_images_without_captions_are_left_out():
    img = np.eye(3)
    txt = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    r = rt.retrieval_recall(img, txt, np.array([0, 2]), ks=(1,))
    assert r == {"image_retrieval_R@1": 1.0, "text_retrieval_R@1": 1.0}


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: rt.retrieval_recall(np.zeros((2, 3)), np.zeros((2, 4)), [0, 1]),
            "share the embedding dimension",
        ),
        (
            lambda: rt.retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0, 2]),
            r"Expected `text_to_image` to lie",
        ),
        (
            lambda: rt.retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0]),
            "Expected `text_to_image` to have length",
        ),
        (
            lambda: rt.retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0, 1], ks=(0,)),
            "Expected `ks` to be an",
        ),
        (
            lambda: rt.retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0, 1], ks=()),
            "Expected `ks` to hold",
        ),
        (lambda: rt.retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0, 1], chunk_size=0), "chunk_size"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------

_ret = st.builds(
    make_retrieval,
    n_images=st.integers(1, 25),
    per_image=st.integers(1, 4),
    d=st.integers(2, 12),
    seed=st.integers(0, 2**16),
    noise=st.floats(0.0, 3.0),
)


@settings(max_examples=40, deadline=None)
@given(_ret, st.integers(0, 2**16))
def test_property_bounds_monotone_and_image_permutation(inputs, seed):
    img, txt, t2i = inputs
    ks = (1, 2, 5, 10, 100)
    r = rt.retrieval_recall(img, txt, t2i, ks=ks)
    for kind in ("image", "text"):
        vals = [r[f"{kind}_retrieval_R@{k}"] for k in ks]
        assert all(0.0 <= v <= 1.0 for v in vals)
        assert all(a <= b for a, b in zip(vals, vals[1:], strict=False))
        assert vals[-1] == 1.0 or img.shape[0] > 100
    # permuting the images (and relabelling the texts' targets) changes nothing without ties
    perm = np.random.default_rng(seed).permutation(img.shape[0])
    inv = np.argsort(perm)
    rp = rt.retrieval_recall(img[perm], txt, inv[t2i], ks=ks)
    assert rp == pytest.approx(r, abs=1e-12)
    # permuting the texts changes nothing either
    tperm = np.random.default_rng(seed + 1).permutation(txt.shape[0])
    assert rt.retrieval_recall(img, txt[tperm], t2i[tperm], ks=ks) == pytest.approx(r, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 2**16))
def test_property_perfect_embeddings_give_one(n_images, per_image, seed):
    img = np.eye(max(n_images, 2))[:n_images] + 0.0
    t2i = np.random.default_rng(seed).permutation(np.repeat(np.arange(n_images), per_image))
    r = rt.retrieval_recall(img, img[t2i] * 3.0, t2i, ks=(1,))
    assert r["text_retrieval_R@1"] == 1.0
    assert r["image_retrieval_R@1"] == 1.0


# --- exact ties under any chunking ----------------------------------------------------------------


def _duplicated_world(seed: int, d: int = 256):
    """Images drawn with replacement from 16 embeddings (many bit-identical twins), texts near their
    image, every third text a copy of the first: the block matmul used to score twins differently."""
    r = np.random.default_rng(seed)
    img = r.normal(size=(16, d))[r.integers(0, 16, size=120)]
    t2i = r.integers(0, 120, size=250)
    txt = img[t2i] + 0.5 * r.normal(size=(250, d))
    txt[::3] = txt[0]
    return img, txt, t2i


def _exact_ranks(img: np.ndarray, txt: np.ndarray, t2i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as correctly rounded dot products (math.fsum, one per pair: identical embeddings, identical
    scores), then the documented rule by loops: #greater + #equal at a lower index; best caption per image."""
    import math

    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    s = np.array([[math.fsum(a * b) for b in img] for a in txt])  # [n_texts, n_images]

    def rank(row: np.ndarray, p: int) -> int:
        return int(sum(1 for j, v in enumerate(row) if v > row[p] or (v == row[p] and j < p)))

    img_ranks = np.array([rank(s[t], t2i[t]) for t in range(len(t2i))])
    txt_ranks = np.array(
        [min((rank(s[:, i], t) for t in np.flatnonzero(t2i == i)), default=-1) for i in range(img.shape[0])]
    )
    return img_ranks, txt_ranks


@pytest.mark.parametrize("seed", [0, 1])
def test_bit_identical_embeddings_tie_by_lower_index_under_any_chunking(seed):
    img, txt, t2i = _duplicated_world(seed)
    ref_img, ref_txt = _exact_ranks(img, txt, t2i)
    for chunk_size in (1, 2, 3, 7, 64, 256, 10_000):
        np.testing.assert_array_equal(rt.image_retrieval_ranks(img, txt, t2i, chunk_size=chunk_size), ref_img)
        np.testing.assert_array_equal(rt.text_retrieval_ranks(img, txt, t2i, chunk_size=chunk_size), ref_txt)
    # a text whose image has an earlier twin never ranks it first
    twins = [t for t in range(len(t2i)) if (img[: t2i[t]] == img[t2i[t]]).all(axis=1).any()]
    assert twins and all(ref_img[t] >= 1 for t in twins)
