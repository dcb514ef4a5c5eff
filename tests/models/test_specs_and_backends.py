"""Model specs, named sets, offline resolution with skip reasons, and the HF backend on a local path."""

from __future__ import annotations

import pytest
import torch

from qclip.errors import ModelUnavailable, UnknownModelError
from qclip.models import PAPER_MODELS, check_available, expand_models, load_model, parse_spec


def test_paper_set_has_the_eight_models_with_exact_tags():
    specs = [s.spec for s in expand_models("paper")]
    assert specs == [
        "open_clip:ViT-B-32-quickgelu/openai",
        "open_clip:ViT-B-32/laion2b_s34b_b79k",
        "open_clip:ViT-B-16-quickgelu/openai",
        "open_clip:ViT-B-16/laion2b_s34b_b88k",
        "open_clip:ViT-B-16/datacomp_xl_s13b_b90k",
        "open_clip:ViT-L-14-quickgelu/openai",
        "open_clip:ViT-L-14/laion2b_s32b_b82k",
        "open_clip:ViT-L-14/datacomp_xl_s13b_b90k",
    ]
    assert [m.top1 for m in PAPER_MODELS] == [.6332, .6656, .6834, .7023, .7349, .7554, .7525, .7921]
    assert len(expand_models("paper-hf")) == 8


def test_every_paper_tag_is_known_to_open_clip():
    import open_clip

    for m in PAPER_MODELS:
        arch, tag = m.open_clip.split("/")
        assert arch in open_clip.list_models()
        assert tag in open_clip.list_pretrained_tags_by_model(arch), m


@pytest.mark.parametrize("bad", ["nope", "foo:bar", "open_clip:ViT-B-32", "tiny:does-not-exist"])
def test_malformed_specs_fail_with_a_message(bad):
    with pytest.raises(UnknownModelError) as err:
        parse_spec(bad)
    assert bad.split(":")[-1] in str(err.value) or "backend" in str(err.value)


def test_a_bare_tiny_name_means_the_tiny_backend():
    assert parse_spec("tiny-a") == parse_spec("tiny:tiny-a")
    assert [s.spec for s in expand_models("tiny-b,tiny:tiny-b,tiny-a")] == ["tiny:tiny-b", "tiny:tiny-a"]
    with pytest.raises(UnknownModelError):
        parse_spec("tiny-z")


def test_absent_open_clip_weights_name_where_they_were_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("QCLIP_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    ok, reason = check_available("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert not ok
    assert "looked in" in reason
    assert "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" in reason
    assert str(tmp_path / "weights") in reason
    ok, reason = check_available("open_clip:ViT-B-32-quickgelu/openai")
    assert not ok and ".cache/clip/ViT-B-32.pt" in reason
    with pytest.raises(ModelUnavailable, match="looked in"):
        load_model("open_clip:ViT-L-14/datacomp_xl_s13b_b90k")


def test_absent_hf_weights_name_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    ok, reason = check_available("hf:openai/clip-vit-base-patch32")
    assert not ok and "models--openai--clip-vit-base-patch32" in reason


def _tiny_hf_dir(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=16,
    )
    path = tmp_path / "tiny-hf"
    CLIPModel(cfg).save_pretrained(path)
    return path


def test_hf_backend_loads_a_local_checkpoint_offline(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _tiny_hf_dir(tmp_path)
    assert check_available(f"hf:{path}") == (True, "")
    model = load_model(f"hf:{path}")
    assert model.image_size == 32 and model.info.backend == "hf"
    pix = torch.stack([model.preprocess(Image.new("RGB", (40, 50), (200, 10, 10)))])
    assert pix.shape == (1, 3, 32, 32)
    img = model.encode_image(pix)
    txt = model.encode_text(model.tokenize(["a photo of a red square", "a star"]))
    assert img.shape == (1, 16) and txt.shape == (2, 16)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    assert model.logit_scale == pytest.approx(float(torch.tensor(2.6592).exp()), rel=1e-4)


@pytest.mark.parametrize("spec", ["random:open_clip/ViT-B-32/tiny", "random:hf/openai/clip-vit-base-patch32/tiny"])
def test_a_deep_copy_copies_the_weights_and_shares_the_tokenizer(spec):
    import copy

    model = load_model(spec)
    clone = copy.deepcopy(model)
    assert clone.module is not model.module and clone.info is not model.info
    assert clone._tokenizer is model._tokenizer and clone.preprocess is model.preprocess
    first = next(clone.module.parameters())
    with torch.no_grad():
        first.add_(1.0)  # a quantizer changing the copy leaves the original alone
    assert not torch.equal(first, next(model.module.parameters()))
    assert torch.equal(clone.tokenize(["a dog"]), model.tokenize(["a dog"]))
