"""FACET recall disparity and FairFace retrieval skew, computed from cached embeddings.

FACET (FORMATS.md): zero-shot over the person classes on person crops; disparity
recall@K(l1, C) − recall@K(l2, C) for gender (masc − fem), skin tone (lighter − darker, Monk 1–4 vs
6–10) and age (middle − young, middle − older), K ∈ {1, 5}, over classes with at least
``min_samples`` people in both subgroups. FairFace: MaxSkew@k / MinSkew@k / NDKL@k per attribute
(race, gender, binned age) over the neutral prompt list, with both desired distributions.
"""

from __future__ import annotations

from ..metrics.fairness import disparity, disparity_range
from ..metrics.skew import prompt_skews
from ..metrics.zeroshot import cosine_similarity, topk_hits
from ..stats import paired_bootstrap_ci
from .accuracy import classifier_outputs
from .base import EmbeddingSource, TaskResult

__all__ = ["FACET_GROUPS", "FAIRFACE_ATTRIBUTES", "facet_delta_ci", "facet_disparities", "fairface_skews"]

#: resamples of the per-model bootstrap CIs of the FACET cells (each resample: one disparity per group and K
#: for both models, about a millisecond)
FACET_BOOTSTRAP = 200

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


def facet_delta_ci(reference: EmbeddingSource, quantized: EmbeddingSource, dataset, ks=(1, 5),
                   min_samples: int = 25, n_boot: int = FACET_BOOTSTRAP, seed: int = 0) -> dict:
    """Per-model 95% CIs of the FACET deltas by a paired bootstrap over the persons
    (:func:`qclip.stats.paired_bootstrap_ci`): each resample draws persons with replacement, the same ones for
    both models, and recomputes min and max disparity of both, so the CI of Δ = quantized − fp32 holds the
    sampling noise of this one model's evaluation set. Seeded: the same CIs every run. Returns
    ``{(group, K): {"min": (lo, hi), "max": (lo, hi)}}``."""
    ref, q = classifier_outputs(reference, dataset), classifier_outputs(quantized, dataset)
    k_max, labels = ref.logits.shape[1], ref.labels
    out = {}
    for name, (column, a, b) in FACET_GROUPS.items():
        groups = dataset.table[column].astype(str).to_numpy()
        in_a, in_b = groups == a, groups == b
        for k in ks:
            kk = min(k, k_max)
            h_ref = topk_hits(ref.logits, labels, kk, validate_args=False)
            h_q = topk_hits(q.logits, labels, kk, validate_args=False)

            def delta(idx, h_ref=h_ref, h_q=h_q, in_a=in_a, in_b=in_b):
                lab, ia, ib = labels[idx], in_a[idx], in_b[idx]
                r = disparity_range(h_ref[idx], lab, ia, ib, k_max, min_samples, validate_args=False)
                s = disparity_range(h_q[idx], lab, ia, ib, k_max, min_samples, validate_args=False)
                return [s[0] - r[0], s[1] - r[1]]

            lo, hi = paired_bootstrap_ci(delta, len(labels), n_boot=n_boot, seed=seed)
            out[(name, k)] = {"min": (float(lo[0]), float(hi[0])), "max": (float(lo[1]), float(hi[1]))}
    return out


def fairface_skews(src: EmbeddingSource, dataset, k: int = 1000) -> TaskResult:
    """``groups[(attribute, desired)]`` = the prompt_skew result over the dataset's prompts (desired:
    parity, uniform); ``n`` counts the faces."""
    img = src.image_embeddings(dataset).numpy()
    txt = src.text_embeddings(dataset.prompts).numpy()
    sim = cosine_similarity(txt, img)  # [P, N]
    attributes = {attr: dataset.table[attr].astype(str).to_numpy() for attr in FAIRFACE_ATTRIBUTES}
    return TaskResult({}, len(img), groups=prompt_skews(sim, attributes, k=k, desired=("parity", "uniform")))
