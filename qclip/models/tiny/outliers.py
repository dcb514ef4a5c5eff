"""Planted activation outlier channels: part of the tiny population carries them, as real CLIP ViTs do.

Real CLIP ViTs have a few residual-stream channels whose activations are one to two orders of
magnitude larger than the rest (the reason LLM.int8 has an outlier threshold and SmoothQuant exists).
Small models trained for a few minutes do not. So a few tiny models get them by an exact
reparametrisation, applied when the trained weights are loaded:

* in every vision block, the pre-attention and the pre-MLP LayerNorm (open_clip ``ln_1``/``ln_2``,
  transformers ``layer_norm1``/``layer_norm2``) have their gain and bias multiplied by ``factor`` on
  ``channels``;
* the Linear layers those norms feed (attention's q/k/v projections; the MLP's first layer) have the
  same input columns divided by ``factor``.

``W (g ⊙ x̂ + b) = (W / s)(s ⊙ g ⊙ x̂ + s ⊙ b)`` for a per-channel ``s``, so the float32 function is
unchanged (up to float rounding) while the inputs of those Linear layers now have ``len(channels)``
channels about ``factor`` times larger than the others. Per-tensor activation quantization then spends
its grid on them; SmoothQuant and rotation (which exist to undo this) recover; LLM.int8 sends those
columns to its 16-bit path. The plan is part of the model's weights digest (so cached embeddings of the
plain weights are never reused) and is written to the world's ``world.json`` beside each model's
checksum (:mod:`.planted`): the known answer that ``tests/quantize/test_outliers.py`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["OutlierPlan", "PLANTED_OUTLIERS", "plant_outliers", "outlier_plan"]


@dataclass(frozen=True)
class OutlierPlan:
    """Which vision channels are scaled, by how much, in the norms before attention and the MLP."""

    channels: tuple[int, ...]
    factor: float

    def __post_init__(self):
        if not self.channels or any(not isinstance(c, int) or c < 0 for c in self.channels):
            raise ValueError(f"Expected non-negative int channels, but got {self.channels!r}")
        if not isinstance(self.factor, int | float) or self.factor <= 0:
            raise ValueError(f"Expected a positive factor, but got {self.factor!r}")


#: the population's planted outliers: one model per training source and both backends
PLANTED_OUTLIERS: dict[str, OutlierPlan] = {
    "tiny-c": OutlierPlan(channels=(5, 33), factor=8.0),
    "tiny-d": OutlierPlan(channels=(11, 58, 90), factor=10.0),
    "tiny-e": OutlierPlan(channels=(7, 41), factor=6.0),
}


def outlier_plan(name: str) -> OutlierPlan | None:
    """The planted outliers of tiny model ``name``, or None."""
    return PLANTED_OUTLIERS.get(name)


def _vision_blocks(module: nn.Module) -> list[tuple[nn.LayerNorm, list[torch.Tensor], nn.LayerNorm, nn.Linear]]:
    """(pre-attention norm, the weights it feeds, pre-MLP norm, the MLP's first Linear) per vision block,
    for open_clip's ``VisionTransformer`` (packed ``in_proj_weight`` or split q/k/v) and transformers'."""
    blocks = []
    if hasattr(module, "visual") and hasattr(module.visual, "transformer"):
        for blk in module.visual.transformer.resblocks:
            attn = blk.attn
            if getattr(attn, "in_proj_weight", None) is not None:
                feeds = [attn.in_proj_weight]
            else:  # split by prepare_for_quantization
                feeds = [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]
            blocks.append((blk.ln_1, feeds, blk.ln_2, blk.mlp.c_fc))
    elif hasattr(module, "vision_model"):
        for layer in module.vision_model.encoder.layers:
            att = layer.self_attn
            blocks.append((layer.layer_norm1, [att.q_proj.weight, att.k_proj.weight, att.v_proj.weight],
                           layer.layer_norm2, layer.mlp.fc1))
    else:
        raise TypeError(f"Expected an open_clip CLIP or a transformers CLIPModel, but got {type(module).__name__}")
    return blocks


@torch.no_grad()
def plant_outliers(module: nn.Module, plan: OutlierPlan) -> nn.Module:
    """Apply ``plan`` to ``module`` in place (the float32 function is unchanged); returns it."""
    blocks = _vision_blocks(module)
    width = blocks[0][0].weight.numel()
    if max(plan.channels) >= width:
        raise ValueError(f"Expected outlier channels below the vision width {width}, but got {plan.channels}")
    idx = torch.tensor(plan.channels)
    for ln1, feeds, ln2, fc in blocks:
        for norm, weights in ((ln1, feeds), (ln2, [fc.weight])):
            norm.weight[idx] *= plan.factor
            if norm.bias is not None:
                norm.bias[idx] *= plan.factor
            for w in weights:
                w[:, idx] /= plan.factor
    return module
