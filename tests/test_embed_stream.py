"""Sets too large to hold as float32 pixels are decoded and encoded batch by batch, with the same result."""

import torch

import qclip.embed as embed
from qclip.cache import Cache
from qclip.embed import Embedder, EmbedKey
from qclip.models import load_model
from qclip.perf.compare import JpegSet, make_jpegs

SPEC = "random:open_clip/ViT-B-32/tiny"


def _embeddings(tmp_path, name, ds, model, transform=None):
    emb = Embedder(Cache(tmp_path / name), batch_size=4, progress=False)
    key = EmbedKey(SPEC, model.info.weights_digest, "fp32", "{}", "cpu")
    out = emb.image_embeddings(key, lambda: model, ds, transform, "t" if transform else "")
    return out, emb


def test_a_set_over_the_memory_budget_streams_and_gives_the_same_embeddings(tmp_path, monkeypatch):
    model = load_model(SPEC)
    ds = JpegSet(make_jpegs(tmp_path / "jpegs", 10, size=(48, 40)))
    flip = lambda x: torch.flip(x, dims=[-1])  # noqa: E731 - a stand-in for a corruption
    held, held_emb = _embeddings(tmp_path, "held", ds, model)
    held_t, _ = _embeddings(tmp_path, "held-t", ds, model, flip)
    assert held_emb._pixels  # small set: pixels kept for the next cell

    monkeypatch.setattr(embed, "PIXEL_MEMORY_BYTES", 1)
    streamed, streamed_emb = _embeddings(tmp_path, "streamed", ds, model)
    streamed_t, _ = _embeddings(tmp_path, "streamed-t", ds, model, flip)
    assert torch.equal(streamed, held) and torch.equal(streamed_t, held_t)
    assert not streamed_emb._pixels  # nothing held in memory
    assert not (tmp_path / "streamed" / "pixels").exists()  # nor written to the cache
    assert streamed_emb.calls["image_batches"] == 3  # 10 images in batches of 4
