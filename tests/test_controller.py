"""qclip.run.controller pieces that need no pytest session: the failure reason of a report, the rows and
statuses it commits as reports arrive, the terminal summary, resume deselection, run ids and metadata."""

from __future__ import annotations

from types import SimpleNamespace

from qclip.run.controller import failure_reason


def _report(longrepr, text="", when="call"):
    return SimpleNamespace(longrepr=longrepr, longreprtext=text, when=when)


def test_the_reason_is_the_exception_line_not_the_traceback_tail():
    crash = SimpleNamespace(message="RuntimeError: shape '[96, 1]' is invalid for input of size 144")
    text = "def forward(x):\n>   return f(x)\nE   RuntimeError: shape '[96, 1]' is invalid\n\nfunctional.py:1700: RuntimeError"
    assert failure_reason(_report(SimpleNamespace(reprcrash=crash), text)) == crash.message


def test_without_a_crash_entry_the_first_E_line_or_the_last_line():
    text = "worker crashed\nE   AssertionError: accuracy not preserved\nmore"
    assert failure_reason(_report("string longrepr", text)) == "AssertionError: accuracy not preserved"
    assert failure_reason(_report("x", "[gw0] node down: Not properly terminated\n")) == \
        "[gw0] node down: Not properly terminated"
    assert failure_reason(_report(None, "", when="setup")) == "setup failed (no message)"


def test_one_gpu_per_worker_with_a_simulated_device_count(monkeypatch):
    import dataclasses

    import torch

    from qclip.run.options import PluginOptions, worker_device
    from qclip.run.session import SessionOptions
    from qclip.run.workers import one_gpu_per_worker

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    base = PluginOptions(session=SessionOptions(device="cuda"))
    got = [one_gpu_per_worker(base, f"gw{i}").session.device for i in range(5)]
    assert got == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    named = dataclasses.replace(base, session=SessionOptions(device="cuda:2"))
    assert one_gpu_per_worker(named, "gw0").session.device == "cuda:2"
    cpu = dataclasses.replace(base, session=SessionOptions(device="cpu"))
    assert one_gpu_per_worker(cpu, "gw1").session.device == "cpu"
    assert worker_device("cuda", None, 3) == "cuda" and worker_device("cuda", "gw4", 0) == "cuda"


def test_the_controller_records_each_workers_device():
    from qclip.run.controller import Controller

    ctl = Controller.__new__(Controller)  # only the attributes the hook touches
    ctl.counters, ctl.worker_devices = {}, {}
    for i, dev in enumerate(("cuda:0", "cuda:1")):
        node = SimpleNamespace(gateway=SimpleNamespace(id=f"gw{i}"),
                               workeroutput={"qclip_counters": {"quantize_calls": 2}, "qclip_device": dev})
        ctl.pytest_testnodedown(node, None)
    assert ctl.worker_devices == {"gw0": "cuda:0", "gw1": "cuda:1"} and ctl.counters["quantize_calls"] == 4


def test_embedding_keys_name_the_device_type_not_its_index():
    from qclip.embed import EmbedKey

    parts = [EmbedKey("m", "w", "q", "{}", dev).parts() for dev in ("cuda:0", "cuda:1", "cuda")]
    assert parts[0] == parts[1] == parts[2] and parts[0]["device"] == "cuda"


# ----- rows and statuses as reports arrive (a stand-in store records what the controller writes) -----------
class _Store:
    path = "results.sqlite"

    def __init__(self):
        self.runs, self.rows, self.statuses = [], [], []

    def start_run(self, run_id, meta):
        self.runs.append((run_id, meta))

    def add_rows(self, rows):
        self.rows += rows
        return len(rows)

    def add_cell_status(self, run_id, cell_id, status, message, duration):
        self.statuses.append((run_id, cell_id, status, message, duration))


def _controller(tmp_path):
    """A Controller built by its own __init__ (no baseline, no resume), writing to a stand-in store."""
    from qclip.run.controller import Controller
    from qclip.run.session import SessionOptions

    opts = {"qclip_resume": None, "qclip_compare_fail": [], "qclip_baseline": None}
    config = SimpleNamespace(rootpath=tmp_path, invocation_params=SimpleNamespace(args=("bench", "-q")),
                             getoption=lambda name, default=None: opts.get(name, default))
    session = SimpleNamespace(options=SessionOptions(), cache=SimpleNamespace(root=tmp_path))
    ctl = Controller(config, session)
    ctl._store, ctl._run_id = _Store(), "20250101-120000-ab12"
    return ctl


