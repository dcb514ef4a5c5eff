"""Throughput cells: image and text encoding items/s, peak memory of an image pass and weight bytes, per
model × quantizer, each with the fp32 model's number as its reference.

Timed with pytest-benchmark (image encoding; its table lists these cells) on synthetic pixels at the
model's image size, through qclip's own encoding loop. Kept short on the CPU: a couple of batches.
Disabled under xdist (workers share the cores, so times are meaningless), as pytest-benchmark does.
"""

import math

import pytest

from qclip.perf.throughput import measure_variant, stored_weight_bytes

pytestmark = pytest.mark.qclip(benchmark="throughput")

_FP32 = pytest.StashKey[dict]()


def test_throughput(qclip, benchmark, request):
    if hasattr(request.config, "workerinput"):
        pytest.skip("throughput cells are disabled under xdist (workers share the cores, times would be "
                    "meaningless); run them without -n: pytest bench/test_throughput.py")
    session = qclip.session
    model = session.pool.quantized(qclip.cell.model, qclip.cell.quantizer)
    got = measure_variant(session, model, benchmark)
    got_bytes = stored_weight_bytes(session, qclip.cell.model, qclip.cell.quantizer, model)
    fp32_cache = request.config.stash.setdefault(_FP32, {})
    key = (qclip.cell.model, session.options.device)
    if qclip.cell.quantizer == "fp32":
        fp32_cache[key] = {**got, "bytes": got_bytes}
    if key not in fp32_cache:
        ref_model = session.pool.quantized(qclip.cell.model, "fp32")
        fp32_cache[key] = {**measure_variant(session, ref_model),
                           "bytes": stored_weight_bytes(session, qclip.cell.model, "fp32", ref_model)}
    ref = fp32_cache[key]
    extra = {"device": session.options.device, "batch_size": got["batch_size"], "image_size": got["image_size"],
             "memory_method": got["method"]}
    qclip.record("image_items_per_s", got["image"], ref["image"], got["n_img"], extra=extra)
    qclip.record("text_items_per_s", got["text"], ref["text"], got["n_txt"], extra=extra)
    qclip.record("peak_memory_bytes", got["peak"], ref["peak"], got["n_img"], extra=extra)
    qclip.record("weight_bytes", got_bytes, ref["bytes"], 0, extra=extra)
    assert got["finite"], f"{qclip.cell.model} {qclip.cell.quantizer}: non-finite image features"
    for k in ("image", "text"):
        assert math.isfinite(got[k]) and got[k] > 0, (k, got[k])
