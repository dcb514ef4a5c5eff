"""The pytest plugin end to end: the real bench/ cells on the checked-in real-format samples, with
randomly initialised models of real architectures (no training, no weights), in a subprocess."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DATA = ROOT / "tests" / "plugin_data.toml"
MODELS = "random:open_clip/ViT-B-32/tiny,random:hf/openai/clip-vit-base-patch32/tiny"

pytestmark = pytest.mark.filterwarnings("ignore")
# the tests that run bench cells in a pytest subprocess are marked slow (5 to 15 s each on 2 cores)


def _run(pytester: pytest.Pytester, cache: Path, *args: str):
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pytest.ini"),
        "--qclip-data", str(DATA), "--qclip-cache", str(cache), "--qclip-reports", str(cache / "reports"),
        *args, timeout=600,
    )


def _meta(cache: Path) -> dict:
    con = sqlite3.connect(cache / "results.sqlite")
    (meta,) = con.execute("SELECT meta FROM runs ORDER BY created DESC, rowid DESC LIMIT 1").fetchone()
    return json.loads(meta)


def _rows(cache: Path, where: str = "1=1") -> list[tuple]:
    con = sqlite3.connect(cache / "results.sqlite")
    return con.execute(f"SELECT cell_id, quantizer, metric, subgroup, value, reference FROM rows WHERE {where}").fetchall()


@pytest.mark.slow
def test_cells_run_record_and_a_rerun_reuses_the_cache(pytester, tmp_path):
    cache = tmp_path / "cache"
    args = (str(BENCH / "test_zeroshot.py"), str(BENCH / "test_retrieval.py"), "--qclip-models", MODELS,
            "--qclip-quantizers", "fp32,bnb-int8", "--qclip-threshold", "bnb-int8=100")
    first = _run(pytester, cache, *args)
    first.assert_outcomes(passed=8)
    m1 = _meta(cache)["counters"]
    # cells of one (model, quantizer) run together: each quantized variant is built once for both families
    assert m1["quantize_calls"] == 2 and m1["cache_misses"] > 0, m1
    rows = _rows(cache)
    assert {r[1] for r in rows} == {"fp32", "bnb-int8"}
    assert all(r[5] == r[5] for r in rows)  # every row has its fp32 reference (not NaN)
    assert (cache / "reports" / "latest" / "report.html").is_file()

    second = _run(pytester, cache, *args)
    second.assert_outcomes(passed=8)
    m2 = _meta(cache)["counters"]
    assert m2["quantize_calls"] == 0, m2  # quantized models are not rebuilt: every embedding is cached
    assert m2["model_loads"] == 0 and m2["cache_misses"] == 0, m2


def test_cells_of_one_model_and_quantizer_run_together():
    from types import SimpleNamespace

    from qclip.run.cells import Cell
    from qclip.run.planning import group_by_variant

    def item(name, model=None, quantizer=None):
        cell = Cell(model, model, quantizer, name.split("-")[0], "ds") if model else None
        return SimpleNamespace(name=name, callspec=SimpleNamespace(params={"cell": cell}) if cell else None)

    items = [item("plain-1"), item("zeroshot-a-q1", "a", "q1"), item("zeroshot-a-q2", "a", "q2"),
             item("zeroshot-b-q1", "b", "q1"), item("plain-2"), item("ood-a-q1", "a", "q1"),
             item("ood-a-q2", "a", "q2"), item("ood-b-q1", "b", "q1")]
    group_by_variant(items)
    assert [i.name for i in items] == ["plain-1", "zeroshot-a-q1", "ood-a-q1", "zeroshot-a-q2", "ood-a-q2",
                                       "zeroshot-b-q1", "ood-b-q1", "plain-2"]


@pytest.mark.slow
def test_k_selects_one_quantizer_and_the_reference_is_still_computed(pytester, tmp_path):
    cache = tmp_path / "cache"
    res = _run(pytester, cache, str(BENCH / "test_zeroshot.py"), "--qclip-models", MODELS,
               "--qclip-quantizers", "fp32,bnb-nf4", "--qclip-threshold", "bnb-nf4=100", "-k", "nf4")
    res.assert_outcomes(passed=2, deselected=2)
    rows = _rows(cache)
    assert {r[1] for r in rows} == {"bnb-nf4"}, "an fp32 cell ran although -k deselected it"
    assert all(r[5] == r[5] and 0 <= r[5] <= 1 for r in rows), "the fp32 reference was not computed"


@pytest.mark.slow
def test_unknown_quantizer_fails_fast_listing_the_known_ones(pytester, tmp_path):
    res = _run(pytester, tmp_path, str(BENCH / "test_zeroshot.py"), "--qclip-quantizers", "bnb-nf5")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "Unknown quantizer 'bnb-nf5'" in err and "bnb-nf4" in err and "torch-dyn-int8" in err


def test_the_plugin_loads_without_xdist(pytester, tmp_path):
    # qclip.plugin implements xdist's hooks; without xdist they must be optional, not an INTERNALERROR
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    res = _run(pytester, tmp_path, str(pytester.path / "test_one.py"), "-p", "no:xdist")
    assert res.ret == pytest.ExitCode.OK, res.stderr.str()
    res.assert_outcomes(passed=1)


@pytest.mark.slow
def test_unavailable_model_is_skipped_with_where_it_looked(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    res = _run(pytester, tmp_path / "cache", str(BENCH / "test_zeroshot.py"), "-rs",
               "--qclip-models", "open_clip:ViT-B-32/laion2b_s34b_b79k", "--qclip-quantizers", "fp32")
    res.assert_outcomes(skipped=1)
    out = res.stdout.str()
    assert "looked in" in out and "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" in out


@pytest.mark.slow
def test_a_quantizer_defined_outside_qclip_runs_through_the_same_cells(pytester, tmp_path):
    pytester.makepyfile(thirdparty_quant=textwrap.dedent("""
        import torch
        from qclip.quantize import create_quantizer
        from qclip.quantize.base import Quantizer

        class HalfThenBack(Quantizer):
            '''Round weights through fp16 and back: a faithful third-party quantizer.'''
            name = "thirdparty-fp16rt"
            family = "thirdparty"

            def available(self):
                return True, ""

            def quantize(self, model):
                with torch.no_grad():
                    for p in model.module.parameters():
                        p.copy_(p.half().float())
                return create_quantizer("fp32").quantize(model)

            def describe(self):
                return {"bits": 16, "scheme": "fp16 round trip"}
    """))
    res = _run(pytester, tmp_path / "cache", str(BENCH / "test_zeroshot.py"), "--qclip-models", MODELS,
               "--qclip-quantizer", "thirdparty_quant:HalfThenBack", "--qclip-quantizers", "thirdparty-fp16rt",
               "--qclip-threshold", "thirdparty-fp16rt=0.5")
    res.assert_outcomes(passed=2)
    rows = _rows(tmp_path / "cache")
    assert {r[1] for r in rows} == {"thirdparty-fp16rt"}


@pytest.mark.slow
def test_fairness_cells_run_on_the_checked_in_real_format_samples(pytester, tmp_path):
    cache = tmp_path / "cache"
    res = _run(pytester, cache, str(BENCH / "test_facet.py"), str(BENCH / "test_fairface.py"),
               "--qclip-models", "random:open_clip/ViT-B-32/tiny", "--qclip-quantizers", "fp32,bnb-nf4",
               "--qclip-min-samples", "1", "--qclip-skew-k", "4")
    res.assert_outcomes(passed=4)
    rows = _rows(cache, "quantizer = 'bnb-nf4'")
    facet = {(r[2], r[3]) for r in rows if r[0].startswith("facet")}
    for group in ("gender", "skin_tone", "age_young"):
        for metric in ("min_disparity@1", "max_disparity@1", "min_disparity@5", "max_disparity@5"):
            assert (metric, group) in facet
    fairface = {(r[2], r[3]) for r in rows if r[0].startswith("fairface")}
    for attr in ("race", "gender", "age_bin", "race/uniform"):
        assert ("max_skew@4", attr) in fairface and ("min_skew@4", attr) in fairface and ("ndkl@4", attr) in fairface
    assert all(-1 <= r[4] <= 1 for r in rows if "disparity" in r[2] and r[4] is not None)


@pytest.mark.slow
def test_fairness_gate_turns_recorded_deltas_into_assertions(pytester, tmp_path):
    res = _run(pytester, tmp_path / "cache", str(BENCH / "test_fairface.py"),
               "--qclip-models", "random:open_clip/ViT-B-32/tiny", "--qclip-quantizers", "bnb-nf4",
               "--qclip-skew-k", "4", "--qclip-fairness-gate", "ndkl@*:-1")  # a bound no |delta| can meet
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "fairness gate failed" in out and "ndkl@4[race]" in out
    rows = _rows(tmp_path / "cache")
    assert rows, "the rows of a cell that failed its gate must still be stored"
    # the reason (exception type and message) reaches the terminal summary and both reports
    reason = "AssertionError: fairness gate failed for model random:open_clip/ViT-B-32/tiny"
    assert "failed: fairface[" in out and reason in out.split("qclip ====")[-1]
    report = tmp_path / "cache" / "reports" / "latest"
    assert f"failed: {reason}" in (report / "report.md").read_text()
    assert reason in (report / "report.html").read_text()
