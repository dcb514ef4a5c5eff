"""Throughput and memory of models × quantizers on one device: the cost table.

``measure_model`` times qclip's own encoding loop (the Embedder's batched, inference-mode path, the one
every cell goes through) on synthetic pixels at the model's image size and synthetic captions, and takes
the peak memory of one image pass. ``cost_table`` does it for every (model spec, quantizer) pair, marking
pairs a quantizer cannot run on the device (e.g. ``ao-int4wo``, CUDA only, on the CPU) instead of
failing, and ``to_markdown`` renders the rows.
"""

from __future__ import annotations

import copy
import gc
import json
import time
from collections.abc import Sequence

import torch

from .throughput import encode_images, encode_texts, peak_memory, synthetic_pixels, synthetic_texts, time_call

__all__ = ["measure_model", "cost_table", "to_markdown"]


def _embedder(device: str, batch_size: int):
    from ..embed import Embedder

    return Embedder(cache=None, device=device, batch_size=batch_size, progress=False)


def measure_model(model, device: str = "cpu", batch_size: int = 64, n_images: int = 128, n_texts: int = 256,
                  repeats: int = 3, warmup: int = 1) -> dict:
    """Image and text items/s (median of ``repeats``), peak memory of one image pass, weight bytes."""
    from .throughput import weight_bytes

    emb = _embedder(device, batch_size)
    size = int(getattr(model, "image_size", 0) or _image_size(model))
    pix = synthetic_pixels(n_images, size)
    texts = synthetic_texts(n_texts)
    img = time_call(lambda: encode_images(emb, model, pix), n_images, repeats, warmup, device)
    txt = time_call(lambda: encode_texts(emb, model, texts), n_texts, repeats, warmup, device)
    out, mem = peak_memory(lambda: encode_images(emb, model, pix), device)
    return {
        "image_items_per_s": img.items_per_s, "text_items_per_s": txt.items_per_s,
        "image_seconds": img.seconds, "text_seconds": txt.seconds,
        "peak_memory_bytes": mem.peak_bytes, "base_memory_bytes": mem.base_bytes, "memory_method": mem.method,
        "weight_bytes": weight_bytes(model.module), "n_images": n_images, "n_texts": n_texts,
        "batch_size": batch_size, "image_size": size, "finite": bool(torch.isfinite(out).all()),
    }


def _image_size(model) -> int:
    for t in getattr(model.preprocess, "transforms", []):
        size = getattr(t, "size", None)
        if size is not None:
            return int(size if isinstance(size, int) else size[0])
    return 224


def cost_table(specs: Sequence[str], quantizers: Sequence[str], device: str = "cpu", batch_size: int = 64,
               n_images: int = 128, n_texts: int = 256, repeats: int = 3, cache=None,
               log=print, compile: bool = False) -> list[dict]:
    """One row per (spec, quantizer): measured numbers, or ``status`` = the reason it did not run.

    ``compile``: the quantized model's towers run through torch.compile (``ClipModel.compile_towers``); the
    untimed warm-up pass compiles."""
    from ..cache import Cache
    from ..models import load_model
    from ..quantize import create_quantizer

    cache = cache or Cache(None)
    rows = []
    for spec in specs:
        t0 = time.perf_counter()
        base = load_model(spec, cache, progress=False)
        log(f"loaded {spec} in {time.perf_counter() - t0:.1f} s")
        for qname in quantizers:
            row = {"model": spec, "quantizer": qname, "device": device, "compile": compile}
            q = create_quantizer(qname)
            ok, reason = q.available(device)
            if not ok:
                row.update(status="cpu-only" if "CPU only" in reason else "unavailable", reason=reason)
                rows.append(row)
                log(f"  {qname:<15} skipped: {reason}")
                continue
            try:
                t0 = time.perf_counter()
                model = copy.deepcopy(base).to(device)
                model = q.quantize(model)
                if compile:
                    model.compile_towers()
                row["quantize_s"] = time.perf_counter() - t0
                row.update(measure_model(model, device, batch_size, n_images, n_texts, repeats))
                report = model.quant_report or {}
                row["fp32_weight_bytes"] = report.get("fp32_weight_bytes")
                row["status"] = "ok"
                log(f"  {qname:<15} img {row['image_items_per_s']:9.1f}/s  txt {row['text_items_per_s']:9.1f}/s  "
                    f"peak {row['peak_memory_bytes'] / 2**20:8.1f} MiB  weights {row['weight_bytes'] / 2**20:7.1f} MiB")
            except Exception as exc:  # a failing pair is a row, not the end of the table
                row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:300])
                log(f"  {qname:<15} error: {row['reason']}")
            finally:
                model = None
                gc.collect()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            rows.append(row)
        base = None
        gc.collect()
    return rows


def to_markdown(rows: Sequence[dict]) -> str:
    head = ("| model | quantizer | image items/s | text items/s | peak memory (MiB) | weights (MiB) | status |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | --- |")
    lines = [head]
    for r in rows:
        if r.get("status") == "ok":
            lines.append(f"| {r['model']} | {r['quantizer']} | {r['image_items_per_s']:.1f} | "
                         f"{r['text_items_per_s']:.1f} | {r['peak_memory_bytes'] / 2**20:.1f} | "
                         f"{r['weight_bytes'] / 2**20:.1f} | ok |")
        else:
            lines.append(f"| {r['model']} | {r['quantizer']} | – | – | – | – | {r.get('status')}: "
                         f"{str(r.get('reason', '')).replace('|', '/')[:120]} |")
    return "\n".join(lines)


def dump(rows: Sequence[dict], path) -> None:
    with open(path, "w") as f:
        json.dump(list(rows), f, indent=1, default=str)
