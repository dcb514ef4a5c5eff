"""Random-init CLIPs of real architectures: sizes, families, determinism, wrappers that work."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from qclip.errors import UnknownModelError
from qclip.models.hf_backend import HFClipModel
from qclip.models.open_clip_backend import OpenClipModel
from qclip.models.random_init import (
    HF_ARCHS,
    TINY,
    _hf_config,
    random_hf,
    random_open_clip,
    state_dict_digest,
)


def _check_wrapper(model, dim=TINY["embed_dim"]):
    img = Image.new("RGB", (48, 40), (120, 30, 200))
    pixels = torch.stack([model.preprocess(img)] * 2)
    assert pixels.shape == (2, 3, model.image_size, model.image_size)
    tokens = model.tokenize(["a photo of a cat", "a dog"])
    assert tokens.dtype == torch.int64 and tokens.shape == (2, TINY["context_length"])
    with torch.no_grad():
        assert model.encode_image(pixels).shape == (2, dim)
        assert model.encode_text(tokens).shape == (2, dim)


def test_tiny_open_clip_keeps_the_family():
    from open_clip.model import CLIP
    from open_clip.transformer import QuickGELU

    m = random_open_clip("ViT-B-32", tiny=True, seed=0)
    assert isinstance(m, OpenClipModel) and isinstance(m.module, CLIP)
    v = m.module.visual
    assert (v.image_size, v.patch_size, len(v.transformer.resblocks), v.transformer.width) == ((32, 32), (16, 16), 2, 64)
    assert v.transformer.resblocks[0].attn.num_heads == TINY["vision_heads"]
    assert len(m.module.transformer.resblocks) == 2 and m.module.context_length == 16
    assert m.module.vocab_size == 49408
    assert not isinstance(m.module.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert m.info.source == "random init" and m.info.backend == "open_clip" and m.info.arch == "ViT-B-32"
    assert m.info.weights_digest.startswith("sha256:")
    _check_wrapper(m)

    q = random_open_clip("ViT-B-32-quickgelu", tiny=True, seed=0)
    assert isinstance(q.module.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert isinstance(q.module.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert q.info.extra["quick_gelu"] is True
    assert q.info.weights_digest != m.info.weights_digest  # same tensors, different activation


def test_seeds_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = random_open_clip(seed=5), random_open_clip(seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.info.weights_digest == b.info.weights_digest
    assert random_open_clip(seed=6).info.weights_digest != a.info.weights_digest
    assert random_hf(seed=5).info.weights_digest == random_hf(seed=5).info.weights_digest


def test_tiny_hf_has_the_tiny_sizes_and_works():
    m = random_hf("openai/clip-vit-base-patch16", tiny=True, seed=0)
    assert isinstance(m, HFClipModel)
    vc, tc = m.module.config.vision_config, m.module.config.text_config
    assert (vc.hidden_size, vc.num_hidden_layers, vc.image_size, vc.patch_size) == (64, 2, 32, 16)
    assert (tc.hidden_size, tc.num_hidden_layers, tc.max_position_embeddings) == (64, 2, 16)
    assert vc.hidden_act == tc.hidden_act == "quick_gelu"
    assert m.info.source == "random init" and m.info.backend == "hf"
    _check_wrapper(m)


@pytest.mark.parametrize("arch, vision, text, proj", [
    ("openai/clip-vit-base-patch32", (768, 12, 12, 32, 224), (512, 12, 8), 512),
    ("openai/clip-vit-base-patch16", (768, 12, 12, 16, 224), (512, 12, 8), 512),
    ("openai/clip-vit-large-patch14", (1024, 24, 16, 14, 224), (768, 12, 12), 768),
    ("openai/clip-vit-large-patch14-336", (1024, 24, 16, 14, 336), (768, 12, 12), 768),
])
def test_full_size_hf_configs_match_the_real_checkpoints(arch, vision, text, proj):
    cfg = _hf_config(arch, tiny=False)
    v, t = cfg.vision_config, cfg.text_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.patch_size, v.image_size) == vision
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads) == text
    assert t.max_position_embeddings == 77 and t.vocab_size == 49408 and cfg.projection_dim == proj
    assert arch in HF_ARCHS


def test_unknown_architectures_suggest_close_names():
    with pytest.raises(UnknownModelError, match="ViT-B-32"):
        random_open_clip("ViT-B-33")
    with pytest.raises(UnknownModelError, match="clip-vit-base-patch32"):
        random_hf("openai/clip-vit-base-patch33")


def test_state_dict_digest_depends_on_values_and_salt():
    lin = torch.nn.Linear(3, 2)
    d = state_dict_digest(lin)
    assert d == state_dict_digest(lin) and d != state_dict_digest(lin, salt="x")
    with torch.no_grad():
        lin.bias.add_(1)
    assert state_dict_digest(lin) != d
