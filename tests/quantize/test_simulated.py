"""The simulated W×A family (brevitas) and the calibration protocol, on random-init tiny CLIPs of both
backends: coverage per scope, static activation scales from calibration, GPTQ against RTN, the names,
the calibration digest in the cache key, and old-protocol quantizers still called without data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("brevitas", reason="the simulated family needs brevitas (pip install brevitas)")

from PIL import Image  # noqa: E402

from qclip.models.random_init import random_hf, random_open_clip  # noqa: E402
from qclip.quantize import create_quantizer, fresh_copy, list_quantizers  # noqa: E402
from qclip.quantize.calibration import CalibrationSet, accepts_calibration, call_quantize  # noqa: E402
from qclip.quantize.simulated import DEFAULT_NAMES, NAME_RE, grid_names  # noqa: E402

WORDS = ["red", "glyph", "person", "tree", "blue", "square", "photo", "dog", "two", "small"]


def _calibration(n: int = 24, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]
    captions = [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]
    return CalibrationSet("test", seed, images, captions, [f"img{i}" for i in range(n)])


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def model(request):
    m = random_open_clip("ViT-B-32", tiny=True, seed=0) if request.param == "open_clip" else random_hf(seed=0)
    m.prepare_for_quantization()
    return m


def _encode(m, cal):
    px, tok = next(cal.batches(m, 8))
    with torch.no_grad():
        return m.encode_image(px), m.encode_text(tok)


@pytest.mark.parametrize("name, towers", [("w8a8", {"image", "text"}), ("w4a8-vision", {"image"}),
                                          ("w6a8-text", {"text"})])
def test_coverage_per_scope_and_static_scales(model, name, towers):
    cal = _calibration()
    q = create_quantizer(name).quantize(fresh_copy(model), calibration=cal)
    rep = q.quant_report
    for tower, cov in rep["coverage"].items():
        assert cov["quantized"] == (cov["total"] if tower in towers else 0), (tower, cov)
    left = set(rep["unquantized_layers"])
    assert bool(left) == (towers != {"image", "text"})  # the untouched tower is counted, not hidden
    assert rep["calibration"]["size"] == 24 and rep["arithmetic"].startswith("simulated")
    img, txt = _encode(q, cal)
    ref_img, ref_txt = _encode(model, cal)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    if "image" not in towers:
        torch.testing.assert_close(img, ref_img)
    if "text" not in towers:
        torch.testing.assert_close(txt, ref_txt)
    floor = 0.9 if name.startswith("w8") else 0.5
    assert F.cosine_similarity(img, ref_img).min() > floor and F.cosine_similarity(txt, ref_txt).min() > floor
    # the activation scales were fitted: every input quantizer has a finite positive scale
    scales = [float(layer.input_quant.scale()) for layers in q.linear_layers().values() for _, layer in layers
              if hasattr(layer, "input_quant") and layer.input_quant.is_quant_enabled]
    assert scales and all(np.isfinite(s) and s > 0 for s in scales)


def test_fewer_bits_more_error(model):
    cal = _calibration()
    errs = {}
    for name in ("w8a8", "w4a8"):
        q = create_quantizer(name).quantize(fresh_copy(model), calibration=cal)
        img, _ = _encode(q, cal)
        ref, _ = _encode(model, cal)
        errs[name] = float((img - ref).pow(2).mean())
    assert errs["w4a8"] > errs["w8a8"] > 0


def test_gptq_changes_the_weights_and_lowers_the_layer_error_against_rtn():
    """GPTQ re-rounds weights to reduce each layer's output error on the calibration inputs; on the first
    image layer its output error must be below RTN's (and the weights must differ from RTN's)."""
    model = random_open_clip("ViT-B-32", tiny=True, seed=1)
    model.prepare_for_quantization()
    cal = _calibration(32, seed=1)
    rtn = create_quantizer("w4a8-rtn-vision").quantize(fresh_copy(model), calibration=cal)
    gptq = create_quantizer("w4a8-gptq-vision").quantize(fresh_copy(model), calibration=cal)
    (_, fp_layer), (_, r_layer), (_, g_layer) = (m.linear_layers()["image"][0] for m in (model, rtn, gptq))
    inputs = []
    hook = fp_layer.register_forward_hook(lambda mod, args, out: inputs.append(args[0].detach()))
    _encode(model, cal)
    hook.remove()
    x = inputs[0]
    with torch.no_grad():
        want = fp_layer(x)
        rq, gq = r_layer.quant_weight().value, g_layer.quant_weight().value
        assert not torch.equal(rq, gq), "GPTQ left the quantized weights as RTN made them"
        err_rtn = (F.linear(x, rq, fp_layer.bias) - want).pow(2).mean()
        err_gptq = (F.linear(x, gq, fp_layer.bias) - want).pow(2).mean()
    assert err_gptq < err_rtn, (float(err_gptq), float(err_rtn))


def test_names_registry_and_grid():
    assert set(DEFAULT_NAMES) <= set(list_quantizers("w*a*"))
    assert len(grid_names()) == 54 and all(NAME_RE.match(n) for n in grid_names())
    for name in grid_names():
        q = create_quantizer(name)
        assert q.name == name and q.needs_calibration and q.family == "simulated"
    assert create_quantizer("w6a8-gptq-text").config.scope == "text"
    with pytest.raises(Exception, match="Unknown quantizer"):
        create_quantizer("w9a8")
    with pytest.raises(ValueError, match="act_observer"):
        create_quantizer("w8a8", act_observer="median")


def test_without_calibration_it_refuses_clearly(model):
    from qclip.quantize import QuantizerUnavailable

    with pytest.raises(QuantizerUnavailable, match="calibration"):
        create_quantizer("w8a8").quantize(fresh_copy(model))


def test_calibration_digest_depends_on_the_pairs_and_seed():
    a, b, c = _calibration(seed=0), _calibration(seed=0), _calibration(seed=1)
    assert a.digest == b.digest != c.digest
    d = CalibrationSet("test", 0, list(a.images), list(a.captions[:-1]) + ["other"], list(a.ids))
    assert d.digest != a.digest and a.describe()["size"] == 24


def test_old_protocol_quantizers_are_called_without_data(model):
    class Old:
        name, family = "old", "thirdparty"

        def available(self):
            return True, ""

        def describe(self):
            return {}

        def quantize(self, model):
            self.seen = model
            return model

    old = Old()
    assert not accepts_calibration(old.quantize) and accepts_calibration(create_quantizer("w8a8").quantize)
    m = fresh_copy(model)
    assert call_quantize(old, m, _calibration()) is m and old.seen is m


def test_the_session_keys_calibrated_variants_by_their_data(tmp_path):
    from qclip.run.session import QclipSession, SessionOptions

    def key(seed):
        s = QclipSession(SessionOptions(models="random:open_clip/ViT-B-32/tiny", cache=str(tmp_path), progress=False,
                                        calibration_seed=seed))
        s._calibration = _calibration(seed=seed)  # the synthetic training pool is not generated here
        return s.embed_key("random:open_clip/ViT-B-32/tiny", "w8a8").parts()["qconfig"]

    assert key(0) != key(1) and "calibration" in key(0)
