"""Timing helpers: items per second, peak memory, weight bytes, synthetic inputs.

Pure helpers with no pytest and no store: the throughput cells, ``qclip perf`` and the GPU table all
measure through them. Times are wall-clock (``time.perf_counter``) around a callable that is
synchronised on CUDA before and after; a measurement is the median over ``repeats`` runs after
``warmup`` untimed ones. Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and, on the CPU, the
peak resident set size of the process sampled every few milliseconds by a thread, minus the resident set
size before the call (what the call added; tracemalloc does not see torch's allocator).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..quantize.coverage import weight_bytes  # as stored: torchao subclasses, bnb states

__all__ = ["Timing", "time_call", "items_per_s", "PeakMemory", "peak_memory", "weight_bytes",
           "synthetic_pixels", "synthetic_texts", "encode_images", "encode_texts", "sync", "median",
           "cell_sizes", "measure_variant", "stored_weight_bytes"]


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("Expected at least one value, but got an empty sequence")
    return float(statistics.median(values))


def sync(device: str | torch.device | None) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on the CPU)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


@dataclass
class Timing:
    """Seconds of each timed run of a callable that processes ``items`` items per run."""

    items: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return median(self.seconds)

    @property
    def items_per_s(self) -> float:
        s = self.median_s
        return self.items / s if s > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "median_s": self.median_s, "items_per_s": self.items_per_s}


def time_call(fn: Callable[[], object], items: int, repeats: int = 3, warmup: int = 1,
              device: str | torch.device | None = None) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronised on CUDA)."""
    if repeats < 1:
        raise ValueError(f"Expected repeats >= 1, but got {repeats!r}")
    if warmup < 0:
        raise ValueError(f"Expected warmup >= 0, but got {warmup!r}")
    for _ in range(warmup):
        fn()
    sync(device)
    timing = Timing(items)
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        timing.seconds.append(time.perf_counter() - t0)
    return timing


def items_per_s(items: int, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"Expected seconds > 0, but got {seconds!r}")
    return items / seconds


# ----- memory ------------------------------------------------------------------------------------
def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _reset_rss_peak() -> bool:
    """Reset this process's RSS high-water mark (``VmHWM``) to its current RSS; False where the kernel
    cannot (not Linux, Linux < 4.0, or ``/proc/self/clear_refs`` not writable).

    proc(5): writing ``5`` to ``/proc/[pid]/clear_refs`` "resets the peak resident set size ('high water
    mark') to the process's current resident set size value" (since Linux 4.0).
    """
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return _rss_peak() is not None


def _rss_peak() -> int | None:
    """``VmHWM`` of ``/proc/self/status`` in bytes, or None where there is none."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class PeakMemory:
    """Peak memory of a call: ``peak_bytes`` (what the call added on top of ``base_bytes``) and how."""

    peak_bytes: int
    base_bytes: int
    method: str  # "cuda.max_memory_allocated", "rss-hwm" (the kernel's exact peak) or "rss" (sampled)


def peak_memory(fn: Callable[[], object], device: str | torch.device | None = None,
                interval_s: float = 0.002) -> tuple[object, PeakMemory]:
    """Run ``fn`` once and return ``(its result, PeakMemory)``.

    On CUDA: bytes allocated by torch at the peak minus before (``base_bytes`` = allocated before, which
    holds the model's weights). On the CPU: peak RSS during the call minus RSS before (``base_bytes``).
    On Linux the peak is the kernel's own high-water mark (``VmHWM``, reset just before the call), exact
    however briefly the memory was held and however busy the machine is (method ``rss-hwm``); elsewhere a
    thread samples RSS every ``interval_s`` (method ``rss``), which can miss a short peak.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        out = fn()
        sync(dev)
        return out, PeakMemory(int(torch.cuda.max_memory_allocated(dev) - base), int(base),
                               "cuda.max_memory_allocated")
    base = _rss()
    if _reset_rss_peak():
        out = fn()
        peak = _rss_peak()
        if peak is not None:
            return out, PeakMemory(max(0, peak - base), base, "rss-hwm")
        return out, PeakMemory(max(0, _rss() - base), base, "rss")  # /proc went away mid-call
    return _sampled_peak(fn, base, interval_s)


def _sampled_peak(fn: Callable[[], object], base: int, interval_s: float) -> tuple[object, PeakMemory]:
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            stop.wait(interval_s)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out = fn()
    finally:
        stop.set()
        t.join()
    peak[0] = max(peak[0], _rss())
    return out, PeakMemory(max(0, peak[0] - base), base, "rss")


# ----- inputs --------------------------------------------------------------------------------------
def synthetic_pixels(n: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """``n`` normalised pixel tensors ``[n, 3, S, S]`` (standard normal: what Normalize outputs)."""
    if n < 1 or image_size < 1:
        raise ValueError(f"Expected n >= 1 and image_size >= 1, but got n={n!r}, image_size={image_size!r}")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, image_size, image_size, generator=g)


_WORDS = ("a", "photo", "of", "the", "small", "large", "red", "dog", "cat", "bird", "car", "tree", "person",
          "in", "on", "street", "field", "blurry", "bright", "cropped")


def synthetic_texts(n: int, words: int = 8, seed: int = 0) -> list[str]:
    """``n`` short captions of ``words`` words (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(_WORDS), (n, words), generator=g).tolist()
    return [" ".join(_WORDS[i] for i in row) for row in idx]


def encode_images(embedder, model, pixels: torch.Tensor) -> torch.Tensor:
    """qclip's hot path on preprocessed pixels (the Embedder's batched, inference-mode loop)."""
    return embedder._encode_images(model, pixels, None, "throughput")


def encode_texts(embedder, model, texts: Sequence[str]) -> torch.Tensor:
    return embedder._encode_texts(model, list(texts))


# ----- the throughput cells' measurement (bench/test_throughput.py) ---------------------------------
def cell_sizes(session) -> tuple[int, int, int]:
    """A throughput cell's (batch size, images, texts): two small batches on the CPU, four full ones on CUDA."""
    bs = session.options.batch_size
    if session.options.device.startswith("cuda"):
        return bs, 4 * bs, 4 * bs
    bs = min(bs, 16)
    return bs, 2 * bs, 2 * bs


def measure_variant(session, model, bench=None) -> dict:
    """What a throughput cell measures for one model variant: image and text items/s through qclip's own
    encoding loop (image encoding timed by pytest-benchmark's ``bench`` when given), the peak memory of an
    image pass, and the sizes used."""
    from ..embed import Embedder

    device = session.options.device
    bs, n_img, n_txt = cell_sizes(session)
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


def stored_weight_bytes(session, spec: str, quantizer: str, model) -> int:
    """Weight bytes as stored, from the variant's quantization report (or counted on ``model``)."""
    report = session.model_meta(spec, quantizer).get("quant_report") or {}
    return int(report.get("weight_bytes") or weight_bytes(model.module))
