"""Calibration cells: ECE (15 equal-width bins), adaptive ECE, MCE, RMS calibration error, NLL, Brier,
over/under-confidence, and ECE after temperature scaling on a held-out half; fp32 vs quantized."""

import math

import pytest

from qclip.tasks.reliability import calibration

pytestmark = pytest.mark.qclip(benchmark="calibration")

METRICS = ("ece", "adaptive_ece", "mce", "rms_ce", "nll", "brier", "accuracy", "mean_confidence",
           "overconfidence", "temperature", "ece_heldout", "ece_temp_scaled")


def test_calibration(qclip):
    ds = qclip.dataset
    ref, _ = calibration(qclip.reference, ds)
    got, extra = calibration(qclip.quantized, ds)
    for metric in METRICS:
        qclip.record(metric, got[metric], ref[metric], len(ds),
                     extra=extra if metric == "ece" else None)
    if ref["ece"] > 0:
        qclip.record("relative_ece_change", (got["ece"] - ref["ece"]) / ref["ece"], 0.0, len(ds))
    for metric in ("ece", "adaptive_ece", "mce", "rms_ce"):
        assert 0.0 <= got[metric] <= 1.0, (metric, got[metric])
    assert math.isfinite(got["nll"]) and got["temperature"] > 0
