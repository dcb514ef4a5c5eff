"""``--qclip-compile``: towers through ``torch.compile``, off by default, part of the embedding cache key.

The compiling itself is checked with dynamo's ``eager`` backend (the graph capture and the fallbacks,
without inductor's minutes of C++ compilation on a small CPU); the option's wiring through the session,
the model pool and the cache key with the default backend, which compiles lazily on the first call.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from qclip.embed import EmbedKey
from qclip.models.random_init import random_hf, random_open_clip
from qclip.quantize import create_quantizer, fresh_copy


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    before = torch._dynamo.config.suppress_errors
    yield
    torch._dynamo.config.suppress_errors = before
    torch._dynamo.reset()


def _encode(model):
    pixels = torch.randn(3, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return model.encode_image(pixels), model.encode_text(model.tokenize(["a red glyph", "two people", "x"]))


def test_key_has_a_compile_part_only_when_on():
    off = EmbedKey("tiny:tiny-a", "d", "fp32", "{}", "cpu")
    on = EmbedKey("tiny:tiny-a", "d", "fp32", "{}", "cpu", compile=True)
    assert "compile" not in off.parts()  # the keys of eager runs stay as they were
    assert on.parts() == {**off.parts(), "compile": "torch.compile"}


@pytest.mark.parametrize("build", [lambda: random_open_clip("ViT-B-32", tiny=True, seed=0), lambda: random_hf(seed=0)],
                         ids=["open_clip", "hf"])
def test_compiled_towers_compute_the_same_and_keep_their_structure(build):
    model = build()
    model.prepare_for_quantization()
    ref = _encode(model)
    names = {t: [n for n, _ in layers] for t, layers in model.linear_layers().items()}
    assert sorted(model.compile_towers(backend="eager")) == ["image", "text"]
    assert model.compile_towers(backend="eager") == []  # idempotent
    assert all(mods[0]._compiled_call_impl is not None for mods in model.towers().values())
    assert {t: [n for n, _ in layers] for t, layers in model.linear_layers().items()} == names
    out = _encode(model)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    # a copy compiles its own modules (a compiled call is bound to the module it was made from)
    twin = copy.deepcopy(model)
    for a, b in zip(model.towers().values(), twin.towers().values(), strict=True):
        assert b[0]._compiled_call_impl is not None and b[0]._compiled_call_impl is not a[0]._compiled_call_impl
    assert all(mods[0]._compiled_call_impl is not None for mods in model.towers().values())
    torch.testing.assert_close(_encode(twin), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("quantizer", ["torch-dyn-int8", "fp16"])
def test_quantized_models_compile_or_fall_back(quantizer):
    base = random_open_clip("ViT-B-32", tiny=True, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = create_quantizer(quantizer).quantize(fresh_copy(base))
        ref = _encode(q)
        q.compile_towers(backend="eager")
        out = _encode(q)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


def test_the_session_option_reaches_the_pool_and_the_key(tmp_path):
    from qclip.run.session import ModelPool, QclipSession, SessionOptions

    assert SessionOptions().compile is False
    from qclip.cache import Cache

    pool = ModelPool(Cache(str(tmp_path)), "cpu", progress=False, compile=True)
    spec = "random:open_clip/ViT-B-32/tiny"
    fp32 = pool.quantized(spec, "fp32")
    assert fp32 is not pool.fp32(spec)  # on the CPU fp32 is shared, unless it is compiled
    assert fp32._compiled_towers == {} and pool.fp32(spec).__dict__.get("_compiled_towers") is None
    session = QclipSession(SessionOptions(cache=str(tmp_path), compile=True, progress=False))
    assert session.pool.compile and session.embed_key(spec, "fp32").compile
