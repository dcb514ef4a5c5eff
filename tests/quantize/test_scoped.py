"""A tower scope for every module-swapping quantizer (issue 14, item 6): ``NAME-vision`` quantizes the
vision tower and leaves the text tower exactly float32 (counted in the coverage report), ``NAME-text`` the
other way round; the scope is in the name, the description and the cache key."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from qclip.models.random_init import random_hf, random_open_clip
from qclip.quantize import create_quantizer, fresh_copy, list_quantizers
from qclip.quantize.base import QUANTIZES_RE, is_known_quantizer
from qclip.quantize.scoped import UNSCOPED_FAMILIES, ScopedQuantizer

TEXTS = ["a photo of a dog", "a red square"]


def _calibration(n: int = 16):
    import numpy as np
    from PIL import Image

    from qclip.quantize.calibration import CalibrationSet

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]
    return CalibrationSet("test", 0, images, [" ".join(rng.choice(TEXTS, 2)) for _ in range(n)],
                          [f"img{i}" for i in range(n)])


def _scopable() -> list[str]:
    out = []
    for name in list_quantizers():
        q = create_quantizer(name)
        if getattr(q, "family", "") in UNSCOPED_FAMILIES or not q.available("cpu")[0]:
            continue
        out.append(name)
    return out


_MODELS: dict = {}


def _model(backend: str):
    if backend not in _MODELS:
        m = random_open_clip("ViT-B-32", tiny=True, seed=0) if backend == "open_clip" else random_hf(seed=0)
        m.prepare_for_quantization()
        _MODELS[backend] = m
    return _MODELS[backend]


def _encode(m):
    px = torch.randn(2, 3, m.image_size, m.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return m.encode_image(px.to(getattr(m, "compute_dtype", torch.float32))), m.encode_text(m.tokenize(TEXTS))


@pytest.mark.parametrize("name", _scopable())
@pytest.mark.parametrize("backend, scope", [("open_clip", "vision"), ("hf", "text"), ("open_clip", "text")])
def test_every_swapping_quantizer_takes_a_scope(backend, name, scope):
    """Both scopes on open_clip, and the text scope on transformers (a tower of two modules there)."""
    model = _model(backend)
    q = create_quantizer(f"{name}-{scope}")
    assert isinstance(q, ScopedQuantizer) and q.name == f"{name}-{scope}"
    out = q.quantize(fresh_copy(model), calibration=_calibration() if q.needs_calibration else None)
    cov = out.quant_report["coverage"]
    inside, outside = ("image", "text") if scope == "vision" else ("text", "image")
    assert cov[inside]["quantized"] == cov[inside]["total"] > 0, cov
    assert cov[outside]["quantized"] == 0 and cov[outside]["total"] > 0, cov  # counted, left float32
    img, txt = _encode(out)
    ref_img, ref_txt = _encode(model)
    if scope == "vision":
        torch.testing.assert_close(txt.float(), ref_txt)  # the text tower is untouched
    else:
        torch.testing.assert_close(img.float(), ref_img)
    d = q.describe()
    assert d["scope"] == scope and d["quantizes"].endswith("vision tower" if scope == "vision" else "text tower")
    assert QUANTIZES_RE.match(d["quantizes"]), d["quantizes"]
    assert q.config_json() != create_quantizer(name).config_json()
    assert q.config_json() != create_quantizer(f"{name}-{'text' if scope == 'vision' else 'vision'}").config_json()


def test_names_resolve_only_for_registered_quantizers():
    assert is_known_quantizer("bnb-nf4-vision") and is_known_quantizer("torch-dyn-int8-text")
    assert not is_known_quantizer("no-such-quantizer-vision")
    assert "bnb-nf4-vision" not in list_quantizers()  # on demand, like the simulated grid
    with pytest.raises(ValueError, match="no tower scope"):
        create_quantizer("fp16-vision")
    with pytest.raises(ValueError, match="no tower scope"):
        create_quantizer("fp32-text")
    # the families with their own scope keep theirs
    assert create_quantizer("w4a8-vision").config.scope == "vision"
    assert create_quantizer("w4a8-lsq-text").config.scope == "text"


def test_options_reach_the_inner_quantizer():
    q = create_quantizer("bnb-int8-vision", threshold=0.0)
    assert q.config.threshold == 0.0 and "threshold" in q.config_json()


def test_a_missing_library_is_named_with_the_scoped_name(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    ok, reason = create_quantizer("bnb-nf4-vision").available("cpu")
    assert not ok and reason.startswith("bnb-nf4-vision:") and "pip install" in reason
