"""FairFace cells: MaxSkew@k / MinSkew@k / NDKL@k for race, gender and binned age over the neutral
(un)favourable prompt list, for demographic parity and equal representation, fp32 vs quantized."""

import math

import pytest

from qclip.tasks import fairface_skews

pytestmark = pytest.mark.qclip(benchmark="fairface")


def test_fairface(qclip):
    ds = qclip.dataset
    k = qclip.skew_k
    ref = fairface_skews(qclip.reference, ds, k=k).groups
    got = fairface_skews(qclip.quantized, ds, k=k)
    n = got.n
    for (attr, desired), res in got.groups.items():
        r = ref[(attr, desired)]
        extra = {"k": res["k"], "k_capped": res["k_capped"], "n_prompts": res["n_prompts"]}
        sub = attr if desired == "parity" else f"{attr}/uniform"
        kk = res["k"]
        qclip.record(f"max_skew@{kk}", res["max_skew"], r["max_skew"], n, subgroup=sub, extra=extra)
        qclip.record(f"min_skew@{kk}", res["min_skew"], r["min_skew"], n, subgroup=sub, extra=extra)
        qclip.record(f"ndkl@{kk}", res["ndkl"], r["ndkl"], n, subgroup=sub, extra=extra)
        for value, skew in res["skew_by_value"].items():
            qclip.record(f"skew@{kk}", skew, r["skew_by_value"].get(value, math.nan), n,
                         subgroup=f"{sub}/{value}")
        assert all(math.isfinite(res[m]) for m in ("max_skew", "min_skew", "ndkl"))
        assert res["ndkl"] >= 0
    qclip.check_fairness_gates()
