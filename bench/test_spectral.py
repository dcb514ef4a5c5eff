"""Spectral cells: SVD of the centred fp32 image features and the quantization noise on the same
images: energy per rank, noise-to-signal ratio and mean SQNR (dB) per rank band, effective rank before
and after, and zero-shot top-1 within each band of the fp32 basis (where a model's class information lives)."""

import math

import pytest

from qclip.tasks import spectral

pytestmark = pytest.mark.qclip(benchmark="spectral")


def test_spectral(qclip):
    ds = qclip.dataset
    res = spectral(qclip.reference, qclip.quantized, ds)
    m, arrays, n = res.metrics, res.extra, res.n
    qclip.record("effective_rank", m["effective_rank_q"], m["effective_rank_ref"], n)
    qclip.record("nsr_total", m["nsr_total"], 0.0, n,
                 extra={"energy": [float(x) for x in arrays["energy"]],
                        "nsr_per_rank": [float(x) for x in arrays["nsr_per_rank"]],
                        "bands": [list(map(float, b)) for b in arrays["bands"]]})
    for i, value in enumerate(arrays["band_nsr"]):
        qclip.record("band_nsr", float(value), 0.0, n, subgroup=f"band{i}")
    for i, value in enumerate(arrays["band_sqnr_db"]):
        qclip.record("band_sqnr_db", float(value), None, n, subgroup=f"band{i}")  # no fp32 value: descriptive
    for i, (q, ref) in enumerate(zip(arrays["band_top1_q"], arrays["band_top1_ref"], strict=True)):
        qclip.record("band_top1", float(q), float(ref), n, subgroup=f"band{i}")
    assert math.isfinite(m["nsr_total"]) and m["nsr_total"] >= 0
