"""PyTorch's dynamic int8 ``Linear`` (``torch.ao.quantization.quantize_dynamic``) re-implemented with plain
tensor ops, so that ``torch-dyn-int8`` runs on CUDA with the arithmetic of the CPU kernel.

On the CPU, ``quantize_dynamic`` swaps every ``nn.Linear`` for ``torch.ao.nn.quantized.dynamic.Linear``,
whose forward is ``torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)``; with the default
``x86``/``fbgemm`` engine that is fbgemm's ``PackedLinearWeight::apply_dynamic`` (there is no CUDA kernel).
What it computes, and what :class:`DynamicInt8Linear` computes the same way:

1. **Activation parameters, per call over the whole input** (``fbgemm::FindMinMax`` then
   ``quant_utils::ChooseQuantizationParams(min, max, 0, 255, reduce_range=True)``): the range is
   ``[min(x_min, 0), max(x_max, 0)]``; ``reduce_range`` halves it to ``[0, 127]`` (7-bit activations, so
   fbgemm's u8*s8 pair sums cannot saturate int16); ``scale = (max - min) / 127`` in double, 0.1 if its
   float is 0 or has an infinite reciprocal, raised to ``6.1e-5`` (with the range rescaled) when smaller;
   the zero point from whichever end adds the smaller terms, clamped to ``[0, 127]`` and rounded
   half-to-even (``nearbyint``); the scale is then used as a float32 (see :func:`choose_qparams`).
2. **Activation integers**: ``q = clamp(zero_point + nearbyint(x * (1.0f / scale)), 0, 255)``, float32
   product, half-to-even (fbgemm's non-legacy ``Quantize``; measured: its legacy ``fma(x, 1/scale, zp)``
   rounding disagrees with ``linear_dynamic`` on some elements, this one on none).
3. **Weights**: the qint8 weights ``quantize_dynamic`` produced, read back from the packed parameters
   (``_weight_bias()``), never re-derived: per-tensor (default) or per-channel symmetric scales as float32.
4. **int32 accumulation** with the zero-point corrections of fbgemm's row/column offsets:
   ``raw = sum_k (q - zp_x)(w - zp_w)``, computed as ``(q - 128) @ w.T + (128 - zp_x) * colsum(w)`` so both
   operands fit int8 (``torch._int_mm``; ``q`` reaches 128 in rare rounding cases even with 7 bits).
5. **Dequantization**: ``y = fma(float(raw), float32(scale_x * scale_w), bias)``: fbgemm's epilogue
   (``requantizeForFloat``) is one fused multiply-add in float32 on this x86 build (measured bit for bit),
   without bias a plain product.

The integer matmul runs as ``matmul``:

* ``"int_mm"``: ``torch._int_mm`` (int8 x int8 -> int32). Its CUDA shape rules (M > 16, K and N multiples
  of 8) are always applied: smaller M and other K/N are zero-padded (exact) and counted as
  ``int_mm_padded``. Works on the CPU too, which is how the padding is tested without a GPU.
* ``"int64"``: an int64 matmul, the CPU reference path;
* ``"float64"``: a float64 matmul, exact for these integers (|sum| < 2^53), the fallback on a GPU where
  ``torch._int_mm`` raises (counted as ``float64``);
* ``"auto"`` (default): ``int_mm`` on CUDA, ``int64`` on the CPU.

The epilogue runs as ``epilogue``: ``"exact"`` emulates the float32 fused multiply-add exactly (float64
product, TwoSum and round-to-odd, then one rounding to float32: bit for bit fbgemm's result, on any
device), ``"fused"`` is ``torch.addcmul`` (a hardware FMA where the device kernel contracts it, else two
roundings: float rounding either way, cheaper on a GPU), ``"auto"`` is exact on the CPU, fused on CUDA.

Everything in steps 1-4 is integer-exact on every device; the float32 output is bit for bit with
``epilogue="exact"``. ``tests/quantize/test_dyn_int8_cuda_path.py`` checks this on the CPU against
``quantize_dynamic`` on every tiny architecture and ViT-B/32.
"""

