"""Per-model uncertainty: the seeded paired bootstrap of qclip.stats (coverage by simulation, reproducibility),
qclip.metrics.fairness.disparity_range against disparity, the FACET task's per-model CIs on planted sources,
and the forest plot drawing them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics.fairness import disparity, disparity_range
from qclip.stats import bootstrap_indices, paired_bootstrap_ci, paired_bootstrap_mean_ci

torch = pytest.importorskip("torch")


def test_bootstrap_ci_covers_the_true_per_model_delta_93_to_97_percent():
    """1,000 simulated evaluation sets of 400 images: paired top-1 outcomes of an fp32 model (70%) and a
    quantized one that keeps 90% of its answers and otherwise is right 75% of the time (true Δ = +0.005)."""
    r = np.random.default_rng(0)
    s, n = 1000, 400
    ref = r.random((s, n)) < 0.70
    quant = np.where(r.random((s, n)) < 0.90, ref, r.random((s, n)) < 0.75)
    true_delta = 0.9 * 0.70 + 0.1 * 0.75 - 0.70
    lo, hi = paired_bootstrap_mean_ci(quant.astype(float) - ref, n_boot=1000, seed=1)
    coverage = float(np.mean((lo <= true_delta) & (true_delta <= hi)))
    assert 0.93 <= coverage <= 0.97, coverage


def test_bootstrap_is_seeded_and_paired():
    d = np.random.default_rng(3).normal(0.01, 0.1, 300)
    a = paired_bootstrap_ci(lambda idx: d[idx].mean(), d.size, n_boot=300, seed=7)
    assert a == paired_bootstrap_ci(lambda idx: d[idx].mean(), d.size, n_boot=300, seed=7)
    assert a != paired_bootstrap_ci(lambda idx: d[idx].mean(), d.size, n_boot=300, seed=8)
    assert paired_bootstrap_mean_ci(d, n_boot=300, seed=7) == a  # the vectorised form, the same resamples
    lo, hi = paired_bootstrap_mean_ci(np.stack([d, d + 1.0]), n_boot=300, seed=7)
    assert lo == pytest.approx([a[0], a[0] + 1.0]) and hi == pytest.approx([a[1], a[1] + 1.0])
    # paired: a shift shared by both models cancels, so the CI of an unchanged model is [0, 0]
    ref = np.random.default_rng(4).random(200)
    assert paired_bootstrap_ci(lambda idx: ref[idx].mean() - ref[idx].mean(), 200, n_boot=100) == (0.0, 0.0)
    assert bootstrap_indices(10, 5, seed=2).tolist() == bootstrap_indices(10, 5, seed=2).tolist()


def test_bootstrap_several_statistics_and_nan_resamples():
    d = np.arange(50, dtype=float)
    lo, hi = paired_bootstrap_ci(lambda idx: [d[idx].mean(), d[idx].max()], 50, n_boot=200)
    assert lo.shape == (2,) and lo[0] < 24.5 < hi[0] and hi[1] == 49.0
    flaky = iter(range(10**6))
    assert all(math.isnan(v) for v in paired_bootstrap_ci(lambda idx: math.nan, 50, n_boot=50))
    lo1, _ = paired_bootstrap_ci(lambda idx: math.nan if next(flaky) % 20 == 0 else d[idx].mean(), 50, n_boot=200)
    assert math.isfinite(lo1)  # 5% undefined resamples are left out
    assert all(math.isnan(v) for v in paired_bootstrap_ci(lambda idx: 0.0, 1))


@settings(max_examples=50, deadline=None)
@given(st.integers(5, 200), st.integers(2, 6), st.integers(1, 8), st.integers(1, 3), st.integers(0, 2**16))
def test_property_disparity_range_equals_disparity(n, c, min_samples, k, seed):
    r = np.random.default_rng(seed)
    logits, labels = r.normal(size=(n, c)), r.integers(0, c, n)
    groups = r.choice(["a", "b", "x"], n)
    k = min(k, c)
    ref = disparity(logits, labels, groups, "a", "b", k=k, min_samples=min_samples)
    from qclip.metrics.zeroshot import topk_hits

    got = disparity_range(topk_hits(logits, labels, k), labels, groups == "a", groups == "b", c, min_samples)
    if ref["n_classes"] == 0:
        assert all(math.isnan(v) for v in got)
    else:
        assert got == (ref["min"], ref["max"])


# --- the FACET task on planted sources -----------------------------------------------------------------

CLASSES = ["doctor", "nurse", "chef", "pilot"]


class _Source:
    def __init__(self, emb):
        self.emb = emb

    def text_embeddings(self, texts):
        return torch.tensor(np.array([np.eye(6)[next(i for i, c in enumerate(CLASSES) if t.endswith(f" {c}."))]
                                      for t in texts]))

    def image_embeddings(self, dataset, transform=None, transform_id=""):
        return torch.tensor(self.emb)

    @property
    def logit_scale(self):
        return 30.0

    def preprocess_stats(self):
        return [0.0], [1.0]


def _facet(seed=0, n=600):
    r = np.random.default_rng(seed)
    labels = r.integers(0, 4, n)
    emb = np.eye(6)[labels] + 0.6 * r.normal(size=(n, 6))
    table = pd.DataFrame({"label": labels, "gender": r.choice(["masc", "fem"], n),
                          "skin_group": r.choice(["lighter", "darker", "unknown"], n),
                          "age": r.choice(["young", "middle", "older"], n)})
    return SimpleNamespace(classnames=CLASSES, templates=["a photo of a {}."], table=table), emb


def test_facet_delta_ci_is_zero_for_an_unchanged_model_and_seeded():
    from qclip.tasks import facet_delta_ci, facet_disparities

    ds, emb = _facet()
    same = facet_delta_ci(_Source(emb), _Source(emb.copy()), ds, min_samples=10, n_boot=50)
    assert set(same) == {(g, k) for g in ("gender", "skin_tone", "age_young", "age_older") for k in (1, 5)}
    assert all(v == {"min": (0.0, 0.0), "max": (0.0, 0.0)} for v in same.values())
    noisy = emb + 0.3 * np.random.default_rng(1).normal(size=emb.shape)
    a = facet_delta_ci(_Source(emb), _Source(noisy), ds, min_samples=10, n_boot=100, seed=3)
    assert a == facet_delta_ci(_Source(emb), _Source(noisy), ds, min_samples=10, n_boot=100, seed=3)
    ref = facet_disparities(_Source(emb), ds, min_samples=10).groups
    got = facet_disparities(_Source(noisy), ds, min_samples=10).groups
    lo, hi = a[("gender", 1)]["max"]
    assert lo < hi and lo - 0.05 <= got[("gender", 1)]["max"] - ref[("gender", 1)]["max"] <= hi + 0.05


def test_the_facet_forest_plot_draws_each_models_ci():
    from qclip.report.plots_fairness import facet_figure

    rows = []
    for m in range(4):
        for metric in ("min_disparity@1", "max_disparity@1"):
            d = 0.01 * (m - 1.5)
            rows.append(dict(model=f"m{m}", quantizer="bnb-nf4", benchmark="facet", dataset="synth-facet",
                             metric=metric, subgroup="gender", value=0.1 + d, reference=0.1, delta=d, n=500,
                             status="passed", extra={"delta_ci": [d - 0.02, d + 0.02]}))
    fig = facet_figure(pd.DataFrame(rows))
    bars = [c for ax in fig.axes for c in ax.collections if c.get_label() == "_model_ci"]
    assert len(bars) == 2 and all(len(b.get_segments()) == 4 for b in bars)
    no_ci = pd.DataFrame([{**r, "extra": None} for r in rows])
    assert not [c for ax in facet_figure(no_ci).axes for c in ax.collections if c.get_label() == "_model_ci"]
