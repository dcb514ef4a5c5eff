"""Benchmark computations on embeddings: what a cell computes, for the fp32 reference and the quantized
model alike. No pytest here, and no metric math: the formulas live in :mod:`qclip.metrics`.

Each task takes an embedding *source* (an object with ``image_embeddings(dataset, transform=None,
transform_id='')``, ``text_embeddings(texts)`` and ``logit_scale``, e.g.
:class:`qclip.run.session.EmbeddingSource`) and a dataset, and returns ``{metric: value}`` plus the
sample count. Embeddings come through the cache, so the zero-shot, calibration, OOD and spectral
cells of one (model, quantizer, dataset) share one image-embedding computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import format_prompts
from ..metrics import zeroshot as zs
from ..metrics.retrieval import retrieval_recall

__all__ = ["ClassifierOutputs", "class_prompts", "classifier_outputs", "zeroshot", "retrieval"]


@dataclass
class ClassifierOutputs:
    """Zero-shot outputs on a labelled image set."""

    cosine: np.ndarray  # [N, C] cosine similarity of normalised image and class embeddings
    logits: np.ndarray  # [N, C] logit_scale * cosine
    labels: np.ndarray  # [N]
    image_emb: np.ndarray  # [N, D] raw image features (for the spectral analysis)


def class_prompts(classnames: list[str], templates: list) -> list[str]:
    """Prompts in class-major order (class 0's templates first), as build_classifier expects."""
    return [p for name in classnames for p in format_prompts(templates, name)]


def classifier_outputs(src, dataset, classnames=None, templates=None, transform=None,
                       transform_id: str = "", labels: bool = True) -> ClassifierOutputs:
    """Image embeddings, the prompt-ensemble classifier and the logits for a labelled set
    (``labels=False`` for an unlabelled set scored against another set's classes, e.g. OOD images)."""
    classnames = list(classnames if classnames is not None else dataset.classnames)
    templates = list(templates if templates is not None else dataset.templates)
    text = src.text_embeddings(class_prompts(classnames, templates)).numpy()
    w = zs.build_classifier(text, len(classnames))
    img = src.image_embeddings(dataset, transform, transform_id).numpy()
    logits = zs.zeroshot_logits(img, w, logit_scale=1.0)
    y = dataset.table["label"].to_numpy(dtype=np.int64) if labels else np.full(len(img), -1, dtype=np.int64)
    return ClassifierOutputs(logits, src.logit_scale * logits, y, img)


def zeroshot(src, dataset) -> tuple[dict[str, float], int]:
    """Top-1, top-5 and mean per-class recall (FORMATS.md, ImageNet zero-shot)."""
    out = classifier_outputs(src, dataset)
    return zs.zeroshot_metrics(out.logits, out.labels), len(out.labels)


def retrieval(src, dataset, ks=(1, 5, 10)) -> tuple[dict[str, float], int]:
    """Image→text and text→image recall@k on a COCO-format set (FORMATS.md, COCO retrieval)."""
    img = src.image_embeddings(dataset).numpy()
    captions = dataset.captions
    txt = src.text_embeddings(captions["caption"].tolist()).numpy()
    t2i = captions["image_index"].to_numpy(dtype=np.int64)
    return retrieval_recall(img, txt, t2i, ks=ks), len(img)
