"""The quantizer registry: names, filters, options, config JSON, third-party quantizers, entry points."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import sys
import textwrap

import pytest
import torch

import qclip.quantize.base as qbase
from qclip.errors import QclipError, UnknownQuantizerError
from qclip.models.random_init import random_open_clip
from qclip.quantize import (
    ENTRY_POINT_GROUP,
    BaseQuantizer,
    Quantizer,
    QuantizerUnavailable,
    create_quantizer,
    fresh_copy,
    list_quantizers,
    load_quantizer_from_path,
    quantizer_available,
    register_quantizer,
)
from qclip.quantize.base import QuantizerSpec


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private copy of the registry (entry points re-read), restored after the test."""
    monkeypatch.setattr(qbase, "_REGISTRY", dict(qbase._REGISTRY))
    monkeypatch.setattr(qbase, "_ENTRY_POINTS", {})
    monkeypatch.setattr(qbase, "_ENTRY_POINTS_LOADED", False)
    return qbase._REGISTRY


@pytest.fixture(scope="module")
def tiny():
    m = random_open_clip("ViT-B-32", tiny=True, seed=1)
    m.prepare_for_quantization()
    return m


# ----- a third-party quantizer, defined outside qclip ---------------------------------------------
class HalfTheMLP:
    """Casts only the MLP input layers to float16: a partial quantizer that must show in coverage."""

    name = "test-half-mlp"
    family = "third-party"

    def available(self):
        return True, ""

    def quantize(self, model):
        from qclip.quantize.coverage import coverage, weight_bytes

        model.prepare_for_quantization()
        for name, mod in model.module.named_modules():
            if name.endswith("mlp.c_fc"):
                mod.to(torch.float16)
                mod.register_forward_pre_hook(lambda m, args: (args[0].to(torch.float16),))
                mod.register_forward_hook(lambda m, args, out: out.float())
        model.quant_report = {"quantizer": self.name, **coverage(model), "weight_bytes": weight_bytes(model.module)}
        return model

    def describe(self):
        return {"bits": 16, "scheme": "fp16 c_fc", "layers": "mlp.c_fc", "weight_bytes": None}


# ----- names and filters ---------------------------------------------------------------------------
def test_list_is_naturally_sorted_and_filtered():
    names = list_quantizers()
    assert names == sorted(names, key=qbase._natural_key)
    assert list_quantizers("bnb-*") == ["bnb-fp4", "bnb-int8", "bnb-nf4"]
    assert list_quantizers("*", exclude_filters=("ao-*", "bnb-*", "w*a*", "hqq-*", "quanto-*")) == [
        "bf16", "fp16", "fp32", "torch-dyn-int8"]
    assert list_quantizers("w*a8") == ["w4a8", "w6a8", "w8a8"]
    assert list_quantizers(["fp*", "bf16"]) == ["bf16", "fp16", "fp32"]
    assert list_quantizers("nothing-*") == []


def test_natural_sort_orders_numbers_by_value(isolated_registry):
    for n in ("zz-int10", "zz-int2", "zz-int1"):
        register_quantizer(lambda n=n: None, name=n)
    assert list_quantizers("zz-*") == ["zz-int1", "zz-int2", "zz-int10"]


def test_unknown_name_fails_fast_listing_known_and_close_names():
    with pytest.raises(UnknownQuantizerError) as err:
        create_quantizer("bnb-nf5")
    msg = str(err.value)
    assert "'bnb-nf5'" in msg and "Did you mean" in msg and "'bnb-nf4'" in msg
    assert "fp32" in msg and "torch-dyn-int8" in msg  # the known names
    assert isinstance(err.value, KeyError) and isinstance(err.value, QclipError)


def test_builtins_satisfy_the_protocol():
    for name in list_quantizers():
        q = create_quantizer(name)
        assert isinstance(q, Quantizer), name
        ok, reason = q.available()
        assert isinstance(ok, bool) and isinstance(reason, str) and (ok or reason)


#: what each built-in family computes with and what it quantizes (describe()'s "arithmetic" and "quantizes")
LABELS = {
    "fp32": ("reference", "none"),
    "fp16": ("real", "weights+activations (float16)"),
    "bf16": ("real", "weights+activations (bfloat16)"),
    "bnb-int8": ("real", "weights+activations (dynamic, fp16 outlier columns)"),
    "bnb-nf4": ("real", "weights"), "bnb-fp4": ("real", "weights"),
    "torch-dyn-int8": ("real", "weights+activations (dynamic)"),
    "ao-int8wo": ("real", "weights"), "ao-int8dyn": ("real", "weights+activations (dynamic)"),
    "ao-int4wo": ("real", "weights"), "ao-float8wo": ("real", "weights"),
    "ao-float8dyn": ("real", "weights+activations (dynamic)"),
    "hqq-4bit": ("real", "weights"), "hqq-8bit": ("real", "weights"),
    "quanto-w8": ("real", "weights"), "quanto-w4": ("real", "weights"),
    "quanto-w8a8": ("real", "weights+activations (static)"),
    "w8a8": ("simulated", "weights+activations (static), both towers"),
    "w4a8-gptq-vision": ("simulated", "weights+activations (static), vision tower"),
    "w4a8-rot-text": ("simulated", "weights+activations (static), text tower"),
    "w4a8-lsq": ("simulated", "weights+activations (static), both towers"),
    "w8a8-lsq-distill-vision": ("simulated", "weights+activations (static), vision tower"),
}