from __future__ import annotations

import warnings
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DynamicInt8Linear",
    "choose_qparams",
    "quantize_activations",
    "fma_f32",
    "convert_dynamic_linears",
    "quantize_dynamic_int8",
    "path_counts",
    "MATMULS",
    "EPILOGUES",
]

MATMULS = ("auto", "int_mm", "int64", "float64")
EPILOGUES = ("auto", "exact", "fused")

#: quant_utils::SMALL_SCALE_THRESHOLD (6.1e-5f, the smallest normal float16)
_SMALL_SCALE = 6.1e-5
#: the shape rules of torch._int_mm on CUDA
_INT_MM_MIN_M, _INT_MM_ALIGN = 17, 8
#: devices whose torch._int_mm raised once (device string -> reason); they use the float64 matmul
_INT_MM_BROKEN: dict[str, str] = {}


def choose_qparams(x: torch.Tensor, reduce_range: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` of fbgemm's dynamic activation quantization for the float32 tensor ``x``.

    Line for line ``fbgemm::FindMinMax`` over all of ``x`` and ``quant_utils::ChooseQuantizationParams(
    min, max, qmin=0, qmax=255, preserve_sparsity=False, force_scale_power_of_two=False, reduce_range)``,
    with the same float32/float64 steps, as 0-d tensors on ``x``'s device (no host synchronisation).
    ``scale`` is the float32 the kernel uses, ``zero_point`` an int32. ``x`` must not be empty.
    """
    qmin, qmax = (0, 127) if reduce_range else (0, 255)
    span = qmax - qmin
    f32, f64 = torch.float32, torch.float64
    lo, hi = torch.aminmax(x.detach().to(f32))
    zero = torch.zeros((), dtype=f32, device=x.device)
    lo, hi = torch.minimum(lo, zero), torch.maximum(hi, zero)  # the range contains 0
    scale = (hi.to(f64) - lo.to(f64)) / span
    # a float scale of 0, or one whose float reciprocal is infinite, becomes 0.1
    scale_f = scale.to(f32)
    bad = (scale_f == 0) | torch.isinf((1.0 / scale_f.to(f64)).to(f32))
    scale = torch.where(bad, torch.full_like(scale, 0.1), scale)
    # cut off small scales at 6.1e-5f, stretching the range to match
    small_f = torch.full((), _SMALL_SCALE, dtype=f32, device=x.device)
    small = scale < small_f.to(f64)
    amplifier = small_f / scale.to(f32)  # float org_scale = scale; SMALL / org_scale in float
    lo_small = torch.where(lo == 0, lo, torch.where(hi == 0, -small_f * span, lo * amplifier))
    hi_small = torch.where(lo == 0, small_f * span, torch.where(hi == 0, hi, hi * amplifier))
    lo, hi = torch.where(small, lo_small, lo), torch.where(small, hi_small, hi)
    scale = torch.where(small, small_f.to(f64), scale)
    # zero point from the end whose terms are smaller, nudged to an integer in [qmin, qmax]
    lo_s, hi_s = lo.to(f64) / scale, hi.to(f64) / scale
    from_min, from_max = qmin - lo_s, qmax - hi_s
    err_min, err_max = abs(qmin) - lo_s.abs(), abs(qmax) - hi_s.abs()
    initial = torch.where(err_min < err_max, from_min, from_max)
    nudged = torch.round(initial.clamp(qmin, qmax))  # clamp first: values outside become qmin/qmax
    return scale.to(f32), nudged.to(torch.int32)


def quantize_activations(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                         offset: int = 0) -> torch.Tensor:
    """``clamp(zero_point + nearbyint(x * (1/scale)), 0, 255) - offset`` as float32 integers.

    ``1/scale`` is the float32 reciprocal (computed in float64 and rounded once: the correctly rounded
    quotient, as on the CPU); the product is float32 and ``torch.round`` rounds half to even like
    ``nearbyint``. Adding the zero point in float32 is exact where it matters: the sum of two integers
    below 2^24, and larger magnitudes clamp to the same end either way.
    """
    inv = (1.0 / scale.to(torch.float64)).to(torch.float32)
    t = torch.round(x * inv)
    return (t + (zero_point.to(torch.float32) - offset)).clamp_(-offset, 255 - offset)


def fma_f32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` for float32 tensors with a single rounding to float32 (an exact fused multiply-add).

    The product of two float32 values is exact in float64; the sum is rounded to float64 *to odd*
    (TwoSum gives the exact remainder; an inexact sum with an even last bit moves one ulp towards it),
    and rounding that to float32 is then the correctly rounded result: float64 has more than
    24 + 2 bits, so the double rounding is innocuous. Identical on every device.
    """
    p = a.to(torch.float64) * b.to(torch.float64)
    cd = c.to(torch.float64)
    s = p + cd
    bb = s - p
    r = (p - (s - bb)) + (cd - bb)  # s + r == p + cd exactly
    bits = s.view(torch.int64)
    inexact_even = (r != 0) & ((bits & 1) == 0)
    step = torch.where((r > 0) == (s > 0), 1, -1)  # one ulp away from zero iff r has s's sign
    bits = torch.where(inexact_even, bits + step, bits)
    return bits.view(torch.float64).to(torch.float32)


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


class DynamicInt8Linear(nn.Module):
    """``torch.ao.nn.quantized.dynamic.Linear`` (qint8, fbgemm) computed with tensor ops on any device.

    Built from a quantized layer with :meth:`from_dynamic`; holds its int8 weights ``[out, in]``, their
    column sums, the float32 weight scale(s) and the float32 bias as buffers (so ``.to(device)`` moves
    them). ``paths`` counts which integer matmul each call took (see the module docstring).
    """

    qclip_storage = "qint8"  # what the coverage report calls this storage: the same weights as torch.ao's

    def __init__(self, weight_int8: torch.Tensor, weight_scale: torch.Tensor, weight_zero_point: torch.Tensor,
                 bias: torch.Tensor | None, *, reduce_range: bool = True, matmul: str = "auto",
                 epilogue: str = "auto"):
        super().__init__()
        if matmul not in MATMULS:
            raise ValueError(f"Expected matmul in {MATMULS}, but got {matmul!r}")
        if epilogue not in EPILOGUES:
            raise ValueError(f"Expected epilogue in {EPILOGUES}, but got {epilogue!r}")
        if weight_int8.dtype != torch.int8 or weight_int8.dim() != 2:
            raise ValueError(f"Expected a 2-D int8 weight, but got {weight_int8.dtype} {tuple(weight_int8.shape)}")
        n, k = weight_int8.shape
        if k * 128 * 128 >= 2**31:
            raise ValueError(f"Expected in_features < {2**31 // (128 * 128)} (int32 accumulation), but got {k}")
        self.in_features, self.out_features = k, n
        self.reduce_range, self.matmul, self.epilogue = reduce_range, matmul, epilogue
        w = weight_int8.contiguous()
        self.register_buffer("weight", w)
        self.register_buffer("col_sums", w.sum(dim=1, dtype=torch.int32))
        self.register_buffer("weight_scale", weight_scale.to(torch.float32).reshape(-1).contiguous())
        zp = weight_zero_point.to(torch.int32).reshape(-1).contiguous()
        self.register_buffer("weight_zero_point", zp)
        self.has_weight_zero_point = bool((zp != 0).any())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())
        kp, np_ = _round_up(k, _INT_MM_ALIGN), _round_up(n, _INT_MM_ALIGN)
        # torch._int_mm wants K and N multiples of 8 on CUDA: a zero-padded copy, only for shapes that need it
        padded = F.pad(w, (0, kp - k, 0, np_ - n)) if (kp, np_) != (k, n) else None
        self.register_buffer("weight_padded", padded)
        self.paths: Counter = Counter()

    @classmethod
    def from_dynamic(cls, layer: nn.Module, *, matmul: str = "auto", epilogue: str = "auto") -> DynamicInt8Linear:
        """The equivalent of a ``torch.ao.nn.quantized.dynamic.Linear`` (qint8) from its packed weights."""
        packed = layer._packed_params
        if packed.dtype != torch.qint8:
            raise NotImplementedError(f"Expected a qint8 dynamic Linear, but got one with dtype {packed.dtype}")
        qweight, bias = packed._weight_bias()
        scheme = qweight.qscheme()
        if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            scale = torch.tensor([qweight.q_scale()], dtype=torch.float32)
            zp = torch.tensor([qweight.q_zero_point()], dtype=torch.int32)
        elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
            if qweight.q_per_channel_axis() != 0:
                raise NotImplementedError(f"Expected per-channel weights along axis 0, but got axis "
                                          f"{qweight.q_per_channel_axis()}")
            scale = qweight.q_per_channel_scales().to(torch.float32)
            zp = qweight.q_per_channel_zero_points().to(torch.int32)
        else:
            raise NotImplementedError(f"Expected per-tensor or per-channel weights, but got {scheme}")
        # torch.ao's forward passes reduce_range=True from version 4 of the module on
        version = getattr(layer, "version", None)
        reduce_range = not (version is None or version < 4)
        return cls(qweight.int_repr(), scale, zp, bias, reduce_range=reduce_range, matmul=matmul,
                   epilogue=epilogue)

    # ----- arithmetic -------------------------------------------------------------------------------
    def integers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The integer stages for input ``x`` ``[..., in]``: ``scale``, ``zero_point``, the activations ``q``
        (``[M, in]``, int32 in [0, 255]), the int8 operand ``q8 = q - 128`` and ``raw`` (``[M, out]``, the
        zero-point-corrected int32 accumulators, as int64)."""
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        scale, zp = choose_qparams(x2, self.reduce_range)
        q8f = quantize_activations(x2, scale, zp, offset=128)
        q8 = q8f.to(torch.int8)
        raw = self._raw(q8, zp)
        return {"scale": scale, "zero_point": zp, "q": (q8f + 128).to(torch.int32), "q8": q8,
                "raw": raw.to(torch.int64)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (*x.shape[:-1], self.out_features)
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        if x2.shape[0] == 0:
            return x.new_zeros(shape)
        scale, zp = choose_qparams(x2, self.reduce_range)
        q8 = quantize_activations(x2, scale, zp, offset=128).to(torch.int8)
        raw = self._raw(q8, zp)
        multiplier = scale * self.weight_scale  # float32, as fbgemm's A_scale * B_scale
        y = self._dequantize(raw.to(torch.float32), multiplier, x2.device)
        return y.reshape(shape).to(x.dtype)

    def _raw(self, q8: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
        """``sum_k (q - zp_x)(w - zp_w)`` from ``q8 = q - 128``: ``acc + (128 - zp_x) colsum(w)``, and for
        non-zero weight zero points ``- zp_w (rowsum(q) - K zp_x)``."""
        acc = self._int_matmul(q8)
        shift = (128 - zp).to(acc.dtype)
        raw = acc + shift * self.col_sums.to(acc.dtype)
        if self.has_weight_zero_point:
            rows = q8.sum(dim=1, dtype=acc.dtype) + self.in_features * shift  # rowsum(q) - K zp_x
            raw = raw - rows[:, None] * self.weight_zero_point.to(acc.dtype)
        return raw

    def _dequantize(self, raw_f: torch.Tensor, multiplier: torch.Tensor, device: torch.device) -> torch.Tensor:
        if self.bias is None:
            return raw_f * multiplier
        epilogue = self.epilogue if self.epilogue != "auto" else ("fused" if device.type == "cuda" else "exact")
        if epilogue == "exact":
            return fma_f32(raw_f, multiplier.expand_as(self.bias), self.bias)
        return torch.addcmul(self.bias, raw_f, multiplier)

    def _resolved_matmul(self, device: torch.device) -> str:
        mode = self.matmul
        if mode == "auto":
            mode = "int_mm" if device.type == "cuda" else "int64"
        if mode == "int_mm" and str(device) in _INT_MM_BROKEN:
            mode = "float64"
        if mode == "int64" and device.type != "cpu":
            raise RuntimeError(f"Expected the int64 matmul on the CPU only (no integer matmul on {device}), "
                               "but got it on another device")
        return mode

    def _int_matmul(self, q8: torch.Tensor) -> torch.Tensor:
        mode = self._resolved_matmul(q8.device)
        if mode == "int_mm":
            try:
                return self._int_mm(q8)
            except RuntimeError as exc:
                if q8.device.type != "cuda":
                    raise
                _INT_MM_BROKEN[str(q8.device)] = f"{type(exc).__name__}: {exc}"[:300]
                warnings.warn(f"torch._int_mm failed on {q8.device} ({_INT_MM_BROKEN[str(q8.device)]}); "
                              "torch-dyn-int8 uses an exact float64 matmul there instead", RuntimeWarning,
                              stacklevel=2)
                mode = "float64"
        self.paths[mode] += 1
        if mode == "int64":
            return q8.to(torch.int64) @ self.weight.to(torch.int64).t()
        # float64: every product and partial sum is an integer below 2^53 in magnitude, so exact
        return (q8.to(torch.float64) @ self.weight.to(torch.float64).t()).to(torch.int64)

    def _int_mm(self, q8: torch.Tensor) -> torch.Tensor:
        m, k = q8.shape
        w = self.weight if self.weight_padded is None else self.weight_padded
        n_p, k_p = w.shape
        m_p = max(m, _INT_MM_MIN_M)
        a = q8 if (m_p, k_p) == (m, k) else F.pad(q8, (0, k_p - k, 0, m_p - m))  # zeros add nothing
        acc = torch._int_mm(a, w.t())
        padded = (m_p, k_p, n_p) != (m, k, self.out_features)
        self.paths["int_mm_padded" if padded else "int_mm"] += 1
        return acc[:m, : self.out_features] if padded else acc

    def extra_repr(self) -> str:
        per = "per-channel" if self.weight_scale.numel() > 1 else "per-tensor"
        return (f"in_features={self.in_features}, out_features={self.out_features}, qint8 {per}, "
                f"reduce_range={self.reduce_range}, matmul={self.matmul!r}, epilogue={self.epilogue!r}")


def _is_dynamic_linear(m: nn.Module) -> bool:
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    except ImportError:  # pragma: no cover - torch without torch.ao
        return False
    return type(m) is DynamicLinear


def convert_dynamic_linears(module: nn.Module, *, matmul: str = "auto", epilogue: str = "auto") -> list[str]:
    """Replace every ``torch.ao`` dynamic qint8 ``Linear`` in ``module`` by a :class:`DynamicInt8Linear`
    with the same weights, in place; returns the qualified names replaced."""
    names = []
    for parent_name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            if _is_dynamic_linear(child):
                setattr(parent, child_name, DynamicInt8Linear.from_dynamic(child, matmul=matmul, epilogue=epilogue))
                names.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return names


def quantize_dynamic_int8(module: nn.Module, qconfig, device: str | torch.device, *, matmul: str = "auto",
                          epilogue: str = "auto") -> list[str]:
    """``quantize_dynamic`` on the CPU (so the int8 weights are exactly torch's), then every quantized layer
    as a :class:`DynamicInt8Linear`, and the module on ``device``. In place; returns the layers converted."""
    from torch.ao.quantization import quantize_dynamic

    module.to("cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated")
        quantize_dynamic(module, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    names = convert_dynamic_linears(module, matmul=matmul, epilogue=epilogue)
    module.to(device)
    return names


def path_counts(module: nn.Module) -> dict[str, int]:
    """How many calls of the module's :class:`DynamicInt8Linear` layers took each matmul path."""
    total: Counter = Counter()
    for m in module.modules():
        if isinstance(m, DynamicInt8Linear):
            total.update(m.paths)
    return dict(total)
