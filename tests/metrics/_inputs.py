"""Shared, seeded inputs for the ``qclip.metrics`` tests and a small tester that carries an ``atol``.

Each family's inputs are lists of ``pytest.param`` with ids, so every reference
test runs on the same cases. Inputs are continuous random draws (no ties) unless
the id says ``ties``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pytest

ATOL = 1e-6


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- classification (zeroshot, fairness, calibration) -----------------------------------------


class Classification(NamedTuple):
    logits: np.ndarray  # [N, C]
    labels: np.ndarray  # [N]


def make_classification(n: int, c: int, seed: int, scale: float = 1.0, signal: float = 1.0) -> Classification:
    """Random logits with some signal on the true class (so accuracies are neither 0 nor 1)."""
    r = rng(seed)
    labels = r.integers(0, c, size=n)
    logits = r.normal(size=(n, c))
    logits[np.arange(n), labels] += signal
    return Classification((scale * logits).astype(np.float64), labels.astype(np.int64))


def make_clip_like(n: int, c: int, seed: int) -> Classification:
    """Cosine similarities around 0.2 (spread 0.03), times CLIP's logit scale of 100."""
    r = rng(seed)
    labels = r.integers(0, c, size=n)
    cos = 0.2 + 0.03 * r.normal(size=(n, c))
    cos[np.arange(n), labels] += 0.04
    return Classification(100.0 * cos, labels.astype(np.int64))


CLASSIFICATION = [
    pytest.param(make_classification(200, 10, seed=0), id="n200-c10"),
    pytest.param(make_classification(300, 3, seed=1, signal=0.5), id="n300-c3"),
    pytest.param(make_clip_like(150, 52, seed=2), id="n150-c52-clip"),
    pytest.param(make_classification(120, 7, seed=3, scale=5.0, signal=2.0), id="n120-c7-sharp"),
]


def ties_classification(n: int, c: int, seed: int) -> Classification:
    """Small-integer logits: many exact ties."""
    r = rng(seed)
    return Classification(r.integers(0, 3, size=(n, c)).astype(np.float64), r.integers(0, c, size=n))


# --- retrieval ---------------------------------------------------------------------------------


class Retrieval(NamedTuple):
    image_emb: np.ndarray  # [I, D]
    text_emb: np.ndarray  # [T, D]
    text_to_image: np.ndarray  # [T]


def make_retrieval(n_images: int, per_image: int, d: int, seed: int, noise: float = 1.0) -> Retrieval:
    r = rng(seed)
    img = r.normal(size=(n_images, d))
    t2i = np.repeat(np.arange(n_images), per_image)
    r.shuffle(t2i)
    txt = img[t2i] + noise * r.normal(size=(t2i.size, d))
    return Retrieval(img, txt, t2i)


def ties_retrieval(n_images: int, per_image: int, seed: int) -> Retrieval:
    """Unit vectors with entries in {-0.5, 0, 0.5} (4 non-zeros in D = 8): every score is an exact multiple of 1/4."""
    r = rng(seed)

    def draw(n: int) -> np.ndarray:
        out = np.zeros((n, 8))
        for row in out:
            idx = r.choice(8, size=4, replace=False)
            row[idx] = r.choice([-0.5, 0.5], size=4)
        return out

    img = draw(n_images)
    img[1] = img[0]  # exact duplicate images
    t2i = np.repeat(np.arange(n_images), per_image)
    return Retrieval(img, draw(t2i.size), t2i)


RETRIEVAL = [
    pytest.param(make_retrieval(30, 5, 16, seed=10), id="i30-t150-d16"),
    pytest.param(make_retrieval(50, 2, 8, seed=11, noise=2.0), id="i50-t100-d8-noisy"),
    pytest.param(make_retrieval(12, 1, 32, seed=12, noise=0.3), id="i12-t12-d32"),
    pytest.param(ties_retrieval(20, 3, seed=13), id="i20-t60-ties"),
]


# --- fairness / skew ---------------------------------------------------------------------------


class Grouped(NamedTuple):
    logits: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # [N] str


def make_grouped(n: int, c: int, seed: int, groups: tuple[str, ...] = ("masc", "fem", "")) -> Grouped:
    r = rng(seed)
    base = make_classification(n, c, seed, signal=1.5)
    g = r.choice(
        np.array(groups),
        size=n,
        p=np.linspace(1.0, 0.5, len(groups)) / np.linspace(1.0, 0.5, len(groups)).sum(),
    )
    return Grouped(base.logits, base.labels, g)


