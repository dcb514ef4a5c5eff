"""Randomly initialised CLIP models of real architectures, for tests and GPU throughput work.

Both builders keep the architecture family of the real model (open_clip's config incl. its QuickGELU
setting; the Hugging Face ``CLIPConfig`` of the OpenAI checkpoints) and, with ``tiny=True``, shrink widths,
depths, heads, image size and context length so a forward pass takes milliseconds on a CPU. Weights
are seeded (``seed``) without touching the global RNG state.

Tokenizer: ``open_clip.tokenizer.SimpleTokenizer`` (ships its vocabulary, no download); preprocess:
``open_clip.transform.image_transform(image_size, is_train=False)``.
"""

from __future__ import annotations

import copy
import hashlib
import logging

import torch
from torch import nn

from ..errors import UnknownModelError, suggest
from .base import ModelInfo
from .hf_backend import HFClipModel
from .open_clip_backend import OpenClipModel

__all__ = ["random_open_clip", "random_hf", "state_dict_digest", "HF_ARCHS", "HF_FAMILY_ARCHS", "TINY", "TINY_TIMM"]

#: sizes used when ``tiny=True`` (both backends)
TINY = {
    "vision_width": 64, "vision_layers": 2, "vision_heads": 2, "image_size": 32, "patch_size": 16,
    "text_width": 64, "text_layers": 2, "text_heads": 2, "context_length": 16, "embed_dim": 32,
}

#: real sizes of the OpenAI CLIP checkpoints, keyed by Hugging Face id
HF_ARCHS: dict[str, dict] = {
    "openai/clip-vit-base-patch32": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "patch_size": 32, "image_size": 224},
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "max_position_embeddings": 77},
        "projection_dim": 512,
    },
    "openai/clip-vit-base-patch16": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "patch_size": 16, "image_size": 224},
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "max_position_embeddings": 77},
        "projection_dim": 512,
    },
    "openai/clip-vit-large-patch14": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "patch_size": 14, "image_size": 224},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                 "num_attention_heads": 12, "max_position_embeddings": 77},
        "projection_dim": 768,
    },
}
HF_ARCHS["openai/clip-vit-large-patch14-336"] = copy.deepcopy(HF_ARCHS["openai/clip-vit-large-patch14"])
HF_ARCHS["openai/clip-vit-large-patch14-336"]["vision"]["image_size"] = 336


def state_dict_digest(module: nn.Module, salt: str = "") -> str:
    """sha256 over ``salt`` and the state dict (names, dtypes, shapes and bytes, in key order).

    Use ``salt`` for what the weights do not show (architecture name, activation such as QuickGELU).
    """
    h = hashlib.sha256(salt.encode())
    for key, t in sorted(module.state_dict().items()):
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


class _DropNoPretrainedWarning(logging.Filter):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" on the root logger:
    expected here, so dropped while a random model is built."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


#: the timm tower of a tiny ConvNeXt: the family's smallest member (3.7M parameters at full width); its
#: stem and three downsamplings need 32x32 inputs at least
TINY_TIMM = {"convnext": "convnext_atto"}


