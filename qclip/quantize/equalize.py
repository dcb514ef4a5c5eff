"""SmoothQuant-style activation equalization (Xiao et al. 2023), folded exactly into the weights.

A few activation channels of real CLIP ViTs are tens of times larger than the rest; one static scale
per tensor then spends the int8 grid on them and rounds every other channel coarsely. SmoothQuant moves
that range from the activations into the weights: for a Linear layer's input channel ``j``

    s_j = max|X_j| ** alpha / max|W_:,j| ** (1 - alpha)

(``max|X_j|`` over the calibration pairs, ``max|W_:,j|`` over every Linear reading that input), the
producer's output channel ``j`` is divided by ``s_j`` and the consumers' input column ``j`` multiplied
by it, so ``W diag(s) · diag(s)^-1 x`` computes what ``W x`` did. The producer must be something the
division folds into exactly (:mod:`._sites`): a LayerNorm's gain and bias (before attention's q/k/v,
before the MLP, before the final projection) and attention's value projection (before its out
projection: attention mixes tokens, not channels). The MLP's second layer reads a GELU, which nothing
folds through; it stays as it is, as in SmoothQuant.

:func:`smooth_model` works on a float32 model, before the simulated family swaps its Linear layers
(``w4a8-smooth``: :mod:`.simulated`); in float32 the model computes the same function afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from ._sites import find_sites

__all__ = ["smooth_model", "smooth_scales", "collect_input_absmax"]


def collect_input_absmax(model, layers: list[nn.Module], batches, scope: str) -> dict[int, torch.Tensor]:
    """Per layer (by ``id``), the largest |input| per channel over ``batches`` (float32, no grad)."""
    amax: dict[int, torch.Tensor] = {}

    def hook(mod, args):
        x = args[0].detach().float()
        a = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
        amax[id(mod)] = a if id(mod) not in amax else torch.maximum(amax[id(mod)], a)

    handles = [layer.register_forward_pre_hook(hook) for layer in {id(m): m for m in layers}.values()]
    try:
        with torch.no_grad():
            for px, tok in batches:
                if scope in ("both", "vision"):
                    model.encode_image(px)
                if scope in ("both", "text"):
                    model.encode_text(tok)
    finally:
        for h in handles:
            h.remove()
    return amax


def smooth_scales(act_absmax: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """SmoothQuant's per-channel ``s`` for an input with these |x| maxima read by these weights;
    channels never seen active (or with all-zero weights) keep ``s = 1``."""
    w = torch.stack([wt.detach().abs().amax(dim=0) for wt in weights]).amax(dim=0).float()
    a = act_absmax.float()
    s = a.clamp_min(1e-8).pow(alpha) / w.clamp_min(1e-8).pow(1 - alpha)
    ok = (a > 0) & (w > 0) & torch.isfinite(s)
    return torch.where(ok, s.clamp(1e-5, 1e5), torch.ones_like(s))


@torch.no_grad()
def smooth_model(model, batches, alpha: float = 0.5, scope: str = "both", values: bool = True) -> dict:
    """Equalize every site of ``scope`` in place (``model`` prepared, float32 ``nn.Linear`` layers);
    ``batches`` are calibration ``(pixels, tokens)``. Returns what was done, for the quantization report."""
    sites = find_sites(model, scope)
    probes = [s.sinks[0][1] for s in sites.norms] + ([s.out for s in sites.values] if values else [])
    amax = collect_input_absmax(model, probes, batches, scope)
    done = 0
    for site in sites.norms:
        a = amax.get(id(site.sinks[0][1]))
        if a is None:
            continue
        s = smooth_scales(a, [lin.weight for _, lin in site.sinks], alpha).to(site.norm.weight)
        site.norm.weight.div_(s)
        site.norm.bias.div_(s)
        for _, lin in site.sinks:
            lin.weight.mul_(s)
        done += 1
    for site in sites.values if values else []:
        a = amax.get(id(site.out))
        if a is None:
            continue
        s = smooth_scales(a, [site.out.weight], alpha).to(site.v.weight)
        site.v.weight.div_(s[:, None])
        if site.v.bias is not None:
            site.v.bias.div_(s)
        site.out.weight.mul_(s)
        done += 1
    return {"method": "smoothquant", "alpha": alpha, "sites": done, "found": sites.count()}
