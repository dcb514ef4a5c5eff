"""OOD-detection cells: ID = the classification set, OOD = every configured OOD set. Scores MCM
(softmax of cosine / T, T = 1), MSP, max-logit and energy; AUROC, FPR@95TPR, AUPR-In and AUPR-Out with
ID as the positive class (MCM's convention; OpenOOD makes OOD positive)."""

import math

import pytest

from qclip.tasks import ood_detection

pytestmark = pytest.mark.qclip(benchmark="ood")


def test_ood(qclip):
    ood_sets = qclip.datasets_of_kind("ood")
    if not ood_sets:
        pytest.skip("no OOD dataset configured (kind = \"ood\" in the dataset config)")
    ds = qclip.dataset
    ref = ood_detection(qclip.reference, ds, ood_sets).groups
    res = ood_detection(qclip.quantized, ds, ood_sets)
    for (ood_name, score), metrics in res.groups.items():
        for metric, value in metrics.items():
            qclip.record(f"{score}_{metric}", value, ref[(ood_name, score)][metric],
                         res.n + res.extra["n_ood"][ood_name], subgroup=ood_name)
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (ood_name, score, metric, value)
