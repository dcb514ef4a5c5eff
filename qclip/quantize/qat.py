"""Quantization-aware training with learned step sizes (LSQ, Esser et al. 2020): ``w4a8-lsq``,
``w4a8-lsq-distill``, ``w4a8-rot-lsq``.

Every ``nn.Linear`` of the chosen towers becomes an :class:`LsqLinear`: weights at ``weight_bits``
(symmetric, one step per output channel or per tensor) and input activations at ``act_bits`` (symmetric,
one step per tensor), each quantized as ``round(clip(v / s, -Qn, Qp)) * s`` with a straight-through
round and a *learned* step ``s`` whose gradient is scaled by ``1 / sqrt(N * Qp)`` (``N`` the elements
one step covers), as LSQ prescribes. Steps start where post-training quantization would put them (weights:
max |w| / Qp per channel; activations: the ``act_percentile`` of |x| on the calibration pairs / Qp), so
training starts from RTN and improves on it.

Training: ``steps`` Adam steps at learning rate ``lr`` on batches of ``batch_size`` calibration pairs,
drawn with ``seed``, minimising CLIP's contrastive loss (:func:`qclip.models.base.contrastive_loss`, the
model's own logit scale, frozen); ``-distill`` adds ``distill_weight`` × the feature MSE to the float32
model's unit-normalised embeddings (:func:`qclip.models.base.feature_distillation_loss`). Weights, biases,
norms and steps of the towers in scope are trained (a tower with no Linear layer, ALIGN's convolutional
image tower, has nothing quantized and stays frozen); the other tower stays float32 and frozen. The same
seed, data and options give the same weights on one machine. A progress bar shows the loss.

The result (every weight and learned step) is cached as safetensors in qclip's cache (``qat`` entries),
keyed by the model's float32 weights, the options and the calibration set's digest: a rerun loads it
and trains nothing. The cache folder is the session's (``--qclip-cache``; the model pool sets
``cache_root``), else :func:`qclip.cache.default_cache_dir`.

``transform`` composes as in the PTQ family: ``rot`` (Hadamard rotation, :mod:`.rotation`) or ``smooth``
(:mod:`.equalize`) reparametrise the float32 model first.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._sites import TOWERS_OF_SCOPE
from ._swap import replace_named
from .base import BaseQuantizer, QuantizerSpec, _fixed, register_quantizer, register_quantizer_pattern
from .simulated import reparametrise

__all__ = ["LsqQuantizer", "LsqLinear", "QatSpec", "QatQuantizer", "NAME_RE", "DEFAULT_NAMES", "grid_names", "qat_quantizer"]

NAME_RE = re.compile(r"^w(?P<w>[2-8])a(?P<a>[4-8]|16)(?:-(?P<transform>smooth|rot))?-lsq(?P<distill>-distill)?"
                     r"(?:-(?P<scope>vision|text|both))?$")
#: bump when training changes what it computes without changing an option (the QAT cache and embeddings)
QAT_VERSION = 2  # 2: a tower with no Linear layer is not trained


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` forward, ``scale * grad`` backward."""
    return (x - x * scale).detach() + x * scale


