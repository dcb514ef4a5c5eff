"""Layer detection, storage kinds and byte counts of quantized Linear layers, checked by hand."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from qclip.models.attention import LinearHolder
from qclip.models.base import _is_linear_like
from qclip.quantize.coverage import (
    CoverageWarning,
    fp32_weight_bytes,
    is_quantized,
    layer_storage,
    make_report,
    tensor_bytes,
    weight_bytes,
)

IN, OUT = 256, 512


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(IN, OUT)


def _bnb_int8(lin):
    bnb = pytest.importorskip("bitsandbytes")
    q = bnb.nn.Linear8bitLt(IN, OUT, has_fp16_weights=False, threshold=6.0)
    q.load_state_dict(lin.state_dict())
    return q.to("cpu")


def _bnb_4bit(lin, quant_type="nf4", double_quant=False):
    bnb = pytest.importorskip("bitsandbytes")
    q = bnb.nn.Linear4bit(IN, OUT, compute_dtype=torch.float32, compress_statistics=double_quant,
                          quant_type=quant_type)
    q.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, blocksize=64,
                                 compress_statistics=double_quant, quant_type=quant_type, module=q)
    q.bias = nn.Parameter(lin.bias.data.clone())
    return q.to("cpu")


def _torch_dynamic(lin):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)[0]


def _torchao_int8(lin):
    tq = pytest.importorskip("torchao.quantization")
    m = nn.Sequential(lin)
    tq.quantize_(m, tq.Int8WeightOnlyConfig(set_inductor_config=False))
    return m[0]


def test_plain_and_cast_layers():
    lin = _linear()
    assert _is_linear_like(lin) and layer_storage(lin) == "float32" and not is_quantized(lin)
    assert weight_bytes(lin) == fp32_weight_bytes(lin) == (IN * OUT + OUT) * 4
    half = _linear().half()
    assert layer_storage(half) == "float16" and is_quantized(half)
    assert weight_bytes(half) * 2 == fp32_weight_bytes(half)


def test_bnb_int8_counts_int8_weights_plus_row_scales():
    q = _bnb_int8(_linear())
    assert _is_linear_like(q) and layer_storage(q) == "int8" and is_quantized(q)
    expected = IN * OUT + OUT * 4 + OUT * 4  # int8 weights, float32 SCB per row, float32 bias
    assert weight_bytes(q) == expected
    q(torch.randn(2, IN))  # the first forward moves CB/SCB into the layer state: same bytes
    assert weight_bytes(q) == expected


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_bnb_4bit_counts_packed_weights_plus_block_statistics(quant_type):
    q = _bnb_4bit(_linear(), quant_type)
    assert _is_linear_like(q) and layer_storage(q) == quant_type
    st = q.weight.quant_state
    expected = IN * OUT // 2 + OUT * 4 + st.absmax.numel() * 4 + st.code.numel() * 4
    assert st.absmax.numel() == IN * OUT // 64
    assert weight_bytes(q) == expected


def test_double_quant_shrinks_statistics_on_a_real_sized_layer():
    plain = weight_bytes(_bnb_4bit(_linear()))
    dq = _bnb_4bit(_linear(), double_quant=True)
    assert dq.weight.quant_state.nested
    assert weight_bytes(dq) < plain


def test_torch_dynamic_linear_is_one_layer_with_packed_bytes():
    q = _torch_dynamic(_linear())
    assert type(q).__module__.startswith("torch.ao.nn.quantized")
    assert callable(q.weight) and list(q.children())  # packed params child, weight() a method
    assert _is_linear_like(q) and not any(_is_linear_like(c) for c in q.children())
    assert layer_storage(q) == "qint8"
    assert weight_bytes(q) == IN * OUT + 16 + OUT * 4  # int8 weights, per-tensor scale + zero point, bias


def test_torchao_weight_subclass_is_detected_by_type():
    q = _torchao_int8(_linear())
    assert isinstance(q, nn.Linear) and q.weight.dtype == torch.float32  # looks like float32...
    assert layer_storage(q) == type(q.weight).__name__ and is_quantized(q)  # ...but is stored as int8
    assert tensor_bytes(q.weight) < q.weight.numel() * 4
    assert weight_bytes(q) == tensor_bytes(q.weight) + OUT * 4


def test_holder_is_not_a_layer_but_its_content_is():
    holder = LinearHolder(_linear())
    assert isinstance(holder, nn.Linear) and not _is_linear_like(holder)
    assert _is_linear_like(holder.linear)
    assert weight_bytes(holder) == (IN * OUT + OUT) * 4


def test_shared_tensors_are_counted_once():
    a = _linear()
    m = nn.Sequential(a, nn.ReLU(), a)
    assert weight_bytes(m) == weight_bytes(a)


def test_report_warns_about_layers_left_in_fp32():
    from qclip.models.random_init import random_hf

    model = random_hf(seed=0)
    model.module.vision_model.encoder.layers[0].self_attn.q_proj.half()
    with pytest.warns(CoverageWarning, match="25 linear layer"):
        report = make_report(model, "partial", {}, fp32_weight_bytes(model.module))
    assert report["coverage"]["image"] == {"quantized": 1, "total": 13}
    assert "vision_model.encoder.layers.0.self_attn.q_proj" not in report["unquantized_layers"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_report(model, "fp32", {}, 0, expect_full=False)


def test_a_cast_does_not_hide_layers_a_quantizer_skipped():
    """ao-int4wo casts the model to bfloat16 first: only int4 layers count as quantized."""
    from qclip.models.random_init import random_hf
    from qclip.quantize import create_quantizer
    from qclip.quantize.coverage import coverage

    model = random_hf(seed=0)
    model.module.to(torch.bfloat16)
    assert coverage(model)["coverage"]["text"] == {"quantized": 13, "total": 13}
    strict = coverage(model, create_quantizer("ao-int4wo").is_target_storage)
    assert strict["coverage"]["text"] == {"quantized": 0, "total": 13}
    assert len(strict["unquantized_layers"]) == 26


def test_raw_projection_parameters_are_listed_as_unquantized():
    from qclip.models.attention import RAW_PROJECTIONS_ATTR
    from qclip.models.random_init import random_open_clip
    from qclip.quantize.coverage import coverage

    model = random_open_clip(seed=0)
    model.prepare_for_quantization()
    setattr(model.module, RAW_PROJECTIONS_ATTR, ["visual.class_embedding"])  # stand-in for a raw weight
    model.module.half()
    assert "visual.class_embedding" not in coverage(model)["unquantized_layers"]  # cast with the model
    model.module.float()
    assert "visual.class_embedding" in coverage(model)["unquantized_layers"]
