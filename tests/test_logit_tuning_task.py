"""Logit-scale tuning in the calibration task (Bouguerra et al.): fitted on the source's calibration pairs
with the contrastive loss, everything else frozen; the cell records the ECE with and without it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from qclip import tasks
from qclip.metrics import calibration as cal

torch = pytest.importorskip("torch")

CLASSES = ["cat", "dog", "bird", "fish", "frog"]


class _Source:
    def __init__(self, image_emb, scale: float, pairs=None):
        self.image_emb, self.scale, self.pairs = image_emb, scale, pairs

    def text_embeddings(self, texts):
        return torch.tensor(np.array([np.eye(8)[next(i for i, c in enumerate(CLASSES) if t.endswith(f" {c}."))]
                                      for t in texts]))

    def image_embeddings(self, dataset, transform=None, transform_id=""):
        return torch.tensor(self.image_emb)

    @property
    def logit_scale(self) -> float:
        return self.scale

    def calibration_pairs(self):
        return self.pairs


def _world(seed=0, n=400):
    r = np.random.default_rng(seed)
    labels = r.integers(0, 5, n)
    emb = np.eye(8)[labels] + 0.6 * r.normal(size=(n, 8))
    ds = SimpleNamespace(classnames=CLASSES, templates=["a photo of a {}."], table=pd.DataFrame({"label": labels}))
    # calibration pairs whose captions agree with their images about as well as the classes do
    img = r.normal(size=(200, 8))
    pairs = (torch.tensor(img), torch.tensor(img + 0.8 * r.normal(size=(200, 8))))
    return ds, emb, pairs


def test_tuning_fits_the_scale_on_the_pairs_and_rescores_the_set():
    ds, emb, pairs = _world()
    over = _Source(emb, scale=100.0, pairs=pairs)  # a far too sharp scale: over-confident
    res = tasks.calibration(over, ds).metrics
    img, txt = (p.numpy() for p in pairs)
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    expected = cal.fit_logit_scale(cos)
    assert res["logit_scale_tuned"] == pytest.approx(expected, rel=1e-9) and res["logit_scale"] == 100.0
    # the tuned ECE is the plain ECE of the same cosines at the fitted scale
    norm = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cosine = norm @ np.eye(8)[:5].T
    labels = ds.table["label"].to_numpy()
    assert res["ece_logit_tuned"] == pytest.approx(cal.calibration_metrics(expected * cosine, labels)["ece"], abs=1e-9)
    assert res["ece_logit_tuned"] < res["ece"]  # the over-confident scale was repaired
    assert res["ece"] == pytest.approx(tasks.calibration(_Source(emb, 100.0), ds).metrics["ece"])


def test_no_pairs_no_tuning():
    ds, emb, _ = _world()
    res = tasks.calibration(_Source(emb, scale=30.0), ds).metrics
    assert "ece_logit_tuned" not in res and "logit_scale_tuned" not in res
