"""qclip.tasks.spurious_gap and normal_mask on planted embedding sources: the normal / counter split of a
Waterbirds-style set (its groups) and of a CounterAnimal set (its common / counter rows), the split
accuracies and RSG against a plain loop, and the cell's ΔRSG and Vuln_add against the paper's formulas
written out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from qclip import tasks
from qclip.data import read_spurious
from qclip.metrics.spurious_gap import spurious_gap_summary
from tests.data._helpers import FIXTURES

torch = pytest.importorskip("torch")

CLASSES = ["landbird", "waterbird"]


class _Source:
    """Text embedding of class c = e_c; image embeddings as given."""

    def __init__(self, image_emb: np.ndarray):
        self.image_emb = image_emb

    def text_embeddings(self, texts):
        return torch.tensor(np.array([np.eye(4)[next(i for i, c in enumerate(CLASSES) if t.endswith(f" {c}."))]
                                      for t in texts]))

    def image_embeddings(self, dataset, transform=None, transform_id=""):
        return torch.tensor(self.image_emb)

    @property
    def logit_scale(self) -> float:
        return 100.0


def _waterbirds(seed: int = 0, per_group: int = 50):
    """Four groups of ``per_group`` images; group = label * 2 + place, normal groups 0 and 3."""
    labels = np.repeat([0, 0, 1, 1], per_group)
    places = np.repeat([0, 1, 0, 1], per_group)
    table = pd.DataFrame({"label": labels, "place": places, "group": labels * 2 + places})
    ds = SimpleNamespace(name="wb", classnames=CLASSES, templates=["a photo of a {}."], table=table,
                         meta={"normal_groups": [0, 3]})
    return ds, np.random.default_rng(seed)


def _embeddings(labels: np.ndarray, wrong: np.ndarray, rng) -> np.ndarray:
    """An image points at its class, or at the other one where ``wrong``; a little noise."""
    target = np.where(wrong, 1 - labels, labels)
    return np.eye(4)[target] + 0.01 * rng.normal(size=(labels.size, 4))


def _by_hand(labels, pred, normal):
    """Accuracy on each split with a loop, and RSG = (A_N − A_C) / A_N."""
    hits = {True: [0, 0], False: [0, 0]}
    for y, p, is_normal in zip(labels, pred, normal, strict=True):
        hits[bool(is_normal)][0] += int(y == p)
        hits[bool(is_normal)][1] += 1
    a_n, a_c = hits[True][0] / hits[True][1], hits[False][0] / hits[False][1]
    return a_n, a_c, (a_n - a_c) / a_n


def test_split_accuracies_and_rsg_match_a_plain_loop():
    ds, rng = _waterbirds()
    labels = ds.table["label"].to_numpy()
    group = ds.table["group"].to_numpy()
    wrong = rng.random(labels.size) < np.where(np.isin(group, [0, 3]), 0.05, 0.45)  # counter groups: mostly wrong
    res = tasks.spurious_gap(_Source(_embeddings(labels, wrong, rng)), ds)
    a_n, a_c, rsg = _by_hand(labels, np.where(wrong, 1 - labels, labels), np.isin(group, [0, 3]))
    assert res.metrics["normal_accuracy"] == pytest.approx(a_n, abs=1e-12)
    assert res.metrics["counter_accuracy"] == pytest.approx(a_c, abs=1e-12)
    assert res.metrics["rsg"] == pytest.approx(rsg, abs=1e-12)
    assert res.groups["normal"]["n"] == res.groups["counter"]["n"] == 100 and res.n == 200
    assert rsg > 0.2  # the planted gap


def test_the_cells_delta_rsg_and_vuln_add_are_the_papers_formulas():
    ds, rng = _waterbirds(1)
    labels = ds.table["label"].to_numpy()
    normal = np.isin(ds.table["group"].to_numpy(), [0, 3])
    wrong_f = rng.random(labels.size) < np.where(normal, 0.05, 0.30)
    wrong_q = rng.random(labels.size) < np.where(normal, 0.08, 0.50)  # quantization costs more on counter
    ref = tasks.spurious_gap(_Source(_embeddings(labels, wrong_f, rng)), ds).metrics
    got = tasks.spurious_gap(_Source(_embeddings(labels, wrong_q, rng)), ds).metrics
    fn, fc, _ = _by_hand(labels, np.where(wrong_f, 1 - labels, labels), normal)
    qn, qc, _ = _by_hand(labels, np.where(wrong_q, 1 - labels, labels), normal)
    s = spurious_gap_summary(ref["normal_accuracy"], ref["counter_accuracy"], got["normal_accuracy"],
                             got["counter_accuracy"])
    assert s["delta_rsg"] == pytest.approx((qn - qc) / qn - (fn - fc) / fn, abs=1e-12)
    assert s["vuln_add"] == pytest.approx((fc - qc) / fc - (fn - qn) / fn, abs=1e-12)
    assert s["delta_rsg"] > 0 and s["vuln_add"] > 0


def test_counteranimal_rows_split_by_their_common_and_counter_folders():
    labels = np.array([0, 0, 1, 1, 0, 1])
    split = np.array(["common", "counter", "common", "counter", "common", "counter"])
    ds = SimpleNamespace(name="ca", classnames=CLASSES, templates=["a photo of a {}."],
                         table=pd.DataFrame({"label": labels, "split": split}), meta={})
    assert tasks.normal_mask(ds).tolist() == [True, False, True, False, True, False]
    wrong = np.array([False, True, False, False, False, True])
    res = tasks.spurious_gap(_Source(_embeddings(labels, wrong, np.random.default_rng(0))), ds)
    assert res.metrics["normal_accuracy"] == 1.0
    assert res.metrics["counter_accuracy"] == pytest.approx(1 / 3)
    assert res.metrics["rsg"] == pytest.approx(2 / 3)


def test_without_normal_groups_each_labels_most_frequent_place_is_normal():
    table = pd.DataFrame({"label": [0, 0, 0, 1, 1, 1, 1], "place": [0, 0, 1, 1, 1, 0, 1]})
    table["group"] = table["label"] * 2 + table["place"]
    ds = SimpleNamespace(name="hand", table=table, meta={})
    assert tasks.normal_mask(ds).tolist() == [True, True, False, True, True, False, True]


def test_the_reader_takes_the_common_place_from_every_split():
    ds = read_spurious(FIXTURES / "waterbirds_sample")
    full = pd.read_csv(FIXTURES / "waterbirds_sample" / "metadata.csv")
    for label, place in ds.meta["common_place"].items():
        counts = full[full["y"] == label]["place"].value_counts()
        assert counts[place] == counts.max()
    assert ds.meta["normal_groups"] == sorted(label * 2 + place for label, place in ds.meta["common_place"].items())
    assert ds.meta["normal_groups"] == [0, 3]  # landbird on land, waterbird on water
