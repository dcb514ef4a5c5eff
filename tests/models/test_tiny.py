"""The embedded tiny CLIP population: construction, the calls the backends use, short training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from qclip.data.synthetic._vocab import SOURCES
from qclip.models.tiny.model import (
    TINY_MODELS,
    TinySpec,
    _normalize_pixels,
    build_tiny_module,
    tiny_features,
    tiny_preprocess,
    tiny_tokenizer,
    train_tiny,
    train_tiny_many,
)

NAMES = list(TINY_MODELS)


@pytest.fixture(scope="module")
def world(synthetic_test_world):
    """The seed-0 test world, shared with the generator's tests (tests/conftest.py)."""
    return synthetic_test_world[0]


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def _encode(spec: TinySpec, module, pixels, tokens):
    """Exactly the calls the backends make."""
    if spec.family == "open_clip":
        return module.encode_image(pixels), module.encode_text(tokens), module.logit_scale.exp()
    img = module.get_image_features(pixel_values=pixels).pooler_output
    txt = module.get_text_features(input_ids=tokens).pooler_output
    return img, txt, module.logit_scale.exp()


def test_population():
    assert len(TINY_MODELS) >= 6
    families = [s.family for s in TINY_MODELS.values()]
    assert families.count("hf") >= 1 and families.count("open_clip") >= 2
    assert all(name == spec.name for name, spec in TINY_MODELS.items())
    assert {s.source for s in TINY_MODELS.values()} == set(SOURCES)
    assert len({s.seed for s in TINY_MODELS.values()}) == len(TINY_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_build_and_forward(name):
    spec = TINY_MODELS[name]
    module = build_tiny_module(spec).eval()
    pre = tiny_preprocess(spec)
    pixels = torch.stack([pre(im) for im in _images()])
    tokens = tiny_tokenizer(spec)(["a photo of a star.", "a red heart on grass", "a nurse"])
    assert pixels.shape == (3, 3, spec.image_size, spec.image_size)
    assert tokens.shape == (3, spec.context_length) and tokens.dtype == torch.long
    with torch.no_grad():
        img, txt, scale = _encode(spec, module, pixels, tokens)
    assert img.shape == txt.shape == (3, spec.embed_dim)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    assert float(scale) == pytest.approx(1 / 0.07, rel=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_standard_gelu_and_sizes(name):
    spec = TINY_MODELS[name]
    module = build_tiny_module(spec)
    if spec.family == "open_clip":
        acts = {type(m).__name__ for m in module.modules()}
        assert "GELU" in acts and "QuickGELU" not in acts
        assert module.context_length == spec.context_length  # open_clip's text default (77) overridden
        assert len(module.transformer.resblocks) == spec.text_layers
    else:
        cfg = module.config
        assert cfg.text_config.hidden_act == cfg.vision_config.hidden_act == "gelu"
        assert (cfg.text_config.eos_token_id, cfg.text_config.bos_token_id, cfg.text_config.pad_token_id) == (
            49407, 49406, 0)
        assert cfg.text_config.vocab_size == 49408
        assert cfg.text_config.max_position_embeddings == spec.context_length


def test_tokenizer_uses_openai_bpe_ids():
    spec = TINY_MODELS[NAMES[0]]
    tok = tiny_tokenizer(spec)(["a photo of a star.", "word " * 40])
    assert tok[0, 0] == 49406 and (tok[0] == 49407).sum() == 1 and tok[0, -1] == 0
    assert tok[1, -1] == 49407  # truncated text still ends with the end-of-text token


@pytest.mark.parametrize("name", [NAMES[0], next(n for n in NAMES if TINY_MODELS[n].family == "hf")])
def test_deterministic_init(name):
    spec = TINY_MODELS[name]
    state = torch.random.get_rng_state()
    a, b = build_tiny_module(spec).state_dict(), build_tiny_module(spec).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = build_tiny_module(dataclasses.replace(spec, seed=spec.seed + 100)).state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_training_input_matches_eval_preprocess():
    spec = TINY_MODELS[NAMES[0]]
    arr = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    eval_px = torch.stack([tiny_preprocess(spec)(Image.fromarray(a)) for a in arr])
    torch.testing.assert_close(_normalize_pixels(torch.from_numpy(arr)), eval_px)


@pytest.mark.slow  # 40 training steps per model
@pytest.mark.parametrize("name", [NAMES[0], next(n for n in NAMES if TINY_MODELS[n].family == "hf")])
def test_short_training_lowers_loss_and_loads_back(world, name):
    spec = dataclasses.replace(TINY_MODELS[name], steps=40, batch_size=64, lr=3e-3, warmup_steps=5)
    losses: list[float] = []
    state = train_tiny(spec, world, progress=False, log=lambda step, loss: losses.append(loss), threads=1)
    assert len(losses) == spec.steps
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    module = build_tiny_module(spec)
    module.load_state_dict(state)
    pixels = torch.stack([tiny_preprocess(spec)(im) for im in _images(2)])
    with torch.no_grad():
        img, txt = tiny_features(spec, module.eval(), pixels, tiny_tokenizer(spec)(["a star", "a ring"]))
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()


def test_training_is_deterministic(world):
    spec = dataclasses.replace(TINY_MODELS[NAMES[0]], steps=3, batch_size=16)
    a = train_tiny(spec, world, progress=False, threads=1)
    b = train_tiny(spec, world, progress=False, threads=1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # trains in two worker processes
def test_train_many_gives_the_single_thread_weights(world):
    specs = [dataclasses.replace(TINY_MODELS[n], steps=2, batch_size=16) for n in (NAMES[0], NAMES[-1])]
    many = train_tiny_many(specs, world, jobs=2, progress=False)
    assert list(many) == [s.name for s in specs]
    one = train_tiny(specs[0], world, progress=False)
    assert all(torch.equal(one[k], many[specs[0].name][k]) for k in one)


def test_unknown_source(world):
    spec = dataclasses.replace(TINY_MODELS[NAMES[0]], source="nowhere", steps=1)
    with pytest.raises(ValueError, match="Expected a training source"):
        train_tiny(spec, world, progress=False)