def _logreport(when, outcome, cell="zeroshot[m-q-ds]", rows=(), longrepr=None, text="", duration=1.5):
    props = ([("qclip_cell", cell)] if cell else []) + ([("qclip_rows", [dict(r) for r in rows])] if rows else [])
    return SimpleNamespace(when=when, outcome=outcome, passed=outcome == "passed", failed=outcome == "failed",
                           skipped=outcome == "skipped", user_properties=props, longrepr=longrepr,
                           longreprtext=text, duration=duration)


def test_a_report_that_is_not_a_cell_writes_nothing(tmp_path):
    ctl = _controller(tmp_path)
    ctl.pytest_runtest_logreport(_logreport("call", "passed", cell=None, rows=[{"metric": "top1"}]))
    assert not ctl.started and ctl._store.runs == ctl._store.rows == ctl._store.statuses == []
    ctl.pytest_sessionfinish(SimpleNamespace(exitstatus=0), 0)  # a session without cells: no run, no report
    assert ctl._store.runs == []


def test_a_passed_cell_commits_its_rows_and_status_once_at_call(tmp_path):
    from qclip.results import STATUSES

    ctl = _controller(tmp_path)
    rows = [{"metric": "top1", "value": 0.5}, {"metric": "top5", "value": 0.9}]
    ctl.pytest_runtest_logreport(_logreport("setup", "passed", rows=rows))
    assert ctl.started and len(ctl._store.runs) == 1 and ctl._store.statuses == [] and ctl._store.rows == []
    run_id, meta = ctl._store.runs[0]
    assert run_id == ctl.run_id and meta["args"] == ["bench", "-q"] and meta["device"] == "cpu"
    assert meta["git_commit"] == ""  # tmp_path is no git checkout
    ctl.pytest_runtest_logreport(_logreport("call", "passed", rows=rows, duration=2.5))
    ctl.pytest_runtest_logreport(_logreport("teardown", "passed"))
    assert ctl._store.rows == [{**r, "run_id": ctl.run_id, "status": "passed"} for r in rows]
    assert ctl.rows_written == 2 and ctl.cells_seen == {"zeroshot[m-q-ds]"}
    assert ctl._store.statuses == [(ctl.run_id, "zeroshot[m-q-ds]", "passed", "", 2.5)]
    assert len(ctl._store.runs) == 1 and ctl._store.statuses[0][2] in STATUSES


def test_a_failed_call_keeps_its_rows_and_names_the_reason(tmp_path):
    ctl = _controller(tmp_path)
    crash = SimpleNamespace(reprcrash=SimpleNamespace(message="AssertionError: accuracy not preserved"))
    ctl.pytest_runtest_logreport(_logreport("call", "failed", rows=[{"metric": "top1"}], longrepr=crash,
                                            text="E   AssertionError: accuracy not preserved\nlong traceback"))
    assert ctl._store.rows[0]["status"] == "failed"
    (_, cell, status, message, _), = ctl._store.statuses
    assert status == "failed" and message.startswith("AssertionError: accuracy not preserved\n\n")
    assert message.endswith("long traceback")
    assert ctl.failures == [(cell, "failed", "AssertionError: accuracy not preserved")]


def test_setup_and_teardown_errors_and_skips(tmp_path):
    ctl = _controller(tmp_path)
    ctl.pytest_runtest_logreport(_logreport("setup", "failed", cell="a[1]", rows=[{"metric": "top1"}],
                                            text="E   RuntimeError: no model"))
    ctl.pytest_runtest_logreport(_logreport("setup", "skipped", cell="b[1]",
                                            longrepr=("file.py", 3, "Skipped: quantizer x unavailable")))
    ctl.pytest_runtest_logreport(_logreport("call", "passed", cell="c[1]"))
    ctl.pytest_runtest_logreport(_logreport("teardown", "failed", cell="c[1]", text="E   OSError: disk full"))
    statuses = [(c, s, m.split("\n")[0]) for _, c, s, m, _ in ctl._store.statuses]
    assert statuses == [("a[1]", "error", "RuntimeError: no model"),
                        ("b[1]", "skipped", "Skipped: quantizer x unavailable"),
                        ("c[1]", "passed", ""), ("c[1]", "error", "OSError: disk full")]  # the last one wins
    assert ctl._store.rows == []  # a setup that failed ran no cell: its rows are not results
    assert [f[:2] for f in ctl.failures] == [("a[1]", "error"), ("c[1]", "error")]


