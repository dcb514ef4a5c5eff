"""Zero-shot classification cells: top-1, top-5 and mean per-class recall on every configured
classification set (ImageNet and its shift sets, or the synthetic ones), fp32 reference vs quantized."""

import math

import pytest

from qclip import tasks

pytestmark = pytest.mark.qclip(benchmark="zeroshot")


def test_zeroshot(qclip):
    ds = qclip.dataset
    ref, n = tasks.zeroshot(qclip.reference, ds)
    got, _ = tasks.zeroshot(qclip.quantized, ds)
    for metric in ("top1", "top5", "mean_per_class_recall"):
        qclip.record(metric, got[metric], ref[metric], n)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in got.values()), got
    qclip.assert_preserved("top1", got["top1"], ref["top1"])
