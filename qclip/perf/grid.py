"""``qclip perf --simulate-paper-grid``: time the "You Never Know" grid by simulation and extrapolate.

The grid: 8 models (ViT-B/32 OpenAI and LAION-2B; ViT-B/16 and ViT-L/14 OpenAI, LAION-2B, DataComp-XL)
× 4 settings (fp32, bnb-int8, bnb-nf4, torch-dyn-int8) over ImageNet-val (50,000), COCO-5k test (5,000
images, 25,010 captions), FACET person crops (~49,551) and FairFace-val (10,954): ~3.7 M image encodings.

Simulated with random weights of the real architectures (open_clip configs: the cost of a forward pass
does not depend on the weights, and the models sharing an architecture cost the same, so each
architecture × setting is timed once) and generated JPEGs of the datasets' real sizes, at ``fraction`` of
the images:

* decode: the generated JPEGs are decoded and preprocessed (resize 224, centre crop, normalise) by a
  DataLoader with ``workers`` processes, per dataset; images/s extrapolated to the full size;
* transfer (CUDA only): pinned host -> device copies of preprocessed batches, images/s;
* encode: the image tower (and the text tower, for the prompts and captions) of each architecture ×
  setting through qclip's Embedder loop on preprocessed pixels, items/s.

Projection (seconds): decode once per dataset and preprocessing config (qclip's pixel cache; every model
of the grid shares the OpenAI 224 px preprocessing), transfer and encode once per (model, setting,
dataset). ``sequential`` adds the stages; ``pipelined`` takes the slowest stage (what overlapping decode
and transfer with the encoder would reach); the bottleneck is the stage with the largest total.
CPU-only settings (a quantizer without CUDA kernels) are timed on the CPU and listed apart; torch-dyn-int8
runs on CUDA since qclip re-implements its kernel there (:mod:`qclip.quantize.int8_dynamic_cuda`).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .throughput import synthetic_pixels, synthetic_texts

__all__ = ["GRID_MODELS", "GRID_SETTINGS", "GRID_DATASETS", "GridDataset", "simulate_paper_grid", "project",
           "to_markdown"]

#: (model, architecture timed); random weights of the architecture stand in for the checkpoint
GRID_MODELS: tuple[tuple[str, str], ...] = (
    ("ViT-B/32 OpenAI", "ViT-B-32-quickgelu"), ("ViT-B/32 LAION-2B", "ViT-B-32"),
    ("ViT-B/16 OpenAI", "ViT-B-16-quickgelu"), ("ViT-B/16 LAION-2B", "ViT-B-16"),
    ("ViT-B/16 DataComp-XL", "ViT-B-16"),
    ("ViT-L/14 OpenAI", "ViT-L-14-quickgelu"), ("ViT-L/14 LAION-2B", "ViT-L-14"),
    ("ViT-L/14 DataComp-XL", "ViT-L-14"),
)
GRID_SETTINGS: tuple[str, ...] = ("fp32", "bnb-int8", "bnb-nf4", "torch-dyn-int8")


@dataclass(frozen=True)
class GridDataset:
    name: str
    images: int
    size: tuple[int, int]  # typical (width, height) of a file
    texts: int  # prompts or captions encoded per (model, setting)


GRID_DATASETS: tuple[GridDataset, ...] = (
    GridDataset("imagenet-val", 50_000, (500, 375), 1000 * 80),  # 1000 classes × 80 OpenAI templates
    GridDataset("coco-5k", 5_000, (640, 480), 25_010),  # Karpathy test captions
    GridDataset("facet", 49_551, (320, 480), 52 * 80),  # person crops (upright boxes), 52 classes
    GridDataset("fairface-val", 10_954, (448, 448), 200),  # padding 0.25 crops; the skew prompts
)


def _arch_of(model_arch: str) -> str:
    return model_arch.removesuffix("-quickgelu")


def _measure_decode(ds: GridDataset, n: int, workers: int, batch_size: int, root: Path, log) -> dict:
    from open_clip.transform import image_transform

    from .compare import _PlainFiles, make_jpegs

    t0 = time.perf_counter()
    paths = make_jpegs(root / ds.name, n, ds.size)
    gen_s = time.perf_counter() - t0
    pre = image_transform(224, is_train=False)
    # batches small enough that every worker gets several (a 2% sample is only a few encode batches)
    per_batch = max(1, min(batch_size, n // max(1, workers * 4)))
    loader = torch.utils.data.DataLoader(_PlainFiles(paths, pre), batch_size=per_batch, num_workers=workers,
                                         persistent_workers=workers > 0)
    # a first pass starts the worker processes (seconds each, which a 2% sample would not amortise);
    # the second, steady-state pass is what a long run decodes at
    t0 = time.perf_counter()
    sum(x.shape[0] for x in loader)
    startup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    count = sum(x.shape[0] for x in loader)
    dt = time.perf_counter() - t0
    del loader
    nbytes = sum(p.stat().st_size for p in paths)
    log(f"  decode {ds.name:<13} {n:6d} files of {ds.size[0]}x{ds.size[1]} ({nbytes / n / 1e3:.0f} kB avg): "
        f"{count / dt:8.1f} img/s with {workers} workers")
    return {"n": n, "seconds": dt, "images_per_s": count / dt, "avg_file_bytes": nbytes / n, "generate_s": gen_s,
            "first_pass_s": startup_s}


def _measure_transfer(n: int, batch_size: int, device: str) -> float:
    pix = synthetic_pixels(min(n, batch_size * 8), 224)
    batches = [pix[s:s + batch_size] for s in range(0, pix.shape[0], batch_size)]
    dev = torch.device(device)
    for b in batches[:1]:
        b.pin_memory().to(dev, non_blocking=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for b in batches:
        b.pin_memory().to(dev, non_blocking=True)
    torch.cuda.synchronize()
    return pix.shape[0] / (time.perf_counter() - t0)


def _measure_encode(base, arch: str, setting: str, device: str, n_images: int, n_texts: int, batch_size: int,
                    repeats: int, log, compile: bool = False) -> dict:
    import copy

    from ..embed import Embedder
    from ..quantize import create_quantizer
    from .throughput import time_call

    model = copy.deepcopy(base).to(device)
    model = create_quantizer(setting).quantize(model)
    if compile:  # the untimed warm-up pass compiles
        model.compile_towers()
    emb = Embedder(cache=None, device=device, batch_size=batch_size, progress=False)
    pix = synthetic_pixels(n_images, 224)
    texts = synthetic_texts(n_texts, words=12)
    warm = 1
    img = time_call(lambda: emb._encode_images(model, pix, None, "grid"), n_images, repeats, warm, device)
    txt = time_call(lambda: emb._encode_texts(model, texts), n_texts, repeats, warm, device)
    log(f"  encode {arch:<10} {setting:<15} on {device}: image {img.items_per_s:9.1f}/s  "
        f"text {txt.items_per_s:9.1f}/s")
    model = None  # free the device memory before the next setting
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"image_items_per_s": img.items_per_s, "text_items_per_s": txt.items_per_s, "device": device,
            "n_images": n_images, "n_texts": n_texts}


def simulate_paper_grid(fraction: float = 0.02, device: str | None = None, workers: int | None = None,
                        batch_size: int | None = None, encode_images: int | None = None,
                        encode_texts: int | None = None, repeats: int = 2, workdir: str | Path | None = None,
                        settings: tuple[str, ...] = GRID_SETTINGS, log: Callable[[str], None] = print,
                        compile: bool = False) -> dict:
    """Measure decode, transfer and encode rates on this machine and project the full grid (``compile``:
    the encoders' towers through torch.compile)."""
    import os
    import shutil

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if not 0 < fraction <= 1:
        raise ValueError(f"Expected 0 < fraction <= 1, but got {fraction!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    workers = workers if workers is not None else (os.cpu_count() or 1)
    batch_size = batch_size or (256 if cuda else 32)
    encode_images = encode_images or (max(batch_size * 4, 512) if cuda else 16)
    encode_texts = encode_texts or (max(batch_size * 4, 512) if cuda else 32)
    work = Path(workdir or tempfile.mkdtemp(prefix="qclip-grid-"))
    t_start = time.perf_counter()
    log(f"simulate paper grid: device {device}, {workers} decode workers, batch {batch_size}, "
        f"{fraction:.1%} of the images decoded")
    decode = {ds.name: _measure_decode(ds, max(batch_size, math.ceil(ds.images * fraction)), workers,
                                       batch_size, work, log) for ds in GRID_DATASETS}
    transfer = _measure_transfer(encode_images, batch_size, device) if cuda else None
    if transfer:
        log(f"  transfer (pinned, non-blocking) {transfer:9.1f} img/s")
    archs = sorted({_arch_of(a) for _, a in GRID_MODELS})
    encode: dict[str, dict] = {}
    from ..models.random_init import random_open_clip

    for arch in archs:
        base = random_open_clip(arch, tiny=False)
        for s in settings:
            from ..quantize import create_quantizer

            ok, reason = create_quantizer(s).available(device)
            dev = device if ok else "cpu"
            if not ok and not create_quantizer(s).available("cpu")[0]:
                encode[f"{arch}|{s}"] = {"status": reason}
                continue
            n_img = encode_images if dev == device else min(encode_images, 16)
            n_txt = encode_texts if dev == device else min(encode_texts, 32)
            try:
                encode[f"{arch}|{s}"] = _measure_encode(base, arch, s, dev, n_img, n_txt,
                                                        batch_size if dev == device else 16, repeats, log,
                                                        compile=compile)
            except Exception as exc:  # noqa: BLE001 - one failing pair is reported, not fatal
                encode[f"{arch}|{s}"] = {"status": f"{type(exc).__name__}: {exc}"[:300]}
                log(f"  encode {arch} {s}: {encode[f'{arch}|{s}']['status']}")
    if workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    result = {"device": device, "device_name": _device_name(device), "workers": workers,
              "matmul_precision": torch.get_float32_matmul_precision(), "compile": compile,
              "batch_size": batch_size, "fraction": fraction, "decode": decode, "transfer_images_per_s": transfer,
              "encode": encode, "measure_s": time.perf_counter() - t_start}
    result["projection"] = project(result)
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"{platform.processor() or platform.machine()} ({__import__('os').cpu_count()} cores)"


def project(result: dict) -> dict:
    """Projected seconds for the full grid from measured rates (see the module docstring)."""
    dec = sum(ds.images / result["decode"][ds.name]["images_per_s"] for ds in GRID_DATASETS)
    n_img = sum(ds.images for ds in GRID_DATASETS)
    n_txt = sum(ds.texts for ds in GRID_DATASETS)
    per_setting: dict[str, dict] = {}
    total_images = 0
    for _model, arch in GRID_MODELS:
        for s in GRID_SETTINGS:
            m = result["encode"].get(f"{_arch_of(arch)}|{s}", {})
            if "image_items_per_s" not in m:
                continue
            d = per_setting.setdefault(s, {"device": m["device"], "encode_s": 0.0, "transfer_s": 0.0,
                                           "image_encodings": 0})
            d["encode_s"] += n_img / m["image_items_per_s"] + n_txt / m["text_items_per_s"]
            d["image_encodings"] += n_img
            total_images += n_img
            if result.get("transfer_images_per_s") and m["device"].startswith("cuda"):
                d["transfer_s"] += n_img / result["transfer_images_per_s"]
    main = {k: v for k, v in per_setting.items() if v["device"] == result["device"]}
    cpu_only = {k: v for k, v in per_setting.items() if v["device"] != result["device"]}
    stages = {"decode": dec}
    if result.get("transfer_images_per_s"):  # measured on CUDA only
        stages["transfer"] = sum(v["transfer_s"] for v in main.values())
    stages["encode"] = sum(v["encode_s"] for v in main.values())
    bottleneck = max(stages, key=stages.get)
    return {
        "image_encodings": total_images, "images_per_model_setting": n_img, "texts_per_model_setting": n_txt,
        "stages_s": stages, "sequential_s": sum(stages.values()), "pipelined_s": max(stages.values()),
        "bottleneck": bottleneck, "per_setting": per_setting,
        "cpu_only_settings": sorted(cpu_only), "cpu_only_s": sum(v["encode_s"] for v in cpu_only.values()),
        "decode_per_model_setting_s": dec * len(GRID_MODELS) * len(GRID_SETTINGS),
    }


def _hms(s: float) -> str:
    h, rem = divmod(int(round(s)), 3600)
    return f"{h} h {rem // 60:02d} min" if h else f"{rem // 60} min {rem % 60:02d} s"


def to_markdown(result: dict) -> str:
    p = result["projection"]
    precision = result.get("matmul_precision", "highest")
    lines = [f"Paper grid on {result['device_name']} ({result['device']}), {result['workers']} decode workers, "
             f"batch {result['batch_size']}, {result['fraction']:.0%} of the images decoded "
             f"(measured in {result['measure_s']:.0f} s); {p['image_encodings']:,} image encodings projected; "
             f"float32 matmul precision {precision!r}{' (TF32)' if precision == 'high' else ''}.",
             "", "| stage | projected time |", "| --- | ---: |"]
    for k, v in p["stages_s"].items():
        lines.append(f"| {k}{' (bottleneck)' if k == p['bottleneck'] else ''} | {_hms(v)} |")
    lines += [f"| **sequential (decode, then encode)** | **{_hms(p['sequential_s'])}** |",
              f"| pipelined (slowest stage) | {_hms(p['pipelined_s'])} |"]
    if p["cpu_only_settings"]:
        lines.append(f"| CPU-only settings ({', '.join(p['cpu_only_settings'])}) on the CPU, apart | "
                     f"{_hms(p['cpu_only_s'])} |")
    lines += ["", "| architecture | setting | device | image items/s | text items/s |", "| --- | --- | --- | ---: | ---: |"]
    for key, m in result["encode"].items():
        arch, s = key.split("|")
        if "image_items_per_s" in m:
            lines.append(f"| {arch} | {s} | {m['device']} | {m['image_items_per_s']:.1f} | {m['text_items_per_s']:.1f} |")
        else:
            lines.append(f"| {arch} | {s} | – | – | {m.get('status', '')[:80]} |")
    lines += ["", "| dataset | images | decode img/s (measured, steady state) | avg JPEG |", "| --- | ---: | ---: | ---: |"]
    for ds in GRID_DATASETS:
        d = result["decode"][ds.name]
        lines.append(f"| {ds.name} | {ds.images:,} | {d['images_per_s']:.1f} | {d['avg_file_bytes'] / 1e3:.0f} kB |")
    return "\n".join(lines)
