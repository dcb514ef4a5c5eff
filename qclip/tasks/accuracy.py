"""Accuracy tasks: zero-shot classification and image–text retrieval, and the zero-shot classifier outputs
the other tasks build on. Each task takes an :class:`~qclip.tasks.base.EmbeddingSource` and a dataset and
returns a :class:`~qclip.tasks.base.TaskResult`. Embeddings come through the cache, so the zero-shot,
calibration, OOD, robustness and spectral cells of one (model, quantizer, dataset) share one
image-embedding computation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import format_prompts
from ..metrics import zeroshot as zs
from ..metrics.agreement import agreement_metrics
from ..metrics.retrieval import retrieval_recall
from .base import EmbeddingSource, TaskResult

__all__ = ["ClassifierOutputs", "class_prompts", "classifier_outputs", "prediction_agreement", "zeroshot",
           "retrieval"]


@dataclass
class ClassifierOutputs:
    """Zero-shot outputs on a labelled image set."""

    cosine: np.ndarray  # [N, C] cosine similarity of normalised image and class embeddings
    logits: np.ndarray  # [N, C] logit_scale * cosine
    labels: np.ndarray  # [N]
    image_emb: np.ndarray  # [N, D] raw image features (for the spectral analysis)
    classifier: np.ndarray  # [C, D] the prompt-ensemble class embeddings the cosines were taken with


def class_prompts(classnames: list[str], templates: list) -> list[str]:
    """Prompts in class-major order (class 0's templates first), as build_classifier expects."""
    return [p for name in classnames for p in format_prompts(templates, name)]


def classifier_outputs(src: EmbeddingSource, dataset, classnames=None, templates=None, transform=None,
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
    return ClassifierOutputs(logits, src.logit_scale * logits, y, img, w)


def zeroshot(src: EmbeddingSource, dataset) -> TaskResult:
    """Top-1, top-5 and mean per-class recall (FORMATS.md, ImageNet zero-shot)."""
    out = classifier_outputs(src, dataset)
    return TaskResult(zs.zeroshot_metrics(out.logits, out.labels), len(out.labels))


def prediction_agreement(reference: EmbeddingSource, quantized: EmbeddingSource, dataset) -> TaskResult:
    """Sample by sample, how far the quantized model's zero-shot outputs are from the fp32 model's
    (:func:`qclip.metrics.agreement.agreement_metrics`): top-1 flip rate and its right→wrong / wrong→right
    parts, mean KL divergence of the predictive distributions (softmax of ``logit_scale · cosine``, each
    model's own scale), mean cosine of the image embeddings. ``extra["reference"]``: the same metrics of the
    fp32 model against itself (0 flips, 0 KL, cosine 1 up to rounding), the reference each cell records."""
    ref = classifier_outputs(reference, dataset)
    q = classifier_outputs(quantized, dataset)
    metrics = agreement_metrics(ref.logits, q.logits, ref.labels, ref.image_emb, q.image_emb)
    itself = agreement_metrics(ref.logits, ref.logits, ref.labels, ref.image_emb, ref.image_emb)
    return TaskResult(metrics, len(ref.labels), extra={"reference": itself})


def retrieval(src: EmbeddingSource, dataset, ks=(1, 5, 10)) -> TaskResult:
    """Image→text and text→image recall@k on a COCO-format set (FORMATS.md, COCO retrieval)."""
    img = src.image_embeddings(dataset).numpy()
    captions = dataset.captions
    txt = src.text_embeddings(captions["caption"].tolist()).numpy()
    t2i = captions["image_index"].to_numpy(dtype=np.int64)
    return TaskResult(retrieval_recall(img, txt, t2i, ks=ks), len(img))
