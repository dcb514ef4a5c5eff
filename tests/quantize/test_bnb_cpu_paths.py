"""bitsandbytes' hardware-chosen CPU paths, each forced, over every layer shape qclip builds.

bitsandbytes picks CPU kernels by the CPU it runs on:

* 4-bit: on a CPU with AVX512-BF16, ``Linear4bit`` repacks its weight for a fused bfloat16 kernel
  (*packed*), which only takes some shapes; elsewhere it dequantizes and calls ``F.linear`` (*generic*).
* 4-bit dequantization: a native kernel, or a Python fallback for odd shapes / huge blocks.
* LLM.int8: ``torch._int_mm`` where torch reports AVX512, else an fp32 matmul rounded to int32.

A suite run on one CPU sees one of each. These tests force every path, whatever the CPU, on the six tiny
architectures (both backends) and the random-init architectures the tests use. The one thing that
cannot be forced is *executing* the packed kernel on a CPU without AVX512-BF16 (it would be an illegal
instruction); its shape rule is checked on every CPU against bitsandbytes' own repacking code.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

bnb = pytest.importorskip("bitsandbytes")

from qclip.models.base import ModelInfo  # noqa: E402
from qclip.models.hf_backend import HFClipModel  # noqa: E402
from qclip.models.open_clip_backend import OpenClipModel  # noqa: E402
from qclip.models.random_init import random_hf, random_open_clip  # noqa: E402
from qclip.models.tiny import TINY_MODELS, build_tiny_module, tiny_preprocess, tiny_tokenizer  # noqa: E402
from qclip.quantize import create_quantizer, fresh_copy, weight_bytes  # noqa: E402
from qclip.quantize.bnb import (  # noqa: E402
    KernelPathWarning,
    cpu_has_packed_kernel,
    packed_kernel_fits,
    resolve_cpu_kernel,
)

FOUR_BIT = ["bnb-nf4", "bnb-fp4"]
PACKED_HERE = cpu_has_packed_kernel()
NO_PACKED_REASON = ("this CPU has no AVX512-BF16, so bitsandbytes' packed 4-bit kernel cannot execute here; "
                    "its shape rule is still checked by test_shape_rule_matches_bitsandbytes_repacking")


def _untrained_tiny(name: str):
    spec = TINY_MODELS[name]
    cls = HFClipModel if spec.family == "hf" else OpenClipModel
    info = ModelInfo(spec=f"tiny:{name}", backend=f"tiny/{spec.family}", arch=name, source="untrained",
                     weights_digest="untrained")
    return cls(build_tiny_module(spec), tiny_tokenizer(spec), tiny_preprocess(spec), info)


MODELS = {**{name: (lambda n=name: _untrained_tiny(n)) for name in TINY_MODELS},
          "random-open_clip-B32-tiny": lambda: random_open_clip("ViT-B-32", tiny=True, seed=0),
          "random-hf-B32-tiny": lambda: random_hf(seed=0)}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    m = MODELS[request.param]()
    m.prepare_for_quantization()
    return m


def _shapes(model) -> list[tuple[int, int]]:
    return [(layer.out_features, layer.in_features)
            for layers in model.linear_layers().values() for _, layer in layers]


def _encode(model, n: int = 3):
    pixels = torch.randn(n, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(model.tokenize(["a red glyph", "two people", "x"]))


def _quantize(model, name: str, kernel: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = create_quantizer(name, cpu_kernel=kernel).quantize(fresh_copy(model))
    return q, [w for w in caught if issubclass(w.category, KernelPathWarning)]


@pytest.mark.parametrize("name", FOUR_BIT)
def test_generic_path_on_every_cpu(model, name):
    q, warned = _quantize(model, name, "generic")
    n = len(_shapes(model))
    assert q.quant_report["kernels"] == {"cpu-generic": n}
    assert all(not layer.support_avx512bf16_for_cpu for layers in q.linear_layers().values() for _, layer in layers)
    _check_runs(model, q, name)
    assert not warned


@pytest.mark.parametrize("name", FOUR_BIT)
def test_packed_path_where_the_shape_fits(model, name):
    if not PACKED_HERE:
        assert not create_quantizer(name, cpu_kernel="packed").available("cpu")[0]
        pytest.skip(NO_PACKED_REASON)
    q, warned = _quantize(model, name, "packed")
    shapes = _shapes(model)
    fits = sum(packed_kernel_fits(o, i, 64) for o, i in shapes)
    expected = {k: v for k, v in {"cpu-packed": fits, "cpu-generic": len(shapes) - fits}.items() if v}
    assert q.quant_report["kernels"] == expected
    for layers in q.linear_layers().values():
        for _, layer in layers:
            packed = getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
            assert packed == packed_kernel_fits(layer.out_features, layer.in_features, 64)
    _check_runs(model, q, name)
    assert bool(warned) == (fits < len(shapes))  # a layer left to the generic path is said aloud


def _check_runs(ref_model, q, name):
    """Full coverage, finite outputs close to fp32, and stored bytes that a forward pass does not change."""
    report = q.quant_report
    assert report["unquantized_layers"] == []
    assert all(c["quantized"] == c["total"] for c in report["coverage"].values())
    before = weight_bytes(q.module)
    assert before == report["weight_bytes"] < report["fp32_weight_bytes"]
    img, txt = _encode(q)
    ref_img, ref_txt = _encode(ref_model)
    assert weight_bytes(q.module) == before, "a forward pass changed what is stored"
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    assert F.cosine_similarity(img, ref_img).min() > 0.8 and F.cosine_similarity(txt, ref_txt).min() > 0.8


@pytest.mark.parametrize("name", FOUR_BIT)
def test_shape_rule_matches_bitsandbytes_repacking(model, name):
    """On any CPU: bitsandbytes' repacking (plain torch code) accepts exactly the shapes qclip sends it."""
    from bitsandbytes.functional import (
        _convert_weight_packed_for_cpu,
        _convert_weight_packed_for_cpu_inverse,
        quantize_4bit,
    )

    quant_type = name.removeprefix("bnb-")
    for out_f, in_f in sorted(set(_shapes(model))) + [(96, 96), (384, 96), (64, 96), (48, 64), (32, 128)]:
        w = torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(out_f * 7 + in_f))
        qw, state = quantize_4bit(w, blocksize=64, quant_type=quant_type)
        original = qw.clone()
        if packed_kernel_fits(out_f, in_f, 64):
            packed, state = _convert_weight_packed_for_cpu(qw, state)
            back, _ = _convert_weight_packed_for_cpu_inverse(packed, state)
            assert torch.equal(back, original), (out_f, in_f)
        else:
            with pytest.raises((RuntimeError, AssertionError)):
                _convert_weight_packed_for_cpu(qw, state)