class LsqQuantizer(nn.Module):
    """LSQ fake quantization, symmetric, with a learned step of shape ``shape`` (broadcast over the input)."""

    def __init__(self, bits: int, shape: tuple[int, ...], init: torch.Tensor | None = None, narrow: bool = True):
        super().__init__()
        self.bits = bits
        self.qp = 2 ** (bits - 1) - 1
        self.qn = self.qp if narrow else 2 ** (bits - 1)
        self.step = nn.Parameter(torch.ones(shape) if init is None else init.detach().clone().reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_step = x.numel() / max(self.step.numel(), 1)
        if x.dim() > 2 and self.step.numel() == 1:  # activations: the features of one sample
            per_step = x[0].numel()
        s = _grad_scale(self.step.clamp_min(1e-8), 1.0 / math.sqrt(per_step * self.qp))
        return _round_ste((x / s).clamp(-self.qn, self.qp)) * s

    def extra_repr(self) -> str:
        return f"bits={self.bits}, steps={tuple(self.step.shape)}"


class LsqLinear(nn.Module):
    """A Linear layer with LSQ weights and input activations (fake quantization in float32)."""

    def __init__(self, linear: nn.Linear, weight_bits: int, act_bits: int, per_channel: bool = True):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        w = self.weight.detach().abs()
        amax = w.amax(dim=1, keepdim=True) if per_channel else w.amax().reshape(1, 1)
        qp = 2 ** (weight_bits - 1) - 1
        self.weight_quant = LsqQuantizer(weight_bits, tuple(amax.shape), amax.clamp_min(1e-8) / qp)
        self.input_quant = LsqQuantizer(act_bits, (1,), narrow=False)
        self.qclip_storage = f"fake-int{weight_bits}"  # what coverage reads (float32 rounded on every call)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), self.weight_quant(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, LSQ"


@dataclass(frozen=True)
class QatSpec(QuantizerSpec):
    """QAT options; bits, transform, distillation and scope come from the name."""

    weight_bits: int = _fixed(4)
    act_bits: int = _fixed(8)
    transform: str = _fixed("none")
    distill: bool = _fixed(False)
    scope: str = _fixed("both")
    version: int = _fixed(QAT_VERSION)
    steps: int = 300
    #: 1e-4 overfits the few calibration pairs: tiny-a top-1 0.856 fp32 -> 0.800, R@1 drops of 5-9 pp on
    #: the six tiny models (past the 5 pp gate); 1e-5 keeps them within it (tiny-a 0.850)
    lr: float = 1e-5
    batch_size: int = 64
    seed: int = 0
    distill_weight: float = 1.0
    weight_granularity: str = "per-channel"
    act_percentile: float = 99.99
    smooth_alpha: float = 0.5
    rotation_seed: int = 0
    calibration_batch_size: int = 64

    def __post_init__(self):
        for name in ("steps", "batch_size", "calibration_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0 and not (name == "steps" and v == 0):
                raise ValueError(f"Expected {name} to be a positive int, but got {v!r}")
        if not isinstance(self.lr, int | float) or not self.lr > 0:
            raise ValueError(f"Expected lr > 0, but got {self.lr!r}")
        if not isinstance(self.distill_weight, int | float) or self.distill_weight < 0:
            raise ValueError(f"Expected distill_weight >= 0, but got {self.distill_weight!r}")
        if self.weight_granularity not in ("per-channel", "per-tensor"):
            raise ValueError(f"Expected weight_granularity 'per-channel' or 'per-tensor', got {self.weight_granularity!r}")
        if not 50 < self.act_percentile <= 100:
            raise ValueError(f"Expected act_percentile in (50, 100], but got {self.act_percentile!r}")


def _state_digest(module: nn.Module) -> str:
    """sha256 of a module's float32 state (names, shapes and bytes): what the QAT result was trained from."""
    h = hashlib.sha256(b"qclip-qat-init-v1\0")
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{tuple(t.shape)}\0{t.dtype}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _encode(model, pixels, tokens, scope: str):
    img = model.encode_image(pixels) if scope in ("both", "vision") else None
    txt = model.encode_text(tokens) if scope in ("both", "text") else None
    return img, txt


@torch.no_grad()
def _act_percentiles(model, layers: list[nn.Module], batches, q: float) -> dict[int, float]:
    """Per layer (by id), the mean over batches of the ``q``-th percentile of |input|."""
    got: dict[int, list[float]] = {id(m): [] for m in layers}

    def hook(mod, args):
        x = args[0].detach().abs().float().reshape(-1)
        if x.numel() > 4_000_000:
            x = x[torch.linspace(0, x.numel() - 1, 4_000_000).long()]
        got[id(mod)].append(float(torch.quantile(x, q / 100)))

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    try:
        for px, tok in batches:
            model.encode_image(px)
            model.encode_text(tok)
    finally:
        for h in handles:
            h.remove()
    return {k: sum(v) / len(v) for k, v in got.items() if v}


def _train(model, pairs, cfg: QatSpec, teacher: tuple | None, progress: bool, desc: str) -> list[float]:
    """LSQ training in place; returns the loss per step."""
    from tqdm.auto import tqdm

    from ..models.base import contrastive_loss, feature_distillation_loss

    pixels, tokens = pairs
    n = len(tokens)
    gen = torch.Generator().manual_seed(cfg.seed)
    keep = TOWERS_OF_SCOPE[cfg.scope]
    towers = model.towers()
    params, seen = [], set()
    for p in model.module.parameters():
        p.requires_grad_(False)
    for t in keep:
        roots = towers.get(t, [])
        if not any(isinstance(m, LsqLinear) for root in roots for m in root.modules()):
            continue  # a tower with no Linear layer (ALIGN's EfficientNet) has nothing quantized to train for
        for root in roots:
            for p in root.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p.requires_grad_(True))
    opt = torch.optim.Adam(params, lr=cfg.lr)
    scale = float(model.logit_scale)
    order, cursor, losses = torch.randperm(n, generator=gen), 0, []
    bs = min(cfg.batch_size, n)
    model.module.eval()  # no dropout: the same steps give the same weights
    bar = tqdm(range(cfg.steps), desc=desc, disable=None if progress else True, leave=False)
    for _ in bar:
        if cursor + bs > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor:cursor + bs]
        cursor += bs
        img, txt = model.encode_image(pixels[idx]), model.encode_text(tokens[idx])
        loss = contrastive_loss(img, txt, scale)
        if teacher is not None:
            t_img, t_txt = teacher
            if "image" in keep:
                loss = loss + cfg.distill_weight * feature_distillation_loss(img, t_img[idx])
            if "text" in keep:
                loss = loss + cfg.distill_weight * feature_distillation_loss(txt, t_txt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    for p in model.module.parameters():
        p.requires_grad_(False)
    return losses


class QatQuantizer(BaseQuantizer):
    """LSQ quantization-aware training; one instance per name (see the module doc)."""

    family = "qat"
    needs_calibration = True
    arithmetic = "simulated"  # fake quantization: float32 weights and activations rounded to the grid
    #: the cache folder of QAT results (the session's, set by the model pool), else qclip's default
    cache_root = None
    progress = True

    def __init__(self, name: str, **options):
        m = NAME_RE.match(name)
        if not m:
            raise ValueError(f"Expected a name like w4a8-lsq, w4a8-lsq-distill or w4a8-rot-lsq-vision, but got {name!r}")
        self.name = name
        w, a = int(m["w"]), int(m["a"])
        transform, distill, scope = m["transform"] or "none", bool(m["distill"]), m["scope"] or "both"
        how = {"none": "", "smooth": "SmoothQuant equalization + ", "rot": "Hadamard rotation + "}[transform]
        self.spec = QatSpec(library="torch", bits=w, weight_bits=w, act_bits=a, transform=transform,
                            distill=distill, scope=scope,
                            scheme=(f"simulated W{w}A{a} trained: {how}LSQ learned step sizes, contrastive loss"
                                    f"{' + feature-MSE distillation from fp32' if distill else ''} on the "
                                    "calibration pairs; fake-quant in float32, not integer kernels"))
        self.config = self.spec.with_options(**options)
        self.last_losses: list[float] = []

    @property
    def layers(self) -> str:
        towers = {"both": "both towers", "vision": "the vision tower only", "text": "the text tower only"}
        return f"every nn.Linear of {towers[self.config.scope]}: attention q/k/v/out, MLP, final projection"

    @property
    def quantizes(self) -> str:
        from .base import TOWER_LABELS

        return f"weights+activations (static), {TOWER_LABELS[self.config.scope]}"

    def is_target_storage(self, storage: str) -> bool:
        return storage.startswith("fake-int")

    def _cache(self):
        from ..cache import Cache

        return Cache(self.cache_root)

    def _apply(self, model, calibration) -> dict:
        cfg = self.config
        model.module.eval()
        init_digest = _state_digest(model.module)
        batches = list(calibration.batches(model, cfg.calibration_batch_size))
        teacher = None
        if cfg.distill:
            with torch.no_grad():
                feats = [(model.encode_image(px), model.encode_text(tok)) for px, tok in batches]
            teacher = (torch.cat([f[0] for f in feats]), torch.cat([f[1] for f in feats]))
        transform = reparametrise(model, cfg, batches)
        towers = model.linear_layers()
        names = [name for t in TOWERS_OF_SCOPE[cfg.scope] for name, _ in towers[t]]
        per_channel = cfg.weight_granularity == "per-channel"
        originals: dict[int, nn.Module] = {}

        def make(lin):
            new = LsqLinear(lin, cfg.weight_bits, cfg.act_bits, per_channel)
            originals[id(new)] = lin
            return new

        acts = _act_percentiles(model, [lin for name, lin in sum(towers.values(), []) if name in set(names)],
                                batches, cfg.act_percentile)
        replace_named(model.module, names, make)
        qp_a = 2 ** (cfg.act_bits - 1) - 1
        with torch.no_grad():
            for m in model.module.modules():
                if isinstance(m, LsqLinear):
                    m.input_quant.step.fill_(max(acts.get(id(originals[id(m)]), 1.0), 1e-6) / qp_a)
        parts = {"model": init_digest, "quantizer": self.name, "config": cfg.config_json(self.name),
                 "calibration": calibration.digest}

        def compute():
            pairs = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
            self.last_losses = _train(model, pairs, cfg, teacher, self.progress, f"QAT {self.name}")
            state = {k: v.detach().cpu().clone() for k, v in model.module.state_dict().items()}  # unshared
            return state, {"losses": self.last_losses[:: max(1, len(self.last_losses) // 50)]}

        state, meta = self._cache().get_or_compute("qat", parts, compute)
        model.module.load_state_dict({k: v.to(model.device) for k, v in state.items()})
        for p in model.module.parameters():
            p.requires_grad_(False)
        model.module.eval()
        losses = meta.get("losses") or []
        return {"calibration": calibration.describe(), "arithmetic": "simulated (fake-quant, float32)",
                "transform": transform, "training": {"steps": cfg.steps, "first_loss": losses[0] if losses else None,
                                                     "last_loss": losses[-1] if losses else None},
                "quantized": {"weights": cfg.weight_bits, "activations": cfg.act_bits, "scope": cfg.scope}}


def qat_quantizer(name: str, **options) -> QatQuantizer:
    """A QAT quantizer for any name matching :data:`NAME_RE`."""
    return QatQuantizer(name, **options)


def grid_names() -> list[str]:
    """The study's QAT grid: W8A8, W6A8, W4A8 × LSQ, LSQ + distillation, rotation + LSQ (both) × scopes."""
    return [f"w{w}a8{m}{'' if s == 'both' else '-' + s}" for w in (8, 6, 4)
            for m in ("-lsq", "-lsq-distill", "-rot-lsq", "-rot-lsq-distill") for s in ("both", "vision", "text")]


#: registered (listed, and run by the main job: 20-70 s of training per tiny model on 2 cores, cached)
DEFAULT_NAMES = ("w4a8-lsq",)
for _name in DEFAULT_NAMES:
    register_quantizer(name=_name)(lambda _n=_name, **opts: QatQuantizer(_n, **opts))
register_quantizer_pattern(NAME_RE, qat_quantizer)
