"""open_clip backend: ``open_clip:<arch>/<pretrained tag>`` resolved offline from the user's caches."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelUnavailable
from .base import ClipModel, ModelInfo

__all__ = ["OpenClipModel", "resolve_open_clip_weights", "load_open_clip"]

_HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenClipModel(ClipModel):
    """An ``open_clip.model.CLIP`` (or CustomTextCLIP) behind :class:`ClipModel`."""

    def __init__(self, module: nn.Module, tokenizer: Callable, preprocess: Callable, info: ModelInfo):
        self.module = module.eval()
        self._tokenizer = tokenizer
        self.preprocess = preprocess
        self.info = info
        size = getattr(module.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.quant_report = None
        self._prepared = False

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels.to(self.compute_dtype)).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module.encode_text(tokens).float()

    @property
    def logit_scale(self) -> float:
        return float(self.module.logit_scale.detach().float().exp())

    def towers(self) -> dict[str, list[nn.Module]]:
        m = self.module
        if hasattr(m, "text") and isinstance(m.text, nn.Module):  # CustomTextCLIP
            text = [m.text]
        else:
            text = [mod for mod in (getattr(m, "transformer", None), getattr(m, "text_projection", None)) if isinstance(mod, nn.Module)]
        return {"image": [m.visual], "text": text}

    def prepare_for_quantization(self) -> None:
        if self._prepared:
            return
        from .attention import prepare_open_clip

        prepare_open_clip(self.module)
        self._prepared = True


def _hf_cache_lookup(repo_id: str, filenames: Sequence[str]) -> tuple[str | None, list[str]]:
    from huggingface_hub import constants, try_to_load_from_cache

    looked = []
    for fn in filenames:
        hit = try_to_load_from_cache(repo_id, fn)
        looked.append(f"{constants.HF_HUB_CACHE}/models--{repo_id.replace('/', '--')}/snapshots/*/{fn}")
        if isinstance(hit, str) and os.path.exists(hit):
            return hit, looked
    return None, looked


def resolve_open_clip_weights(arch: str, tag: str) -> tuple[str, list[str]]:
    """Find the weights file of ``arch``/``tag`` offline.

    Looks, in order: ``tag`` as a path to a file; ``$QCLIP_WEIGHTS/<arch>/<tag>.*``; the Hugging Face hub
    cache for the tag's ``hf_hub`` repo (open_clip's default source); open_clip's URL cache
    ``~/.cache/clip/<file>``. Raises :class:`ModelUnavailable` listing every place searched.
    """
    import open_clip
    from open_clip import pretrained as ocp

    looked: list[str] = []
    if os.path.sep in tag or tag.endswith((".bin", ".pt", ".pth", ".safetensors")):
        looked.append(tag)
        if os.path.isfile(tag):
            return tag, looked
        raise ModelUnavailable(f"open_clip:{arch}/{tag}: weights file not found; looked in: {tag}")
    if arch not in open_clip.list_models():
        raise ModelUnavailable(f"open_clip:{arch}/{tag}: unknown open_clip architecture {arch!r}")
    env = os.environ.get("QCLIP_WEIGHTS")
    if env:
        for f in sorted(Path(env, arch).glob(f"{tag}.*")):
            return str(f), looked
        looked.append(f"{env}/{arch}/{tag}.*")
    cfg = ocp.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ModelUnavailable(
            f"open_clip:{arch}/{tag}: open_clip knows no pretrained tag {tag!r} for {arch} "
            f"(known: {', '.join(ocp.list_pretrained_tags_by_model(arch)) or 'none'})"
        )
    hub = cfg.get("hf_hub", "")
    if hub:
        parts = hub.strip("/").split("/")
        repo_id, fname = "/".join(parts[:2]), "/".join(parts[2:])
        names = (fname,) if fname else _HF_FILENAMES
        hit, more = _hf_cache_lookup(repo_id, names)
        looked += more
        if hit:
            return hit, looked
    url = cfg.get("url", "")
    if url:
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        looked.append(str(local))
        if local.is_file():
            return str(local), looked
    raise ModelUnavailable(
        f"open_clip:{arch}/{tag}: weights not found offline; looked in: " + "; ".join(looked)
    )


def load_open_clip(arch: str, tag: str, spec: str, digest_fn: Callable[[str], str]) -> OpenClipModel:
    import open_clip

    path, _ = resolve_open_clip_weights(arch, tag)
    cfg = open_clip.pretrained.get_pretrained_cfg(arch, tag) or {}
    kwargs = {}
    for key in ("mean", "std"):
        if key in cfg:
            kwargs[f"image_{key}"] = cfg[key]
    if cfg.get("quick_gelu") and "quickgelu" not in arch.lower():
        kwargs["force_quick_gelu"] = True
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=path, **kwargs)
    tokenizer = open_clip.get_tokenizer(arch)
    info = ModelInfo(spec=spec, backend="open_clip", arch=arch, source=path, weights_digest=digest_fn(path),
                     extra={"tag": tag, "quick_gelu": bool(cfg.get("quick_gelu")) or "quickgelu" in arch.lower()})
    return OpenClipModel(model, tokenizer, preprocess, info)