def test_auto_follows_the_cpu_and_keys_the_cache(monkeypatch):
    import qclip.quantize.bnb as qb

    for has, path in ((True, "packed"), (False, "generic")):
        monkeypatch.setattr(qb, "cpu_has_packed_kernel", lambda has=has: has)
        assert resolve_cpu_kernel("auto") == path
        assert resolve_cpu_kernel("generic") == "generic"
        q = create_quantizer("bnb-nf4")
        assert q.resolved_config("cpu")["cpu_kernel"] == path
        assert f'"cpu_kernel_here":"{path}"' in q.config_json()
    monkeypatch.setattr(qb, "cpu_has_packed_kernel", lambda: False)
    ok, reason = create_quantizer("bnb-nf4", cpu_kernel="packed").available("cpu")
    assert not ok and "AVX512-BF16" in reason and "CPU" in reason
    with pytest.raises(ValueError, match="cpu_kernel"):
        create_quantizer("bnb-nf4", cpu_kernel="fast")


def test_paths_agree_on_the_weights(model):
    """Both 4-bit paths hold the same 4-bit weight: probed with the identity, every packed layer gives the
    generic layer's weight to bfloat16 precision (the packed kernel computes in bfloat16)."""
    if not PACKED_HERE:
        pytest.skip(NO_PACKED_REASON)
    gen, _ = _quantize(model, "bnb-nf4", "generic")
    pak, _ = _quantize(model, "bnb-nf4", "packed")
    for tower in ("image", "text"):
        for (_, g), (_, p) in zip(gen.linear_layers()[tower], pak.linear_layers()[tower], strict=True):
            eye = torch.eye(g.in_features)
            with torch.no_grad():
                wg, wp = g(eye), p(eye)
            scale = wg.abs().max().item()
            torch.testing.assert_close(wp, wg, rtol=0, atol=2e-2 * scale)


def _reference_dequantize(layer) -> torch.Tensor:
    """Blockwise 4-bit dequantization written out: the flat weight's codes (high nibble first), each
    block of ``blocksize`` consecutive elements times its absmax (nested absmax dequantized first)."""
    from bitsandbytes.functional import dequantize_blockwise

    state = layer.weight.quant_state
    n = state.shape.numel()
    packed = layer.weight.data.view(torch.uint8).reshape(-1)
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)[:n].long()
    absmax = state.absmax
    if state.nested:
        absmax = dequantize_blockwise(state.absmax, state.state2) + state.offset
    block = torch.arange(n) // state.blocksize
    return (state.code[codes] * absmax.float()[block]).reshape(state.shape)


@pytest.mark.parametrize("double_quant", [False, True])
def test_generic_path_computes_the_blockwise_dequantized_weight(model, double_quant):
    """Every generic layer, whatever its shape, computes ``x @ W_dq.T + b`` with W_dq the blockwise
    dequantization of its 4-bit codes. (bitsandbytes' native 2-D CPU dequantization gets layers whose
    in_features is not a multiple of the blocksize wrong on AVX512 CPUs; qclip dequantizes flat.)"""
    q = create_quantizer("bnb-nf4", cpu_kernel="generic", double_quant=double_quant).quantize(fresh_copy(model))
    g = torch.Generator().manual_seed(2)
    for layers in q.linear_layers().values():
        for _, layer in layers:
            w = _reference_dequantize(layer)
            x = torch.randn(5, layer.in_features, generator=g)
            want = F.linear(x, w, layer.bias)
            with torch.no_grad():
                torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)


def test_int8_matmul_kernels_agree(model):
    """LLM.int8's integer matmul: ``torch._int_mm`` (AVX512 CPUs) and bitsandbytes' fp32 fallback agree
    exactly on every layer shape (int32 results; exact while sums stay below 2**24)."""
    from bitsandbytes.backends.default.ops import _int8_linear_matmul_impl

    g = torch.Generator().manual_seed(0)
    for out_f, in_f in sorted(set(_shapes(model))):
        a = torch.randint(-127, 128, (17, in_f), dtype=torch.int8, generator=g)
        b = torch.randint(-127, 128, (out_f, in_f), dtype=torch.int8, generator=g)
        exact = a.long() @ b.long().t()
        assert torch.equal(_int8_linear_matmul_impl(a, b).long(), exact)
        assert torch.equal(torch._int_mm(a, b.t()).long(), exact)
