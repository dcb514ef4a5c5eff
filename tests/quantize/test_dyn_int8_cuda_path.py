"""``torch-dyn-int8``'s CUDA implementation, run on the CPU through the same code, against torch.ao's kernel.

On CUDA, ``torch-dyn-int8`` replaces torch.ao's dynamic ``Linear`` (fbgemm, CPU only) by
:class:`qclip.quantize.int8_dynamic_cuda.DynamicInt8Linear`. Here the same class runs on the CPU (int64 or
``torch._int_mm`` matmul, exact or fused epilogue) and is compared with ``quantize_dynamic``:

* per layer, on the inputs each layer of the quantize_dynamic model actually sees while both towers encode:
  the activation scale and zero point equal ``torch._choose_qparams_per_tensor`` (float32), the integer
  activations equal ``torch.quantize_per_tensor``'s, the zero-point-corrected int32 accumulators equal an
  int64 product of those torch integers and torch's qint8 weights, *and* the accumulators read back from
  ``linear_dynamic``'s own outputs; the outputs agree to 1e-5 relative (bit for bit with the exact epilogue);
* end to end: image and text features of the whole model to 1e-5 relative;

on every tiny architecture (both backends) and on a random-init ViT-B/32 (one image, two texts).
"""

from __future__ import annotations

import copy
import warnings
from fractions import Fraction

import pytest
import torch
from torch import nn

from qclip.models.base import ModelInfo
from qclip.models.hf_backend import HFClipModel
from qclip.models.open_clip_backend import OpenClipModel
from qclip.models.random_init import random_open_clip
from qclip.models.tiny import TINY_MODELS, build_tiny_module, tiny_preprocess, tiny_tokenizer
from qclip.quantize import create_quantizer, fresh_copy
from qclip.quantize.coverage import layer_storage
from qclip.quantize.int8_dynamic_cuda import (
    DynamicInt8Linear,
    choose_qparams,
    convert_dynamic_linears,
    fma_f32,
    path_counts,
    quantize_activations,
)

REL_TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small float64/int64 ops: one thread each is ~100x faster than two threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _untrained_tiny(name: str):
    spec = TINY_MODELS[name]
    cls = HFClipModel if spec.family == "hf" else OpenClipModel
    info = ModelInfo(spec=f"tiny:{name}", backend=f"tiny/{spec.family}", arch=name, source="untrained",
                     weights_digest="untrained")
    return cls(build_tiny_module(spec), tiny_tokenizer(spec), tiny_preprocess(spec), info)


#: name -> (builder, number of images, texts)
TEXTS = ["a photo of a red glyph", "two people on a bench", "x"]
MODELS = {**{name: (lambda n=name: _untrained_tiny(n), 3, TEXTS) for name in TINY_MODELS},
          "random-open_clip-ViT-B-32": (lambda: random_open_clip("ViT-B-32", tiny=False, seed=0), 1, TEXTS[:2])}


def _inputs(model, n_images: int, texts: list[str]):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(n_images, 3, model.image_size, model.image_size, generator=g)
    return pixels, model.tokenize(texts)


def _encode(model, pixels, tokens):
    with torch.inference_mode():
        return model.encode_image(pixels), model.encode_text(tokens)


