"""Retrieval cells: image→text and text→image recall@1/5/10 on COCO-format sets."""

import math

import pytest

from qclip import tasks

pytestmark = pytest.mark.qclip(benchmark="retrieval")


def test_retrieval(qclip):
    ds = qclip.dataset
    ref = tasks.retrieval(qclip.reference, ds).metrics
    res = tasks.retrieval(qclip.quantized, ds)
    got = res.metrics
    for metric, value in got.items():
        qclip.record(metric, value, ref[metric], res.n)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in got.values()), got
    for metric in ("image_retrieval_R@1", "text_retrieval_R@1"):
        qclip.assert_preserved(metric, got[metric], ref[metric])
