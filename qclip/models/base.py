"""The one small interface every CLIP backend offers to the rest of qclip.

A :class:`ClipModel` wraps a loaded ``nn.Module`` with what an evaluation needs:
preprocessing (PIL image -> tensor), tokenization (strings -> token ids), the two
encoders and the logit scale. Quantizers work on ``model.module`` after
:meth:`ClipModel.prepare_for_quantization` has put every linear projection of both
towers into an ``nn.Linear`` (see :mod:`qclip.models.attention`), and they report
coverage per tower through :meth:`ClipModel.towers`.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClipModel", "ModelInfo", "contrastive_loss", "feature_distillation_loss"]


@dataclass
class ModelInfo:
    """Where a model came from, for the report and the cache key."""

    spec: str
    backend: str
    arch: str
    source: str  # file or directory the weights were read from ("random init" for tests)
    weights_digest: str  # content digest of the weights (cache key component)
    extra: dict = field(default_factory=dict)


class ClipModel(abc.ABC):
    """A CLIP model behind one interface, whatever the backend.

    Attributes:
        info: provenance (spec, backend, arch, weights digest).
        module: the underlying ``nn.Module`` (quantizers replace its Linear layers in place).
        image_size: side of the square input the image tower expects.
        preprocess: PIL image -> float tensor ``[3, H, W]``.
    """

    info: ModelInfo
    module: nn.Module
    image_size: int
    preprocess: Callable
    #: set by quantizers: {"quantizer": name, "coverage": {...}, "weight_bytes": int, ...}
    quant_report: dict | None = None

    # ----- text ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``[N, L]`` (int64) for the text tower."""

    # ----- encoders (un-normalised features, float32 on return) --------------------------------
    @abc.abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image features ``[N, D]`` for preprocessed pixels ``[N, 3, H, W]``."""

    @abc.abstractmethod
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text features ``[N, D]`` for token ids from :meth:`tokenize`."""

    @property
    @abc.abstractmethod
    def logit_scale(self) -> float:
        """exp of the learned temperature (100 for the OpenAI models)."""

    @property
    def logit_bias(self) -> float:
        """The bias of a sigmoid-loss model's pair logits (SigLIP: ``scale · cos + bias``); 0 for CLIP's
        softmax. A constant over classes, so softmax-based metrics do not depend on it."""
        return 0.0

    # ----- structure ---------------------------------------------------------------------------
    @abc.abstractmethod
    def towers(self) -> dict[str, list[nn.Module]]:
        """The modules of each tower, ``{"image": [...], "text": [...]}``, for coverage counts."""

    @abc.abstractmethod
    def prepare_for_quantization(self) -> None:
        """Make every linear projection an ``nn.Linear`` (idempotent, numerically identical)."""

    # ----- device -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype that inputs (pixels) are cast to before the image tower."""
        for p in self.module.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def to(self, device: str | torch.device) -> ClipModel:
        self.module.to(device)
        return self

    def linear_layers(self) -> dict[str, list[tuple[str, nn.Module]]]:
        """Per tower, the (qualified name, module) of every Linear-like leaf layer."""
        names = {id(m): n for n, m in self.module.named_modules()}
        out: dict[str, list[tuple[str, nn.Module]]] = {}
        for tower, mods in self.towers().items():
            seen = []
            for root in mods:
                for m in root.modules():
                    if _is_linear_like(m):
                        seen.append((names.get(id(m), "?"), m))
            out[tower] = seen
        return out

    #: attributes a copy shares with its original: read-only helpers, not weights
    _shared_on_copy = ("_tokenizer", "preprocess")

    def __deepcopy__(self, memo: dict) -> ClipModel:
        """Copy the weights (what a quantizer changes); share the tokenizer and the preprocessing.

        Deep-copying open_clip's BPE tokenizer (vocabulary, merges and its growing word cache) or a
        transformers tokenizer costs far more than the weights of a small model: about 0.8 s per copy,
        once per quantized variant, before this.
        """
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        compiled = self.__dict__.get("_compiled_towers")  # None, or the torch.compile arguments
        # a compiled call is bound to the original module: copy the modules uncompiled, compile the copy
        stash = [(m, m.__dict__["_compiled_call_impl"]) for m in self.module.modules()
                 if compiled is not None and m.__dict__.get("_compiled_call_impl") is not None]
        for m, _ in stash:
            m._compiled_call_impl = None
        try:
            for name, value in self.__dict__.items():
                setattr(new, name, value if name in self._shared_on_copy else copy.deepcopy(value, memo))
        finally:
            for m, call in stash:
                m._compiled_call_impl = call
        if compiled is not None:
            new._compiled_towers = None
            new.compile_towers(**compiled)
        return new

    def compile_towers(self, **compile_kwargs) -> list[str]:
        """Run the main module of each tower (the first of :meth:`towers`) through ``torch.compile``.

        In place (``nn.Module.compile``): names, parameters, buffers and hooks stay as they are, so
        coverage and byte counts do not change. A frame torch.compile cannot compile runs eagerly
        (``torch._dynamo.config.suppress_errors``, set for the process), so a quantizer whose kernels it
        cannot trace still runs. Idempotent; a deep copy is compiled again. Returns the towers compiled.
        """
        import torch._dynamo

        if self.__dict__.get("_compiled_towers") is not None:
            return []
        torch._dynamo.config.suppress_errors = True
        done = []
        for tower, mods in self.towers().items():
            if mods:
                mods[0].compile(**compile_kwargs)
                done.append(tower)
        self._compiled_towers = dict(compile_kwargs)
        return done

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.spec!r})"


def _is_linear_like(m: nn.Module) -> bool:
    """An ``nn.Linear`` or a quantized stand-in for one.

    Counted: ``nn.Linear`` and its subclasses (bitsandbytes ``Linear8bitLt``/``Linear4bit``; torchao keeps
    the ``nn.Linear`` class and swaps the weight for a tensor subclass); torch.ao's quantized and dynamic
    quantized ``Linear`` (``weight`` is a method, the weight sits in a packed-params child); and any other
    module whose class name contains "Linear" with integer ``in_features``/``out_features`` and no
    ``nn.Linear`` inside it (third-party quantizers). Not counted: ``nn.MultiheadAttention`` and packed-param
    holders such as ``LinearPackedParams``, and weightless shells marked ``_qclip_holder``
    (:class:`qclip.models.attention.LinearHolder`), whose inner layer is counted instead.
    """
    if getattr(m, "_qclip_holder", False):
        return False
    if isinstance(m, nn.Linear):
        return True
    if isinstance(m, nn.MultiheadAttention):
        return False
    cls = type(m)
    if cls.__name__ == "Linear" and cls.__module__.startswith("torch.ao.nn.quantized"):
        return True
    if "Linear" not in cls.__name__:
        return False
    if not (isinstance(getattr(m, "in_features", None), int) and isinstance(getattr(m, "out_features", None), int)):
        return False
    return not any(isinstance(c, nn.Linear) for c in m.modules() if c is not m)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP's training objective on a batch of matched pairs (row ``i`` of each is pair ``i``): the
    symmetric cross-entropy of the scaled cosine similarities (what quantization-aware training uses)."""
    logits = logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def feature_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the unit-normalised features of a student and its teacher (the
    direction is what CLIP's cosine similarities read)."""
    return F.mse_loss(F.normalize(student, dim=-1), F.normalize(teacher, dim=-1).detach(), reduction="sum") / len(student)
