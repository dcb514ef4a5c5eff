"""prepare_open_clip: every projection an nn.Linear, numerically identical to open_clip's own modules."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from qclip.models.attention import (
    RAW_PROJECTIONS_ATTR,
    LinearHolder,
    SplitAttentionPool2d,
    SplitMultiheadAttention,
    prepare_open_clip,
)
from qclip.models.random_init import random_open_clip

ATOL = 1e-5
E, H, L, S, N = 32, 4, 7, 5, 3


def _mha(batch_first: bool, **kw) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, batch_first=batch_first, **kw).eval()
    with torch.no_grad():  # non-zero biases so a swapped bias would show
        if mha.in_proj_bias is not None:
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    return mha


def _inputs(batch_first: bool, kdim=E, vdim=E):
    g = torch.Generator().manual_seed(1)
    shape = (lambda n, length, d: (n, length, d)) if batch_first else (lambda n, length, d: (length, n, d))
    return (torch.randn(shape(N, L, E), generator=g), torch.randn(shape(N, S, kdim), generator=g),
            torch.randn(shape(N, S, vdim), generator=g))


def _causal(length: int) -> torch.Tensor:
    return torch.full((length, length), float("-inf")).triu_(1)  # what open_clip's text tower passes


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("case", ["self-no-mask", "self-causal-float", "cross-bool-mask", "key-padding",
                                  "mask-per-head", "is-causal", "need-weights", "no-bias", "kdim-vdim"])
def test_split_mha_matches_nn_multihead_attention(batch_first, case):
    kw = {"bias": False} if case == "no-bias" else {"kdim": 16, "vdim": 24} if case == "kdim-vdim" else {}
    mha = _mha(batch_first, **kw)
    split = SplitMultiheadAttention.from_mha(mha).eval()
    q, k, v = _inputs(batch_first, kw.get("kdim", E), kw.get("vdim", E))
    call = {"need_weights": False}
    if case in ("self-no-mask", "self-causal-float", "is-causal", "need-weights", "no-bias"):
        k = v = q
    if case == "self-causal-float":
        call["attn_mask"] = _causal(L)
    if case == "is-causal":
        call.update(attn_mask=_causal(L).isinf(), is_causal=True)
    if case == "cross-bool-mask":
        call["attn_mask"] = torch.rand(L, S, generator=torch.Generator().manual_seed(2)) > 0.7
        call["attn_mask"][:, 0] = False  # every query keeps one key
    if case == "key-padding":
        kpm = torch.zeros(N, S, dtype=torch.bool)
        kpm[0, -2:] = True
        call["key_padding_mask"] = kpm
    if case == "mask-per-head":
        call["attn_mask"] = torch.randn(N * H, L, S, generator=torch.Generator().manual_seed(3))
    if case == "need-weights":
        call["need_weights"] = True
    with torch.no_grad():
        ref_out, ref_w = mha(q, k, v, **call)
        out, w = split(q, k, v, **call)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    if case == "need-weights":
        torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)
    else:
        assert w is None


def test_split_mha_unbatched_input():
    mha = _mha(False)
    split = SplitMultiheadAttention.from_mha(mha).eval()
    x = torch.randn(L, E)
    with torch.no_grad():
        torch.testing.assert_close(split(x, x, x, need_weights=False)[0], mha(x, x, x, need_weights=False)[0],
                                   atol=ATOL, rtol=0)


def test_split_mha_rejects_bias_kv():
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        SplitMultiheadAttention.from_mha(nn.MultiheadAttention(E, H, add_bias_kv=True))


# ----- whole open_clip models ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def vit():
    return random_open_clip("ViT-B-32-quickgelu", tiny=True, seed=3)


def _encode(model, pixels, tokens):
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(tokens)


def test_prepare_open_clip_is_identical_on_both_towers(vit):
    pixels = torch.randn(4, 3, vit.image_size, vit.image_size, generator=torch.Generator().manual_seed(0))
    tokens = vit.tokenize(["a photo of a dog", "a cat", "", "the quick brown fox jumps over the lazy dog"])
    ref_img, ref_txt = _encode(vit, pixels, tokens)
    model = copy.deepcopy(vit)
    model.prepare_for_quantization()
    img, txt = _encode(model, pixels, tokens)
    torch.testing.assert_close(img, ref_img, atol=ATOL, rtol=0)
    torch.testing.assert_close(txt, ref_txt, atol=ATOL, rtol=0)

    m = model.module
    assert not any(isinstance(x, nn.MultiheadAttention) for x in m.modules())
    assert m.visual.proj is None and isinstance(m.visual.proj_linear, nn.Linear)
    assert isinstance(m.text_projection, LinearHolder) and type(m.text_projection.linear) is nn.Linear
    assert getattr(m, RAW_PROJECTIONS_ATTR) == []
    names = {t: [n for n, _ in layers] for t, layers in model.linear_layers().items()}
    for tower, prefix in (("image", "visual.transformer.resblocks.0"), ("text", "transformer.resblocks.0")):
        for proj in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"):
            assert f"{prefix}.{proj}" in names[tower]
    assert "visual.proj_linear" in names["image"] and "text_projection.linear" in names["text"]
    assert len(names["image"]) == len(names["text"]) == 13
    # the same parameter count, rearranged
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in vit.module.parameters())

    # idempotent, and a deep copy of a prepared model still works (hooks, patched methods)
    assert prepare_open_clip(m) == []
    again = copy.deepcopy(model)
    torch.testing.assert_close(_encode(again, pixels, tokens)[0], ref_img, atol=ATOL, rtol=0)
    assert again.module.transformer.get_cast_dtype.__self__ is again.module.transformer


@pytest.mark.filterwarnings("ignore:.*quantize_per_tensor.*:UserWarning")
def test_cast_dtype_survives_quantizing_the_first_mlp_layer(vit):
    model = copy.deepcopy(vit)
    model.prepare_for_quantization()
    t = model.module.transformer
    assert t.get_cast_dtype() == torch.float32
    block = t.resblocks[0]
    block.mlp.c_fc = torch.ao.nn.quantized.dynamic.Linear.from_float(
        _with_qconfig(block.mlp.c_fc))  # its `weight` is now a method returning a qint8 tensor
    assert t.get_cast_dtype() == torch.float32
    with pytest.raises(AttributeError):  # open_clip's own method reads c_fc.weight.dtype
        type(t).get_cast_dtype(t)
    with torch.no_grad():
        assert torch.isfinite(model.encode_text(model.tokenize(["a dog"]))).all()
    model.module.half()
    assert t.get_cast_dtype() == torch.float16  # follows a cast of the whole module


def _with_qconfig(lin):
    lin.qconfig = torch.ao.quantization.default_dynamic_qconfig
    return lin


def test_resnet_attention_pool_is_converted_and_identical():
    rn = random_open_clip("RN50", tiny=True, seed=0)
    pixels = torch.randn(2, 3, rn.image_size, rn.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = rn.encode_image(pixels)
        rn.prepare_for_quantization()
        out = rn.encode_image(pixels)
    assert isinstance(rn.module.visual.attnpool, SplitAttentionPool2d)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    names = [n for n, _ in rn.linear_layers()["image"]]
    assert {"visual.attnpool.q_proj", "visual.attnpool.c_proj"} <= set(names)


def test_projections_left_as_raw_parameters_are_reported():
    from open_clip.transformer import Attention

    holder = nn.Module()
    holder.attn = Attention(32, num_heads=4)  # open_clip's custom attention: raw in_proj_weight
    assert prepare_open_clip(holder) == ["attn.in_proj_weight"]
    assert getattr(holder, RAW_PROJECTIONS_ATTR) == ["attn.in_proj_weight"]
