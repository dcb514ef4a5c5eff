"""Where an exact reparametrisation can act on a CLIP transformer, for both backends.

SmoothQuant and the Hadamard rotation (:mod:`.equalize`, :mod:`.rotation`) change weights in pairs
so that the float32 function stays the same. They need to know, per tower, which module feeds which
Linear layers:

* :class:`NormSite`: a LayerNorm whose output goes only into these Linear layers (a block's ``ln_1`` →
  attention q/k/v, ``ln_2`` → the MLP's first layer, the final norm → the tower's projection; pooling
  between the final norm and the projection picks tokens, which commutes with a per-channel map);
* :class:`ValueSite`: attention's value projection and its output projection (attention mixes tokens,
  not channels, so a per-head map on the values' channels can be undone on the out projection's inputs);
* :class:`MlpSite`: the MLP's nonlinearity and the Linear after it (nothing folds through a GELU; a
  rotation there is applied online, after the nonlinearity).

Found by structure, after :meth:`ClipModel.prepare_for_quantization` (q/k/v/out are ``nn.Linear``):
open_clip ``ResidualAttentionBlock`` (``ln_1``, ``attn``, ``ln_2``, ``mlp.c_fc``/``gelu``/``c_proj``),
``VisionTransformer.ln_post`` → ``proj_linear``, ``ln_final`` → ``text_projection``; transformers
``CLIPEncoderLayer`` (``layer_norm1``, ``self_attn``, ``layer_norm2``, ``mlp.fc1``/``activation_fn``/``fc2``),
``post_layernorm`` → ``visual_projection``, ``final_layer_norm`` → ``text_projection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

__all__ = ["NormSite", "ValueSite", "MlpSite", "Sites", "find_sites", "TOWERS_OF_SCOPE"]

TOWERS_OF_SCOPE = {"both": ("image", "text"), "vision": ("image",), "text": ("text",)}


@dataclass
class NormSite:
    tower: str
    name: str
    norm: nn.LayerNorm
    sinks: list[tuple[str, nn.Linear]]


@dataclass
class ValueSite:
    tower: str
    name: str
    v: nn.Linear
    out: nn.Linear
    heads: int


@dataclass
class MlpSite:
    tower: str
    name: str
    parent: nn.Module  # holds the nonlinearity as attribute ``attr``
    attr: str
    sink: nn.Linear


@dataclass
class Sites:
    norms: list[NormSite] = field(default_factory=list)
    values: list[ValueSite] = field(default_factory=list)
    mlps: list[MlpSite] = field(default_factory=list)

    def count(self) -> dict:
        return {"norm": len(self.norms), "value": len(self.values), "mlp": len(self.mlps)}


def _linear(m) -> bool:
    return type(m) is nn.Linear


def _affine_ln(m) -> bool:
    return isinstance(m, nn.LayerNorm) and m.weight is not None and m.bias is not None


def _block(name: str, mod: nn.Module, tower: str, out: Sites) -> bool:
    """A transformer block of either backend; True when ``mod`` is one."""
    if hasattr(mod, "ln_1") and hasattr(mod, "attn") and hasattr(mod, "ln_2") and hasattr(mod, "mlp"):
        ln1, attn, ln2, mlp = mod.ln_1, mod.attn, mod.ln_2, mod.mlp
        fc1, fc2, act_attr = getattr(mlp, "c_fc", None), getattr(mlp, "c_proj", None), "gelu"
    elif hasattr(mod, "layer_norm1") and hasattr(mod, "self_attn") and hasattr(mod, "layer_norm2"):
        ln1, attn, ln2, mlp = mod.layer_norm1, mod.self_attn, mod.layer_norm2, mod.mlp
        fc1, fc2, act_attr = getattr(mlp, "fc1", None), getattr(mlp, "fc2", None), "activation_fn"
    else:
        return False
    qkv = [getattr(attn, p, None) for p in ("q_proj", "k_proj", "v_proj")]
    o = getattr(attn, "out_proj", None)
    heads = getattr(attn, "num_heads", None)
    if _affine_ln(ln1) and all(_linear(x) for x in qkv):
        out.norms.append(NormSite(tower, f"{name}.attn-in", ln1,
                                  [(f"{name}.{p}", x) for p, x in zip(("q", "k", "v"), qkv, strict=True)]))
    if _linear(qkv[2]) and _linear(o) and isinstance(heads, int):
        out.values.append(ValueSite(tower, f"{name}.v-out", qkv[2], o, heads))
    if _affine_ln(ln2) and _linear(fc1):
        out.norms.append(NormSite(tower, f"{name}.mlp-in", ln2, [(f"{name}.fc1", fc1)]))
    if _linear(fc2) and isinstance(getattr(mlp, act_attr, None), nn.Module):
        out.mlps.append(MlpSite(tower, f"{name}.mlp-mid", mlp, act_attr, fc2))
    return True


def _finals(module: nn.Module, out: Sites) -> None:
    """The final norm → projection pairs."""
    visual = getattr(module, "visual", None)
    if visual is not None and _affine_ln(getattr(visual, "ln_post", None)) and _linear(getattr(visual, "proj_linear", None)) \
            and getattr(visual, "attn_pool", None) is None:
        out.norms.append(NormSite("image", "visual.ln_post", visual.ln_post, [("visual.proj_linear", visual.proj_linear)]))
    holder = getattr(module, "text_projection", None)
    text_lin = getattr(holder, "linear", holder)
    if _affine_ln(getattr(module, "ln_final", None)) and _linear(text_lin):
        out.norms.append(NormSite("text", "ln_final", module.ln_final, [("text_projection", text_lin)]))
    vm, tm = getattr(module, "vision_model", None), getattr(module, "text_model", None)
    if vm is not None and _affine_ln(getattr(vm, "post_layernorm", None)) and _linear(getattr(module, "visual_projection", None)):
        out.norms.append(NormSite("image", "post_layernorm", vm.post_layernorm, [("visual_projection", module.visual_projection)]))
    if tm is not None and _affine_ln(getattr(tm, "final_layer_norm", None)) and _linear(holder):
        out.norms.append(NormSite("text", "final_layer_norm", tm.final_layer_norm, [("text_projection", holder)]))


def find_sites(model, scope: str = "both") -> Sites:
    """The reparametrisation sites of the towers of ``scope`` (``model`` prepared for quantization)."""
    keep = TOWERS_OF_SCOPE[scope]
    towers = model.towers()
    names = {id(m): n for n, m in model.module.named_modules()}
    out = Sites()
    seen: set[int] = set()
    for tower in keep:
        for root in towers.get(tower, []):
            for sub in root.modules():
                if id(sub) not in seen and _block(names.get(id(sub), "?"), sub, tower, out):
                    seen.add(id(sub))
    finals = Sites()
    _finals(model.module, finals)
    out.norms += [s for s in finals.norms if s.tower in keep]
    return out