def test_the_terminal_summary_lists_failures_up_to_a_limit(tmp_path):
    from qclip.run import controller

    ctl = _controller(tmp_path)
    ctl.started, ctl.cells_seen, ctl.rows_written = True, {"x"}, 3
    ctl.failures = [(f"zeroshot[{i}]", "failed", f"AssertionError: cell {i}\nsecond line")
                    for i in range(controller._MAX_FAILURE_LINES + 2)]
    lines = []
    ctl.pytest_terminal_summary(SimpleNamespace(section=lambda title: lines.append(f"== {title}"),
                                                write_line=lambda line, **kw: lines.append(line)))
    assert lines[0] == "== qclip" and lines[1].startswith(f"run {ctl.run_id}: 1 cells, 3 rows -> ")
    failed = [line for line in lines if line.startswith("failed: ")]
    assert len(failed) == controller._MAX_FAILURE_LINES and failed[0] == "failed: zeroshot[0]: AssertionError: cell 0"
    assert lines[-1] == "… and 2 more failed cells (see the report)"


def test_deselect_cells_drops_the_finished_cells_only():
    from qclip.run.cells import Cell
    from qclip.run.controller import deselect_cells

    def item(cell):
        return SimpleNamespace(callspec=SimpleNamespace(params={"cell": cell}) if cell else None)

    cells = [Cell("m", "m", q, "zeroshot", "ds") for q in ("fp32", "q1", "q2")]
    items = [item(cells[0]), item(None), item(cells[1]), item(cells[2])]
    deselected = []
    config = SimpleNamespace(hook=SimpleNamespace(pytest_deselected=lambda items: deselected.extend(items)))
    kept = list(items)
    assert deselect_cells(config, kept, {cells[0].key, cells[2].key, "other[cell]"}) == 2
    assert kept == [items[1], items[2]] and deselected == [items[0], items[3]]
    assert deselect_cells(config, kept, set()) == 0 and len(deselected) == 2  # nothing dropped: no hook call


def test_run_ids_sort_by_time_and_do_not_collide():
    import re

    from qclip.run.controller import new_run_id

    ids = [new_run_id() for _ in range(20)]
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", i) for i in ids)
    assert len(set(ids)) > 1


def test_the_git_commit_says_when_the_checkout_has_changes(tmp_path):
    import subprocess

    from qclip.run.controller import _git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    assert _git_commit(tmp_path) == ""
    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "a")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert _git_commit(tmp_path) == sha
    (tmp_path / "a.txt").write_text("b")
    assert _git_commit(tmp_path) == f"{sha}-uncommitted-changes"


def test_compare_fail_without_a_baseline_is_a_usage_error(tmp_path):
    import pytest

    from qclip.run.controller import Controller

    opts = {"qclip_resume": None, "qclip_compare_fail": ["top1:0.01"], "qclip_baseline": None,
            "qclip_results": str(tmp_path / "results.sqlite")}
    config = SimpleNamespace(getoption=lambda name, default=None: opts.get(name, default))
    session = SimpleNamespace(cache=SimpleNamespace(root=tmp_path))
    with pytest.raises(pytest.UsageError, match="--qclip-compare-fail needs --qclip-baseline"):
        Controller(config, session)
    opts["qclip_baseline"] = "nosuchrun"
    with pytest.raises(pytest.UsageError, match="--qclip-baseline nosuchrun: "):
        Controller(config, session)
    # without either, the store is opened on first use only (a session without cells creates none)
    opts["qclip_compare_fail"], opts["qclip_baseline"] = [], None
    opts["qclip_results"] = str(tmp_path / "unused.sqlite")
    assert Controller(config, session).baseline_rows is None and not (tmp_path / "unused.sqlite").exists()