def _tiny_open_clip_cfg(cfg: dict) -> dict:
    t = TINY
    vision, text = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"])
    if "hf_model_name" in text:
        raise ValueError(f"Expected open_clip's own text tower for tiny=True, but got text_cfg={cfg['text_cfg']}")
    if "timm_model_name" in vision:  # ConvNeXt and other timm towers: the family's smallest model
        family = str(vision["timm_model_name"]).split("_")[0]
        if family not in TINY_TIMM:
            raise ValueError(f"Expected a timm tower of the families {sorted(TINY_TIMM)} for tiny=True, but got "
                             f"vision_cfg={cfg['vision_cfg']}")
        vision.update(timm_model_name=TINY_TIMM[family], image_size=t["image_size"], timm_drop_path=0.0)
    elif isinstance(vision.get("layers"), list | tuple):  # ModifiedResNet: 32x downsampling, attention pool
        vision.update(layers=[1, 1, 1, 1], width=8, image_size=64, head_width=64)
    else:
        vision.update(width=t["vision_width"], layers=t["vision_layers"], image_size=t["image_size"],
                      patch_size=t["patch_size"], head_width=t["vision_width"] // t["vision_heads"])
        if vision.get("attentional_pool"):  # CoCa's attention pooler
            vision.update(attn_pooler_heads=t["vision_heads"])
    text.update(width=t["text_width"], layers=t["text_layers"], heads=t["text_heads"],
                context_length=t["context_length"])
    out = {"embed_dim": t["embed_dim"], "vision_cfg": vision, "text_cfg": text}
    if "multimodal_cfg" in cfg:  # CoCa's caption decoder: as small as the text tower
        mm = dict(cfg["multimodal_cfg"])
        mm.update(width=t["text_width"], layers=t["text_layers"], heads=t["text_heads"],
                  context_length=t["context_length"], attn_pooler_heads=t["text_heads"])
        out["multimodal_cfg"] = mm
    return out


def _init_uninitialised(module: nn.Module, seed: int) -> None:
    """Draw the parameters open_clip leaves as ``torch.empty`` (memory garbage, so no two builds agree):
    CoCa's caption decoder's ``text_projection``, which its ``init_parameters`` never touches."""
    decoder = getattr(module, "text_decoder", None)
    proj = getattr(decoder, "text_projection", None)
    if isinstance(proj, nn.Parameter):
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            proj.copy_(torch.randn(proj.shape, generator=g) * proj.shape[0] ** -0.5)


def random_open_clip(arch: str = "ViT-B-32", tiny: bool = True, seed: int = 0) -> OpenClipModel:
    """A randomly initialised open_clip model of architecture ``arch`` (open_clip's config name).

    ``tiny=True`` shrinks it (see :data:`TINY`; ResNet towers: one block per stage, width 8, 64 px)
    keeping the family, QuickGELU setting, vocabulary and MLP ratio; ``tiny=False`` builds the real sizes
    (ViT-B-32: ~150M parameters). The weights digest covers the state dict and the architecture name.
    """
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transform import image_transform

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise UnknownModelError(f"open_clip:{arch}",
                                f"Unknown open_clip architecture {arch!r}.{suggest(arch, open_clip.list_models())}")
    overrides = _tiny_open_clip_cfg(cfg) if tiny else {}
    quiet = _DropNoPretrainedWarning()
    logging.getLogger().addFilter(quiet)
    try:
        module = _seeded(seed, lambda: open_clip.create_model(arch, pretrained=None, load_weights=False,
                                                              device="cpu", **overrides))
    finally:
        logging.getLogger().removeFilter(quiet)
    _init_uninitialised(module, seed)
    context = int(module.context_length)
    size = module.visual.image_size
    image_size = int(size[0] if isinstance(size, tuple | list) else size)
    tokenizer = SimpleTokenizer(context_length=context)
    preprocess = image_transform(image_size, is_train=False)
    spec = f"open_clip:{arch}/random-init{'-tiny' if tiny else ''}-seed{seed}"
    info = ModelInfo(spec=spec, backend="open_clip", arch=arch, source="random init",
                     weights_digest=state_dict_digest(module, salt=f"open_clip:{arch}:tiny={tiny}"),
                     extra={"tiny": tiny, "seed": seed, "quick_gelu": bool(cfg.get("quick_gelu", False))})
    return OpenClipModel(module, tokenizer, preprocess, info)


def _hf_config(arch: str, tiny: bool):
    from transformers import CLIPConfig

    if arch not in HF_ARCHS:
        known = [*HF_ARCHS, *HF_FAMILY_ARCHS]
        raise UnknownModelError(f"hf:{arch}", f"Unknown Hugging Face architecture {arch!r} for random "
                                              f"init.{suggest(arch, known)}")
    sizes = copy.deepcopy(HF_ARCHS[arch])
    if tiny:
        t = TINY
        sizes["vision"].update(hidden_size=t["vision_width"], intermediate_size=4 * t["vision_width"],
                               num_hidden_layers=t["vision_layers"], num_attention_heads=t["vision_heads"],
                               patch_size=t["patch_size"], image_size=t["image_size"])
        sizes["text"].update(hidden_size=t["text_width"], intermediate_size=4 * t["text_width"],
                             num_hidden_layers=t["text_layers"], num_attention_heads=t["text_heads"],
                             max_position_embeddings=t["context_length"])
        sizes["projection_dim"] = t["embed_dim"]
    act = {"hidden_act": "quick_gelu"}  # the OpenAI checkpoints
    return CLIPConfig(text_config={**sizes["text"], **act}, vision_config={**sizes["vision"], **act},
                      projection_dim=sizes["projection_dim"])


#: the other Hugging Face families, keyed by their reference checkpoint's id: transformers' default config of
#: each family is that checkpoint's (``tiny=False``); ``tiny=True`` shrinks it like the CLIPs
HF_FAMILY_ARCHS = {"google/siglip-base-patch16-224": "siglip", "kakaobrain/align-base": "align"}


def _hf_family_config(arch: str, tiny: bool):
    from transformers import AlignConfig, SiglipConfig

    t = TINY
    vocab = 49408  # open_clip's SimpleTokenizer writes the ids of the random models
    if HF_FAMILY_ARCHS[arch] == "siglip":
        if not tiny:
            return SiglipConfig(text_config={"vocab_size": vocab})
        layers = {"intermediate_size": 4 * t["vision_width"], "num_hidden_layers": t["vision_layers"],
                  "num_attention_heads": t["vision_heads"]}
        return SiglipConfig(
            text_config={"hidden_size": t["text_width"], "max_position_embeddings": t["context_length"],
                         "vocab_size": vocab, "projection_size": t["vision_width"], **layers},  # = the image width
            vision_config={"hidden_size": t["vision_width"], "image_size": t["image_size"],
                           "patch_size": t["patch_size"], **layers})
    if not tiny:
        return AlignConfig(text_config={"vocab_size": vocab})
    # EfficientNet scaled down: 10% width (the stem keeps 8 channels), one block per stage
    return AlignConfig(
        text_config={"hidden_size": t["text_width"], "intermediate_size": 4 * t["text_width"],
                     "num_hidden_layers": t["text_layers"], "num_attention_heads": t["text_heads"],
                     "max_position_embeddings": 2 * t["context_length"], "vocab_size": vocab},
        vision_config={"image_size": t["image_size"], "width_coefficient": 0.1, "depth_coefficient": 0.1,
                       "hidden_dim": t["vision_width"]},
        projection_dim=t["embed_dim"])


def _redraw_convs(tower: nn.Module, seed: int) -> None:
    """He-initialise (fan-in) every convolution of an EfficientNet tower in place.

    transformers draws ALIGN's convolutions with ``initializer_range`` 0.02, a trained checkpoint's
    scale, not a random one's: through a random EfficientNet the activations then shrink ~30x per block
    and a tiny model's image features come out ~1e-30, identical in direction for every image. He
    initialisation keeps them apart (cosines between images 0.1-0.6), so quantization has something to
    change.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in tower.modules():
            if isinstance(mod, nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)


def random_hf(arch: str = "openai/clip-vit-base-patch32", tiny: bool = True, seed: int = 0) -> HFClipModel:
    """A randomly initialised transformers model with the config of ``arch``: a ``CLIPModel``
    (:data:`HF_ARCHS`), a ``SiglipModel`` or an ``AlignModel`` (:data:`HF_FAMILY_ARCHS`)."""
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transform import image_transform

    from .hf_backend import model_class

    if arch in HF_FAMILY_ARCHS:
        config = _hf_family_config(arch, tiny)
    else:
        config = _hf_config(arch, tiny)
    module = _seeded(seed, lambda: model_class(config.model_type)(config))
    if config.model_type == "align":
        _redraw_convs(module.vision_model, seed)
    context = int(config.text_config.max_position_embeddings)
    if config.model_type == "align":
        context = min(context, 2 * TINY["context_length"] if tiny else 64)
    image_size = int(config.vision_config.image_size)
    tokenizer = SimpleTokenizer(context_length=context)
    preprocess = image_transform(image_size, is_train=False)
    spec = f"hf:{arch}@random-init{'-tiny' if tiny else ''}-seed{seed}"
    info = ModelInfo(spec=spec, backend="hf", arch=arch, source="random init",
                     weights_digest=state_dict_digest(module, salt=f"hf:{arch}:tiny={tiny}"),
                     extra={"tiny": tiny, "seed": seed})
    return HFClipModel(module, tokenizer, preprocess, info, context_length=context)
