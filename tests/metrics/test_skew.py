"""Tests of qclip.metrics.skew (Skew@k, MaxSkew/MinSkew, NDKL, prompt_skew) against transcriptions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import fairness, skew
from tests.metrics._inputs import RANKING, MetricTester, make_ranking

# --- references --------------------------------------------------------------------------------


def _desired(attrs: pd.Series, desired: str) -> pd.Series:
    values = sorted(attrs.unique())
    if desired == "parity":
        return attrs.value_counts(normalize=True).reindex(values)
    return pd.Series(1.0 / len(values), index=values)


def _reference_skew(scores, attrs, k, desired) -> dict:
    """pandas transcription of FORMATS.md: top k by score (ties: index order), p_a = 0 -> 1/k, ln(p_a/d_a)."""
    df = pd.DataFrame({"score": scores, "attr": attrs, "idx": np.arange(len(scores))})
    top = df.sort_values(["score", "idx"], ascending=[False, True]).head(k)
    d = _desired(df["attr"], desired)
    p = top["attr"].value_counts().reindex(d.index, fill_value=0) / len(top)
    p = p.where(p > 0, 1.0 / len(top))
    return np.log(p / d).to_dict()


def _reference_ndkl(scores, attrs, k, desired) -> float:
    """Numpy loop over prefixes i = 1..k: Σ KL(D_i || D) / log2(i + 1), normalised."""
    d = _desired(pd.Series(attrs), desired)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: min(k, len(scores))]
    num = z = 0.0
    for i in range(1, len(order) + 1):
        top = np.asarray(attrs)[order[:i]]
        kl = 0.0
        for a, da in d.items():
            pa = np.mean(top == a)
            if pa > 0:
                kl += pa * np.log(pa / da)
        w = 1.0 / np.log2(i + 1)
        num += w * kl
        z += w
    return num / z


tester = MetricTester()


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", RANKING)
@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("desired", ["parity", "uniform"])
def test_skew_matches_pandas(inputs, k, desired):
    for row in inputs.sim:
        ref = _reference_skew(row, inputs.attrs, k, desired)
        tester.run(skew.skew_at_k, (row, inputs.attrs), ref, k=k, desired=desired)
        assert skew.max_skew(row, inputs.attrs, k, desired) == pytest.approx(max(ref.values()), abs=1e-12)
        assert skew.min_skew(row, inputs.attrs, k, desired) == pytest.approx(min(ref.values()), abs=1e-12)


@pytest.mark.parametrize("inputs", RANKING)
@pytest.mark.parametrize("k", [1, 7, 40])
@pytest.mark.parametrize("desired", ["parity", "uniform"])
def test_ndkl_matches_loop(inputs, k, desired):
    for row in inputs.sim:
        ref = _reference_ndkl(row, inputs.attrs, k, desired)
        tester.run(skew.ndkl_at_k, (row, inputs.attrs), ref, k=k, desired=desired)


@pytest.mark.parametrize("inputs", RANKING)
@pytest.mark.parametrize("desired", ["parity", "uniform"])
def test_prompt_skew_averages_over_prompts(inputs, desired):
    k = 30
    refs = [_reference_skew(row, inputs.attrs, k, desired) for row in inputs.sim]
    out = skew.prompt_skew(inputs.sim, inputs.attrs, k=k, desired=desired)
    expected = {
        "max_skew": np.mean([max(r.values()) for r in refs]),
        "min_skew": np.mean([min(r.values()) for r in refs]),
        "ndkl": np.mean([_reference_ndkl(row, inputs.attrs, k, desired) for row in inputs.sim]),
    }
    tester.assert_close(out, expected)
    tester.assert_close(out["skew_by_value"], {a: np.mean([r[a] for r in refs]) for a in refs[0]})
    assert out["k"] == k and out["k_capped"] is False and out["n_prompts"] == inputs.sim.shape[0]
    assert fairness.prompt_skew is skew.prompt_skew  # re-exported from fairness


def test_k_capped_at_n_with_flag():
    sim = np.array([[0.3, 0.2, 0.1]])
    out = skew.prompt_skew(sim, np.array(["a", "b", "b"]), k=1000)
    assert out["k"] == 3 and out["k_capped"] is True
    assert out["max_skew"] == pytest.approx(0.0) and out["min_skew"] == pytest.approx(
        0.0
    )  # whole set, parity
    assert skew.skew_at_k(sim[0], np.array(["a", "b", "b"]), k=1000) == pytest.approx({"a": 0.0, "b": 0.0})


def test_ties_keep_index_order():
    scores = np.zeros(6)
    attrs = np.array(["a", "a", "b", "b", "b", "b"])
    # top 2 are items 0 and 1 (both "a"): p_a = 1, p_b = 0 -> 1/2
    s = skew.skew_at_k(scores, attrs, k=2, desired="uniform")
    assert s == pytest.approx({"a": np.log(2.0), "b": 0.0})


def test_desired_mapping():
    r = make_ranking(1, 80, seed=3, values=("x", "y", "z"))
    uniform = skew.skew_at_k(r.sim[0], r.attrs, 20, desired="uniform")
    mapped = skew.skew_at_k(r.sim[0], r.attrs, 20, desired={"x": 1 / 3, "y": 1 / 3, "z": 1 / 3})
    assert mapped == pytest.approx(uniform)
    # a value of the mapping absent from the data is smoothed like any absent value
    extra = skew.skew_at_k(r.sim[0], r.attrs, 20, desired={"x": 0.25, "y": 0.25, "z": 0.25, "w": 0.25})
    assert extra["w"] == pytest.approx(np.log((1 / 20) / 0.25))


def test_min_skew_can_exceed_zero_when_a_rare_value_is_absent():
    # documented exception: parity share of "r" (1/100) is below the smoothed 1/k (1/10)
    attrs = np.array(["c"] * 99 + ["r"])
    scores = np.linspace(1.0, 0.0, 100)
    assert skew.min_skew(scores, attrs, k=10) > 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: skew.skew_at_k(np.zeros(3), ["a", "b"], 1), "Expected `attribute_values` to have length 3"),
        (lambda: skew.skew_at_k(np.zeros(3), ["a", "b", "a"], 0), "Expected `k` to be an integer"),
        (
            lambda: skew.skew_at_k(np.zeros(3), ["a", "b", "a"], 1, desired="equal"),
            "Expected `desired` to be one",
        ),
        (
            lambda: skew.skew_at_k(np.zeros(3), ["a", "b", "a"], 1, desired={"a": 1.0}),
            "to be a key of `desired`",
        ),
        (lambda: skew.skew_at_k(np.zeros(2), ["a", "b"], 1, desired={"a": 0.5, "b": 0.6}), "sum to 1"),
        (lambda: skew.prompt_skew(np.zeros(3), ["a", "b", "a"], 1), "Expected `sim` to be a 2-D array"),
        (lambda: skew.skew_at_k(np.array([0.0, np.nan]), ["a", "b"], 1), "Expected `scores` to be finite"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------

_rank = st.builds(
    make_ranking,
    p=st.just(1),
    n=st.integers(2, 120),
    seed=st.integers(0, 2**16),
    values=st.sampled_from([("a", "b"), ("a", "b", "c"), (0, 1, 2, 3, 4)]),
    bias=st.floats(0.0, 2.0),
)


@settings(max_examples=50, deadline=None)
@given(_rank, st.integers(1, 150), st.sampled_from(["parity", "uniform"]), st.integers(0, 2**16))
def test_property_signs_and_permutation(r, k, desired, seed):
    scores, attrs = r.sim[0], r.attrs
    s = skew.skew_at_k(scores, attrs, k, desired)
    assert max(s.values()) >= -1e-12  # MaxSkew >= 0 always
    k_eff = min(k, len(scores))
    top = attrs[np.argsort(-scores, kind="stable")[:k_eff]]
    if set(top.tolist()) == set(attrs.tolist()):  # every value in the top k: MinSkew <= 0
        assert min(s.values()) <= 1e-12
    nd = skew.ndkl_at_k(scores, attrs, k, desired)
    assert nd >= -1e-12
    perm = np.random.default_rng(seed).permutation(len(scores))  # continuous scores: no ties
    assert skew.skew_at_k(scores[perm], attrs[perm], k, desired) == pytest.approx(s, abs=1e-12)
    assert skew.ndkl_at_k(scores[perm], attrs[perm], k, desired) == pytest.approx(nd, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(0, 10), st.integers(0, 2**16))
def test_property_zero_skew_when_top_k_matches_desired(n_values, per_value, tail_per_value, seed):
    r = np.random.default_rng(seed)
    values = np.arange(n_values)
    top = np.tile(values, per_value)  # each value per_value times in the top k
    tail = np.tile(values, tail_per_value)  # the rest has the same proportions
    attrs = np.concatenate([top, tail])
    scores = np.concatenate([r.uniform(2.0, 3.0, top.size), r.uniform(0.0, 1.0, tail.size)])
    perm = r.permutation(attrs.size)
    for desired in ("uniform", "parity"):
        s = skew.skew_at_k(scores[perm], attrs[perm], k=top.size, desired=desired)
        assert all(abs(v) < 1e-12 for v in s.values())


@settings(max_examples=40, deadline=None)
@given(_rank, st.integers(1, 60), st.integers(1, 50), st.integers(0, 2**16))
def test_property_items_below_top_k_do_not_matter_with_uniform(r, k, n_extra, seed):
    scores, attrs = r.sim[0], r.attrs
    k = min(k, len(scores))
    rng = np.random.default_rng(seed)
    kth = np.sort(scores)[::-1][k - 1]
    extra_scores = kth - 1.0 - rng.random(n_extra)
    extra_attrs = rng.choice(np.unique(attrs), size=n_extra)  # no new value
    s2, a2 = np.concatenate([scores, extra_scores]), np.concatenate([attrs, extra_attrs])
    assert skew.skew_at_k(s2, a2, k, "uniform") == pytest.approx(
        skew.skew_at_k(scores, attrs, k, "uniform"), abs=1e-12
    )
    assert skew.ndkl_at_k(s2, a2, k, "uniform") == pytest.approx(
        skew.ndkl_at_k(scores, attrs, k, "uniform"), abs=1e-12
    )


def test_items_below_top_k_change_parity_skew():
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    attrs = np.array(["a", "b", "a", "b"])
    before = skew.skew_at_k(scores, attrs, k=2)  # parity 1/2 each: zero skew
    after = skew.skew_at_k(np.r_[scores, [0.0, 0.0]], np.r_[attrs, ["a", "a"]], k=2)  # parity a = 2/3
    assert before == pytest.approx({"a": 0.0, "b": 0.0})
    assert after["a"] == pytest.approx(np.log(0.5 / (2 / 3))) and after["b"] == pytest.approx(
        np.log(0.5 / (1 / 3))
    )


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 60), st.integers(1, 80), st.integers(0, 2**16))
def test_property_ndkl_zero_for_a_single_value(n, k, seed):
    scores = np.random.default_rng(seed).normal(size=n)
    for desired in ("parity", "uniform"):
        assert skew.ndkl_at_k(scores, np.array(["only"] * n), k, desired) == 0.0


def test_ndkl_interleaved_ranking_beats_grouped_ranking():
    attrs = np.array(["a", "b"] * 10)
    interleaved = -np.arange(20.0)  # a, b, a, b, ...
    grouped = -np.argsort(np.argsort(attrs, kind="stable"), kind="stable").astype(float)  # all a then all b
    assert skew.ndkl_at_k(interleaved, attrs, 20) < skew.ndkl_at_k(grouped, attrs, 20)


@settings(max_examples=200, deadline=None)
@given(p=st.integers(1, 4), n=st.integers(1, 120), k_frac=st.floats(0.0, 1.0), levels=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_property_top_k_without_a_full_sort_equals_a_stable_argsort(p, n, k_frac, levels, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (p, n)).astype(float)  # few levels: many ties at the k-th score
    k = max(1, int(round(k_frac * n)))
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(skew._top_indices(scores, k), expected)


@settings(max_examples=50, deadline=None)
@given(p=st.integers(1, 4), n=st.integers(2, 80), k=st.integers(1, 100), seed=st.integers(0, 2**16))
def test_property_prompt_skews_equals_one_prompt_skew_per_pair(p, n, k, seed):
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, 5, (p, n)).astype(float)  # ties included
    attrs = {"a": rng.integers(0, 3, n), "b": rng.choice(np.array(["x", "y"]), n)}
    got = skew.prompt_skews(sim, attrs, k=k)
    assert set(got) == {(a, d) for a in attrs for d in ("parity", "uniform")}
    for (name, desired), res in got.items():
        assert res == skew.prompt_skew(sim, attrs[name], k=k, desired=desired)
