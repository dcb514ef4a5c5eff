"""Tests of qclip.metrics.robustness against naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qclip.metrics import robustness as rb
from tests.metrics._inputs import MetricTester

# --- references --------------------------------------------------------------------------------


def _reference_groups(pred, labels, groups) -> dict:
    out = {}
    for g in sorted(set(groups.tolist())):
        idx = [i for i in range(len(groups)) if groups[i] == g]
        out[g] = (sum(pred[i] == labels[i] for i in idx) / len(idx), len(idx))
    return out


def _make(n: int, n_groups: int, seed: int):
    r = np.random.default_rng(seed)
    labels = r.integers(0, 2, size=n)
    pred = np.where(r.random(n) < 0.7, labels, 1 - labels)
    return pred, labels, r.integers(0, n_groups, size=n)


INPUTS = [pytest.param(_make(200, 4, 0), id="n200-g4"), pytest.param(_make(57, 2, 1), id="n57-g2")]
tester = MetricTester()


@pytest.mark.parametrize("inputs", INPUTS)
def test_group_and_worst_group_accuracy_match_loop(inputs):
    ref = _reference_groups(*inputs)
    out = rb.group_accuracy(*inputs)
    assert list(out) == list(ref)
    for g, (acc, n) in ref.items():
        assert out[g][1] == n and out[g][0] == pytest.approx(acc, abs=1e-12)
    w = rb.worst_group_accuracy(*inputs)
    worst = min(ref, key=lambda g: (ref[g][0], g))
    tester.assert_close(
        {k: w[k] for k in ("worst_group_accuracy", "average_accuracy", "mean_group_accuracy")},
        {
            "worst_group_accuracy": ref[worst][0],
            "average_accuracy": np.mean(inputs[0] == inputs[1]),
            "mean_group_accuracy": np.mean([a for a, _ in ref.values()]),
        },
    )
    assert w["worst_group"] == worst


def test_string_groups_and_torch_inputs():
    torch = pytest.importorskip("torch")
    pred, labels = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])
    groups = np.array(["land", "water", "water", "land"])
    out = rb.worst_group_accuracy(torch.from_numpy(pred), torch.from_numpy(labels), groups)
    assert out["worst_group"] == "water" and out["worst_group_accuracy"] == 0.5


def test_relative_change():
    assert rb.relative_change(0.8, 0.6) == pytest.approx(0.25)
    assert rb.relative_change(0.5, 0.5) == 0.0
    assert rb.relative_change(0.4, 0.5) == pytest.approx(-0.25)
    assert math.isnan(rb.relative_change(0.0, 0.3))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rb.relative_change(float("nan"), 0.5), "Expected `reference` to be a finite real number"),
        (
            lambda: rb.group_accuracy(np.array([0, 1]), np.array([0]), np.array([0, 1])),
            "`labels` to have length 2",
        ),
        (
            lambda: rb.group_accuracy(np.array([0, 1]), np.array([0, 1]), np.array([0])),
            "`groups` to have length 2",
        ),
        (lambda: rb.worst_group_accuracy(np.array([], int), np.array([], int), np.array([])), "non-empty"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 80), st.integers(1, 5), st.integers(0, 2**16))
def test_property_order_and_permutation(n, n_groups, seed):
    pred, labels, groups = _make(n, n_groups, seed)
    w = rb.worst_group_accuracy(pred, labels, groups)
    per = rb.group_accuracy(pred, labels, groups)
    assert (
        0.0
        <= w["worst_group_accuracy"]
        <= w["mean_group_accuracy"]
        <= max(a for a, _ in per.values()) + 1e-12
    )
    assert w["worst_group_accuracy"] <= w["average_accuracy"] + 1e-12  # a weighted mean is >= the minimum
    assert sum(c for _, c in per.values()) == n
    perm = np.random.default_rng(seed).permutation(n)
    assert rb.worst_group_accuracy(pred[perm], labels[perm], groups[perm]) == pytest.approx(w)


@given(st.floats(0.01, 10), st.floats(0, 10))
@settings(max_examples=50, deadline=None)
def test_relative_increase_mirrors_relative_change(ref, value):
    assert rb.relative_increase(ref, value) == pytest.approx(-rb.relative_change(ref, value), abs=1e-12)
    assert rb.relative_increase(ref, ref) == 0.0
    assert math.isnan(rb.relative_increase(0.0, value))
