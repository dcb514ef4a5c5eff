"""Rows reach the store exactly once through xdist workers (--tx popen), an interrupted run resumes
without recomputing finished cells, and the regression gate fails on a planted regression."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DATA = ROOT / "tests" / "plugin_data.toml"
MODELS = "random:open_clip/ViT-B-32/tiny,random:hf/openai/clip-vit-base-patch32/tiny,random:open_clip/ViT-B-16/tiny"

# slow: every test runs bench cells in pytest subprocesses, two of them with xdist workers of their own
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]


def _cmd(cache: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c",
            str(ROOT / "pytest.ini"), "--qclip-data", str(DATA), "--qclip-cache", str(cache),
            "--qclip-reports", str(cache / "reports"), "--qclip-models", MODELS, *args]


def _q(cache: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(cache / "results.sqlite", timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_rows_from_two_popen_workers_are_stored_exactly_once(tmp_path):
    cache = tmp_path / "cache"
    res = subprocess.run(_cmd(cache, str(BENCH / "test_zeroshot.py"), str(BENCH / "test_retrieval.py"),
                              "--qclip-quantizers", "fp32,bnb-int8", "--qclip-threshold", "bnb-int8=100",
                              "-d", "--tx", "popen", "--tx", "popen"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 workers" in res.stdout or "gw1" in res.stdout
    (n_cells,) = _q(cache, "SELECT count(*) FROM cells")[0]
    assert n_cells == 3 * 2 * 2  # models x quantizers x (zeroshot on 1 set + retrieval on 1 set)
    dupes = _q(cache, "SELECT cell_id, metric, subgroup, count(*) c FROM rows GROUP BY 1, 2, 3 HAVING c > 1")
    assert dupes == []
    (n_rows,) = _q(cache, "SELECT count(*) FROM rows")[0]
    assert n_rows == 3 * 2 * (3 + 5 + 6)  # zeroshot: 3 accuracies + 5 agreement metrics; retrieval: 6 recalls


def test_a_killed_run_resumes_without_recomputing_finished_cells(tmp_path):
    cache = tmp_path / "cache"
    args = (str(BENCH / "test_zeroshot.py"), str(BENCH / "test_retrieval.py"), str(BENCH / "test_calibration.py"),
            "--qclip-quantizers", "fp32,bnb-int8,bnb-nf4,fp16", "--qclip-threshold", "bnb-nf4=100",
            "--qclip-threshold", "bnb-int8=100", "--qclip-threshold", "fp16=100", "-n", "2")
    total = 3 * 4 * 3
    proc = subprocess.Popen(_cmd(cache, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    finished = 0
    while time.time() < deadline:
        time.sleep(0.5)
        if (cache / "results.sqlite").exists():
            try:
                finished = _q(cache, "SELECT count(*) FROM cells WHERE status = 'passed'")[0][0]
            except sqlite3.OperationalError:
                continue
            if finished >= 6:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = {c for (c,) in _q(cache, "SELECT cell_id FROM cells WHERE status = 'passed'")}
    assert 6 <= len(done_before) < total, f"could not interrupt half-way ({len(done_before)} of {total} done)"
    (run_id,) = _q(cache, "SELECT run_id FROM runs")[0]

    res = subprocess.run(_cmd(cache, *args, "--qclip-resume", run_id), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"{len(done_before)} finished cells skipped" in res.stdout
    assert f"{total - len(done_before)} passed" in res.stdout  # only the missing cells ran
    cells = dict(_q(cache, "SELECT cell_id, status FROM cells"))
    assert len(cells) == total and set(cells.values()) == {"passed"}
    assert _q(cache, "SELECT count(DISTINCT run_id) FROM runs")[0][0] == 1


def test_gate_fails_on_a_planted_regression_and_passes_on_a_rerun(tmp_path):
    cache = tmp_path / "cache"
    base = (str(BENCH / "test_zeroshot.py"), "--qclip-quantizers", "fp32,bnb-nf4", "--qclip-threshold", "bnb-nf4=100")
    assert subprocess.run(_cmd(cache, *base), capture_output=True, timeout=600).returncode == 0
    (baseline,) = _q(cache, "SELECT run_id FROM runs")[0]

    same = subprocess.run(_cmd(cache, *base, "--qclip-baseline", baseline, "--qclip-compare-fail", "top1:0.001"),
                          capture_output=True, text=True, timeout=600)
    assert same.returncode == 0, same.stdout[-3000:]
    assert "GATE FAILED" not in same.stdout

    # plant a regression in the stored baseline's copy: pretend the baseline was much better
    con = sqlite3.connect(cache / "results.sqlite")
    con.execute("UPDATE rows SET value = 1.0 WHERE run_id = ? AND metric = 'top1' AND quantizer = 'bnb-nf4'",
                (baseline,))
    con.commit()
    con.close()
    worse = subprocess.run(_cmd(cache, *base, "--qclip-baseline", baseline, "--qclip-compare-fail", "top1:0.001"),
                           capture_output=True, text=True, timeout=600)
    assert worse.returncode == 1
    assert "GATE FAILED" in worse.stdout and "top1" in worse.stdout

    # `qclip gate` on the same store: its main() in this process (what `python -m qclip.cli` exits with; the
    # command's own process is tested in tests/test_options.py), not three more interpreters loading torch
    from qclip.cli import main as qclip

    gate = ["gate", "--results", str(cache / "results.sqlite"), "--compare-fail", "top1:0.001"]
    runs = [r for (r,) in _q(cache, "SELECT run_id FROM runs ORDER BY created")]
    assert qclip([*gate, "--baseline", baseline, "--current", runs[-1]]) == 1
    assert qclip([*gate, "--baseline", baseline, "--current", runs[1]]) == 1
    assert qclip([*gate, "--baseline", runs[1], "--current", runs[-1]]) == 0
