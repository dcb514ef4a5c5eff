"""Spectral cells: SVD of the centred fp32 image features and the quantization noise on the same
images: energy per rank, noise-to-signal ratio per rank band, effective rank before and after."""

import math

import pytest

from qclip.tasks import spectral

pytestmark = pytest.mark.qclip(benchmark="spectral")


def test_spectral(qclip):
    ds = qclip.dataset
    res = spectral(qclip.reference, qclip.quantized, ds)
    n = len(ds)
    qclip.record("effective_rank", res["effective_rank_q"], res["effective_rank_ref"], n)
    qclip.record("nsr_total", res["nsr_total"], 0.0, n,
                 extra={"energy": [float(x) for x in res["energy"]],
                        "nsr_per_rank": [float(x) for x in res["nsr_per_rank"]],
                        "bands": [list(map(float, b)) for b in res["bands"]]})
    for i, value in enumerate(res["band_nsr"]):
        qclip.record("band_nsr", float(value), 0.0, n, subgroup=f"band{i}")
    assert math.isfinite(res["nsr_total"]) and res["nsr_total"] >= 0
