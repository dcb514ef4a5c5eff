"""Batched encoding of images and texts, through the cache.

Work is done once: a dataset's images are decoded and preprocessed once per preprocessing config
(kept in memory for the session and, when small, in the cache); image embeddings are computed once per
(model, quantizer, dataset, corruption) and shared by every benchmark that reads them; text embeddings
once per (model, quantizer, prompt list). The model is built lazily through a factory, so a cache hit
never loads or quantizes a model.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .cache import Cache, library_versions

__all__ = ["EmbedKey", "Embedder", "preprocess_id", "texts_digest"]

#: datasets whose preprocessed pixels are at most this many bytes are cached on disk too
PIXEL_CACHE_MAX_BYTES = 1 << 30
#: preprocessed pixels kept in memory across cells (most recently used datasets first); cells of one
#: (model, quantizer) run together and walk every dataset, so the whole synthetic world (~0.2 GiB) stays
PIXEL_MEMORY_BYTES = 2 << 30


def preprocess_id(preprocess) -> str:
    """A stable id of a preprocessing pipeline (its repr lists sizes, interpolation, mean/std)."""
    ident = getattr(preprocess, "qclip_id", None) or repr(preprocess)
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EmbedKey:
    """What identifies a (model, quantizer) pair in the cache."""

    model_spec: str
    weights_digest: str
    quantizer: str
    quantizer_config: str  # canonical JSON
    device: str
    matmul_precision: str = "highest"  # torch.set_float32_matmul_precision; 'high' = TF32 on GPUs
    compile: bool = False  # --qclip-compile: towers run through torch.compile

    def parts(self) -> dict:
        v = library_versions()
        parts = {
            "model": self.model_spec, "weights": self.weights_digest, "quantizer": self.quantizer,
            # the device type, not its index: workers on cuda:0 and cuda:1 compute the same embeddings
            "qconfig": self.quantizer_config, "device": torch.device(self.device).type,
            "libs": {k: v[k] for k in ("torch", "open_clip_torch", "transformers", "bitsandbytes", "torchao")},
        }
        if self.matmul_precision != "highest":  # exact-fp32 keys stay as they were
            parts["matmul_precision"] = self.matmul_precision
        if self.compile:  # eager keys stay as they were
            parts["compile"] = "torch.compile"
        return parts


def _pixel_dtype(model) -> torch.dtype:
    return getattr(model, "compute_dtype", torch.float32)


@dataclass
class Embedder:
    """Computes and caches embeddings. One per session (per xdist worker)."""

    cache: Cache
    device: str = "cpu"
    batch_size: int = 256
    num_workers: int = 0
    progress: bool = True
    _pixels: OrderedDict = field(default_factory=OrderedDict)
    _pending: list = field(default_factory=list)
    calls: dict = field(default_factory=lambda: {"image_batches": 0, "text_batches": 0})

    # ----- pixels -------------------------------------------------------------------------------
    def pixels(self, dataset, preprocess) -> torch.Tensor:
        """All preprocessed images of ``dataset`` as one float tensor [N, 3, H, W] (CPU)."""
        pid = preprocess_id(preprocess)
        mem_key = (dataset.fingerprint(), pid)
        if mem_key in self._pixels:
            self._pixels.move_to_end(mem_key)
            return self._pixels[mem_key]
        n = len(dataset)
        parts = {"dataset": dataset.fingerprint(), "preprocess": pid}
        nbytes = n * _preprocessed_numel(preprocess) * 4  # sized on a blank image: no file is decoded twice
        if nbytes <= PIXEL_CACHE_MAX_BYTES and self.cache.contains("pixels", parts):
            tensors, _ = self.cache.get_or_compute(
                "pixels", parts, lambda: {"pixels": self._decode(dataset, preprocess)}
            )
            pix = tensors["pixels"]
        else:
            pix = self._decode(dataset, preprocess)
            if n and nbytes <= PIXEL_CACHE_MAX_BYTES:
                self._write_behind("pixels", parts, {"pixels": pix})
        self._pixels[mem_key] = pix
        # keep memory bounded: the most recent datasets up to PIXEL_MEMORY_BYTES, and always the current one
        while len(self._pixels) > 1 and sum(t.nbytes for t in self._pixels.values()) > PIXEL_MEMORY_BYTES:
            self._pixels.popitem(last=False)
        return pix

    def _write_behind(self, kind: str, parts: dict, tensors: dict) -> None:
        """Store a cache entry from a background thread (under the entry's lock, no read-back), so the
        write overlaps the encoding that follows; :meth:`flush` waits for it."""
        import threading

        cache = self.cache

        def write():
            cache.put(kind, parts, tensors, {"n": int(next(iter(tensors.values())).shape[0])})

        cache.stats.misses += 1
        cache.stats.computed[kind] = cache.stats.computed.get(kind, 0) + 1
        t = threading.Thread(target=write, name=f"qclip-cache-{kind}", daemon=False)
        t.start()
        self._pending.append(t)

    def flush(self) -> None:
        """Wait for background cache writes."""
        while self._pending:
            self._pending.pop().join()

    def _decode(self, dataset, preprocess) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            _Preprocessed(dataset, preprocess), batch_size=self.batch_size, num_workers=self.num_workers,
            shuffle=False,
        )
        chunks = []
        for batch in tqdm(loader, desc=f"decode {dataset.name}", disable=not self.progress, leave=False):
            chunks.append(batch)
        return torch.cat(chunks) if chunks else torch.zeros(0)

    # ----- embeddings ---------------------------------------------------------------------------
    def image_embeddings(self, key: EmbedKey, model_factory: Callable, dataset,
                         transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         transform_id: str = "") -> torch.Tensor:
        """Image features [N, D] (float32, un-normalised) of ``dataset`` under (model, quantizer).

        ``transform`` (with its ``transform_id`` for the key) is applied to preprocessed pixel batches,
        e.g. an evaluation-time corruption.
        """
        # the preprocessing is a function of the model spec and library versions, both in the key, so a
        # cache hit needs no model at all
        parts = {**key.parts(), "dataset": dataset.fingerprint(), "transform": transform_id}

        def compute():
            model = model_factory()
            n = len(dataset)
            if n * _preprocessed_numel(model.preprocess) * 4 > PIXEL_MEMORY_BYTES:
                # too large to hold (ImageNet-val at 224 px is 30 GB as float32): decode and encode batch
                # by batch; such a set is decoded again for each (model, quantizer, corruption)
                batches = self._decode_batches(dataset, model.preprocess)
                return {"emb": self._encode_batches(model, batches, transform, dataset.name, n)}, {"n": n}
            pix = self.pixels(dataset, model.preprocess)
            return {"emb": self._encode_images(model, pix, transform, dataset.name)}, {"n": int(pix.shape[0])}

        try:
            tensors, _ = self.cache.get_or_compute("image-emb", parts, compute)
        finally:
            self.flush()
        return tensors["emb"]

    def text_embeddings(self, key: EmbedKey, model_factory: Callable, texts: Sequence[str]) -> torch.Tensor:
        parts = {**key.parts(), "texts": texts_digest(texts), "n_texts": len(texts)}

        def compute():
            model = model_factory()
            return {"emb": self._encode_texts(model, texts)}, {"n": len(texts)}

        tensors, _ = self.cache.get_or_compute("text-emb", parts, compute)
        return tensors["emb"]

    def _decode_batches(self, dataset, preprocess):
        """Preprocessed pixel batches of ``dataset``, decoded as they are consumed (nothing kept)."""
        yield from torch.utils.data.DataLoader(_Preprocessed(dataset, preprocess), batch_size=self.batch_size,
                                               num_workers=self.num_workers, shuffle=False)

    def _encode_images(self, model, pix: torch.Tensor, transform, name: str) -> torch.Tensor:
        batches = (pix[s:s + self.batch_size] for s in range(0, pix.shape[0], self.batch_size))
        return self._encode_batches(model, batches, transform, name, int(pix.shape[0]))

    @torch.inference_mode()
    def _encode_batches(self, model, batches, transform, name: str, total: int) -> torch.Tensor:
        dev = torch.device(self.device)
        dtype = _pixel_dtype(model)
        out = []
        pin = dev.type == "cuda"
        for batch in tqdm(batches, desc=f"encode {name}", total=-(-total // self.batch_size),
                          disable=not self.progress, leave=False):
            if transform is not None:
                batch = transform(batch)
            if pin:  # copy host->device without blocking; cast on the device (cheaper than on the host)
                batch = batch.pin_memory().to(dev, non_blocking=True).to(dtype)
            else:
                batch = batch.to(dev, dtype=dtype)
            # features stay on the device until the end: no per-batch synchronisation, so the next batch's
            # copy overlaps this batch's compute
            out.append(model.encode_image(batch).float())
            self.calls["image_batches"] += 1
        return torch.cat(out).cpu() if out else torch.zeros(0)

    @torch.inference_mode()
    def _encode_texts(self, model, texts: Sequence[str]) -> torch.Tensor:
        dev = torch.device(self.device)
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = model.tokenize(texts[start:start + self.batch_size]).to(dev)
            out.append(model.encode_text(tokens).float())
            self.calls["text_batches"] += 1
        return torch.cat(out).cpu() if out else torch.zeros(0)


def _preprocessed_numel(preprocess) -> int:
    """Elements of one preprocessed image (resize + crop fix the output size whatever the input)."""
    from PIL import Image

    return int(preprocess(Image.new("RGB", (64, 64))).numel())


class _Preprocessed(torch.utils.data.Dataset):
    def __init__(self, dataset, preprocess):
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.preprocess(self.dataset.load_image(i))
