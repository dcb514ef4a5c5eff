"""qclip.tasks.spectral on planted embedding sources: class information in the top principal ranks and
'quantization' noise only in the low-energy tail, so the tail's SQNR is low, the head's high, and zero-shot
top-1 within the head of the fp32 basis is kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from qclip import tasks

torch = pytest.importorskip("torch")

CLASSES = ["cat", "dog", "bird", "fish", "frog"]


class _Source:
    def __init__(self, image_emb: np.ndarray):
        self.image_emb = image_emb

    def text_embeddings(self, texts):
        return torch.tensor(np.array([np.eye(8)[next(i for i, c in enumerate(CLASSES) if t.endswith(f" {c}."))]
                                      for t in texts]))

    def image_embeddings(self, dataset, transform=None, transform_id=""):
        return torch.tensor(self.image_emb)

    @property
    def logit_scale(self) -> float:
        return 50.0


def _world(seed=0):
    r = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), 40)
    emb = 3.0 * np.eye(8)[labels] + 0.05 * r.normal(size=(labels.size, 8))  # classes: dims 0-4, ranks 0-3
    noisy = emb.copy()
    noisy[:, 5:] += 0.05 * r.normal(size=(labels.size, 3))  # noise only where fp32 has no class signal
    ds = SimpleNamespace(classnames=CLASSES, templates=["a photo of a {}."], table=pd.DataFrame({"label": labels}))
    return ds, emb, noisy


def test_noise_in_the_tail_lowers_the_tail_sqnr_and_keeps_the_head_accuracy():
    ds, emb, noisy = _world()
    res = tasks.spectral(_Source(emb), _Source(noisy), ds)
    sqnr, ref_top1, q_top1 = res.extra["band_sqnr_db"], res.extra["band_top1_ref"], res.extra["band_top1_q"]
    assert len(sqnr) == len(ref_top1) == len(q_top1) == 3 and res.n == 200
    assert min(sqnr[0], sqnr[1]) > 30.0 and sqnr[2] < 10.0  # class ranks barely touched, the tail ~1 dB
    assert len(res.extra["sqnr_per_rank_db"]) == 8
    # the 10-50% band (ranks 1-3 of 8) holds three of the four class directions: most of the top-1
    assert ref_top1[1] > 0.5 and q_top1[1] == pytest.approx(ref_top1[1], abs=0.02)
    assert res.metrics["nsr_total"] > 0


def test_identical_features_have_infinite_sqnr_and_equal_band_accuracy():
    ds, emb, _ = _world(1)
    res = tasks.spectral(_Source(emb), _Source(emb.copy()), ds)
    assert np.isnan(res.extra["band_sqnr_db"]).all()  # every rank is noise-free: no finite SQNR to average
    np.testing.assert_array_equal(res.extra["band_top1_ref"], res.extra["band_top1_q"])
