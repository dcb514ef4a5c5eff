"""Robustness computations: zero-shot accuracy under evaluation-time corruptions, worst-group accuracy on
group-annotated (spurious) sets, the accuracy on their normal and counter splits (the relative spurious gap of
Bouguerra et al.; CounterAnimal's common / counter backgrounds), and the spectral analysis of the quantization noise (the report's
robustness group: ``report/sections_robustness.py``)."""

from __future__ import annotations

import numpy as np

from ..metrics import zeroshot as zs
from ..metrics.robustness import group_accuracy, worst_group_accuracy
from ..metrics.spectral import (
    DEFAULT_BANDS,
    band_means,
    rank_band_accuracy,
    spectral_analysis,
    sqnr_from_analysis,
)
from ..metrics.spurious_gap import relative_spurious_gap
from .accuracy import classifier_outputs
from .base import EmbeddingSource, TaskResult
from .corruptions import make_corruption

__all__ = ["corrupted_top1", "corruption_arrays", "normal_mask", "spurious_gap", "worst_group", "spectral"]


def corrupted_top1(src: EmbeddingSource, dataset, corruption) -> TaskResult:
    """Zero-shot top-1 on ``dataset`` with an evaluation-time corruption (:mod:`qclip.tasks.corruptions`)."""
    mean, std = src.preprocess_stats()
    fn = make_corruption(corruption, mean, std)
    out = classifier_outputs(src, dataset, transform=fn, transform_id=corruption.id)
    return TaskResult({"top1": zs.zeroshot_metrics(out.logits, out.labels)["top1"]}, len(out.labels))


def corruption_arrays(src: EmbeddingSource, dataset) -> TaskResult:
    """Zero-shot top-1 per (corruption, severity) of a CIFAR-10-C-layout set (:mod:`qclip.data.cifar_c`: the
    corruption is in the pixels on disk), from one pass over the whole set: ``groups["NAME:sS"]``."""
    out = classifier_outputs(src, dataset)
    table = dataset.table
    keys = (table["corruption"].astype(str) + ":s" + table["severity"].astype(str)).to_numpy()
    per = group_accuracy(zs.predictions(out.logits), out.labels, keys)
    groups = {str(k): {"top1": acc, "n": n} for k, (acc, n) in per.items()}
    return TaskResult({"top1": zs.zeroshot_metrics(out.logits, out.labels)["top1"]}, len(out.labels), groups=groups)


def worst_group(src: EmbeddingSource, dataset) -> TaskResult:
    """Worst-group, average and mean-group accuracy on a group-annotated set (``extra["worst_group"]``
    names the group), and ``groups[g] = {"accuracy", "n"}`` per group."""
    out = classifier_outputs(src, dataset)
    pred = zs.predictions(out.logits)
    groups = dataset.table["group"].to_numpy()
    summary = dict(worst_group_accuracy(pred, out.labels, groups))
    worst = summary.pop("worst_group")
    per_group = {g: {"accuracy": acc, "n": count} for g, (acc, count) in group_accuracy(pred, out.labels, groups).items()}
    return TaskResult(summary, len(out.labels), groups=per_group, extra={"worst_group": worst})


def normal_mask(dataset) -> np.ndarray:
    """Which rows of ``dataset`` are its *normal* split (the class on its common background) rather than its
    *counter* split, as CounterAnimal divides them.

    * a CounterAnimal set (a ``split`` column of ``common`` / ``counter``): its ``common`` rows;
    * a group-annotated set (a ``group`` column): the groups of ``dataset.meta["normal_groups"]``, which
      :func:`qclip.data.read_spurious` takes from each class's most frequent place over the whole file;
      without it (a set built by hand), each label's most frequent place in the table itself, ties to the
      first place in sorted order.
    """
    table = dataset.table
    if "split" in table and set(table["split"].astype(str)) <= {"common", "counter"}:
        return (table["split"].astype(str) == "common").to_numpy()
    if "group" not in table:
        raise ValueError(f"{getattr(dataset, 'name', 'dataset')}: expected a 'split' column (common/counter) or a "
                         "'group' column to tell the normal split from the counter split")
    normal = (getattr(dataset, "meta", None) or {}).get("normal_groups")
    if normal is None:
        counts = table.groupby(["label", "place"]).size().reset_index(name="n")
        counts = counts.sort_values(["label", "n", "place"], ascending=[True, False, True], kind="stable")
        common = counts.drop_duplicates("label")
        keys = set(zip(common["label"], common["place"], strict=True))
        return np.array([(y, p) in keys for y, p in zip(table["label"], table["place"], strict=True)], dtype=bool)
    return table["group"].isin([int(g) for g in normal]).to_numpy()


def spurious_gap(src: EmbeddingSource, dataset) -> TaskResult:
    """Zero-shot accuracy on the normal and the counter split of ``dataset`` (:func:`normal_mask`) and the
    model's relative spurious gap ``rsg`` (:func:`qclip.metrics.spurious_gap.relative_spurious_gap`);
    ``groups`` holds each split's ``{"accuracy", "n"}``. A set with one split empty gives NaN for it."""
    out = classifier_outputs(src, dataset)
    pred = zs.predictions(out.logits)
    split = np.where(normal_mask(dataset), "normal", "counter")
    parts = group_accuracy(pred, out.labels, split)
    acc = {name: parts[name][0] if name in parts else float("nan") for name in ("normal", "counter")}
    both = all(np.isfinite(v) for v in acc.values())
    rsg = relative_spurious_gap(acc["normal"], acc["counter"]) if both else float("nan")
    metrics = {"normal_accuracy": acc["normal"], "counter_accuracy": acc["counter"], "rsg": rsg}
    groups = {name: {"accuracy": a, "n": parts[name][1] if name in parts else 0} for name, a in acc.items()}
    return TaskResult(metrics, len(out.labels), groups=groups)


def spectral(ref_src: EmbeddingSource, q_src: EmbeddingSource, dataset) -> TaskResult:
    """Spectral analysis of the quantization noise on the image features of ``dataset``: the scalar results
    of :func:`qclip.metrics.spectral.spectral_analysis` in ``metrics``, its per-rank arrays and bands in
    ``extra``, with ``extra["band_sqnr_db"]`` (the mean per-rank SQNR of each band's finite ranks,
    :func:`~qclip.metrics.spectral.per_rank_sqnr`) and, on a labelled set, ``extra["band_top1_ref"]`` and
    ``extra["band_top1_q"]`` (zero-shot top-1 in each band of the fp32 basis,
    :func:`~qclip.metrics.spectral.rank_band_accuracy`)."""
    ref_out = classifier_outputs(ref_src, dataset)
    q_out = classifier_outputs(q_src, dataset)
    ref = ref_out.image_emb.astype(np.float64)
    got = q_out.image_emb.astype(np.float64)
    res = spectral_analysis(ref, got)
    scalars = {k: float(v) for k, v in res.items() if isinstance(v, float)}
    extra = {k: v for k, v in res.items() if k not in scalars}
    sqnr = sqnr_from_analysis(res)  # the same decomposition, not a second SVD
    extra["sqnr_per_rank_db"] = sqnr
    extra["band_sqnr_db"] = band_means(sqnr, DEFAULT_BANDS)
    # each model's own classifier, as its zero-shot cells use it
    extra["band_top1_ref"] = rank_band_accuracy(ref, ref, ref_out.classifier, ref_out.labels, DEFAULT_BANDS)
    extra["band_top1_q"] = rank_band_accuracy(ref, got, q_out.classifier, q_out.labels, DEFAULT_BANDS)
    return TaskResult(scalars, len(ref), extra=extra)
