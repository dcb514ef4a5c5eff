"""Throughput cells: image and text encoding items/s, peak memory of an image pass and weight bytes, per
model × quantizer, each with the fp32 model's number as its reference.

Timed with pytest-benchmark (image encoding; its table lists these cells) on synthetic pixels at the
model's image size, through qclip's own encoding loop. Kept short on the CPU: a couple of batches.
Disabled under xdist (workers share the cores, so times are meaningless), as pytest-benchmark does.
"""

import math

import pytest

from qclip.perf.throughput import (
    encode_images,
    encode_texts,
    peak_memory,
    synthetic_pixels,
    synthetic_texts,
    time_call,
    weight_bytes,
)

pytestmark = pytest.mark.qclip(benchmark="throughput")

_FP32 = pytest.StashKey[dict]()


def _sizes(session) -> tuple[int, int, int]:
    """(batch size, images, texts): two small batches on the CPU, four full ones on CUDA."""
    bs = session.options.batch_size
    if session.options.device.startswith("cuda"):
        return bs, 4 * bs, 4 * bs
    bs = min(bs, 16)
    return bs, 2 * bs, 2 * bs


def _measure(session, model, bench=None) -> dict:
    from qclip.embed import Embedder

    device = session.options.device
    bs, n_img, n_txt = _sizes(session)
    emb = Embedder(cache=None, device=device, batch_size=bs, progress=False)
    size = int(model.preprocess(_blank()).shape[-1])
    pix = synthetic_pixels(n_img, size)
    texts = synthetic_texts(n_txt)
    if bench is not None and not getattr(bench, "disabled", False):
        bench.pedantic(encode_images, args=(emb, model, pix), rounds=3, warmup_rounds=1, iterations=1)
        img_s = n_img / bench.stats.stats.median
    else:
        img_s = time_call(lambda: encode_images(emb, model, pix), n_img, 3, 1, device).items_per_s
    txt_s = time_call(lambda: encode_texts(emb, model, texts), n_txt, 3, 1, device).items_per_s
    out, mem = peak_memory(lambda: encode_images(emb, model, pix), device)
    return {"image": img_s, "text": txt_s, "peak": mem.peak_bytes, "method": mem.method, "n_img": n_img,
            "n_txt": n_txt, "batch_size": bs, "finite": bool(out.isfinite().all()), "image_size": size}


def _blank():
    from PIL import Image

    return Image.new("RGB", (8, 8))


def _weight_bytes(qclip, quantizer: str, model) -> int:
    report = qclip.run.session.model_meta(qclip.cell.model, quantizer).get("quant_report") or {}
    return int(report.get("weight_bytes") or weight_bytes(model.module))


def test_throughput(qclip, benchmark, request):
    if hasattr(request.config, "workerinput"):
        pytest.skip("throughput cells are disabled under xdist (workers share the cores, times would be "
                    "meaningless); run them without -n: pytest bench/test_throughput.py")
    session = qclip.run.session
    model = session.pool.quantized(qclip.cell.model, qclip.cell.quantizer)
    got = _measure(session, model, benchmark)
    got_bytes = _weight_bytes(qclip, qclip.cell.quantizer, model)
    fp32_cache = request.config.stash.setdefault(_FP32, {})
    key = (qclip.cell.model, session.options.device)
    if qclip.cell.quantizer == "fp32":
        fp32_cache[key] = {**got, "bytes": got_bytes}
    if key not in fp32_cache:
        ref_model = session.pool.quantized(qclip.cell.model, "fp32")
        fp32_cache[key] = {**_measure(session, ref_model), "bytes": _weight_bytes(qclip, "fp32", ref_model)}
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
