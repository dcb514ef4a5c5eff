"""The embedded tiny CLIP population: specs, construction, training and evaluation (:mod:`.model`) and
their trained weights in the cache (:mod:`.weights`)."""

from .model import (
    TINY_MODELS,
    TinySpec,
    build_tiny_module,
    evaluate_tiny,
    load_training_pool,
    tiny_features,
    tiny_preprocess,
    tiny_tokenizer,
    train_tiny,
    train_tiny_many,
)

__all__ = ["TinySpec", "TINY_MODELS", "build_tiny_module", "tiny_tokenizer", "tiny_preprocess", "train_tiny",
           "train_tiny_many", "tiny_features", "load_training_pool", "evaluate_tiny"]
