"""Robustness cells: accuracy under evaluation-time corruptions (3 severities, fixed seed) and on
CIFAR-10-C-layout arrays (the corruptions on disk, 5 severities) with the relative change δ = (A_fp − A_q)/A_fp, worst-group accuracy on group-annotated (spurious) sets, and on those and
on CounterAnimal sets the accuracy of the normal and counter splits with the relative spurious gap (RSG), ΔRSG
and the added vulnerability of Bouguerra et al.
Covariate shift is covered by the zero-shot cells on the shift sets (ImageNet-V2/-R/-Sketch/-A,
synth-imagenet-shift)."""

import math

import pytest

from qclip import tasks
from qclip.metrics.robustness import relative_change
from qclip.metrics.spurious_gap import spurious_gap_summary
from qclip.tasks.corruptions import CORRUPTIONS, Corruption

pytestmark = pytest.mark.qclip(benchmark="robustness")


def _corruptions(qclip):
    ds = qclip.dataset
    n = len(ds)
    for name, levels in CORRUPTIONS.items():
        for severity in range(1, len(levels) + 1):
            c = Corruption(name, severity)
            ref = tasks.corrupted_top1(qclip.reference, ds, c).metrics["top1"]
            got = tasks.corrupted_top1(qclip.quantized, ds, c).metrics["top1"]
            sub = f"{name}:s{severity}"
            qclip.record("top1", got, ref, n, subgroup=sub)
            qclip.record("relative_drop", relative_change(ref, got), 0.0, n, subgroup=sub)
            assert math.isfinite(got) and 0.0 <= got <= 1.0


def _corruption_arrays(qclip):
    """A CIFAR-10-C-layout set: the corruptions are in the arrays on disk, five severities each."""
    ref = tasks.corruption_arrays(qclip.reference, qclip.dataset)
    got = tasks.corruption_arrays(qclip.quantized, qclip.dataset)
    for sub, part in got.groups.items():
        r = ref.groups[sub]["top1"]
        qclip.record("top1", part["top1"], r, part["n"], subgroup=sub)
        qclip.record("relative_drop", relative_change(r, part["top1"]) if r > 0 else float("nan"), 0.0, part["n"],
                     subgroup=sub)
        assert 0.0 <= part["top1"] <= 1.0
    assert got.groups.keys() == ref.groups.keys() and got.groups


def _spurious(qclip):
    ds = qclip.dataset
    ref = tasks.worst_group(qclip.reference, ds)
    got = tasks.worst_group(qclip.quantized, ds)
    names = {"worst_group": str(got.extra["worst_group"]), "reference_worst_group": str(ref.extra["worst_group"])}
    for metric in ("worst_group_accuracy", "average_accuracy", "mean_group_accuracy"):
        qclip.record(metric, got.metrics[metric], ref.metrics[metric], got.n, extra=names)
    for g, part in got.groups.items():
        qclip.record("group_accuracy", part["accuracy"], ref.groups.get(g, {}).get("accuracy", float("nan")),
                     part["n"], subgroup=f"group{g}")
    assert math.isfinite(got.metrics["worst_group_accuracy"])


def _spurious_gap(qclip):
    ds = qclip.dataset
    ref = tasks.spurious_gap(qclip.reference, ds)
    got = tasks.spurious_gap(qclip.quantized, ds)
    qclip.record("normal_accuracy", got.metrics["normal_accuracy"], ref.metrics["normal_accuracy"],
                 got.groups["normal"]["n"])
    qclip.record("counter_accuracy", got.metrics["counter_accuracy"], ref.metrics["counter_accuracy"],
                 got.groups["counter"]["n"])
    qclip.record("rsg", got.metrics["rsg"], ref.metrics["rsg"], got.n)
    accs = [got.metrics["normal_accuracy"], got.metrics["counter_accuracy"], ref.metrics["normal_accuracy"],
            ref.metrics["counter_accuracy"]]
    if not qclip.cell.is_reference and all(math.isfinite(a) for a in accs):  # a set read with one split has no gap
        gap = spurious_gap_summary(ref.metrics["normal_accuracy"], ref.metrics["counter_accuracy"],
                                   got.metrics["normal_accuracy"], got.metrics["counter_accuracy"])
        qclip.record("delta_rsg", gap["delta_rsg"], 0.0, got.n)
        qclip.record("vuln_add", gap["vuln_add"], 0.0, got.n)
    assert all(0.0 <= a <= 1.0 for a in accs if math.isfinite(a)) and any(math.isfinite(a) for a in accs)


def test_robustness(qclip):
    if qclip.dataset_kind == "spurious":
        _spurious(qclip)
        _spurious_gap(qclip)
    elif qclip.dataset_kind == "counteranimal":
        _spurious_gap(qclip)
    elif qclip.dataset_kind == "cifar-c":
        _corruption_arrays(qclip)
    else:
        _corruptions(qclip)