def _reference_and_reimplementation(fp32):
    """(torch.ao's quantize_dynamic model, the CUDA implementation's model), both on the CPU."""
    ref = create_quantizer("torch-dyn-int8").quantize(fresh_copy(fp32))
    q = create_quantizer("torch-dyn-int8")
    q.implementation = "reimplementation"
    return ref, q.quantize(fresh_copy(fp32))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 for equal tensors)."""
    d = (a.double() - b.double()).abs().max().item()
    return d / max(b.double().abs().max().item(), 1e-30) if d else 0.0


def _dynamic_layers(module: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {n: m for n, m in module.named_modules() if type(m) is DynamicLinear}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    build, n_images, texts = MODELS[request.param]
    fp32 = build()
    fp32.prepare_for_quantization()
    ref, emu = _reference_and_reimplementation(fp32)
    pixels, tokens = _inputs(fp32, n_images, texts)
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    hooks = [layer.register_forward_hook(lambda m, a, out, n=n: seen.append((n, a[0].clone(), out.clone())))
             for n, layer in _dynamic_layers(ref.module).items()]
    try:
        ref_out = _encode(ref, pixels, tokens)
    finally:
        for h in hooks:
            h.remove()
    return {"name": request.param, "ref": ref, "emu": emu, "pixels": pixels, "tokens": tokens,
            "ref_out": ref_out, "seen": seen}


def test_every_layer_is_converted_with_torchs_weights(case):
    ref, emu = case["ref"], case["emu"]
    ref_layers = _dynamic_layers(ref.module)
    assert ref_layers and not _dynamic_layers(emu.module)
    for name, layer in ref_layers.items():
        new = emu.module.get_submodule(name)
        assert isinstance(new, DynamicInt8Linear) and new.reduce_range
        w = layer.weight()
        assert torch.equal(new.weight, w.int_repr())
        assert new.weight_scale.tolist() == [torch.tensor(w.q_scale(), dtype=torch.float32).item()]
        assert not new.has_weight_zero_point
    report = emu.quant_report
    assert report["unquantized_layers"] == [] and report["storage"] == {"qint8": len(ref_layers)}
    assert report["coverage"] == ref.quant_report["coverage"]
    assert report["kernels"] == {"cpu-int8-matmul": len(ref_layers)}
    assert report["config"]["kernel"] == "qclip-int8-matmul" and "kernel" not in ref.quant_report["config"]


def test_layer_integers_equal_torchs_and_outputs_agree(case):
    emu, seen = case["emu"], case["seen"]
    ref_layers = _dynamic_layers(case["ref"].module)
    n_act = n_acc = 0
    for name, x, y_ref in seen:
        layer = emu.module.get_submodule(name)
        ref_layer = ref_layers[name]
        x2 = x.reshape(-1, x.shape[-1])
        ints = layer.integers(x)
        # activation parameters and integers: torch's own choose_qparams and quantize_per_tensor
        scale, zp = torch._choose_qparams_per_tensor(x2, True)
        assert ints["scale"].item() == torch.tensor(scale, dtype=torch.float32).item(), name
        assert ints["zero_point"].item() == zp, name
        q_ref = torch.quantize_per_tensor(x2, scale, zp, torch.quint8).int_repr().to(torch.int32)
        assert torch.equal(ints["q"], q_ref), f"{name}: {(ints['q'] != q_ref).sum().item()} activations differ"
        # accumulators: an int64 product of torch's integers, and what linear_dynamic's outputs imply
        w_ref = ref_layer.weight().int_repr().to(torch.int64)
        raw_ref = (q_ref.to(torch.int64) - zp) @ w_ref.t()
        assert torch.equal(ints["raw"], raw_ref), name
        bias = ref_layer.bias()
        multiplier = ints["scale"] * layer.weight_scale
        y2 = y_ref.reshape(-1, y_ref.shape[-1]).double()
        implied = (y2 - (bias.double() if bias is not None else 0)) / multiplier.double()
        assert (implied - raw_ref.double()).abs().max().item() < 0.5, name
        n_act += q_ref.numel()
        n_acc += raw_ref.numel()
        # outputs: bit for bit with the exact epilogue, to float rounding with the fused one
        with torch.inference_mode():
            y = layer(x)
            layer.epilogue = "fused"
            y_fused = layer(x)
            layer.epilogue = "auto"
        assert torch.equal(y, y_ref), f"{name}: max rel {_rel(y, y_ref):.2e}"
        assert _rel(y_fused, y_ref) <= REL_TOL, name
    assert n_act > 0 and n_acc > 0
    assert path_counts(emu.module).keys() <= {"int64"}


def test_end_to_end_features_agree(case):
    img, txt = _encode(case["emu"], case["pixels"], case["tokens"])
    ref_img, ref_txt = case["ref_out"]
    assert _rel(img, ref_img) <= REL_TOL and _rel(txt, ref_txt) <= REL_TOL
    assert torch.equal(img, ref_img) and torch.equal(txt, ref_txt)  # the exact epilogue: bit for bit


@pytest.mark.parametrize("name", ["tiny-a", "tiny-e"])
def test_int_mm_path_with_cuda_shape_rules_on_the_cpu(name):
    """torch._int_mm on the CPU with the CUDA padding rules (M > 16; K, N multiples of 8)."""
    fp32 = _untrained_tiny(name)
    fp32.prepare_for_quantization()
    ref, emu = _reference_and_reimplementation(fp32)
    for m in emu.module.modules():
        if isinstance(m, DynamicInt8Linear):
            m.matmul = "int_mm"
    pixels, tokens = _inputs(fp32, 3, TEXTS)
    img, txt = _encode(emu, pixels, tokens)
    ref_img, ref_txt = _encode(ref, pixels, tokens)
    assert torch.equal(img, ref_img) and torch.equal(txt, ref_txt)
    paths = path_counts(emu.module)
    assert paths.keys() <= {"int_mm", "int_mm_padded"} and paths.get("int_mm_padded", 0) > 0  # M = 3 pooled rows


# ----- the pieces, on shapes and values chosen to reach every branch ------------------------------
QPARAM_CASES = {
    "zeros": torch.zeros(10), "positive": torch.rand(50) + 0.5, "negative": -torch.rand(50) - 0.5,
    "mixed": torch.randn(200, generator=torch.Generator().manual_seed(0)),
    "small scale, min 0": torch.full((5,), 1e-6), "small scale, max 0": torch.full((5,), -3e-7),
    "small scale, both signs": torch.tensor([-2e-4, 1e-4, 3e-5]),
    "subnormal": torch.tensor([1e-45, -1e-44]), "huge": torch.tensor([3.4e38, -3.4e38, 1.0]),
    "one value": torch.tensor([0.7]), "offset": torch.randn(64, generator=torch.Generator().manual_seed(2)) + 5,
}


@pytest.mark.parametrize("reduce_range", [True, False])
@pytest.mark.parametrize("case_name", list(QPARAM_CASES))
def test_choose_qparams_equals_torchs(case_name, reduce_range):
    x = QPARAM_CASES[case_name]
    scale, zp = choose_qparams(x, reduce_range)
    ref_scale, ref_zp = torch._choose_qparams_per_tensor(x, reduce_range)
    assert scale.dtype == torch.float32 and scale.item() == torch.tensor(ref_scale, dtype=torch.float32).item()
    assert zp.item() == ref_zp


def test_quantize_activations_equals_quantize_per_tensor():
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        x = torch.randn(32, 48, generator=g) * (0.01 + trial) + trial * 0.3 - 3
        scale, zp = torch._choose_qparams_per_tensor(x, trial % 2 == 0)
        ref = torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr().to(torch.float32)
        s, z = torch.tensor(scale, dtype=torch.float32), torch.tensor(zp, dtype=torch.int32)
        assert torch.equal(quantize_activations(x, s, z), ref)
        assert torch.equal(quantize_activations(x, s, z, offset=128), ref - 128)


def test_fma_f32_is_correctly_rounded():
    g = torch.Generator().manual_seed(4)
    a = torch.randint(-2**24, 2**24, (4000,), generator=g).to(torch.float32)
    b = torch.rand(4000, generator=g) * 1e-3
    c = torch.randn(4000, generator=g)
    # hard cases: the exact sum lies just off a float32 midpoint, so rounding twice would go wrong
    a[:4] = torch.tensor([1.0, 1.0, -1.0, 3.0])
    b[:4] = torch.tensor([1.0, 1.0, 1.0, 2.0**-60])
    c[:4] = torch.tensor([2.0**-24 + 2.0**-60, 2.0**-24 - 2.0**-60, -(2.0**-24 + 2.0**-60), 1.0])
    got = fma_f32(a, b, c)

    def exact(x, y, z):  # round the exact rational to float32, half to even
        value = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        lo = torch.tensor(float(value), dtype=torch.float64).to(torch.float32).item()  # a neighbour
        cands = {lo, torch.nextafter(torch.tensor(lo), torch.tensor(float("inf"))).item(),
                 torch.nextafter(torch.tensor(lo), torch.tensor(float("-inf"))).item()}
        best = min(cands, key=lambda f: (abs(Fraction(f) - value),
                                         torch.tensor(f).view(torch.int32).item() & 1))
        return best

    want = torch.tensor([exact(x, y, z) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist(), strict=True)])
    assert torch.equal(got, want)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(5, 3, 1), (77, 13, 17), (40, 64, 24), (16, 8, 16)])  # (in, out, rows)
@pytest.mark.parametrize("matmul", ["int64", "int_mm", "float64"])
def test_odd_shapes_and_every_matmul(shape, per_channel, matmul):
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    k, n, m = shape
    torch.manual_seed(5)
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(k, n), nn.Linear(n, n, bias=False)),
                                                     {nn.Linear: qconfig}, dtype=torch.qint8)
    emu = copy.deepcopy(ref)
    convert_dynamic_linears(emu, matmul=matmul)
    for trial in range(5):
        x = torch.randn(2, m, k) * (trial + 0.2) + trial * 0.1
        with torch.inference_mode():
            assert torch.equal(emu(x), ref(x))
    expected = {"int64": {"int64"}, "float64": {"float64"}, "int_mm": {"int_mm", "int_mm_padded"}}[matmul]
    assert path_counts(emu).keys() <= expected
    if matmul == "int_mm" and (k % 8 or n % 8 or 2 * m <= 16):
        assert path_counts(emu).get("int_mm_padded", 0) > 0


def test_empty_input_and_other_dtypes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear}, dtype=torch.qint8)
    layer = DynamicInt8Linear.from_dynamic(ref[0])
    assert layer(torch.zeros(0, 8)).shape == (0, 4)
    x = torch.randn(3, 8)
    assert layer(x.double()).dtype == torch.float64 and torch.equal(layer(x.double()).float(), ref(x))
    with pytest.raises(ValueError, match="matmul"):
        DynamicInt8Linear(layer.weight, layer.weight_scale, layer.weight_zero_point, None, matmul="int32")


def test_quantizer_availability_and_description():
    q = create_quantizer("torch-dyn-int8")
    assert q.available("cuda") == (True, "") and q.available("cpu") == (True, "")
    d = q.describe()
    assert d["supports_cuda"] and "cuda" in d["kernels"] and "_int_mm" in d["kernels"]["cuda"]
    assert q.uses_reimplementation("cuda") and not q.uses_reimplementation("cpu")
    assert q.resolved_config("cuda")["kernel"] == "qclip-int8-matmul" and "kernel" not in q.resolved_config("cpu")
    assert layer_storage(DynamicInt8Linear(torch.zeros(2, 2, dtype=torch.int8), torch.ones(1),
                                           torch.zeros(1), None)) == "qint8"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU tests above run the "
                                                            "same code with the int64 matmul)")
def test_on_cuda_against_the_cpu_kernel():
    fp32 = _untrained_tiny("tiny-a")
    fp32.prepare_for_quantization()
    ref = create_quantizer("torch-dyn-int8").quantize(fresh_copy(fp32))
    gpu = create_quantizer("torch-dyn-int8").quantize(fresh_copy(fp32).to("cuda"))
    assert gpu.quant_report["kernels"] == {"cuda-int8-matmul": len(_dynamic_layers(ref.module))}
    for name, layer in _dynamic_layers(ref.module).items():
        x = torch.randn(40, layer.in_features) * 2 + 0.3
        new = gpu.module.get_submodule(name)
        ints = new.integers(x.cuda())
        scale, zp = torch._choose_qparams_per_tensor(x, True)
        q_ref = torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr().to(torch.int32)
        assert torch.equal(ints["q"].cpu(), q_ref)
        with torch.inference_mode():
            assert _rel(new(x.cuda()).cpu(), layer(x)) <= REL_TOL
    assert path_counts(gpu.module).keys() <= {"int_mm", "int_mm_padded", "float64"}
