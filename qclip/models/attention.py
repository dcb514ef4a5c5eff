"""Make every linear projection of an open_clip model a real ``nn.Linear``.

open_clip keeps several projections out of reach of module-swapping quantizers:

* ``nn.MultiheadAttention`` stores Q/K/V in one raw ``in_proj_weight`` parameter and reads
  ``out_proj.weight`` directly inside ``F.multi_head_attention_forward``, so swapping ``out_proj`` for a
  bitsandbytes module either breaks or silently keeps computing in fp32;
* ``VisionTransformer.proj`` and ``CLIP.text_projection`` are raw ``nn.Parameter`` matrices applied with
  ``x @ proj``;
* ``AttentionPool2d`` (ResNet towers) passes its q/k/v/c_proj weights to ``F.multi_head_attention_forward``;
* ``Transformer.get_cast_dtype()`` reads the dtype of the first block's ``mlp.c_fc.weight``, which is
  ``int8``/``uint8`` once that layer is quantized, and ``encode_text`` then fails with "mixed dtype".

:func:`prepare_open_clip` rewrites all of these in place into numerically identical modules built from
``nn.Linear`` layers. Raw projections it cannot convert (open_clip's custom ``Attention`` class) are
listed in ``module._qclip_raw_projections`` so coverage reports can name them.
"""

from __future__ import annotations

import types
import weakref

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SplitMultiheadAttention",
    "SplitAttentionPool2d",
    "LinearHolder",
    "split_attention",
    "prepare_open_clip",
    "RAW_PROJECTIONS_ATTR",
]

#: attribute set on the prepared root module: qualified names of projections left as raw parameters
RAW_PROJECTIONS_ATTR = "_qclip_raw_projections"
_PREPARED_ATTR = "_qclip_prepared"
_RAW_PROJECTION_NAMES = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "proj",
                         "text_projection"}


def _merge_masks(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, *, n: int,
                 heads: int, q_len: int, k_len: int, dtype: torch.dtype,
                 is_causal: bool, device: torch.device) -> torch.Tensor | None:
    """One float additive mask broadcastable to ``[N, H, L, S]`` (None when nothing is masked)."""

    def as_float(mask: torch.Tensor) -> torch.Tensor:
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(mask, float("-inf"))
        return mask.to(dtype)

    out = None
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu_(1)
    if attn_mask is not None:
        out = as_float(attn_mask)
        out = out.view(n, heads, q_len, k_len) if out.dim() == 3 else out.view(1, 1, q_len, k_len)
    if key_padding_mask is not None:
        kpm = as_float(key_padding_mask).view(n, 1, 1, k_len)
        out = kpm if out is None else out + kpm
    return out


#: id(mask) -> (weak reference, version, whether it is the causal mask): each mask tensor is read once
_CAUSAL_MASKS: dict[int, tuple[weakref.ref, int, bool]] = {}


def _is_causal_mask(mask: torch.Tensor, length: int) -> bool:
    """Whether the 2-D ``mask`` is exactly the causal mask of ``length``: ``-inf`` (float) or ``True`` (bool)
    strictly above the diagonal, ``0``/``False`` elsewhere (what open_clip's text tower passes).

    Comparing the values costs a host synchronisation on CUDA, so the answer is kept per mask tensor and
    version (open_clip passes the same buffer on every call); a tensor without a version counter (made
    under ``inference_mode``) is not examined and keeps the explicit mask.
    """
    if mask.dim() != 2 or tuple(mask.shape) != (length, length) or not (mask.dtype == torch.bool
                                                                         or mask.is_floating_point()):
        return False
    try:
        version = mask._version
    except RuntimeError:  # an inference tensor: no version counter to cache against
        return False
    hit = _CAUSAL_MASKS.get(id(mask))
    if hit is not None and hit[0]() is mask and hit[1] == version:
        return hit[2]
    upper = torch.ones(length, length, dtype=torch.bool, device=mask.device).triu_(1)
    want = upper if mask.dtype == torch.bool else torch.zeros_like(mask).masked_fill_(upper, float("-inf"))
    result = bool(torch.equal(mask, want))
    if len(_CAUSAL_MASKS) > 256:  # entries of masks that are gone
        for key in [k for k, (ref, _, _) in _CAUSAL_MASKS.items() if ref() is None]:
            del _CAUSAL_MASKS[key]
    _CAUSAL_MASKS[id(mask)] = (weakref.ref(mask), version, result)
    return result


