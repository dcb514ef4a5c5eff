"""Robustness cells: accuracy under evaluation-time corruptions (3 severities, fixed seed) with the
relative change δ = (A_fp − A_q)/A_fp, and worst-group accuracy on group-annotated (spurious) sets.
Covariate shift is covered by the zero-shot cells on the shift sets (ImageNet-V2/-R/-Sketch/-A,
synth-imagenet-shift)."""

import math

import pytest

from qclip import tasks
from qclip.metrics.robustness import relative_change
from qclip.tasks.corruptions import CORRUPTIONS, Corruption

pytestmark = pytest.mark.qclip(benchmark="robustness")


def _corruptions(qclip):
    ds = qclip.dataset
    n = len(ds)
    for name, levels in CORRUPTIONS.items():
        for severity in range(1, len(levels) + 1):
            c = Corruption(name, severity)
            ref = tasks.corrupted_top1(qclip.reference, ds, c)
            got = tasks.corrupted_top1(qclip.quantized, ds, c)
            sub = f"{name}:s{severity}"
            qclip.record("top1", got, ref, n, subgroup=sub)
            qclip.record("relative_drop", relative_change(ref, got), 0.0, n, subgroup=sub)
            assert math.isfinite(got) and 0.0 <= got <= 1.0


def _spurious(qclip):
    ds = qclip.dataset
    ref, ref_groups = tasks.worst_group(qclip.reference, ds)
    got, got_groups = tasks.worst_group(qclip.quantized, ds)
    n = len(ds)
    for metric in ("worst_group_accuracy", "average_accuracy", "mean_group_accuracy"):
        qclip.record(metric, got[metric], ref[metric], n,
                     extra={"worst_group": str(got["worst_group"]), "reference_worst_group": str(ref["worst_group"])})
    for g, (acc, count) in got_groups.items():
        qclip.record("group_accuracy", acc, ref_groups.get(g, (float("nan"), 0))[0], count, subgroup=f"group{g}")
    assert math.isfinite(got["worst_group_accuracy"])


def test_robustness(qclip):
    if qclip.dataset_kind == "spurious":
        _spurious(qclip)
    else:
        _corruptions(qclip)
