"""Hugging Face backend: ``hf:<repo id or local path>`` loaded with ``local_files_only``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import ModelUnavailable
from .base import ClipModel, ModelInfo

__all__ = ["HFClipModel", "load_hf"]


def _features(out) -> torch.Tensor:
    # transformers >= 5 returns a ModelOutput from get_*_features; 4.x returned the tensor
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


class HFClipModel(ClipModel):
    """A ``transformers.CLIPModel`` behind :class:`ClipModel`."""

    def __init__(self, module: nn.Module, tokenizer: Callable, preprocess: Callable, info: ModelInfo,
                 context_length: int | None = None):
        self.module = module.eval()
        self._tokenizer = tokenizer
        self.preprocess = preprocess
        self.info = info
        self.image_size = int(module.config.vision_config.image_size)
        self.context_length = context_length or int(module.config.text_config.max_position_embeddings)
        self.quant_report = None

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self._tokenizer(list(texts))
        if isinstance(tok, torch.Tensor):
            return tok
        return tok["input_ids"]

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.module.get_image_features(pixel_values=pixels.to(self.compute_dtype))).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        # CLIP's text tower is causal and pools at EOS, so right padding needs no attention mask
        return _features(self.module.get_text_features(input_ids=tokens)).float()

    @property
    def logit_scale(self) -> float:
        return float(self.module.logit_scale.detach().float().exp())

    def towers(self) -> dict[str, list[nn.Module]]:
        m = self.module
        return {"image": [m.vision_model, m.visual_projection], "text": [m.text_model, m.text_projection]}

    def prepare_for_quantization(self) -> None:
        """HF CLIP already keeps q/k/v/out and both projections as ``nn.Linear``: nothing to do."""


def _hf_tokenizer(path_or_id: str, context_length: int) -> Callable:
    from transformers import CLIPTokenizerFast

    try:
        tok = CLIPTokenizerFast.from_pretrained(path_or_id, local_files_only=True)
    except (OSError, ValueError, TypeError):
        # No tokenizer files beside the weights: CLIP's tokenizer is OpenAI's BPE, which open_clip ships.
        # Padding differs (0 vs EOS) but CLIP's causal text tower pools at EOS, so it cannot matter.
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer(context_length=context_length)

    def tokenize(texts: list[str]) -> torch.Tensor:
        return tok(texts, padding="max_length", truncation=True, max_length=context_length,
                   return_tensors="pt")["input_ids"]

    return tokenize


def _hf_preprocess(path_or_id: str, image_size: int) -> Callable:
    from transformers import CLIPImageProcessor

    try:
        proc = CLIPImageProcessor.from_pretrained(path_or_id, local_files_only=True)
    except (OSError, ValueError, TypeError):
        # no preprocessor_config.json: CLIP's own recipe (resize shortest side, centre crop, OpenAI mean/std)
        proc = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                                  "width": image_size})

    def preprocess(img) -> torch.Tensor:
        return proc(images=img, return_tensors="pt")["pixel_values"][0]

    preprocess.qclip_id = proc.to_json_string()  # a stable id for the pixel cache
    preprocess.processor = proc
    return preprocess


def load_hf(ref: str, spec: str, digest_fn: Callable[[str], str]) -> HFClipModel:
    from huggingface_hub import constants
    from transformers import CLIPModel

    looked = [ref] if os.path.isdir(ref) else [f"{constants.HF_HUB_CACHE}/models--{ref.replace('/', '--')}"]
    try:
        module = CLIPModel.from_pretrained(ref, local_files_only=True)
        tokenizer = _hf_tokenizer(ref, int(module.config.text_config.max_position_embeddings))
        preprocess = _hf_preprocess(ref, int(module.config.vision_config.image_size))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"hf:{ref}: weights not found offline (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!s}); "
            f"looked in: {'; '.join(looked)} ({type(exc).__name__})"
        ) from None
    source = ref if os.path.isdir(ref) else looked[0]
    info = ModelInfo(spec=spec, backend="hf", arch=module.config.vision_config.model_type or "clip",
                     source=source, weights_digest=digest_fn(source))
    return HFClipModel(module, tokenizer, preprocess, info)
