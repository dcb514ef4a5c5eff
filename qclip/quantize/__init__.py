"""Quantizers: the protocol and registry (:mod:`.base`), one module per family, and coverage counting.

Built-in quantizers (``list_quantizers()``): ``fp32``, ``fp16``, ``bf16`` (:mod:`.precision`),
``bnb-int8``, ``bnb-nf4``, ``bnb-fp4`` (:mod:`.bnb`), ``torch-dyn-int8`` (:mod:`.torch_dynamic`),
``ao-int8wo``, ``ao-int8dyn``, ``ao-int4wo``, ``ao-float8wo``, ``ao-float8dyn`` (:mod:`.torchao`), ``hqq-4bit``,
``hqq-8bit`` (:mod:`.hqq`), ``quanto-w8``, ``quanto-w4``, ``quanto-w8a8`` (:mod:`.quanto`). Importing this package
imports none of bitsandbytes/torchao/hqq/optimum-quanto; they load when a quantizer runs.

Typical use::

    q = create_quantizer("bnb-nf4", double_quant=True)
    ok, reason = q.available(model.device)
    qmodel = q.quantize(fresh_copy(model))   # modifies and returns the copy
    qmodel.quant_report["coverage"]
"""

from __future__ import annotations

import copy

from . import bnb, hqq, precision, qat, quanto, scoped, simulated, torch_dynamic, torchao  # noqa: F401  (the built-ins)
from .base import (
    ENTRY_POINT_GROUP,
    BaseQuantizer,
    Quantizer,
    QuantizerSpec,
    QuantizerUnavailable,
    create_quantizer,
    is_quantizer,
    library_version,
    list_quantizers,
    load_quantizer_from_path,
    quantizer_available,
    register_quantizer,
)
from .coverage import CoverageWarning, coverage, fp32_weight_bytes, is_quantized, layer_storage, weight_bytes

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseQuantizer",
    "CoverageWarning",
    "Quantizer",
    "QuantizerSpec",
    "QuantizerUnavailable",
    "coverage",
    "create_quantizer",
    "fp32_weight_bytes",
    "fresh_copy",
    "is_quantized",
    "is_quantizer",
    "layer_storage",
    "library_version",
    "list_quantizers",
    "load_quantizer_from_path",
    "quantizer_available",
    "register_quantizer",
    "weight_bytes",
]


def fresh_copy(model):
    """A copy of a :class:`~qclip.models.base.ClipModel` safe to hand to ``Quantizer.quantize``.

    The wrapper is copied shallowly (tokenizer and preprocess are shared, read-only) and its ``module``
    deep-copied; ``quant_report`` is cleared. Use it on the fp32 reference so quantizing never touches it.
    """
    new = copy.copy(model)
    new.module = copy.deepcopy(model.module)
    new.quant_report = None
    return new
