"""Every registered quantizer on both backends (random-init tiny CLIPs, CPU).

Per (quantizer, backend): coverage of every linear projection of both towers (attention q/k/v/out and
the final projections included), finite float32 outputs from both encoders, cosine similarity to fp32
above the floors in ``cosine_floors.yaml``, fewer weight bytes for the compressing methods. A
quantizer is skipped only when its library is not installed; one that is unavailable on this device
must say why, and one whose library is present and breaks fails.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from qclip.models.random_init import random_hf, random_open_clip
from qclip.quantize import (
    QuantizerUnavailable,
    create_quantizer,
    fresh_copy,
    list_quantizers,
    weight_bytes,
)

FLOORS = yaml.safe_load((Path(__file__).parent / "cosine_floors.yaml").read_text())
BUILTINS = ["fp32", "fp16", "bf16", "bnb-int8", "bnb-nf4", "bnb-fp4", "torch-dyn-int8",
            "ao-int8wo", "ao-int8dyn", "ao-int4wo"]
TEXTS = ["a photo of a dog", "a cat", "two birds on a wire", "x y z", "a diagram of a power plant",
         "an old man smiling", "red", "the quick brown fox jumps over the lazy dog"]
LINEARS_PER_TOWER = 2 * (4 + 2) + 1  # 2 blocks x (q, k, v, out, fc, proj) + final projection


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def reference(request):
    """(fp32 prepared model, pixels, tokens, image features, text features) per backend."""
    model = random_open_clip("ViT-B-32", tiny=True, seed=0) if request.param == "open_clip" else random_hf(seed=0)
    model.prepare_for_quantization()
    pixels = torch.randn(8, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    tokens = model.tokenize(TEXTS)
    with torch.no_grad():
        img, txt = model.encode_image(pixels), model.encode_text(tokens)
    return request.param, model, pixels, tokens, img, txt


def test_every_builtin_is_registered_with_a_floor():
    assert set(BUILTINS) <= set(list_quantizers())
    assert set(BUILTINS) <= set(FLOORS)


def _library_missing(q) -> bool:
    lib = q.config.library
    return lib != "torch" and importlib.util.find_spec(lib) is None


#: options for the tiny models (64-wide layers): int4 groups must divide in_features
TINY_OPTIONS = {"ao-int4wo": {"group_size": 64}}


@pytest.mark.parametrize("name", BUILTINS)
def test_quantizer_on_both_towers(reference, name):
    _check_quantizer(reference, name, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", BUILTINS)
def test_quantizer_on_both_towers_cuda(reference, name):
    _check_quantizer(reference, name, "cuda")


def _check_quantizer(reference, name, device):
    backend, base, pixels, tokens, ref_img, ref_txt = reference
    q = create_quantizer(name, **TINY_OPTIONS.get(name, {}))
    ok, reason = q.available(device)
    if not ok:
        if _library_missing(q):
            pytest.skip(reason)
        # installed but not for this device: it must say so, and refuse to run
        assert reason and ("CUDA" in reason or "CPU" in reason), reason
        with pytest.raises(QuantizerUnavailable, match="CUDA|CPU"):
            q.quantize(fresh_copy(base).to(device))
        return

    model = q.quantize(fresh_copy(base).to(device))
    assert model.device.type == device
    with torch.no_grad():
        img = model.encode_image(pixels.to(model.device, model.compute_dtype)).cpu()
        txt = model.encode_text(tokens.to(model.device)).cpu()
    assert img.dtype == txt.dtype == torch.float32
    assert img.shape == ref_img.shape and txt.shape == ref_txt.shape
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()

    report = model.quant_report
    assert report["quantizer"] == name
    json.dumps(report)  # plain data, storable as-is
    for tower in ("image", "text"):
        cov = report["coverage"][tower]
        assert cov["total"] == LINEARS_PER_TOWER, (tower, cov)
        assert cov["quantized"] == (0 if name == "fp32" else cov["total"]), (tower, cov)
    if name == "fp32":
        assert len(report["unquantized_layers"]) == 2 * LINEARS_PER_TOWER
        assert report["weight_bytes"] == report["fp32_weight_bytes"]
    else:
        assert report["unquantized_layers"] == []
        assert report["weight_bytes"] < report["fp32_weight_bytes"]
    assert report["weight_bytes"] == weight_bytes(model.module)

    floor = FLOORS[name][backend]
    cos_img = F.cosine_similarity(img, ref_img).min().item()
    cos_txt = F.cosine_similarity(txt, ref_txt).min().item()
    assert cos_img >= floor["image"], f"{name}/{backend} image cosine {cos_img:.5f} < floor {floor['image']}"
    assert cos_txt >= floor["text"], f"{name}/{backend} text cosine {cos_txt:.5f} < floor {floor['text']}"


def test_quantize_leaves_the_reference_untouched(reference):
    _, base, pixels, _, ref_img, _ = reference
    before = {k: v.clone() for k, v in base.module.state_dict().items()}
    create_quantizer("bnb-int8").quantize(fresh_copy(base))
    create_quantizer("fp16").quantize(fresh_copy(base))
    after = base.module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert base.quant_report is None
    with torch.no_grad():
        torch.testing.assert_close(base.encode_image(pixels), ref_img)


def test_quantize_modifies_in_place_and_returns_the_model(reference):
    _, base, *_ = reference
    copy = fresh_copy(base)
    assert create_quantizer("bf16").quantize(copy) is copy
    assert copy.compute_dtype == torch.bfloat16


def test_bnb_options_reach_the_layers(reference):
    pytest.importorskip("bitsandbytes")
    _, base, *_ = reference
    m = create_quantizer("bnb-nf4", double_quant=True, blocksize=128).quantize(fresh_copy(base))
    _, layer = m.linear_layers()["image"][0]
    assert layer.weight.quant_state.nested and layer.weight.quant_state.blocksize == 128
    assert m.quant_report["config"]["compute_dtype"] == "float32"  # "auto" on CPU
    m8 = create_quantizer("bnb-int8", threshold=0.0).quantize(fresh_copy(base))
    _, layer8 = m8.linear_layers()["text"][0]
    assert layer8.state.threshold == 0.0 and layer8.weight.dtype == torch.int8


def test_a_library_that_breaks_fails_instead_of_skipping(reference, monkeypatch):
    """Availability is about presence and device only: an error inside the library propagates."""
    bnb = pytest.importorskip("bitsandbytes")
    _, base, *_ = reference

    class Broken(bnb.nn.Linear8bitLt):
        def __init__(self, *a, **k):
            raise RuntimeError("kernel exploded")

    monkeypatch.setattr(bnb.nn, "Linear8bitLt", Broken)
    q = create_quantizer("bnb-int8")
    assert q.available(base.device) == (True, "")
    with pytest.raises(RuntimeError, match="kernel exploded"):
        q.quantize(fresh_copy(base))


def test_describe_reports_bits_scheme_layers_and_bytes(reference):
    _, base, *_ = reference
    q = create_quantizer("bnb-nf4")
    d = q.describe()
    assert d["bits"] == 4 and d["scheme"] and "attention" in d["layers"] and d["weight_bytes"] is None
    m = q.quantize(fresh_copy(base))
    d = q.describe(m)
    assert d["weight_bytes"] == m.quant_report["weight_bytes"] < d["fp32_weight_bytes"]
    assert create_quantizer("fp32").describe()["layers"].startswith("none")
