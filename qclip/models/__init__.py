"""Model specs, backends (open_clip, transformers) and the embedded tiny models."""

from __future__ import annotations

from .base import ClipModel, ModelInfo
from .loader import check_available, load_model
from .specs import (
    MODEL_SETS,
    PAPER_MODELS,
    TRAINING_SOURCES,
    ModelSpec,
    expand_models,
    paper_reference,
    parse_spec,
    training_source,
)

__all__ = [
    "ClipModel", "ModelInfo", "ModelSpec", "MODEL_SETS", "PAPER_MODELS",
    "check_available", "expand_models", "load_model", "paper_reference", "parse_spec",
    "TRAINING_SOURCES", "training_source",
]
