"""The equivalence margins: the defaults (data, with a rationale each), the option's form, precedence."""

from __future__ import annotations

import argparse
import math

import pytest

from qclip.benchmarks import FAMILIES, metrics_matching
from qclip.expect.equivalence import MarginRule, default_rules, margin_function, parse_margin
from qclip.run.options import parse_equivalence


def test_every_default_selects_declared_metrics_and_says_why():
    rules = default_rules()
    assert rules and rules[-1].metric == "*"  # a catch-all comes last
    for r in rules:
        assert r.why, r
        assert r.benchmark == "*" or r.benchmark in FAMILIES, r
        metrics_matching(r.metric, None if r.benchmark == "*" else r.benchmark)  # raises when none
        assert math.isnan(r.margin) or r.margin > 0


def test_every_declared_metric_gets_a_default_margin_or_none_by_design():
    m = margin_function()
    for fam in FAMILIES.values():
        for metric in fam.metrics:
            name = metric.name.replace("@K", "@1")
            margin = m(fam.name, name, "")
            if metric.direction == "none" or fam.name in ("throughput", "spectral"):
                assert math.isnan(margin), (fam.name, name)
            else:
                assert 0 < margin <= 0.1, (fam.name, name, margin)


@pytest.mark.parametrize("text, selects, margin", [
    ("max_disparity@*:0.02", ("*", "max_disparity@*", "*"), 0.02),
    ("facet/max_disparity@1@gender:0.03", ("facet", "max_disparity@1", "gender"), 0.03),
    ("top1@*:0.005", ("*", "top1", "*"), 0.005),
    ("zeroshot/top1@:0.005", ("zeroshot", "top1", ""), 0.005),
    ("ece:none", ("*", "ece", "*"), math.nan),
])
def test_parse_margin(text, selects, margin):
    r = parse_margin(text)
    assert (r.benchmark, r.metric, r.subgroup) == selects
    assert (math.isnan(r.margin) and math.isnan(margin)) or r.margin == margin
    assert parse_equivalence(text) == text


@pytest.mark.parametrize("text, match", [
    ("top1", "Expected"),
    ("top1:0", "MARGIN > 0"),
    ("top1:-0.1", "MARGIN > 0"),
    ("top1:nan", "MARGIN > 0"),
    ("top1:x", "MARGIN > 0"),
    (":0.1", "Expected"),
    ("nosuch:0.1", "no recorded metric matches 'nosuch'"),
    ("max_disparity@gender:0.1", "max_disparity@\\*@gender"),
    ("facet/top1:0.1", "in benchmark 'facet'"),
])
def test_parse_margin_rejects(text, match):
    with pytest.raises(argparse.ArgumentTypeError, match=match):
        parse_equivalence(text)


def test_overrides_win_the_last_one_first_then_the_first_default():
    defaults = [MarginRule("top1", 0.01, subgroup="gender"), MarginRule("*", 0.05)]
    m = margin_function(["top1:0.2", "top1@age:0.3"], defaults)
    assert m("zeroshot", "top1", "age") == 0.3
    assert m("zeroshot", "top1", "gender") == 0.2  # an override beats every default
    assert m("zeroshot", "top5", "gender") == 0.05
    assert margin_function([], defaults)("zeroshot", "top1", "gender") == 0.01
    assert math.isnan(margin_function([], [])("zeroshot", "top1", ""))
    assert math.isnan(margin_function(["top1:none"], defaults)("zeroshot", "top1", ""))