def test_every_quantizer_says_its_arithmetic_and_what_it_quantizes():
    for name in list_quantizers():
        d = create_quantizer(name).describe()
        assert d["arithmetic"] in qbase.ARITHMETIC, (name, d["arithmetic"])
        assert isinstance(d["quantizes"], str) and qbase.QUANTIZES_RE.match(d["quantizes"]), (name, d["quantizes"])
        assert (d["quantizes"] == "none") == (d["arithmetic"] == "reference"), name
    for name, (arithmetic, quantizes) in LABELS.items():
        d = create_quantizer(name).describe()
        assert (d["arithmetic"], d["quantizes"]) == (arithmetic, quantizes), name


def test_a_reference_that_quantizes_nothing_warns_about_no_layer(tiny, recwarn):
    """fp32 (quantizes "none") expects no layer quantized: its report lists every layer and warns nothing."""
    m = create_quantizer("fp32").quantize(fresh_copy(tiny))
    assert m.quant_report["unquantized_layers"] and not [w for w in recwarn if "unquantized" in str(w.message)]


# ----- config -------------------------------------------------------------------------------------
def test_options_override_defaults_and_none_keeps_them():
    q = create_quantizer("bnb-int8", threshold=0.0)
    assert q.config.threshold == 0.0 and q.config.bits == 8
    assert create_quantizer("bnb-int8", threshold=None).config.threshold == 6.0
    nf4 = create_quantizer("bnb-nf4", blocksize=128, double_quant=True, compute_dtype="bfloat16")
    assert (nf4.config.blocksize, nf4.config.double_quant, nf4.config.compute_dtype) == (128, True, "bfloat16")


@pytest.mark.parametrize("name, options, error", [
    ("bnb-int8", {"bogus": 1}, TypeError),
    ("bnb-int8", {"bits": 4}, TypeError),          # fixed per quantizer
    ("bnb-nf4", {"quant_type": "fp4"}, TypeError),  # that is bnb-fp4
    ("bnb-int8", {"threshold": -1}, ValueError),
    ("bnb-nf4", {"blocksize": 100}, ValueError),
    ("bnb-nf4", {"compute_dtype": "int8"}, ValueError),
    ("ao-int4wo", {"group_size": 7}, ValueError),
])
def test_bad_options_are_rejected(name, options, error):
    with pytest.raises(error, match="Expected"):
        create_quantizer(name, **options)


