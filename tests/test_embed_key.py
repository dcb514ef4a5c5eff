"""EmbedKey: what separates cached embeddings (model, quantizer, device, matmul precision)."""

from qclip.cache import Cache
from qclip.embed import EmbedKey


def test_matmul_precision_keeps_tf32_embeddings_apart_and_exact_keys_unchanged(tmp_path):
    cache = Cache(tmp_path)
    exact = EmbedKey("tiny:tiny-a", "abc", "fp32", "{}", "cuda")
    assert "matmul_precision" not in exact.parts()  # keys written before the option existed still hit
    assert exact == EmbedKey("tiny:tiny-a", "abc", "fp32", "{}", "cuda", "highest")
    tf32 = EmbedKey("tiny:tiny-a", "abc", "fp32", "{}", "cuda", "high")
    assert cache.key("image-emb", tf32.parts()) != cache.key("image-emb", exact.parts())


def test_session_applies_and_keys_the_precision(tmp_path):
    import torch

    from qclip.run.session import QclipSession, SessionOptions

    before = torch.get_float32_matmul_precision()
    try:
        session = QclipSession(SessionOptions(models="random:open_clip/ViT-B-32/tiny", cache=str(tmp_path),
                                              matmul_precision="high", progress=False))
        assert torch.get_float32_matmul_precision() == "high"
        assert session.embed_key("random:open_clip/ViT-B-32/tiny", "fp32").matmul_precision == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_batch_dependent_quantizers_are_keyed_by_the_batch_size(tmp_path):
    """torch-dyn-int8 (one activation range per call) and LLM.int8 (outlier columns per batch) give
    different embeddings at different batch sizes; fp16 does not, and its key stays as it was."""
    from qclip.run.session import QclipSession, SessionOptions

    spec = "random:open_clip/ViT-B-32/tiny"

    def qconfig(quantizer, batch_size):
        s = QclipSession(SessionOptions(models=spec, cache=str(tmp_path), batch_size=batch_size, progress=False))
        return s.embed_key(spec, quantizer).quantizer_config

    for q in ("torch-dyn-int8", "bnb-int8"):
        assert qconfig(q, 64) != qconfig(q, 256) and '"batch_size": 64' in qconfig(q, 64)
    assert qconfig("fp16", 64) == qconfig("fp16", 256) and "batch_size" not in qconfig("fp16", 64)
