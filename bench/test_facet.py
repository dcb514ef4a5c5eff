"""FACET cells: zero-shot over the person classes on person crops, recall disparity per demographic
group (gender, skin tone, age) at K = 1 and 5, fp32 reference vs quantized. Deltas are recorded, not
asserted, unless --qclip-fairness-gate turns them into assertions."""

import math

import pytest

from qclip.tasks import facet_delta_ci, facet_disparities

pytestmark = pytest.mark.qclip(benchmark="facet")


def test_facet(qclip):
    ds = qclip.dataset
    ref = facet_disparities(qclip.reference, ds, min_samples=qclip.min_samples).groups
    got = facet_disparities(qclip.quantized, ds, min_samples=qclip.min_samples)
    # each model's own uncertainty: a paired bootstrap over the persons (seeded), drawn in the forest plot
    ci = facet_delta_ci(qclip.reference, qclip.quantized, ds, min_samples=qclip.min_samples)
    n = got.n
    qualifying = 0
    for (group, k), res in got.groups.items():
        r = ref[(group, k)]
        extra = {"n_classes": res["n_classes"]}
        qclip.record(f"min_disparity@{k}", res["min"], r["min"], n, subgroup=group,
                     extra={**extra, "delta_ci": list(ci[(group, k)]["min"])})
        qclip.record(f"max_disparity@{k}", res["max"], r["max"], n, subgroup=group,
                     extra={**extra, "delta_ci": list(ci[(group, k)]["max"])})
        for cls, value in res["per_class"].items():
            qclip.record(f"disparity@{k}", value, r["per_class"].get(cls, math.nan), n,
                         subgroup=f"{group}/{ds.classnames[int(cls)]}")
        qualifying += res["n_classes"]
        for v in (res["min"], res["max"]):
            assert math.isnan(v) or -1.0 <= v <= 1.0
    if qualifying == 0:
        pytest.skip(f"no FACET class has >= {qclip.min_samples} people in both subgroups of any group "
                    f"(set --qclip-min-samples lower for small sets)")
    qclip.check_fairness_gates()
