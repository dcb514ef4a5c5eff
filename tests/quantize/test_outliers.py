"""Planted activation outliers on a *trained* tiny model (issue 14, item 7 and its acceptance list).

The session's trained tiny-a is reparametrised as ``qclip.models.tiny.outliers`` plants outliers in part
of the population (a few vision channels ×10 in the norms before attention and the MLP, folded back into
the Linear layers they feed). Then, measured on the world's zero-shot set:

* the float32 function is unchanged, and the Linear inputs carry the outlier channels;
* W8A8 per-channel stays within 1 point of fp32 top-1 (on the plain model and the planted one);
* W4A8 RTN loses more top-1 than W4A8 GPTQ and than W4A8 LSQ (the study's ordering);
* SmoothQuant and the rotation lose less than RTN; LLM.int8 (its 16-bit outlier path) stays within a
  point; PyTorch's dynamic int8 (per-tensor activation ranges) loses more than on the plain model;
* the loader applies the declared plan, changes the weights digest, and records the plan in world.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("brevitas", reason="the simulated family needs brevitas (pip install brevitas)")

from qclip.models import load_model  # noqa: E402
from qclip.models.tiny import outliers as outliers_mod  # noqa: E402
from qclip.models.tiny.outliers import PLANTED_OUTLIERS, OutlierPlan, plant_outliers  # noqa: E402
from qclip.models.tiny.planted import SOURCE_LOGIT_SCALE, planted_digest  # noqa: E402
from qclip.quantize import create_quantizer, fresh_copy  # noqa: E402
from qclip.quantize.calibration import from_training_pool  # noqa: E402
from tests.conftest import TINY_MODEL  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

PLAN = OutlierPlan(channels=(7, 41), factor=10.0)


@pytest.fixture(scope="module")
def world(trained_tiny):
    """(fp32 tiny-a, the same with PLAN planted, top-1 scorer, calibration pairs)."""
    from qclip.data.config import DataConfig
    from qclip.models.tiny.model import _classifier, _encode_images

    cache, root, spec, _ = trained_tiny
    fp32 = load_model(f"tiny:{TINY_MODEL}", cache, progress=False)
    fp32.prepare_for_quantization()
    planted = fresh_copy(fp32)
    plant_outliers(planted.module, PLAN)
    inet = DataConfig.load(root / "qclip.toml").get("synth-imagenet").load()
    labels = inet.table["label"].to_numpy()

    def top1(model) -> float:
        with torch.no_grad():
            w = _classifier(spec, model.module, inet.classnames, inet.templates)
            x = _encode_images(spec, model.module, inet)
        return float(((x @ w.T).argmax(1).numpy() == labels).mean())

    return fp32, planted, top1, from_training_pool(root, size=1000, seed=0)


@pytest.fixture(scope="module")
def drops(world, tmp_path_factory):
    """top-1 drop (points) of each quantizer on the planted model, and of a few on the plain one."""
    fp32, planted, top1, cal = world
    ref = top1(fp32)
    out = {}
    for which, base in (("planted", planted), ("plain", fp32)):
        names = (["w8a8", "w4a8", "w4a8-gptq", "w4a8-lsq", "w4a8-smooth", "w4a8-rot", "bnb-int8", "torch-dyn-int8"]
                 if which == "planted" else ["w8a8", "torch-dyn-int8"])
        for name in names:
            q = create_quantizer(name)
            if hasattr(q, "cache_root"):  # QAT caches its training: keep it in this test's folder
                q.cache_root, q.progress = tmp_path_factory.mktemp("qat"), False
            out[which, name] = 100 * (ref - top1(q.quantize(fresh_copy(base), calibration=cal)))
    return ref, out


def test_planting_keeps_the_float32_function_and_makes_outlier_inputs(world):
    fp32, planted, top1, cal = world
    assert top1(planted) == top1(fp32)
    px, tok = next(cal.batches(fp32, 32))
    with torch.no_grad():
        torch.testing.assert_close(planted.encode_image(px), fp32.encode_image(px), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(planted.encode_text(tok), fp32.encode_text(tok))
    seen = {}
    blk = planted.module.visual.transformer.resblocks[0]
    hook = blk.attn.q_proj.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].detach()))
    with torch.no_grad():
        planted.encode_image(px)
    hook.remove()
    amax = seen["x"].abs().flatten(0, -2).amax(0)
    others = np.delete(amax.numpy(), PLAN.channels)
    assert amax[list(PLAN.channels)].min() > 4 * np.median(others), amax  # the outliers are there


def test_w8a8_per_channel_stays_within_a_point(drops):
    ref, d = drops
    assert d["plain", "w8a8"] <= 1.0, (ref, d)
    assert d["planted", "w8a8"] <= 1.0, (ref, d)


def test_w4a8_rtn_loses_more_than_gptq_and_lsq(drops):
    """The issue's acceptance: measured, not assumed (the numbers are in the assertion messages and in
    docs/embedded-default.md)."""
    ref, d = drops
    print(f"\nfp32 top-1 {ref:.3f}; drops in points: " + ", ".join(f"{w}/{n} {v:+.1f}" for (w, n), v in d.items()))
    rtn = d["planted", "w4a8"]
    assert rtn > d["planted", "w4a8-gptq"], (ref, d)
    assert rtn > d["planted", "w4a8-lsq"], (ref, d)


def test_outlier_aware_methods_lose_less_than_rtn(drops):
    ref, d = drops
    rtn = d["planted", "w4a8"]
    assert d["planted", "w4a8-smooth"] < rtn and d["planted", "w4a8-rot"] < rtn, (ref, d)
    assert d["planted", "bnb-int8"] <= 1.0, (ref, d)  # LLM.int8's 16-bit outlier columns
    assert d["planted", "torch-dyn-int8"] > d["plain", "torch-dyn-int8"], (ref, d)  # per-tensor ranges suffer


def test_the_loader_applies_the_declared_plan(trained_tiny, monkeypatch):
    cache, root, _, _ = trained_tiny
    plain = load_model(f"tiny:{TINY_MODEL}", cache, progress=False)
    monkeypatch.setitem(PLANTED_OUTLIERS, TINY_MODEL, PLAN)
    loaded = load_model(f"tiny:{TINY_MODEL}", cache, progress=False)
    assert loaded.info.weights_digest != plain.info.weights_digest
    key = plain.info.weights_digest
    ln = loaded.module.visual.transformer.resblocks[0].ln_1.weight
    ref = plain.module.visual.transformer.resblocks[0].ln_1.weight
    torch.testing.assert_close(ln[list(PLAN.channels)], ref[list(PLAN.channels)] * PLAN.factor)
    from qclip.models.loader import weights_digest_for

    assert weights_digest_for(f"tiny:{TINY_MODEL}", cache) == loaded.info.weights_digest
    assert planted_digest("no-such-model", key * 4) == (key * 4)[:16]
    # the known answer lands in world.json beside the model's checksum
    from qclip.models.tiny.weights import tiny_weights

    tiny_weights(TINY_MODEL, cache, progress=False)
    manifest = json.loads((root / "world.json").read_text())
    entries = [m[TINY_MODEL] for m in manifest["tiny_models"].values() if TINY_MODEL in m]
    assert any(e.get("planted_outliers", {}).get("channels") == list(PLAN.channels) for e in entries), entries
    monkeypatch.undo()  # the session's world.json says again that tiny-a has none
    tiny_weights(TINY_MODEL, cache, progress=False)
    manifest = json.loads((root / "world.json").read_text())
    assert not any("planted_outliers" in m.get(TINY_MODEL, {}) for m in manifest["tiny_models"].values())


def test_the_population_declares_outliers_on_part_of_it():
    from qclip.models.tiny import TINY_MODELS

    assert 0 < len(PLANTED_OUTLIERS) < len(TINY_MODELS)
    assert {TINY_MODELS[n].source for n in PLANTED_OUTLIERS} == {"wit", "laion", "datacomp"}
    assert {TINY_MODELS[n].family for n in PLANTED_OUTLIERS} == {"open_clip", "hf"}
    for plan in PLANTED_OUTLIERS.values():
        assert plan.factor > 1 and len(plan.channels) >= 2
    with pytest.raises(ValueError, match="channels"):
        OutlierPlan(channels=(), factor=2.0)
    with pytest.raises(ValueError, match="factor"):
        OutlierPlan(channels=(1,), factor=0)
    assert outliers_mod.outlier_plan("tiny-a") is None


def test_the_loader_sets_the_sources_confidence(trained_tiny):
    """WIT-like models are made under-confident and LAION-like over-confident by their logit scale alone:
    the trained weights are otherwise the same, and no ranking changes."""
    from qclip.models.tiny import TINY_MODELS

    cache, _, spec, module = trained_tiny
    loaded = load_model(f"tiny:{TINY_MODEL}", cache, progress=False)
    factor = SOURCE_LOGIT_SCALE[spec.source]
    assert factor < 1  # tiny-a is WIT-like
    assert loaded.logit_scale == pytest.approx(float(module.logit_scale.exp()) * factor, rel=1e-5)
    assert SOURCE_LOGIT_SCALE["laion"] > 1 and SOURCE_LOGIT_SCALE["datacomp"] == 1
    assert {s.source for s in TINY_MODELS.values()} <= set(SOURCE_LOGIT_SCALE)
    state = {k: v for k, v in loaded.module.state_dict().items() if k != "logit_scale"}
    trained = {k: v for k, v in module.state_dict().items() if k != "logit_scale"}
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in state)
    assert loaded.info.weights_digest != planted_digest("no-such-model", "0" * 64)
