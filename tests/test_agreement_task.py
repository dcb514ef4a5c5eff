"""qclip.tasks.prediction_agreement on planted embedding sources: a 'quantizer' that swaps the text
embeddings of two classes (accuracy unchanged by construction) flips exactly the samples predicted as
either class; a faithful one flips nothing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from qclip import tasks

torch = pytest.importorskip("torch")

CLASSES = ["cat", "dog", "bird", "fish", "frog"]
A, B = 1, 3


class _Source:
    """Class embeddings: one direction per class; images near their predicted class's direction."""

    def __init__(self, image_emb: np.ndarray, swap: tuple[int, int] | None = None, logit_scale: float = 50.0):
        self.image_emb, self.swap, self._scale = image_emb, swap, logit_scale

    def text_embeddings(self, texts):
        rows = []
        for t in texts:
            c = next(i for i, name in enumerate(CLASSES) if t.endswith(f" {name}."))
            if self.swap is not None and c in self.swap:
                c = self.swap[1] if c == self.swap[0] else self.swap[0]
            rows.append(np.eye(8)[c])
        return torch.tensor(np.array(rows))

    def image_embeddings(self, dataset, transform=None, transform_id=""):
        return torch.tensor(self.image_emb)

    @property
    def logit_scale(self) -> float:
        return self._scale

    def preprocess_stats(self):
        return [0.0], [1.0]


def _world(seed=0):
    r = np.random.default_rng(seed)
    # (predicted, label) among A and B balanced so that swapping their predictions keeps top-1: 30 + 25 = 20 + 35
    blocks = [(A, A, 30), (A, B, 20), (B, B, 25), (B, A, 35)]
    pred = [p for p, _, k in blocks for _ in range(k)] + list(r.choice([0, 2, 4], size=150))
    labels = [y for _, y, k in blocks for _ in range(k)] + [p if r.random() < 0.8 else 2 for p in pred[110:]]
    pred, labels = np.array(pred), np.array(labels)
    emb = np.eye(8)[pred] + 0.05 * r.normal(size=(pred.size, 8))
    ds = SimpleNamespace(classnames=CLASSES, templates=["a photo of a {}."], table=pd.DataFrame({"label": labels}))
    return ds, emb, pred, labels


def test_a_planted_swap_of_two_classes_flips_their_share_and_keeps_top1():
    ds, emb, pred, _ = _world()
    fp32, swapped = _Source(emb), _Source(emb, swap=(A, B))
    assert tasks.zeroshot(fp32, ds).metrics["top1"] == tasks.zeroshot(swapped, ds).metrics["top1"]
    res = tasks.prediction_agreement(fp32, swapped, ds)
    assert res.n == pred.size
    assert res.metrics["flip_rate"] == pytest.approx(np.mean((pred == A) | (pred == B)), abs=1e-15)
    assert res.metrics["flip_right_to_wrong"] == pytest.approx(res.metrics["flip_wrong_to_right"])
    assert res.metrics["flip_right_to_wrong"] == pytest.approx(55 / pred.size)
    assert res.metrics["mean_kl"] > 1.0
    assert res.metrics["embedding_cosine"] == pytest.approx(1.0)  # the images did not move, the classifier did


def test_a_faithful_quantizer_flips_nothing_and_the_reference_is_self_agreement():
    ds, emb, _, _ = _world(1)
    noisy = emb + 1e-4 * np.random.default_rng(2).normal(size=emb.shape)
    res = tasks.prediction_agreement(_Source(emb), _Source(noisy), ds)
    assert res.metrics["flip_rate"] == 0.0 and res.metrics["mean_kl"] < 1e-3
    assert 0.999 < res.metrics["embedding_cosine"] < 1.0
    ref = res.extra["reference"]
    assert ref["flip_rate"] == 0.0 and ref["mean_kl"] == 0.0 and ref["embedding_cosine"] == pytest.approx(1.0)
