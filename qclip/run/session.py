"""Run state of one pytest session (one per xdist worker, plus the controller's).

:class:`QclipSession` lives in ``config.stash``; it owns the cache, the data configuration, the
model pool and the embedder. Cells get a :class:`qclip.run.context.CellContext` that gives them fp32 and
quantized embeddings through the cache and a ``record`` callback; they never see the results store.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..cache import Cache
from ..embed import Embedder, EmbedKey
from ..errors import DatasetUnavailable

__all__ = ["SessionOptions", "QclipSession", "ModelPool", "EmbeddingSource"]


@dataclass
class SessionOptions:
    models: str = "tiny"
    quantizers: str = "*"
    exclude_quantizers: tuple[str, ...] = ()
    data: str | None = None
    datasets: str = "*"
    cache: str | None = None
    device: str = "cpu"
    #: torch.set_float32_matmul_precision: 'highest' (exact fp32, the default) or 'high' (TF32 on GPUs)
    matmul_precision: str = "highest"
    #: run each tower through torch.compile (ClipModel.compile_towers); part of the embedding cache key
    compile: bool = False
    batch_size: int = 256
    thresholds: dict[str, float] = field(default_factory=dict)
    min_samples: int = 25
    skew_k: int | None = None  # None: min(1000, N // 10)
    fairness_gates: tuple[tuple[str, float], ...] = ()
    #: calibration pairs for quantizers that need data: a dataset name of kind "coco", or None for the
    #: synthetic world's training pool
    calibration: str | None = None
    calibration_size: int = 1000
    calibration_seed: int = 0
    #: per-quantizer options of ``--qclip-quantizer-option NAME:KEY=VALUE`` (they key the cache like any option)
    quantizer_options: dict[str, dict[str, object]] = field(default_factory=dict)
    progress: bool = True


class ModelPool:
    """Loads each fp32 model once per process and builds quantized copies on demand (small LRUs)."""

    def __init__(self, cache: Cache, device: str, progress: bool = True, max_fp32: int = 2, max_quant: int = 1,
                 calibration: Callable[[], object] | None = None, compile: bool = False,
                 quantizer_options: dict[str, dict] | None = None):
        self.cache, self.device, self.progress = cache, device, progress
        self.quantizer_options = quantizer_options or {}
        self.compile = compile  # quantized copies (fp32 included) run their towers through torch.compile
        self.calibration = calibration  # builds the CalibrationSet on first use
        self._fp32: OrderedDict[str, object] = OrderedDict()
        self._quant: OrderedDict[tuple[str, str], object] = OrderedDict()
        self.max_fp32, self.max_quant = max_fp32, max_quant
        self.quantize_calls = 0
        self.load_calls = 0

    @staticmethod
    def _touch(lru: OrderedDict, key, limit: int, make: Callable):
        if key in lru:
            lru.move_to_end(key)
            return lru[key]
        value = make()
        lru[key] = value
        while len(lru) > limit:
            lru.popitem(last=False)
        return value

    def fp32(self, spec: str):
        from ..models import load_model

        def make():
            self.load_calls += 1
            return load_model(spec, self.cache, progress=self.progress)

        return self._touch(self._fp32, spec, self.max_fp32, make)

    def quantized(self, spec: str, quantizer: str):
        from ..quantize import create_quantizer
        from ..quantize.calibration import call_quantize

        def make():
            base = self.fp32(spec)
            model = copy.deepcopy(base)
            model.to(self.device)
            q = create_quantizer(quantizer, **self.quantizer_options.get(quantizer, {}))
            if hasattr(q, "cache_root"):  # quantizers that cache what they compute (QAT) use the session's cache
                q.cache_root, q.progress = self.cache.root, self.progress
            self.quantize_calls += 1
            data = self.calibration() if getattr(q, "needs_calibration", False) and self.calibration else None
            model = call_quantize(q, model, data)
            if self.compile:
                model.compile_towers()
            return model

        if quantizer == "fp32" and self.device == "cpu" and not self.compile:
            return self.fp32(spec)
        return self._touch(self._quant, (spec, quantizer), self.max_quant, make)


class QclipSession:
    """Options, cache, data and models for one process."""

    def __init__(self, options: SessionOptions):
        self.options = options
        if options.matmul_precision != torch.get_float32_matmul_precision():
            torch.set_float32_matmul_precision(options.matmul_precision)
        self.cache = Cache(options.cache)
        self.pool = ModelPool(self.cache, options.device, options.progress, calibration=self.calibration_set,
                              compile=options.compile, quantizer_options=options.quantizer_options)
        self._calibration = None
        self.embedder = Embedder(self.cache, device=options.device, batch_size=options.batch_size,
                                 progress=options.progress)
        self._datasets: dict[str, object] = {}
        self._keys: dict[tuple[str, str], EmbedKey] = {}
        self._meta: dict[tuple[str, str], dict] = {}
        self._data_config = None

    def counters(self) -> dict[str, int]:
        """What this process did: model loads, quantize calls, cache hits/misses, encoded batches."""
        return {
            "model_loads": self.pool.load_calls,
            "quantize_calls": self.pool.quantize_calls,
            "cache_hits": self.cache.stats.hits,
            "cache_misses": self.cache.stats.misses,
            "cache_corrupt": self.cache.stats.corrupt,
            **{f"computed_{k}": v for k, v in self.cache.stats.computed.items()},
            **self.embedder.calls,
        }

    # ----- data ---------------------------------------------------------------------------------
    @property
    def data_config(self):
        """The user's dataset config (``--qclip-data`` / ``qclip.toml``), else the synthetic world's."""
        if self._data_config is None:
            from ..data.config import DataConfig

            if self.options.data:
                self._data_config = DataConfig.load(self.options.data)
            else:
                from ..data.synthetic.location import ensure_world

                root = ensure_world(self.cache, progress=self.options.progress)
                self._data_config = DataConfig.load(root / "qclip.toml")
        return self._data_config

    def dataset(self, name: str):
        if name not in self._datasets:
            entry = self.data_config.get(name)
            ok, reason = entry.available()
            if not ok:
                raise DatasetUnavailable(reason)
            self._datasets[name] = entry.load()
        return self._datasets[name]

    def calibration_set(self):
        """The calibration pairs of quantizers that need data (built once): ``--qclip-calibration`` names a
        COCO-format set; by default, the synthetic world's training pool (the embedded default only)."""
        if self._calibration is None:
            from ..quantize.calibration import from_retrieval_set, from_training_pool

            o = self.options
            if o.calibration:
                self._calibration = from_retrieval_set(self.dataset(o.calibration), o.calibration_size,
                                                       o.calibration_seed)
            else:
                from ..data.synthetic.location import ensure_world

                root = ensure_world(self.cache, progress=o.progress)
                self._calibration = from_training_pool(root, o.calibration_size, o.calibration_seed)
        return self._calibration

    # ----- keys -----------------------------------------------------------------------------------
    def embed_key(self, spec: str, quantizer: str) -> EmbedKey:
        """The cache identity of (model, quantizer), computed once per process."""
        key = self._keys.get((spec, quantizer))
        if key is None:
            key = self._keys[(spec, quantizer)] = self._embed_key(spec, quantizer)
        return key

    def make_quantizer(self, name: str):
        """The quantizer ``name`` with this session's ``--qclip-quantizer-option`` values for it."""
        from ..quantize import create_quantizer

        return create_quantizer(name, **self.options.quantizer_options.get(name, {}))

    def _embed_key(self, spec: str, quantizer: str) -> EmbedKey:
        from ..models.loader import weights_digest_for

        q = self.make_quantizer(quantizer)
        if hasattr(q, "config_json"):
            config = q.config_json()
        else:  # a third-party quantizer implementing only the protocol: its description is its config
            config = json.dumps({"name": quantizer, "describe": q.describe()}, sort_keys=True, default=str)
        if getattr(q, "batch_dependent", False):  # its outputs depend on the batch it was computed in
            config = json.dumps({"config": config, "batch_size": self.options.batch_size}, sort_keys=True)
        if getattr(q, "needs_calibration", False):  # the data it was calibrated (or trained) on is part of it
            config = json.dumps({"config": config, "calibration": self.calibration_set().describe()},
                                sort_keys=True)
        return EmbedKey(spec, weights_digest_for(spec, self.cache), quantizer, config, self.options.device,
                        self.options.matmul_precision, compile=self.options.compile)

    def model_meta(self, spec: str, quantizer: str) -> dict:
        """Logit scale and quantization report of (model, quantizer), cached so hits load no model."""
        if (spec, quantizer) not in self._meta:
            self._meta[(spec, quantizer)] = self._model_meta(spec, quantizer)
        return self._meta[(spec, quantizer)]

    def _model_meta(self, spec: str, quantizer: str) -> dict:
        key = self.embed_key(spec, quantizer)

        def compute():
            m = self.pool.quantized(spec, quantizer)
            report = m.quant_report or {}
            return {"logit_scale": torch.tensor([m.logit_scale])}, {"quant_report": report,
                                                                      "normalize": _normalize_stats(m.preprocess)}

        tensors, meta = self.cache.get_or_compute("model-meta", key.parts(), compute)
        return {"logit_scale": float(tensors["logit_scale"][0]), **json.loads(json.dumps(meta))}


