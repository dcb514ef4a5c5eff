"""The report's "Data" section: each dataset's items, exclusions per reason and their first records, from
the summary the controller stores with the run (and, end to end, through a real pytest run)."""

from __future__ import annotations

import json
import sqlite3
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from qclip.data import read_fairface, read_imagefolder
from qclip.report import write_report
from qclip.report.sections_data import META_KEY, collect_summaries, data_section
from qclip.results import ResultStore, normalize_rows
from tests.data._helpers import FIXTURES, copy_sample, edit_csv
from tests.test_report import _write_store, fake_rows

ROOT = Path(__file__).resolve().parents[1]


def _bad_fairface(tmp_path: Path):
    root = copy_sample("fairface_sample", tmp_path)

    def fn(df):
        df.loc[1, "file"] = "../../etc/passwd"
        df.loc[3, "file"] = "val/nope.jpg"
        df.loc[4, "file"] = "val/nope2.jpg"
        df.loc[6, "file"] = "val/1.jpg"
        return df

    edit_csv(root / "fairface_label_val.csv", fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_fairface(root, name="synthfairface")


def pd_rows(rows) -> pd.DataFrame:
    return normalize_rows(pd.DataFrame(rows))


def _section_text(md: str, heading: str) -> str:
    start = md.index(f"## {heading}")
    end = md.find("\n## ", start + 3)
    return md[start:end if end >= 0 else None]


def test_a_report_of_a_run_with_bad_rows_lists_them(tmp_path):
    ds = _bad_fairface(tmp_path)
    rows = fake_rows(run_id="bad", families={"zeroshot", "fairface"})
    session = SimpleNamespace(data_config=SimpleNamespace(names=lambda: ["synthfairface", "unused"]),
                              dataset=lambda name: ds)
    summaries = collect_summaries(pd_rows(rows), session)
    assert list(summaries) == ["synthfairface"]  # only the datasets the run's rows use
    store = _write_store(tmp_path / "r.sqlite", "bad", rows, {META_KEY: summaries, "device": "cpu"})
    out = write_report(store, "bad", out_root=tmp_path / "reports")
    md = (out / "report.md").read_text(encoding="utf-8")
    data = _section_text(md, "Data")
    assert "| synthfairface | FairFaceSet | 4 | 4 | 2 image file missing; 1 duplicate file; 1 path outside root |" in data
    assert "| image file missing | fairface_label_val.csv | 3 | image file missing: 'val/nope.jpg' |" in data
    assert "| image file missing | fairface_label_val.csv | 4 | image file missing: 'val/nope2.jpg' |" in data
    assert "| duplicate file | fairface_label_val.csv | 6 | duplicate file: 'val/1.jpg' (first at row 0) |" in data
    assert "path outside root: '../../etc/passwd' climbs above the root" in data
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<details><summary>synthfairface: 4 excluded" in html
    assert "duplicate file: &#x27;val/1.jpg&#x27;" in html or "duplicate file: 'val/1.jpg'" in html
    # the summaries are not repeated among the run metadata at the end
    assert "nope2.jpg" not in _section_text(md, "Run metadata")
    store.close()


def test_section_of_clean_datasets_and_of_old_runs():
    clean = read_imagefolder(FIXTURES / "imagenet_sample", name="inet").exclusion_summary()
    sec = data_section({META_KEY: {"inet": clean, "broken": {"name": "broken", "error": "DataFormatError: x"}}})
    table = sec.blocks[0].df
    assert table["Dataset"].tolist() == ["broken", "inet"]
    assert table["Exclusions per reason"].tolist() == ["could not be read: DataFormatError: x", "none"]
    assert len(sec.blocks) == 1  # no detail block for datasets without exclusions
    old = data_section({"device": "cpu"})
    assert "No dataset summary" in old.blocks[0].text


def test_collect_summaries_never_raises():
    rows = pd_rows(fake_rows(run_id="x", families={"ood"}))
    ood_sets = set(rows.loc[rows["benchmark"] == "ood", "subgroup"])

    def dataset(name):
        raise OSError(f"disk gone under {name}")

    session = SimpleNamespace(data_config=SimpleNamespace(names=lambda: sorted(ood_sets) + ["other"]), dataset=dataset)
    out = collect_summaries(rows, session)
    assert set(out) == ood_sets and all(v["error"].startswith("OSError: disk gone") for v in out.values())

    def bad_config():
        raise ValueError("bad toml")

    session = SimpleNamespace(data_config=SimpleNamespace(names=bad_config), dataset=dataset)
    assert "bad toml" in collect_summaries(rows, session)["(data config)"]["error"]
    assert collect_summaries(rows.iloc[:0], session) == {}


@pytest.mark.slow  # bench cells in a pytest subprocess
@pytest.mark.filterwarnings("ignore")
def test_a_pytest_run_reports_its_excluded_records(pytester, tmp_path):
    """End to end: cells on a folder with a symlink out of its root and a stray file; the controller stores
    the summary with the run and the report's Data section lists both records."""
    data = copy_sample("imagenet_sample", tmp_path / "data")
    (data / "n01440764" / "notes.txt").write_text("not an image")
    (tmp_path / "secret.jpg").write_bytes((FIXTURES / "imagenet_sample" / "n01440764" /
                                           "ILSVRC2012_val_00000293.JPEG").read_bytes())
    (data / "n01443537" / "evil.JPEG").symlink_to(tmp_path / "secret.jpg")
    config = tmp_path / "qclip.toml"
    config.write_text(f'[datasets.hostile]\nkind = "imagefolder"\nroot = "{data}"\n'
                      'classnames = ["tench", "goldfish", "Chihuahua"]\ntemplates = "simple"\n')
    cache = tmp_path / "cache"
    res = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pytest.ini"),
        "--qclip-data", str(config), "--qclip-cache", str(cache), "--qclip-reports", str(cache / "reports"),
        str(ROOT / "bench" / "test_zeroshot.py"), "--qclip-models", "random:open_clip/ViT-B-32/tiny",
        "--qclip-quantizers", "fp32", timeout=600)
    res.assert_outcomes(passed=1)
    assert "DataExclusionWarning: dataset 'hostile': 2 record(s) excluded, 6 kept" in res.stdout.str()
    con = sqlite3.connect(cache / "results.sqlite")
    (meta,) = con.execute("SELECT meta FROM runs").fetchone()
    summary = json.loads(meta)[META_KEY]["hostile"]
    assert summary["items"] == 6 and summary["excluded"] == 2
    assert {r["reason"]: r["count"] for r in summary["reasons"]} == {"not an image file": 1, "path outside root": 1}
    md = (cache / "reports" / "latest" / "report.md").read_text(encoding="utf-8")
    data_md = _section_text(md, "Data")
    assert "| hostile | ClassificationSet | 6 | 2 | 1 not an image file; 1 path outside root |" in data_md
    assert "not an image file: n01440764/notes.txt" in data_md and str(tmp_path / "secret.jpg") in data_md
    with ResultStore(cache / "results.sqlite") as store:  # `qclip report` later rebuilds it from the store alone
        again = write_report(store, "latest", out_root=tmp_path / "again")
    assert _section_text((again / "report.md").read_text(encoding="utf-8"), "Data") == data_md
