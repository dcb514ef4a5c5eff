"""What every task takes and returns: an :class:`EmbeddingSource` and a :class:`TaskResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["EmbeddingSource", "TaskResult"]


@runtime_checkable
class EmbeddingSource(Protocol):
    """One model variant's embeddings, as the tasks read them (:class:`qclip.run.session.EmbeddingSource`
    serves them through the cache; a test can pass anything with these members)."""

    def image_embeddings(self, dataset, transform=None, transform_id: str = "") -> Any:
        """``[N, D]`` image features of the dataset's rows (a CPU torch tensor), optionally of a corrupted
        copy (``transform`` applied to the preprocessed pixels, ``transform_id`` keying the cache)."""

    def text_embeddings(self, texts) -> Any:
        """``[T, D]`` text features of ``texts`` (a CPU torch tensor)."""

    @property
    def logit_scale(self) -> float:
        """The model's learned logit scale (the temperature of its softmax over classes)."""

    def preprocess_stats(self) -> tuple[list[float], list[float]]:
        """(mean, std) of the model's input normalisation, for corruptions applied in pixel space."""

    def calibration_pairs(self) -> tuple[Any, Any] | None:
        """(image, caption) features ``[N, D]`` of N image–caption calibration pairs (row i with row i), or
        None when there are none; optional (the calibration task fits the logit scale on them)."""


@dataclass
class TaskResult:
    """The outcome of one task on one dataset for one model variant.

    ``metrics``: the headline values over the whole set; ``n``: the samples they were computed on;
    ``groups``: values per part of the set, ``{key: {metric: value}}`` (an OOD set × score, a FACET group ×
    K, a FairFace attribute × desired distribution, a spurious group); ``extra``: data the report draws
    (reliability diagrams, spectra) or names (the worst group).
    """

    metrics: dict[str, float]
    n: int
    groups: dict[Any, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
