"""Attention through ``F.scaled_dot_product_attention`` equals the explicit softmax(QK^T / sqrt(D) + mask) V.

qclip's split attention (open_clip models after ``prepare_for_quantization``) calls SDPA with the causal
mask of the text tower as ``is_causal=True`` and any other mask as an additive float mask; transformers'
CLIP uses its ``sdpa`` attention by default. Both are compared here with the explicit math, on both
towers of the tiny architectures, with the text tower's causal mask and with padding masks.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from qclip.models import attention
from qclip.models.attention import _is_causal_mask, split_attention
from qclip.models.base import ModelInfo
from qclip.models.hf_backend import HFClipModel
from qclip.models.open_clip_backend import OpenClipModel
from qclip.models.random_init import random_open_clip
from qclip.models.tiny import TINY_MODELS, build_tiny_module, tiny_preprocess, tiny_tokenizer

TOL = {"atol": 2e-5, "rtol": 2e-5}
TEXTS = ["a photo of a red glyph", "two people on a bench", "x", ""]


def _untrained_tiny(name: str):
    spec = TINY_MODELS[name]
    cls = HFClipModel if spec.family == "hf" else OpenClipModel
    info = ModelInfo(spec=f"tiny:{name}", backend=f"tiny/{spec.family}", arch=name, source="untrained",
                     weights_digest="untrained")
    return cls(build_tiny_module(spec), tiny_tokenizer(spec), tiny_preprocess(spec), info)


def _math_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    """The definition, in float64: softmax(q k^T * scale + mask) v (bool masks: True takes part)."""
    assert dropout_p == 0.0
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q.double() * scale) @ k.double().transpose(-2, -1)
    if is_causal:
        upper = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu_(1)
        logits = logits.masked_fill(upper, float("-inf"))
    if attn_mask is not None:
        logits = (logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else logits + attn_mask.double())
    return (logits.softmax(dim=-1) @ v.double()).to(q.dtype)


def _encode(model, n: int = 3, attention_mask: bool = False):
    pixels = torch.randn(n, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    tokens = model.tokenize(TEXTS)
    with torch.inference_mode():
        img = model.encode_image(pixels)
        if attention_mask:  # transformers only: right padding masked out explicitly
            mask = torch.ones_like(tokens)
            for i, row in enumerate(tokens):
                eos = int((row == row.max()).nonzero()[0])  # the EOS token has the largest id
                mask[i, eos + 1:] = 0
            out = model.module.get_text_features(input_ids=tokens, attention_mask=mask)
            txt = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            txt = model.encode_text(tokens)
    return img, txt


OPEN_CLIP = {"tiny-a": lambda: _untrained_tiny("tiny-a"), "tiny-d": lambda: _untrained_tiny("tiny-d"),
             "random-ViT-B-32-quickgelu-tiny": lambda: random_open_clip("ViT-B-32-quickgelu", tiny=True, seed=3)}


@pytest.mark.parametrize("name", list(OPEN_CLIP))
def test_open_clip_split_attention_equals_the_math_on_both_towers(name, monkeypatch):
    model = OPEN_CLIP[name]()
    model.prepare_for_quantization()
    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        calls.append((attn_mask is None, is_causal))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    img, txt = _encode(model)
    n_vision = len(model.module.visual.transformer.resblocks)
    n_text = len(model.module.transformer.resblocks)
    # the image tower has no mask; the text tower's causal mask went in as is_causal (the flash-eligible form)
    assert calls == [(True, False)] * n_vision + [(True, True)] * n_text
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", _math_sdpa)
    ref_img, ref_txt = _encode(model)
    torch.testing.assert_close(img, ref_img, **TOL)
    torch.testing.assert_close(txt, ref_txt, **TOL)


@pytest.mark.parametrize("name", ["tiny-e", "tiny-f"])
@pytest.mark.parametrize("padding", [False, True])
def test_transformers_sdpa_equals_eager_on_both_towers(name, padding):
    model = _untrained_tiny(name)
    assert model.module.config._attn_implementation == "sdpa"  # the default qclip runs
    img, txt = _encode(model, attention_mask=padding)
    eager = copy.deepcopy(model)
    eager.module.set_attn_implementation("eager")
    ref_img, ref_txt = _encode(eager, attention_mask=padding)
    torch.testing.assert_close(img, ref_img, **TOL)
    torch.testing.assert_close(txt, ref_txt, **TOL)


def test_split_attention_equals_its_weights_path_for_every_mask():
    torch.manual_seed(0)
    e, h, length, n = 16, 2, 6, 3
    lins = [torch.nn.Linear(e, e) for _ in range(4)]
    x = torch.randn(length, n, e)
    causal = torch.full((length, length), float("-inf")).triu_(1)
    padding = torch.zeros(n, length, dtype=torch.bool)
    padding[0, -2:] = True
    cases = {"causal": {"attn_mask": causal}, "causal+padding": {"attn_mask": causal, "key_padding_mask": padding},
             "shifted": {"attn_mask": torch.full((length, length), float("-inf")).triu_(2)},
             "is_causal": {"is_causal": True}}
    for kw in cases.values():
        with torch.no_grad():
            out, _ = split_attention(*lins, x, x, x, num_heads=h, batch_first=False, **kw)
            weights_path, _ = split_attention(*lins, x, x, x, num_heads=h, batch_first=False, need_weights=True,
                                              **kw)
        torch.testing.assert_close(out, weights_path, **TOL)


def test_causal_mask_detection_is_exact_and_cached():
    length = 5
    causal = torch.full((length, length), float("-inf")).triu_(1)
    assert _is_causal_mask(causal, length) and _is_causal_mask(causal.isinf(), length)
    assert not _is_causal_mask(causal, length + 1)
    assert not _is_causal_mask(torch.zeros(length, length), length)
    assert not _is_causal_mask(torch.full((length, length), float("-inf")).triu_(2), length)
    assert not _is_causal_mask(torch.full((length, length), -1e9).triu_(1), length)  # large, not -inf
    mask = causal.clone()
    assert _is_causal_mask(mask, length)
    assert attention._CAUSAL_MASKS[id(mask)][2] is True
    mask[0, 1] = 0.0  # an in-place change bumps the version: examined again
    assert not _is_causal_mask(mask, length)
    with torch.inference_mode():
        made_here = torch.full((length, length), float("-inf")).triu_(1)
    assert not _is_causal_mask(made_here, length)  # no version counter: keeps the explicit mask
