"""Zero-shot classification cells: top-1, top-5 and mean per-class recall on every configured
classification set (ImageNet and its shift sets, or the synthetic ones), fp32 reference vs quantized.

Conformance: on real weights and ImageNet (dataset "imagenet"), the fp32 cell of each paper model must
reproduce its published top-1 (bench/reference/zeroshot.yaml)."""

import math
from pathlib import Path

import pytest

from qclip import tasks
from qclip.expect.conformance import check_reference, load_references
from qclip.models import paper_reference, parse_spec

pytestmark = pytest.mark.qclip(benchmark="zeroshot")

REFERENCES = load_references(Path(__file__).parent / "reference" / "zeroshot.yaml")


def _conformance(qclip, top1: float) -> None:
    refs = REFERENCES.get(qclip.cell.dataset)
    if not qclip.cell.is_reference or refs is None:
        return
    ref = refs.get(qclip.cell.model)
    if ref is None:
        if paper_reference(parse_spec(qclip.cell.model)) is not None:
            pytest.fail(f"{qclip.cell.model} is a paper model but bench/reference/zeroshot.yaml has no "
                        f"{qclip.cell.dataset} entry for it")
        return
    problem = check_reference(ref, top1, f"{qclip.cell.model} on {qclip.cell.dataset}")
    if problem and ref.xfail_reason:
        pytest.xfail(f"{problem} [known: {ref.xfail_reason}]")
    assert not problem, problem


def test_zeroshot(qclip):
    ds = qclip.dataset
    ref = tasks.zeroshot(qclip.reference, ds).metrics
    res = tasks.zeroshot(qclip.quantized, ds)
    got = res.metrics
    for metric in ("top1", "top5", "mean_per_class_recall"):
        qclip.record(metric, got[metric], ref[metric], res.n)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in got.values()), got
    agree = tasks.prediction_agreement(qclip.reference, qclip.quantized, ds)  # the same embeddings, cached
    for metric, value in agree.metrics.items():
        qclip.record(metric, value, agree.extra["reference"][metric], agree.n)
    assert 0.0 <= agree.metrics["flip_right_to_wrong"] + agree.metrics["flip_wrong_to_right"] \
        <= agree.metrics["flip_rate"] <= 1.0, agree.metrics
    _conformance(qclip, ref["top1"])
    qclip.assert_preserved("top1", got["top1"], ref["top1"])
