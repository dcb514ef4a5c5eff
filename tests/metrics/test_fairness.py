"""Tests of qclip.metrics.fairness (FACET disparity, skin tone) against naive loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qclip.metrics import fairness as fr
from tests.metrics._inputs import GROUPED, MetricTester, make_grouped

# --- references --------------------------------------------------------------------------------


def _reference_recall_by_group(logits, labels, groups, k) -> dict[tuple, tuple[int, float]]:
    """(class, group) -> (n, recall), with hits from a sort by (-score, class index)."""
    out: dict[tuple, list[int]] = {}
    for row, y, g in zip(logits.tolist(), labels.tolist(), groups.tolist(), strict=True):
        top = sorted(range(len(row)), key=lambda j, row=row: (-row[j], j))[:k]
        n_hits = out.setdefault((y, g), [0, 0])
        n_hits[0] += 1
        n_hits[1] += y in top
    return {key: (n, h / n) for key, (n, h) in out.items()}


def _reference_disparity(logits, labels, groups, a, b, k, min_samples) -> dict[int, float]:
    table = _reference_recall_by_group(logits, labels, groups, k)
    out = {}
    for c in sorted(set(labels.tolist())):
        na, ra = table.get((c, a), (0, np.nan))
        nb, rb = table.get((c, b), (0, np.nan))
        if na >= min_samples and nb >= min_samples:
            out[c] = ra - rb
    return out


def _reference_tone(votes, na, rule) -> list[int]:
    out = []
    for v, n in zip(votes.tolist(), na.tolist(), strict=True):
        if rule == "plurality":
            top = max(v)
            winners = [t + 1 for t, x in enumerate(v) if x == top]
            out.append(winners[0] if top > 0 and len(winners) == 1 and n < top else 0)
        else:
            total = sum(v)
            if total <= 0 or n >= total:
                out.append(0)
            else:
                mean = sum((t + 1) * x for t, x in enumerate(v)) / total
                out.append(int(np.floor(mean + 0.5)))
    return out


tester = MetricTester()


# --- agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", GROUPED)
@pytest.mark.parametrize("k", [1, 3])
def test_recall_by_group_matches_loop(inputs, k):
    ref = _reference_recall_by_group(*inputs, k)
    table = fr.recall_at_k_by_group(*inputs, k)
    assert list(table.columns) == ["class", "group", "n", "hits", "recall"]
    assert len(table) == len(ref)
    for row in table.itertuples():
        n, rec = ref[(row[1], row.group)]
        assert row.n == n
        assert row.recall == pytest.approx(rec, abs=1e-12)


@pytest.mark.parametrize("inputs", GROUPED)
@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("min_samples", [1, 10, 25])
def test_disparity_matches_loop(inputs, k, min_samples):
    groups = sorted(set(inputs.groups.tolist()) - {""})
    a, b = groups[0], groups[1]
    ref = _reference_disparity(*inputs, a, b, k, min_samples)
    out = fr.disparity(*inputs, a, b, k=k, min_samples=min_samples)
    assert out["n_classes"] == len(ref)
    assert sorted(out["per_class"].index.tolist()) == sorted(ref)
    for c, v in ref.items():
        assert out["per_class"][c] == pytest.approx(v, abs=1e-12)
    if ref:
        tester.assert_close(
            {"min": out["min"], "max": out["max"]}, {"min": min(ref.values()), "max": max(ref.values())}
        )


def test_disparity_with_no_qualifying_class_is_nan():
    inputs = make_grouped(40, 4, seed=3)
    out = fr.disparity(*inputs, "masc", "fem", k=1, min_samples=25)
    assert out["n_classes"] == 0 and np.isnan(out["min"]) and np.isnan(out["max"])
    assert isinstance(out["per_class"], pd.Series) and out["per_class"].empty
    out = fr.disparity(*inputs, "masc", "nobody", k=1, min_samples=1)  # a group that never occurs
    assert out["n_classes"] == 0 and np.isnan(out["max"])


def test_disparity_torch_inputs():
    torch = pytest.importorskip("torch")
    lg, lb, g = make_grouped(300, 4, seed=5)
    a = fr.disparity(lg, lb, g, "masc", "fem", k=1, min_samples=5)
    b = fr.disparity(torch.from_numpy(lg), torch.from_numpy(lb), g, "masc", "fem", k=1, min_samples=5)
    pd.testing.assert_series_equal(a["per_class"], b["per_class"])


@pytest.mark.parametrize("rule", ["plurality", "mean"])
def test_skin_tone_matches_loop(rule):
    r = np.random.default_rng(7)
    votes = r.integers(0, 3, size=(300, 10)) * (r.random((300, 10)) < 0.3)
    na = r.integers(0, 3, size=300)
    assert fr.skin_tone_from_votes(votes, na, rule=rule).tolist() == _reference_tone(votes, na, rule)


def test_skin_tone_rules_by_example():
    v = np.zeros((6, 10), dtype=int)
    v[0, 2] = 3  # clear plurality: tone 3
    v[1, [2, 7]] = 2  # tie -> unknown
    v[2, 4] = 1  # na (1 vote) >= max (1) -> unknown
    v[4, [0, 9]] = [1, 2]  # plurality 10; mean 7
    v[5, 5] = 2  # na = 1 < 2 -> tone 6
    na = np.array([0, 0, 1, 0, 0, 1])  # row 3: no votes at all -> unknown
    assert fr.skin_tone_from_votes(v, na).tolist() == [3, 0, 0, 0, 10, 6]
    assert fr.skin_tone_from_votes(v, na, rule="mean").tolist() == [3, 6, 0, 0, 7, 6]
    assert fr.skin_tone_from_votes(v).tolist() == [3, 0, 5, 0, 10, 6]  # no na column


def test_skin_group():
    tones = np.arange(0, 11)
    assert fr.skin_group(tones).tolist() == [""] + ["lighter"] * 4 + [""] + ["darker"] * 5
    assert fr.skin_group(tones, lighter=(1, 3), darker=(7, 10)).tolist() == (
        [""] + ["lighter"] * 3 + [""] * 3 + ["darker"] * 4
    )
    assert fr.skin_group(5) == "" and fr.skin_group(9) == "darker"


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: fr.disparity(np.zeros((2, 2)), [0, 1], ["a", "b"], "a", "a", k=1),
            "Expected `group_b` to differ",
        ),
        (
            lambda: fr.disparity(np.zeros((2, 2)), [0, 1], ["a"], "a", "b", k=1),
            "Expected `groups` to have length 2",
        ),
        (
            lambda: fr.disparity(np.zeros((2, 2)), [0, 1], ["a", "b"], "a", "b", k=1, min_samples=0),
            "min_samples",
        ),
        (
            lambda: fr.recall_at_k_by_group(np.zeros((2, 2)), [0, 1], ["a", "b"], k=3),
            "Expected `k` to be an integer",
        ),
        (lambda: fr.skin_tone_from_votes(np.zeros((2, 9))), "Expected `votes` to have 10 columns"),
        (lambda: fr.skin_tone_from_votes(np.zeros((2, 10)), rule="median"), "Expected `rule` to be one of"),
        (lambda: fr.skin_tone_from_votes(-np.ones((2, 10))), "non-negative"),
        (
            lambda: fr.skin_tone_from_votes(np.zeros((2, 10)), np.zeros(3)),
            "Expected `na_votes` to have length 2",
        ),
        (lambda: fr.skin_group(3, lighter=(1, 6), darker=(6, 10)), "not to overlap"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(20, 200), st.integers(2, 8), st.integers(0, 2**16), st.integers(1, 3), st.integers(1, 10))
def test_property_disparity_antisymmetric_and_bounded(n, c, seed, k, min_samples):
    lg, lb, g = make_grouped(n, c, seed, groups=("a", "b"))
    k = min(k, c)
    ab = fr.disparity(lg, lb, g, "a", "b", k=k, min_samples=min_samples)
    ba = fr.disparity(lg, lb, g, "b", "a", k=k, min_samples=min_samples)
    assert ab["n_classes"] == ba["n_classes"]
    pd.testing.assert_series_equal(ab["per_class"], -ba["per_class"])
    if ab["n_classes"]:
        assert ab["min"] == pytest.approx(-ba["max"]) and ab["max"] == pytest.approx(-ba["min"])
        assert -1.0 <= ab["min"] <= ab["max"] <= 1.0
    # permuting the samples changes nothing
    perm = np.random.default_rng(seed).permutation(n)
    p = fr.disparity(lg[perm], lb[perm], g[perm], "a", "b", k=k, min_samples=min_samples)
    pd.testing.assert_series_equal(p["per_class"], ab["per_class"])


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.int64, (12, 10), elements=st.integers(0, 4)),
    hnp.arrays(np.int64, 12, elements=st.integers(0, 4)),
)
def test_property_skin_tone_valid_and_matches_loop(votes, na):
    for rule in ("plurality", "mean"):
        tone = fr.skin_tone_from_votes(votes, na, rule=rule)
        assert tone.min() >= 0 and tone.max() <= 10
        assert tone.tolist() == _reference_tone(votes, na, rule)
    # a plurality tone is always one that got the most votes
    tone = fr.skin_tone_from_votes(votes, na)
    known = tone > 0
    assert (votes[known, tone[known] - 1] == votes[known].max(axis=1)).all()
