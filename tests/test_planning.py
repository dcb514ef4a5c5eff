"""qclip.run.planning on a small session (random: models, the checked-in samples' dataset config): which
quantizers and datasets the patterns select, and the cells of a family with their skip reasons."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from qclip.errors import UnknownQuantizerError
from qclip.run.cells import BENCHMARK_KINDS, Cell
from qclip.run.planning import (
    item_cell,
    plan_cells,
    quantizer_skip_reason,
    selected_datasets,
    selected_quantizers,
)
from qclip.run.session import QclipSession, SessionOptions

DATA = Path(__file__).resolve().parent / "plugin_data.toml"
RANDOM = "random:open_clip/ViT-B-32/tiny"
MISSING = "open_clip:ViT-B-32/nosuchtag"  # unavailable offline, without touching the disk or the network


@pytest.fixture
def session(tmp_path):
    def make(**options) -> QclipSession:
        return QclipSession(SessionOptions(**{"models": RANDOM, "data": str(DATA), "cache": str(tmp_path / "cache"),
                                              "progress": False, **options}))

    return make


# ----- quantizers ----------------------------------------------------------------------------------------
def test_quantizer_patterns_expand_in_order_without_duplicates(session):
    from qclip.quantize import list_quantizers

    bnb = list_quantizers("bnb-*")
    assert len(bnb) >= 3 and "bnb-nf4" in bnb
    assert selected_quantizers(session(quantizers="fp32,bnb-*")) == ["fp32", *bnb]
    # an exact name first keeps its place; the glob adds only the others, in registry order
    assert selected_quantizers(session(quantizers="bnb-nf4,bnb-*,fp32,bnb-nf4")) == \
        ["bnb-nf4", *[q for q in bnb if q != "bnb-nf4"], "fp32"]
    assert selected_quantizers(session(quantizers=" fp16 , ,fp32,")) == ["fp16", "fp32"]
    assert selected_quantizers(session(quantizers="nomatch-*")) == []


def test_every_registered_quantizer_by_default(session):
    from qclip.quantize import list_quantizers

    assert selected_quantizers(session(quantizers="*")) == list_quantizers("*")
    assert selected_quantizers(session(quantizers="")) == list_quantizers("*")


def test_an_unknown_exact_quantizer_fails_fast_naming_the_known_ones(session):
    with pytest.raises(UnknownQuantizerError) as exc:
        selected_quantizers(session(quantizers="fp32,bnb-nf5"))
    assert "bnb-nf5" in str(exc.value) and "bnb-nf4" in str(exc.value)


# ----- datasets ------------------------------------------------------------------------------------------
def test_datasets_of_the_families_kinds_matching_the_patterns(session):
    s = session()
    assert selected_datasets(s, BENCHMARK_KINDS["zeroshot"]) == ["imagenet-sample"]
    assert selected_datasets(s, BENCHMARK_KINDS["retrieval"]) == ["coco-sample"]
    # kinds in the family's order, then names; a name matched twice is listed once
    assert selected_datasets(s, ("spurious", "imagefolder", "spurious")) == ["waterbirds-sample", "imagenet-sample"]
    assert selected_datasets(session(datasets="imagenet-*"), ("imagefolder", "spurious")) == ["imagenet-sample"]
    assert selected_datasets(session(datasets="water*, imagenet-sample"), ("imagefolder", "spurious")) == \
        ["imagenet-sample", "waterbirds-sample"]
    assert selected_datasets(session(datasets="coco-*"), BENCHMARK_KINDS["zeroshot"]) == []
    # fnmatch is case-sensitive: a pattern matches names as they are configured
    assert selected_datasets(session(datasets="ImageNet-*"), ("imagefolder",)) == []


def test_a_family_without_datasets_gets_one_empty_dataset(session):
    assert BENCHMARK_KINDS["throughput"] == ("",)
    assert selected_datasets(session(datasets="nothing-matches"), ("",)) == [""]


# ----- cells ---------------------------------------------------------------------------------------------
def test_cells_are_models_by_quantizers_by_datasets_in_that_order(session):
    s = session(models=f"{RANDOM},random:hf/openai/clip-vit-base-patch32/tiny", quantizers="fp32,bnb-int8")
    plan = plan_cells(s, "robustness", BENCHMARK_KINDS["robustness"])
    got = [(c.model, c.quantizer, c.dataset) for c, _ in plan]
    models = [RANDOM, "random:hf/openai/clip-vit-base-patch32/tiny"]
    assert got == [(m, q, d) for m in models for q in ("fp32", "bnb-int8")
                   for d in ("imagenet-sample", "waterbirds-sample")]
    assert all(isinstance(c, Cell) and c.benchmark == "robustness" and reason == "" for c, reason in plan)
    assert len({c.key for c, _ in plan}) == len(plan) and len({c.id for c, _ in plan}) == len(plan)
    from qclip.models import parse_spec

    assert {c.model_id for c, _ in plan} == {parse_spec(m).short for m in models}


def test_a_model_only_family_has_one_cell_per_model_and_quantizer(session):
    plan = plan_cells(session(quantizers="fp32,fp16"), "throughput", BENCHMARK_KINDS["throughput"])
    assert [(c.quantizer, c.dataset) for c, _ in plan] == [("fp32", ""), ("fp16", "")]


def test_skip_reasons_name_the_unavailable_model_or_quantizer(session):
    s = session(models=f"{RANDOM},{MISSING}", quantizers="fp32,ao-int4wo")
    reasons = {(c.model, c.quantizer): r for c, r in plan_cells(s, "zeroshot", BENCHMARK_KINDS["zeroshot"])}
    assert len(reasons) == 4
    assert reasons[(RANDOM, "fp32")] == ""
    assert reasons[(RANDOM, "ao-int4wo")].startswith("quantizer ao-int4wo unavailable: ")
    # the model's reason wins over the quantizer's: it is where the user has to look first
    for q in ("fp32", "ao-int4wo"):
        assert reasons[(MISSING, q)].startswith(f"{MISSING}: ") and "nosuchtag" in reasons[(MISSING, q)]


def test_a_quantizer_that_needs_cuda_is_skipped_on_the_cpu(session, monkeypatch):
    import qclip.quantize

    cuda_only = SimpleNamespace(name="cuda-only", family="test", spec=SimpleNamespace(requires_cuda=True),
                                available=lambda: (True, ""), describe=lambda: {})
    real = qclip.quantize.create_quantizer
    monkeypatch.setattr(qclip.quantize, "create_quantizer", lambda name, **kw: cuda_only if name == "cuda-only"
                        else real(name, **kw))
    assert quantizer_skip_reason(session(), "cuda-only") == "quantizer cuda-only needs CUDA (run with --qclip-device cuda)"
    assert quantizer_skip_reason(session(device="cuda:1"), "cuda-only") == ""
    assert quantizer_skip_reason(session(), "fp32") == ""


def test_item_cell_finds_the_cell_parameter_only():
    cell = Cell(RANDOM, "m", "fp32", "zeroshot", "imagenet-sample")
    assert item_cell(SimpleNamespace(callspec=SimpleNamespace(params={"cell": cell}))) is cell
    assert item_cell(SimpleNamespace(callspec=SimpleNamespace(params={"cell": "not a cell"}))) is None
    assert item_cell(SimpleNamespace(callspec=SimpleNamespace(params={}))) is None
    assert item_cell(SimpleNamespace()) is None  # a plain test function has no callspec
