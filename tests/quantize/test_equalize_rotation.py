"""SmoothQuant (``w*a*-smooth``) and Hadamard rotation (``w*a*-rot``, ``w*a*-rot-gptq``), tested by what
each must do (issue 14): exact in float32 with quantization off, and far lower output error than plain
RTN on a model with planted activation outliers (a few LayerNorm channels ×30, folded back into the
next Linear layers so the float32 model is unchanged), on random-init tiny CLIPs of both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("brevitas", reason="the simulated family needs brevitas (pip install brevitas)")

from PIL import Image  # noqa: E402

from qclip.models.random_init import random_hf, random_open_clip  # noqa: E402
from qclip.quantize import create_quantizer, fresh_copy  # noqa: E402
from qclip.quantize._sites import find_sites  # noqa: E402
from qclip.quantize.calibration import CalibrationSet  # noqa: E402
from qclip.quantize.equalize import smooth_model, smooth_scales  # noqa: E402
from qclip.quantize.rotation import Rotate, random_hadamard, rotate_model  # noqa: E402
from qclip.quantize.simulated import NAME_RE  # noqa: E402

WORDS = ["red", "glyph", "person", "tree", "blue", "square", "photo", "dog", "two", "small"]
GAIN = 30.0


def _calibration(n: int = 24, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]
    captions = [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]
    return CalibrationSet("test", seed, images, captions, [f"img{i}" for i in range(n)])


@torch.no_grad()
def plant_outliers(model, gain: float = GAIN, k: int = 3) -> int:
    """Multiply the gain and bias of ``k`` channels of every LayerNorm that feeds Linear layers by
    ``gain`` and divide those layers' input columns by it: the same float32 function, with activation
    outliers in front of q/k/v, the MLP and the projections, as real CLIP ViTs have."""
    sites = find_sites(model).norms
    for s in sites:
        idx = torch.arange(k)
        s.norm.weight[idx] *= gain
        s.norm.bias[idx] *= gain
        for _, lin in s.sinks:
            lin.weight[:, idx] /= gain
    return len(sites)


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def planted(request):
    """(fp32 model, the same model with planted outliers)."""
    m = random_open_clip("ViT-B-32", tiny=True, seed=0) if request.param == "open_clip" else random_hf(seed=0)
    m.prepare_for_quantization()
    p = fresh_copy(m)
    assert plant_outliers(p) == 10  # 2+2 blocks × (attention, MLP) + two final norms
    return m, p


def _encode(m, cal):
    px, tok = next(cal.batches(m, len(cal)))
    with torch.no_grad():
        return m.encode_image(px), m.encode_text(tok)


def _close(got, want):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def _rel_err(got, want) -> float:
    return max(float((g - w).pow(2).mean() / w.pow(2).mean()) for g, w in zip(got, want, strict=True))


def test_planting_leaves_fp32_unchanged_and_makes_outliers(planted):
    m, p = planted
    cal = _calibration()
    _close(_encode(p, cal), _encode(m, cal))
    site = find_sites(p).norms[0]
    acts = []
    h = site.sinks[0][1].register_forward_pre_hook(lambda mod, args: acts.append(args[0].abs().amax(dim=(0, 1))))
    _encode(p, cal)
    h.remove()
    a = acts[0]
    assert a[:3].min() > 5 * a[3:].max()  # three channels far above the rest


@pytest.mark.parametrize("transform", ["smooth", "rot"])
def test_the_transform_alone_is_exact_in_fp32(planted, transform):
    m, p = planted
    cal = _calibration()
    t = fresh_copy(p)
    if transform == "smooth":
        info = smooth_model(t, list(cal.batches(t, 8)), alpha=0.5)
        assert info["sites"] == 14  # 10 norms + 4 value → out pairs
    else:
        info = rotate_model(t, seed=3)
        assert info["sites"] == {"value": 4, "norm": 10, "mlp": 4}
        assert sum(isinstance(x, Rotate) for x in t.module.modules()) == 14
    _close(_encode(t, cal), _encode(m, cal))


@pytest.mark.parametrize("name", ["w4a8-smooth", "w4a8-rot", "w8a8-rot-gptq"])
def test_the_quantizer_with_quantization_off_is_exact(planted, name):
    """The whole pipeline (transform, layer swap, calibration, GPTQ) with brevitas' quantizers disabled
    computes the float32 function; with them on, every Linear layer of both towers is quantized."""
    from brevitas.graph.calibrate import quantization_status_manager

    m, p = planted
    cal = _calibration()
    q = create_quantizer(name).quantize(fresh_copy(p), calibration=cal)
    for cov in q.quant_report["coverage"].values():
        assert cov["quantized"] == cov["total"] > 0
    assert q.quant_report["transform"]["sites"]
    with quantization_status_manager(q.module, disable_act_quant=True, disable_weight_quant=True,
                                     disable_bias_quant=True):
        off = _encode(q, cal)
    if name.endswith("gptq"):  # GPTQ moved the float weights: only close, not exact
        assert _rel_err(off, _encode(m, cal)) < 0.05
    else:
        _close(off, _encode(m, cal))


@pytest.mark.parametrize("bits", ["w8a8", "w4a8"])
def test_smoothquant_and_rotation_recover_what_planted_outliers_cost_rtn(planted, bits):
    """Per-tensor static activation scales spend the grid on the outliers: plain RTN's output error
    grows many times over; SmoothQuant and the rotation bring it back down (below half of RTN's, and
    near what RTN gets on the model without outliers)."""
    m, p = planted
    cal = _calibration()
    ref = _encode(m, cal)
    errs = {}
    for variant in ("", "-smooth", "-rot", "-rot-gptq"):
        q = create_quantizer(bits + variant).quantize(fresh_copy(p), calibration=cal)
        errs[variant or "rtn"] = _rel_err(_encode(q, cal), ref)
    clean = _rel_err(_encode(create_quantizer(bits).quantize(fresh_copy(m), calibration=cal), cal), ref)
    assert errs["rtn"] > 3 * clean, (errs, clean)  # the outliers hurt plain RTN
    for variant in ("-smooth", "-rot", "-rot-gptq"):
        assert errs[variant] < 0.5 * errs["rtn"], (variant, errs)
        assert errs[variant] < 3 * clean, (variant, errs, clean)


def test_a_vision_scope_leaves_the_text_tower_alone(planted):
    m, p = planted
    cal = _calibration()
    q = create_quantizer("w4a8-rot-vision").quantize(fresh_copy(p), calibration=cal)
    cov = q.quant_report["coverage"]
    assert cov["image"]["quantized"] == cov["image"]["total"] and cov["text"]["quantized"] == 0
    assert all(s.tower == "image" for s in find_sites(q, "vision").norms)
    _, txt = _encode(q, cal)
    torch.testing.assert_close(txt, _encode(p, cal)[1])


@pytest.mark.parametrize("n", [2, 48, 64, 256, 96])
def test_rotations_are_orthogonal_and_seeded(n):
    r = random_hadamard(n, seed=1)
    torch.testing.assert_close(r @ r.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(r, random_hadamard(n, seed=1)) and not torch.equal(r, random_hadamard(n, seed=2))
    if n & (n - 1) == 0:  # a power of two: a Hadamard matrix, every entry ±1/sqrt(n)
        torch.testing.assert_close(r.abs(), torch.full((n, n), n ** -0.5, dtype=torch.float64))


def test_smooth_scales_follow_alpha():
    a = torch.tensor([1.0, 30.0, 0.0])
    w = [torch.tensor([[1.0, 1 / 30, 1.0]])]
    s0, s5, s1 = (smooth_scales(a, w, alpha) for alpha in (0.0, 0.5, 1.0))
    torch.testing.assert_close(s5, torch.tensor([1.0, 30.0, 1.0]))  # sqrt(30 / (1/30)) = 30
    torch.testing.assert_close(s1, torch.tensor([1.0, 30.0, 1.0]))
    torch.testing.assert_close(s0, torch.tensor([1.0, 30.0, 1.0]))  # 1 / (1/30)
    assert float(smooth_scales(torch.tensor([4.0]), [torch.tensor([[1.0]])], 0.5)) == 2.0


def test_names_and_options():
    for name, (t, meth, scope) in {"w4a8-smooth": ("smooth", "rtn", "both"), "w4a8-rot": ("rot", "rtn", "both"),
                                   "w4a8-rot-gptq": ("rot", "gptq", "both"),
                                   "w6a8-smooth-gptq-vision": ("smooth", "gptq", "vision"),
                                   "w8a8-rot-text": ("rot", "rtn", "text")}.items():
        assert NAME_RE.match(name)
        cfg = create_quantizer(name).config
        assert (cfg.transform, cfg.method, cfg.scope) == (t, meth, scope)
    assert create_quantizer("w4a8").config.transform == "none"
    assert create_quantizer("w4a8-smooth", smooth_alpha=0.8).config.smooth_alpha == 0.8
    with pytest.raises(ValueError, match="smooth_alpha"):
        create_quantizer("w4a8-smooth", smooth_alpha=1.5)
    with pytest.raises(Exception, match="Unknown quantizer"):
        create_quantizer("w4a8-gptq-rot")  # the order is transform, method, scope
    assert create_quantizer("w4a8-rot").config_json() != create_quantizer("w4a8-rot", rotation_seed=1).config_json()
