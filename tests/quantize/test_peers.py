"""The peers' real-kernel quantizers: HQQ (``hqq-*``), optimum-quanto (``quanto-*``) and torchao float8
(``ao-float8wo``, ``ao-float8dyn``), on random-init tiny CLIPs of both backends (CPU).

Per (quantizer, backend): every Linear of both towers quantized and stored as the library stores it
(``hqq-int4``, ``quanto-int8``, ``Float8Tensor``), both encoders run under ``torch.inference_mode`` (as
qclip's encoder calls them) and return finite float32 features, cosine similarity to fp32 above the
floors in ``cosine_floors.yaml``, fewer bytes. A missing library is unavailable with the install command
in its reason (tested by hiding it); a present library that breaks fails the quantization.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from qclip.models.random_init import random_hf, random_open_clip
from qclip.quantize import QuantizerUnavailable, create_quantizer, fresh_copy, list_quantizers, weight_bytes
from qclip.quantize.calibration import CalibrationSet
from qclip.quantize.coverage import layer_storage

FLOORS = yaml.safe_load((Path(__file__).parent / "cosine_floors.yaml").read_text())
#: name -> (library module, storage of every layer); the by-name variants cover int4 x int8 and fp8 activations
PEERS = {
    "hqq-4bit": ("hqq", "hqq-int4"),
    "hqq-8bit": ("hqq", "hqq-int8"),
    "quanto-w8": ("optimum.quanto", "quanto-int8"),
    "quanto-w4": ("optimum.quanto", "quanto-int4"),
    "quanto-w8a8": ("optimum.quanto", "quanto-int8"),
    "quanto-w4a8": ("optimum.quanto", "quanto-int4"),
    "quanto-w8a8-fp8": ("optimum.quanto", "quanto-int8"),
    "ao-float8wo": ("torchao", "Float8Tensor"),
    "ao-float8dyn": ("torchao", "Float8Tensor"),
}
TEXTS = ["a photo of a dog", "a cat", "two birds on a wire", "x y z", "a diagram of a power plant",
         "an old man smiling", "red", "the quick brown fox jumps over the lazy dog"]
WORDS = ["red", "glyph", "person", "tree", "blue", "square", "photo", "dog", "two", "small"]
LINEARS_PER_TOWER = 2 * (4 + 2) + 1  # 2 blocks x (q, k, v, out, fc, proj) + final projection


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _calibration(n: int = 24, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]
    captions = [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]
    return CalibrationSet("test", seed, images, captions, [f"img{i}" for i in range(n)])


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def reference(request):
    """(backend, fp32 prepared model, pixels, tokens, image features, text features)."""
    model = random_open_clip("ViT-B-32", tiny=True, seed=0) if request.param == "open_clip" else random_hf(seed=0)
    model.prepare_for_quantization()
    pixels = torch.randn(8, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    tokens = model.tokenize(TEXTS)
    with torch.no_grad():
        img, txt = model.encode_image(pixels), model.encode_text(tokens)
    return request.param, model, pixels, tokens, img, txt


@pytest.fixture(scope="module")
def calibration():
    return _calibration()


def test_the_peers_are_registered_named_for_k_and_have_floors():
    assert list_quantizers("hqq-*") == ["hqq-4bit", "hqq-8bit"]
    assert list_quantizers("quanto-*") == ["quanto-w4", "quanto-w8", "quanto-w8a8"]
    assert {"ao-float8wo", "ao-float8dyn"} <= set(list_quantizers("ao-*"))
    assert set(PEERS) <= set(FLOORS)
    # the other widths and combinations resolve by name
    assert create_quantizer("hqq-3bit").config.nbits == 3
    q = create_quantizer("quanto-w4a8-fp8")
    assert (q.config.weights, q.config.activations, q.needs_calibration) == ("int4", "fp8", True)
    assert not create_quantizer("quanto-w8").needs_calibration


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_on_both_towers(reference, calibration, name):
    backend, base, pixels, tokens, ref_img, ref_txt = reference
    library, storage = PEERS[name]
    q = create_quantizer(name)
    ok, reason = q.available("cpu")
    if not ok:
        if not _present(library):
            pytest.skip(reason)  # the reason names the install command (test_missing_library_...)
        # present but not for this device (ao-float8dyn): it says why and refuses to run
        assert "CUDA" in reason and "8.9" in reason, reason
        with pytest.raises(QuantizerUnavailable, match="CUDA"):
            q.quantize(fresh_copy(base), calibration=calibration)
        return

    model = q.quantize(fresh_copy(base), calibration=calibration)
    with torch.inference_mode():  # as qclip.embed encodes
        img = model.encode_image(pixels.to(model.compute_dtype))
        txt = model.encode_text(tokens)
    assert type(img) is torch.Tensor and type(txt) is torch.Tensor  # no library tensor leaks out
    assert img.dtype == txt.dtype == torch.float32
    assert img.shape == ref_img.shape and txt.shape == ref_txt.shape
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()

    report = model.quant_report
    json.dumps(report)
    for tower in ("image", "text"):
        assert report["coverage"][tower] == {"quantized": LINEARS_PER_TOWER, "total": LINEARS_PER_TOWER}, tower
    assert report["storage"] == {storage: 2 * LINEARS_PER_TOWER}
    assert report["unquantized_layers"] == []
    assert report["weight_bytes"] == weight_bytes(model.module) < report["fp32_weight_bytes"]
    assert ("calibration" in report) == q.needs_calibration

    floor = FLOORS[name][backend]
    cos_img = F.cosine_similarity(img, ref_img).min().item()
    cos_txt = F.cosine_similarity(txt, ref_txt).min().item()
    assert cos_img >= floor["image"], f"{name}/{backend} image cosine {cos_img:.5f} < floor {floor['image']}"
    assert cos_txt >= floor["text"], f"{name}/{backend} text cosine {cos_txt:.5f} < floor {floor['text']}"


@pytest.mark.parametrize("name, hidden, install", [
    ("hqq-4bit", "hqq", "pip install 'qclip[hqq]'"),
    ("quanto-w8a8", "optimum.quanto", "pip install 'qclip[quanto]'"),
])
def test_missing_library_is_unavailable_with_the_install_command(monkeypatch, reference, calibration, name,
                                                                  hidden, install):
    _, base, *_ = reference
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == hidden else real(n, *a))
    q = create_quantizer(name)
    ok, reason = q.available("cpu")
    assert not ok and "is not installed" in reason and install in reason, reason
    with pytest.raises(QuantizerUnavailable, match="not installed"):
        q.quantize(fresh_copy(base), calibration=calibration)


def test_quanto_is_unavailable_when_even_optimum_is_missing(monkeypatch):
    """find_spec("optimum.quanto") raises when the parent package is absent: still a reason, not a crash."""
    real = importlib.util.find_spec

    def find_spec(n, *a):
        if n.startswith("optimum"):
            raise ModuleNotFoundError(f"No module named {n.split('.')[0]!r}")
        return real(n, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    ok, reason = create_quantizer("quanto-w8").available("cpu")
    assert not ok and "optimum-quanto is not installed" in reason and "pip install optimum-quanto" in reason


def test_a_broken_hqq_fails_instead_of_skipping(monkeypatch, reference):
    if not _present("hqq"):
        pytest.skip("hqq is not installed (pip install 'qclip[hqq]')")
    import hqq.core.quantize as hq

    def broken(*a, **k):
        raise RuntimeError("hqq kernel exploded")

    monkeypatch.setattr(hq, "HQQLinear", broken)
    q = create_quantizer("hqq-4bit")
    assert q.available("cpu") == (True, "")
    with pytest.raises(RuntimeError, match="hqq kernel exploded"):
        q.quantize(fresh_copy(reference[1]))


def test_a_broken_quanto_fails_instead_of_skipping(monkeypatch, reference, calibration):
    if not _present("optimum.quanto"):
        pytest.skip("optimum-quanto is not installed (pip install 'qclip[quanto]')")
    from optimum.quanto import calibrate

    def broken(*a, **k):
        raise RuntimeError("quanto calibration exploded")

    monkeypatch.setattr(calibrate.Calibration, "calibrate_input", broken)
    q = create_quantizer("quanto-w8a8")
    assert q.available("cpu") == (True, "")
    with pytest.raises(RuntimeError, match="quanto calibration exploded"):
        q.quantize(fresh_copy(reference[1]), calibration=calibration)


def test_hqq_options_reach_the_layers_and_bytes_are_counted_by_hand():
    if not _present("hqq"):
        pytest.skip("hqq is not installed (pip install 'qclip[hqq]')")
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    base = random_open_clip("ViT-B-32", tiny=True, seed=0)
    m = create_quantizer("hqq-4bit", group_size=32).quantize(fresh_copy(base))
    _, layer = m.linear_layers()["image"][0]
    assert isinstance(layer, HQQLinear) and layer.meta["group_size"] == 32 and layer.meta["nbits"] == 4
    assert m.quant_report["config"]["group_size"] == 32 and layer_storage(layer) == "hqq-int4"

    lin = nn.Linear(256, 512)
    with torch.no_grad():
        h = HQQLinear(lin, BaseQuantizeConfig(nbits=4, group_size=64), compute_dtype=torch.float32, device="cpu")
    groups = 256 * 512 // 64
    # packed 4-bit weights, float32 scale and zero point per group (in meta), float32 bias (a plain attribute)
    assert weight_bytes(h) == 256 * 512 // 2 + 2 * groups * 4 + 512 * 4


@pytest.mark.parametrize("options, error", [({"group_size": 30}, ValueError), ({"group_size": 0}, ValueError),
                                            ({"optimize": "yes"}, ValueError), ({"nbits": 2}, TypeError)])
def test_bad_hqq_options_are_rejected(options, error):
    with pytest.raises(error, match="Expected"):
        create_quantizer("hqq-4bit", **options)


def test_bad_names_and_options_of_quanto_are_rejected():
    with pytest.raises(TypeError, match="Expected"):
        create_quantizer("quanto-w8", activations="int8")  # fixed: that is quanto-w8a8
    with pytest.raises(ValueError, match="Expected"):
        create_quantizer("quanto-w8a8", calibration_batch_size=0)
    from qclip.quantize.quanto import QuantoQuantizer

    with pytest.raises(ValueError, match="Expected a name"):
        QuantoQuantizer("quanto-w6")


def test_quanto_activations_are_calibrated_and_static(reference, calibration):
    """w8a8 quantizes every layer's input with a scale fitted on the calibration pairs: not the initial 1,
    the same for any batch, and a weight-only run computes something else."""
    if not _present("optimum.quanto"):
        pytest.skip("optimum-quanto is not installed (pip install 'qclip[quanto]')")
    _, base, pixels, tokens, *_ = reference
    w8a8 = create_quantizer("quanto-w8a8").quantize(fresh_copy(base), calibration=calibration)
    w8 = create_quantizer("quanto-w8").quantize(fresh_copy(base))
    layers = [layer for t in w8a8.linear_layers().values() for _, layer in t]
    assert all(float(layer.input_scale) != 1.0 for layer in layers)
    # inputs only: no layer re-quantizes its output (each input is quantized once, by its own scale)
    assert all(layer._quantize_hooks["output"].id not in layer._forward_hooks for layer in layers)
    with torch.inference_mode():
        full = w8a8.encode_image(pixels)
        half = w8a8.encode_image(pixels[:4])
        assert not torch.equal(full, w8.encode_image(pixels))
    torch.testing.assert_close(full[:4], half, rtol=1e-4, atol=1e-5)  # static scales: not batch dependent
    with pytest.raises(QuantizerUnavailable, match="calibration"):
        create_quantizer("quanto-w8a8").quantize(fresh_copy(base))


def test_float8_dynamic_needs_a_recent_cuda_gpu(monkeypatch):
    if not _present("torchao"):
        pytest.skip("torchao is not installed")
    q = create_quantizer("ao-float8dyn")
    ok, reason = q.available("cpu")
    assert not ok and "compute capability >= 8.9" in reason and "CUDA" in reason
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    ok, reason = q.available("cuda")
    assert not ok and "A100 has 8.0" in reason and ">= 8.9" in reason
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert q.available("cuda") == (True, "")
    # the weight-only variant dequantizes in the linear and runs anywhere
    assert create_quantizer("ao-float8wo").available("cpu") == (True, "")