def test_specs_are_frozen():
    q = create_quantizer("bnb-nf4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.config.blocksize = 32


def test_config_json_is_canonical_and_changes_with_options():
    a, b = create_quantizer("bnb-nf4").config_json(), create_quantizer("bnb-nf4").config_json()
    assert a == b
    data = json.loads(a)
    assert data["name"] == "bnb-nf4" and data["spec"]["blocksize"] == 64 and data["spec"]["bits"] == 4
    assert data["library_version"] == importlib.metadata.version("bitsandbytes")
    assert a == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert create_quantizer("bnb-nf4", double_quant=True).config_json() != a
    assert create_quantizer("bnb-fp4").config_json() != a


# ----- availability -------------------------------------------------------------------------------
def test_device_constraints_are_reported_with_reasons():
    ok, reason = create_quantizer("ao-int4wo").available("cpu")
    assert not ok and "CUDA" in reason
    # torch-dyn-int8 runs on CUDA through qclip's re-implementation (tests/quantize/test_dyn_int8_cuda_path.py)
    assert create_quantizer("torch-dyn-int8").available("cuda") == (True, "")
    assert create_quantizer("torch-dyn-int8").available("cpu") == (True, "")
    assert create_quantizer("fp16").available("cpu") == (True, "")


def test_quantizer_available_passes_the_device_only_when_accepted():
    assert quantizer_available(create_quantizer("ao-int4wo"), "cpu")[0] is False
    assert quantizer_available(HalfTheMLP(), "cuda") == (True, "")  # available() takes no device


def test_missing_library_is_unavailable_with_a_reason(monkeypatch, tiny):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torchao" else real(n, *a))
    q = create_quantizer("ao-int8wo")
    ok, reason = q.available("cpu")
    assert not ok and "torchao is not installed" in reason
    with pytest.raises(QuantizerUnavailable, match="not installed"):
        q.quantize(fresh_copy(tiny))


def test_too_old_library_is_unavailable(monkeypatch):
    monkeypatch.setattr(qbase, "library_version", lambda lib: "0.1.0")
    ok, reason = create_quantizer("bnb-int8").available("cpu")
    assert not ok and ">=0.47" in reason and "0.1.0" in reason


# ----- third-party quantizers ----------------------------------------------------------------------
def test_register_quantizer_decorator_on_a_third_party_class(isolated_registry, tiny):
    @register_quantizer
    class Shrink(BaseQuantizer):
        name = "test-bf16-too"
        family = "third-party"
        spec = QuantizerSpec(library="torch", bits=16, scheme="bf16 by a plugin")

        def _apply(self, model):
            model.module.to(torch.bfloat16)

    assert "test-bf16-too" in list_quantizers("test-*")
    m = create_quantizer("test-bf16-too").quantize(fresh_copy(tiny))
    assert m.quant_report["quantizer"] == "test-bf16-too"
    assert m.quant_report["coverage"]["text"]["quantized"] == m.quant_report["coverage"]["text"]["total"] == 13
    with pytest.raises(ValueError, match="already registered"):
        register_quantizer(lambda: None, name="test-bf16-too")


def test_registering_an_instance_and_partial_coverage_is_visible(isolated_registry, tiny):
    register_quantizer(HalfTheMLP())
    q = create_quantizer("test-half-mlp")
    m = q.quantize(fresh_copy(tiny))
    with torch.no_grad():
        out = m.encode_text(m.tokenize(["a dog"]))
    assert torch.isfinite(out).all()
    cov = m.quant_report["coverage"]
    assert cov["text"] == {"quantized": 2, "total": 13} and cov["image"] == {"quantized": 2, "total": 13}
    assert "transformer.resblocks.0.attn.q_proj" in m.quant_report["unquantized_layers"]


def test_load_quantizer_from_module_path(isolated_registry, tiny):
    q = load_quantizer_from_path(f"{__name__}:HalfTheMLP")
    assert q.name == "test-half-mlp" and create_quantizer("test-half-mlp") is q
    m = q.quantize(fresh_copy(tiny))
    assert m.quant_report["quantizer"] == "test-half-mlp"


def test_load_quantizer_from_file_path(isolated_registry, tmp_path, tiny):
    src = tmp_path / "my_quant.py"
    src.write_text(textwrap.dedent("""
        import torch
        from qclip.quantize import BaseQuantizer, QuantizerSpec

        class Fp16Plugin(BaseQuantizer):
            name = "file-fp16"
            family = "plugin"
            spec = QuantizerSpec(library="torch", bits=16, scheme="fp16 from a file")

            def _apply(self, model):
                model.module.half()
    """))
    q = load_quantizer_from_path(f"{src}:Fp16Plugin")
    assert "file-fp16" in list_quantizers()
    m = create_quantizer("file-fp16").quantize(fresh_copy(tiny))
    with torch.no_grad():
        assert torch.isfinite(m.encode_image(torch.zeros(1, 3, 32, 32, dtype=m.compute_dtype))).all()
    assert q.describe()["bits"] == 16


@pytest.mark.parametrize("path, error", [
    ("no_colon_here", ValueError),
    ("qclip.quantize:", ValueError),
    ("qclip.quantize:does_not_exist", AttributeError),
    ("qclip.quantize:fresh_copy", TypeError),  # a function that does not build a quantizer
    ("no_such_module_xyz:Q", ModuleNotFoundError),
])
def test_bad_quantizer_paths(isolated_registry, path, error):
    with pytest.raises(error):
        load_quantizer_from_path(path)


def test_entry_point_is_discovered_lazily(isolated_registry, monkeypatch, tmp_path, tiny):
    (tmp_path / "qclip_ep_plugin.py").write_text(textwrap.dedent("""
        import torch
        from qclip.quantize import BaseQuantizer, QuantizerSpec

        class EpHalf(BaseQuantizer):
            name = "ep-fp16"
            family = "entry-point"
            spec = QuantizerSpec(library="torch", bits=16, scheme="fp16 via entry point")

            def _apply(self, model):
                model.module.half()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="ep-fp16", value="qclip_ep_plugin:EpHalf", group=ENTRY_POINT_GROUP)
    calls = []

    def fake_entry_points(**kw):
        calls.append(kw)
        return [ep] if kw.get("group") == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    assert "ep-fp16" in list_quantizers()
    assert calls == [{"group": ENTRY_POINT_GROUP}]
    assert "qclip_ep_plugin" not in sys.modules  # listed without importing it
    list_quantizers()
    assert len(calls) == 1  # read once
    m = create_quantizer("ep-fp16").quantize(fresh_copy(tiny))
    assert m.quant_report["coverage"]["image"]["quantized"] == 13
    assert "qclip_ep_plugin" in sys.modules
    sys.modules.pop("qclip_ep_plugin", None)