GROUPED = [
    pytest.param(make_grouped(600, 5, seed=20), id="n600-c5-3groups"),
    pytest.param(make_grouped(400, 12, seed=21, groups=("lighter", "darker")), id="n400-c12-2groups"),
]


class Ranking(NamedTuple):
    sim: np.ndarray  # [P, N]
    attrs: np.ndarray  # [N]


def make_ranking(p: int, n: int, seed: int, values: tuple[Any, ...], bias: float = 0.3) -> Ranking:
    """Similarities with a per-prompt bias toward one attribute value."""
    r = rng(seed)
    attrs = r.choice(
        np.array(values),
        size=n,
        p=np.linspace(2.0, 1.0, len(values)) / np.linspace(2.0, 1.0, len(values)).sum(),
    )
    sim = r.normal(size=(p, n))
    favoured = r.integers(0, len(values), size=p)
    for i in range(p):
        sim[i] += bias * (attrs == np.array(values)[favoured[i]])
    return Ranking(sim, attrs)


RANKING = [
    pytest.param(make_ranking(4, 300, seed=30, values=("Male", "Female")), id="p4-n300-gender"),
    pytest.param(
        make_ranking(3, 500, seed=31, values=("White", "Black", "East Asian", "Indian", "Latino_Hispanic")),
        id="p3-n500-race",
    ),
    pytest.param(make_ranking(2, 120, seed=32, values=(0, 1, 2), bias=1.0), id="p2-n120-int"),
]


# --- calibration -------------------------------------------------------------------------------


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


# float32 probabilities, so the confidences torchmetrics bins (it casts to float32) are exactly ours
CALIBRATION = [
    pytest.param(Classification(softmax(c.logits).astype(np.float32), c.labels), id=f"{p.id}")
    for p in CLASSIFICATION
    for c in [p.values[0]]
]


# --- ood ---------------------------------------------------------------------------------------


class Detection(NamedTuple):
    id_scores: np.ndarray
    ood_scores: np.ndarray


OOD = [
    pytest.param(Detection(rng(40).normal(1.0, 1.0, 300), rng(41).normal(0.0, 1.0, 200)), id="gauss-300-200"),
    pytest.param(Detection(rng(42).normal(0.5, 1.0, 37), rng(43).normal(0.0, 2.0, 500)), id="gauss-37-500"),
    pytest.param(
        Detection(rng(44).integers(0, 6, 120).astype(float), rng(45).integers(0, 4, 90).astype(float)),
        id="ints-ties",
    ),
]


# --- spectral ----------------------------------------------------------------------------------


class Features(NamedTuple):
    ref: np.ndarray
    q: np.ndarray


def make_features(n: int, d: int, seed: int, noise: float) -> Features:
    r = rng(seed)
    ref = r.normal(size=(n, d)) * np.geomspace(10.0, 0.1, d)
    return Features(ref, ref + noise * r.normal(size=(n, d)))


SPECTRAL = [
    pytest.param(make_features(200, 16, seed=50, noise=0.05), id="n200-d16"),
    pytest.param(make_features(10, 32, seed=51, noise=0.2), id="n10-d32-wide"),
]


# --- tester ------------------------------------------------------------------------------------


def to_torch(args: tuple[Any, ...]) -> tuple[Any, ...]:
    import torch

    def convert(a: Any) -> Any:
        numeric = isinstance(a, np.ndarray) and a.dtype.kind in "biuf"
        return torch.from_numpy(np.ascontiguousarray(a)) if numeric else a  # strings stay numpy

    return tuple(convert(a) for a in args)


@dataclass(frozen=True)
class MetricTester:
    """Compare a qclip metric to a reference within ``atol``, on numpy and on torch CPU tensor inputs."""

    atol: float = ATOL
    rtol: float = 0.0

    def assert_close(self, ours: Any, ref: Any, what: str = "") -> None:
        if isinstance(ref, Mapping):
            assert set(ours) >= set(ref), f"{what}: missing keys {set(ref) - set(ours)}"
            for key in ref:
                self.assert_close(ours[key], ref[key], f"{what}[{key!r}]")
            return
        np.testing.assert_allclose(
            np.asarray(ours, dtype=float), np.asarray(ref, dtype=float), rtol=self.rtol, atol=self.atol, err_msg=what
        )

    def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], ref: Any, torch_too: bool = True, **kwargs: Any
    ) -> None:
        self.assert_close(fn(*args, **kwargs), ref, f"{fn.__name__} (numpy)")
        if torch_too:
            self.assert_close(fn(*to_torch(args), **kwargs), ref, f"{fn.__name__} (torch)")