def split_attention(q_proj: nn.Module, k_proj: nn.Module, v_proj: nn.Module, out_proj: nn.Module,
                    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, num_heads: int,
                    batch_first: bool, attn_mask: torch.Tensor | None = None,
                    key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                    average_attn_weights: bool = True, is_causal: bool = False,
                    dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention with each projection applied as a module call.

    Semantics follow ``nn.MultiheadAttention.forward``: inputs ``[N, L, E]`` if ``batch_first`` else
    ``[L, N, E]`` (or unbatched ``[L, E]``); boolean masks mark positions *not* allowed to attend, float
    masks are added to the attention logits.

    Without ``need_weights`` the softmax(QK^T / sqrt(D) + mask) V step is
    ``F.scaled_dot_product_attention`` (its default scale, the dropout only in training). A mask that is
    exactly causal (open_clip's text tower), or ``is_causal`` without a mask, goes in as ``is_causal=True``
    rather than a materialised mask, so the flash kernels can take it; any other mask is passed as one
    additive float mask. The projections stay module calls, which is what the quantizers replace.
    """
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = (t.unsqueeze(1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    elif batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    # [L, N, E] from here on
    q_len, n, _ = query.shape
    k_len = key.shape[0]
    q, k, v = q_proj(query), k_proj(key), v_proj(value)
    embed = q.shape[-1]
    head_dim = embed // num_heads

    def heads(t: torch.Tensor, length: int) -> torch.Tensor:  # [len, N, E] -> [N, H, len, D]
        return t.reshape(length, n, num_heads, head_dim).permute(1, 2, 0, 3)

    q, k, v = heads(q, q_len), heads(k, k_len), heads(v, k_len)
    weights = None
    causal = (not need_weights and key_padding_mask is None and q_len == k_len
              and (_is_causal_mask(attn_mask, q_len) if attn_mask is not None else is_causal))
    mask = None if causal else _merge_masks(attn_mask, key_padding_mask, n=n, heads=num_heads, q_len=q_len,
                                            k_len=k_len, dtype=q.dtype, is_causal=is_causal, device=q.device)
    if causal:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    elif need_weights:
        logits = (q * head_dim ** -0.5) @ k.transpose(-2, -1)
        if mask is not None:
            logits = logits + mask
        weights = logits.softmax(dim=-1)
        if dropout_p > 0.0:
            out = F.dropout(weights, p=dropout_p) @ v
        else:
            out = weights @ v
        if average_attn_weights:
            weights = weights.mean(dim=1)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    out = out.permute(2, 0, 1, 3).reshape(q_len, n, embed)  # [L, N, E]
    out = out_proj(out)
    if unbatched:
        out = out.squeeze(1)
        weights = weights.squeeze(0) if weights is not None else None
    elif batch_first:
        out = out.transpose(0, 1)
    return out, weights


class SplitMultiheadAttention(nn.Module):
    """Drop-in for ``nn.MultiheadAttention`` whose q/k/v/out projections are separate ``nn.Linear``.

    Same ``forward`` signature and return value ``(output, weights or None)``; supports ``batch_first``
    either way, boolean or float ``attn_mask`` (2-D or ``[N*H, L, S]``), ``key_padding_mask``,
    ``need_weights``/``average_attn_weights``, ``is_causal`` and different ``kdim``/``vdim``.
    ``add_bias_kv`` and ``add_zero_attn`` are not supported (open_clip uses neither).
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kdim: int | None = None, vdim: int | None = None,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"Expected embed_dim divisible by num_heads, but got {embed_dim} and {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.batch_first, self.dropout = batch_first, dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> SplitMultiheadAttention:
        """An equivalent module holding copies of ``mha``'s weights (same device and dtype)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise NotImplementedError("Expected nn.MultiheadAttention without add_bias_kv/add_zero_attn, "
                                      "but got one with them")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, kdim=mha.kdim, vdim=mha.vdim, bias=bias,
                  batch_first=mha.batch_first, dropout=mha.dropout)
        ref = mha.out_proj.weight
        new.to(device=ref.device, dtype=ref.dtype)
        e = mha.embed_dim
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                wq, wk, wv = mha.in_proj_weight.split(e, dim=0)
            else:
                wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            for lin, w in zip((new.q_proj, new.k_proj, new.v_proj), (wq, wk, wv), strict=True):
                lin.weight.copy_(w)
            if bias:
                for lin, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.split(e), strict=True):
                    lin.bias.copy_(b)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
            elif new.out_proj.bias is not None:
                new.out_proj.bias.zero_()
        new.train(mha.training)
        return new

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = query if key is None else key
        value = key if value is None else value
        return split_attention(
            self.q_proj, self.k_proj, self.v_proj, self.out_proj, query, key, value,
            num_heads=self.num_heads, batch_first=self.batch_first, attn_mask=attn_mask,
            key_padding_mask=key_padding_mask, need_weights=need_weights,
            average_attn_weights=average_attn_weights, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


class SplitAttentionPool2d(nn.Module):
    """open_clip's ``AttentionPool2d`` (ResNet towers) with its projections called as modules."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.positional_embedding = pool.positional_embedding
        self.q_proj, self.k_proj, self.v_proj, self.c_proj = pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj
        self.num_heads = pool.num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        x, _ = split_attention(self.q_proj, self.k_proj, self.v_proj, self.c_proj, x, x, x,
                               num_heads=self.num_heads, batch_first=False)
        return x[0]


class LinearHolder(nn.Linear):
    """An ``nn.Linear``-typed shell around a projection module held as ``self.linear``.

    open_clip's text path applies ``text_projection`` as a module only when
    ``isinstance(text_projection, nn.Linear)``, else it computes ``x @ text_projection``. A quantizer that
    swaps the layer for a module of another class (torch.ao dynamic ``Linear``, third-party modules)
    would break that; it swaps ``holder.linear`` instead, and the holder keeps the check passing. The
    holder owns no weight and is not counted as a layer (``_qclip_holder``).
    """

    _qclip_holder = True

    def __init__(self, linear: nn.Module):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _param_to_linear(p: torch.Tensor) -> nn.Linear:
    """``x @ p`` (``p`` of shape ``[in, out]``) as an ``nn.Linear(in, out, bias=False)``."""
    d_in, d_out = p.shape
    lin = nn.Linear(d_in, d_out, bias=False, device=p.device, dtype=p.dtype)
    with torch.no_grad():
        lin.weight.copy_(p.detach().t())
    return lin


def _apply_proj_linear(module: nn.Module, args, output):
    """Forward hook of a vision tower whose ``proj`` became ``proj_linear`` (pooled, or (pooled, tokens))."""
    if isinstance(output, tuple):
        return (module.proj_linear(output[0]), *output[1:])
    return module.proj_linear(output)


def _cast_dtype_from_norm(self: nn.Module) -> torch.dtype:
    """Replacement of ``Transformer.get_cast_dtype``: the float dtype the block computes in.

    Reads the first block's ``ln_1.weight`` (never quantized; follows ``module.half()`` etc.), falling
    back to the dtype recorded at preparation time.
    """
    block = self.resblocks[0]
    norm = getattr(block, "ln_1", None)
    weight = getattr(norm, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        return weight.dtype
    return self._qclip_cast_dtype


def _patch_cast_dtype(transformer: nn.Module) -> None:
    if getattr(transformer, "_qclip_cast_dtype", None) is not None:
        return
    transformer._qclip_cast_dtype = transformer.get_cast_dtype()
    transformer.get_cast_dtype = types.MethodType(_cast_dtype_from_norm, transformer)


def prepare_open_clip(module: nn.Module) -> list[str]:
    """Rewrite an open_clip model in place so every linear projection is an ``nn.Linear``.

    Idempotent and numerically equivalent in fp32 (differences at float rounding level only):

    * every ``nn.MultiheadAttention`` becomes a :class:`SplitMultiheadAttention`;
    * every ``AttentionPool2d`` becomes a :class:`SplitAttentionPool2d`;
    * ``visual.proj`` (a ``[width, embed]`` parameter) becomes ``visual.proj_linear`` applied by a forward
      hook after the tower (``visual.proj`` is set to ``None``; ``forward_intermediates`` then returns
      unprojected features);
    * a ``text_projection`` parameter on ``CLIP`` or on a ``TextTransformer`` becomes an
      ``nn.Linear(bias=False)`` inside a :class:`LinearHolder` (open_clip's text path applies it as a
      module because the holder is an ``nn.Linear``, whatever a quantizer puts inside);
    * each ``Transformer`` with ``get_cast_dtype`` gets an instance method reading the float dtype from
      its first LayerNorm, so ``encode_text`` keeps working once ``mlp.c_fc`` is int8/4-bit.

    Returns (and stores in ``module._qclip_raw_projections``) the qualified names of projections still
    held as raw parameters, e.g. open_clip's custom ``Attention.in_proj_weight``.
    """
    if getattr(module, _PREPARED_ATTR, False):
        return list(getattr(module, RAW_PROJECTIONS_ATTR, []))
    from open_clip.model import CLIP
    from open_clip.modified_resnet import AttentionPool2d
    from open_clip.transformer import TextTransformer, VisionTransformer

    for _name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, child_name, SplitMultiheadAttention.from_mha(child))
            elif isinstance(child, AttentionPool2d):
                setattr(parent, child_name, SplitAttentionPool2d(child))

    for _name, sub in list(module.named_modules()):
        if isinstance(sub, VisionTransformer) and isinstance(getattr(sub, "proj", None), nn.Parameter):
            lin = _param_to_linear(sub.proj)
            sub.proj = None  # VisionTransformer.forward skips `pooled @ self.proj` when None
            sub.proj_linear = lin
            sub.register_forward_hook(_apply_proj_linear)
        if isinstance(sub, CLIP | TextTransformer) and isinstance(getattr(sub, "text_projection", None), nn.Parameter):
            lin = _param_to_linear(sub.text_projection)
            delattr(sub, "text_projection")  # a registered Parameter cannot be replaced by a Module directly
            sub.text_projection = LinearHolder(lin)
        if hasattr(sub, "resblocks") and hasattr(sub, "get_cast_dtype"):
            _patch_cast_dtype(sub)

    # projections still held as raw 2-D parameters (open_clip's custom Attention, CoCa's multimodal
    # text_projection...): no module-swapping quantizer reaches them, so coverage reports name them
    raw = [n for n, p in module.named_parameters()
           if p.dim() == 2 and n.rsplit(".", 1)[-1] in _RAW_PROJECTION_NAMES]
    setattr(module, RAW_PROJECTIONS_ATTR, raw)
    setattr(module, _PREPARED_ATTR, True)
    return list(raw)
