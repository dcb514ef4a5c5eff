"""FACET recall disparity and FairFace retrieval skew, computed from cached embeddings.

FACET (FORMATS.md): zero-shot over the person classes on person crops; disparity
recall@K(l1, C) − recall@K(l2, C) for gender (masc − fem), skin tone (lighter − darker, Monk 1–4 vs
6–10) and age (middle − young, middle − older), K ∈ {1, 5}, over classes with at least
``min_samples`` people in both subgroups. FairFace: MaxSkew@k / MinSkew@k / NDKL@k per attribute
(race, gender, binned age) over the neutral prompt list, with both desired distributions.
"""

from __future__ import annotations

from ..metrics.fairness import disparity
from ..metrics.skew import prompt_skews
from ..metrics.zeroshot import cosine_similarity
from .accuracy import classifier_outputs
from .base import EmbeddingSource, TaskResult

__all__ = ["FACET_GROUPS", "FAIRFACE_ATTRIBUTES", "facet_disparities", "fairface_skews"]

#: subgroup name -> (column, group a, group b); disparity = recall(a) - recall(b)
FACET_GROUPS: dict[str, tuple[str, str, str]] = {
    "gender": ("gender", "masc", "fem"),
    "skin_tone": ("skin_group", "lighter", "darker"),
    "age_young": ("age", "middle", "young"),
    "age_older": ("age", "middle", "older"),
}
FAIRFACE_ATTRIBUTES = ("race", "gender", "age_bin")


def facet_disparities(src: EmbeddingSource, dataset, ks=(1, 5), min_samples: int = 25) -> TaskResult:
    """``groups[(group, K)]`` = the disparity result (min, max, n_classes, per_class) for each FACET group
    and K; ``n`` counts the persons."""
    out = classifier_outputs(src, dataset)
    k_max = out.logits.shape[1]
    res = {}
    for name, (column, a, b) in FACET_GROUPS.items():
        groups = dataset.table[column].astype(str).to_numpy()
        for k in ks:
            res[(name, k)] = disparity(out.logits, out.labels, groups, a, b, k=min(k, k_max), min_samples=min_samples)
    return TaskResult({}, len(out.labels), groups=res)


def fairface_skews(src: EmbeddingSource, dataset, k: int = 1000) -> TaskResult:
    """``groups[(attribute, desired)]`` = the prompt_skew result over the dataset's prompts (desired:
    parity, uniform); ``n`` counts the faces."""
    img = src.image_embeddings(dataset).numpy()
    txt = src.text_embeddings(dataset.prompts).numpy()
    sim = cosine_similarity(txt, img)  # [P, N]
    attributes = {attr: dataset.table[attr].astype(str).to_numpy() for attr in FAIRFACE_ATTRIBUTES}
    return TaskResult({}, len(img), groups=prompt_skews(sim, attributes, k=k, desired=("parity", "uniform")))
