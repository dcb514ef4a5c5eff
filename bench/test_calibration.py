"""Calibration cells: ECE (15 equal-width bins), adaptive ECE, MCE, RMS calibration error, NLL, Brier,
over/under-confidence, ECE after temperature scaling on a held-out half, and ECE after logit-scale tuning
on the calibration pairs (where there are some); fp32 vs quantized."""

import math

import pytest

from qclip.metrics.robustness import relative_increase
from qclip.tasks import calibration

pytestmark = pytest.mark.qclip(benchmark="calibration")

METRICS = ("ece", "adaptive_ece", "mce", "rms_ce", "nll", "brier", "accuracy", "mean_confidence",
           "overconfidence", "temperature", "ece_heldout", "ece_temp_scaled")


def test_calibration(qclip):
    ds = qclip.dataset
    ref = calibration(qclip.reference, ds).metrics
    res = calibration(qclip.quantized, ds)
    got = res.metrics
    for metric in METRICS:
        qclip.record(metric, got[metric], ref[metric], res.n, extra=res.extra if metric == "ece" else None)
    if "ece_logit_tuned" in got:  # logit-scale tuning on the calibration pairs (Bouguerra et al.)
        for metric in ("logit_scale", "logit_scale_tuned", "ece_logit_tuned"):
            qclip.record(metric, got[metric], ref.get(metric), res.n)
        assert got["logit_scale_tuned"] > 0
    if ref["ece"] > 0:
        qclip.record("relative_ece_change", relative_increase(ref["ece"], got["ece"]), 0.0, res.n)
    for metric in ("ece", "adaptive_ece", "mce", "rms_ce"):
        assert 0.0 <= got[metric] <= 1.0, (metric, got[metric])
    assert math.isfinite(got["nll"]) and got["temperature"] > 0
