"""Hugging Face backend: ``hf:<repo id or local path>`` loaded with ``local_files_only``.

Three model families of transformers share it, told apart by ``config.model_type``:

* ``clip`` (``CLIPModel``): logits ``exp(logit_scale) · cos``;
* ``siglip`` (``SiglipModel``, SigLIP and SigLIP 2's base classes): pairwise sigmoid logits
  ``exp(logit_scale) · cos + logit_bias``. The bias is the same for every class, so a softmax over
  classes (zero-shot top-1, calibration, MSP) is unchanged by it; :attr:`HFClipModel.logit_bias` carries
  it for the metrics that score one pair at a time. The vision head pools with an
  ``nn.MultiheadAttention``, which :meth:`HFClipModel.prepare_for_quantization` splits into Linear layers;
* ``align`` (``AlignModel``: EfficientNet image tower, BERT text tower): logits ``cos / temperature``;
  the BERT tower is bidirectional, so its padding is masked (``attention_mask = tokens != pad id``).
"""

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


#: ``config.model_type`` -> the transformers class (module-level names, imported when needed)
FAMILIES = {"clip": "CLIPModel", "siglip": "SiglipModel", "align": "AlignModel"}


def model_class(model_type: str):
    """The transformers class of a family of :data:`FAMILIES`; ModelUnavailable for any other."""
    import transformers

    if model_type not in FAMILIES:
        raise ModelUnavailable(f"Expected a Hugging Face model of the types {sorted(FAMILIES)}, but got "
                               f"model_type {model_type!r}")
    return getattr(transformers, FAMILIES[model_type])


class HFClipModel(ClipModel):
    """A transformers ``CLIPModel``, ``SiglipModel`` or ``AlignModel`` behind :class:`ClipModel`."""

    def __init__(self, module: nn.Module, tokenizer: Callable, preprocess: Callable, info: ModelInfo,
                 context_length: int | None = None):
        self.module = module.eval()
        self.family = str(module.config.model_type)
        if self.family not in FAMILIES:
            raise ModelUnavailable(f"{info.spec}: model_type {self.family!r} is none of {sorted(FAMILIES)}")
        self._tokenizer = tokenizer
        self.preprocess = preprocess
        self.info = info
        self.image_size = int(module.config.vision_config.image_size)
        self.context_length = context_length or int(module.config.text_config.max_position_embeddings)
        self.pad_token_id = int(getattr(module.config.text_config, "pad_token_id", 0) or 0)
        self.quant_report = None

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self._tokenizer(list(texts))
        if isinstance(tok, torch.Tensor):
            return tok
        return tok["input_ids"]

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.module.get_image_features(pixel_values=pixels.to(self.compute_dtype))).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.family == "align":  # BERT attends both ways: the padding must be masked
            mask = (tokens != self.pad_token_id).long()
            return _features(self.module.get_text_features(input_ids=tokens, attention_mask=mask)).float()
        # CLIP's text tower is causal and pools at EOS, so right padding needs no attention mask; SigLIP was
        # trained on max-length padding without a mask and pools the last token
        return _features(self.module.get_text_features(input_ids=tokens)).float()

    @property
    def logit_scale(self) -> float:
        if self.family == "align":
            return float(1.0 / self.module.temperature.detach().float())
        return float(self.module.logit_scale.detach().float().exp())

    @property
    def logit_bias(self) -> float:
        """SigLIP's sigmoid bias (0 for the softmax families): pair logit = scale · cos + bias."""
        bias = getattr(self.module, "logit_bias", None) if self.family == "siglip" else None
        return 0.0 if bias is None else float(bias.detach().float().reshape(-1)[0])

    def towers(self) -> dict[str, list[nn.Module]]:
        m = self.module
        if self.family == "clip":
            return {"image": [m.vision_model, m.visual_projection], "text": [m.text_model, m.text_projection]}
        if self.family == "align":
            return {"image": [m.vision_model], "text": [m.text_model, m.text_projection]}
        return {"image": [m.vision_model], "text": [m.text_model]}  # siglip: projections inside the heads

    def prepare_for_quantization(self) -> None:
        """HF CLIP already keeps q/k/v/out and both projections as ``nn.Linear``; SigLIP's attention-pooling
        head holds an ``nn.MultiheadAttention``, replaced by a numerically equal
        :class:`~qclip.models.attention.SplitMultiheadAttention` (idempotent)."""
        from .attention import SplitMultiheadAttention

        for _name, parent in list(self.module.named_modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.MultiheadAttention):
                    setattr(parent, child_name, SplitMultiheadAttention.from_mha(child))


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


def _auto_tokenizer(ref: str, context_length: int) -> Callable:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref, local_files_only=True)

    def tokenize(texts: list[str]) -> torch.Tensor:
        return tok(texts, padding="max_length", truncation=True, max_length=context_length,
                   return_tensors="pt")["input_ids"]

    return tokenize


def _auto_preprocess(ref: str) -> Callable:
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(ref, local_files_only=True)

    def preprocess(img) -> torch.Tensor:
        return proc(images=img, return_tensors="pt")["pixel_values"][0]

    preprocess.qclip_id = proc.to_json_string()
    preprocess.processor = proc
    return preprocess


def load_hf(ref: str, spec: str, digest_fn: Callable[[str], str]) -> HFClipModel:
    """``CLIPModel``, ``SiglipModel`` or ``AlignModel`` by the checkpoint's ``config.model_type``. CLIP falls
    back to open_clip's tokenizer and CLIP's preprocessing when the checkpoint has no files for them;
    SigLIP and ALIGN need their own (SentencePiece / BERT vocabularies, their image processors)."""
    from huggingface_hub import constants
    from transformers import AutoConfig

    looked = [ref] if os.path.isdir(ref) else [f"{constants.HF_HUB_CACHE}/models--{ref.replace('/', '--')}"]
    try:
        model_type = AutoConfig.from_pretrained(ref, local_files_only=True).model_type
        module = model_class(model_type).from_pretrained(ref, local_files_only=True)
        context = int(module.config.text_config.max_position_embeddings)
        if model_type == "clip":
            tokenizer = _hf_tokenizer(ref, context)
            preprocess = _hf_preprocess(ref, int(module.config.vision_config.image_size))
        else:
            context = 64 if model_type == "siglip" else context  # SigLIP was trained on 64 tokens
            tokenizer = _auto_tokenizer(ref, context)
            preprocess = _auto_preprocess(ref)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"hf:{ref}: weights not found offline (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!s}); "
            f"looked in: {'; '.join(looked)} ({type(exc).__name__})"
        ) from None
    source = ref if os.path.isdir(ref) else looked[0]
    info = ModelInfo(spec=spec, backend="hf", arch=module.config.vision_config.model_type or model_type,
                     source=source, weights_digest=digest_fn(source))
    return HFClipModel(module, tokenizer, preprocess, info, context_length=context)