def _normalize_stats(preprocess) -> list[list[float]]:
    """(mean, std) of the Normalize step of a torchvision pipeline or an HF image processor."""
    for t in getattr(preprocess, "transforms", []):
        if type(t).__name__ == "Normalize":
            return [list(map(float, t.mean)), list(map(float, t.std))]
    proc = getattr(preprocess, "processor", None)
    if proc is not None:
        return [list(map(float, proc.image_mean)), list(map(float, proc.image_std))]
    return [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


class EmbeddingSource:
    """Embeddings of one (model, quantizer) through the cache; what :mod:`qclip.tasks` computes on
    (it implements :class:`qclip.tasks.EmbeddingSource`)."""

    def __init__(self, session: QclipSession, spec: str, quantizer: str):
        self.session, self.spec, self.quantizer = session, spec, quantizer

    def _factory(self):
        return lambda: self.session.pool.quantized(self.spec, self.quantizer)

    def image_embeddings(self, dataset, transform=None, transform_id: str = "") -> torch.Tensor:
        key = self.session.embed_key(self.spec, self.quantizer)
        return self.session.embedder.image_embeddings(key, self._factory(), dataset, transform, transform_id)

    def text_embeddings(self, texts) -> torch.Tensor:
        key = self.session.embed_key(self.spec, self.quantizer)
        return self.session.embedder.text_embeddings(key, self._factory(), list(texts))

    @property
    def logit_scale(self) -> float:
        return self.session.model_meta(self.spec, self.quantizer)["logit_scale"]

    def preprocess_stats(self) -> tuple[list[float], list[float]]:
        """(mean, std) of the model's input normalisation, for corruptions applied in pixel space."""
        return self.session.model_meta(self.spec, self.quantizer)["normalize"]

    def calibration_pairs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(image features, caption features) of the calibration pairs, for logit-scale tuning: the pairs of
        ``--qclip-calibration``, or the synthetic world's training pool for the tiny models; None for
        another model with no ``--qclip-calibration`` (nothing to fit on)."""
        if not self.session.options.calibration and not self.spec.startswith("tiny:"):
            return None
        pairs = self.session.calibration_set()
        return self.image_embeddings(pairs.images_dataset()), self.text_embeddings(pairs.captions)
