"""tasks.corruption_arrays on a CIFAR-10-C-layout set: top-1 per (corruption, severity) from one pass,
equal to a plain loop over the rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from qclip import tasks

torch = pytest.importorskip("torch")

CLASSES = ["cat", "dog", "bird"]


class _Source:
    def __init__(self, image_emb):
        self.image_emb = image_emb

    def text_embeddings(self, texts):
        return torch.tensor(np.array([np.eye(4)[next(i for i, c in enumerate(CLASSES) if t.endswith(f" {c}."))]
                                      for t in texts]))

    def image_embeddings(self, dataset, transform=None, transform_id=""):
        return torch.tensor(self.image_emb)

    @property
    def logit_scale(self) -> float:
        return 20.0


def test_top1_per_corruption_and_severity_equals_a_loop():
    rng = np.random.default_rng(0)
    rows = [(c, s, y) for c in ("contrast", "gaussian_noise") for s in range(1, 6) for y in rng.integers(0, 3, 30)]
    table = pd.DataFrame(rows, columns=["corruption", "severity", "label"])
    noise = np.array([0.2 * s for _, s, _ in rows])[:, None]  # more noise at higher severity
    emb = np.eye(4)[table["label"].to_numpy()] + noise * rng.normal(size=(len(rows), 4)) * 3
    ds = SimpleNamespace(classnames=CLASSES, templates=["a photo of a {}."], table=table)
    res = tasks.corruption_arrays(_Source(emb), ds)
    pred = (emb[:, :3] / np.linalg.norm(emb, axis=1, keepdims=True)).argmax(1)
    for c in ("contrast", "gaussian_noise"):
        for s in range(1, 6):
            keep = [i for i, (rc, rs, _) in enumerate(rows) if (rc, rs) == (c, s)]
            want = float(np.mean([pred[i] == rows[i][2] for i in keep]))
            assert res.groups[f"{c}:s{s}"] == {"top1": pytest.approx(want), "n": len(keep)}
    assert res.n == len(rows) and len(res.groups) == 10
    assert res.metrics["top1"] == pytest.approx(float(np.mean(pred == table["label"].to_numpy())))
    assert res.groups["gaussian_noise:s1"]["top1"] >= res.groups["gaussian_noise:s5"]["top1"]
