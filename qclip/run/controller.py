"""The controller side of a qclip session: the only process that writes the results store.

Registered as a plugin by :mod:`qclip.plugin` on the controller (never on an xdist worker). Rows ride
on each test report's ``user_properties`` (xdist carries them back from workers, local or remote); they
are committed as each report arrives, so a run that dies keeps every finished cell, and
``--qclip-resume RUN`` deselects the finished ones. At the end: population statistics, the report, the
gates (in the style of pytest-benchmark's ``--benchmark-compare-fail``), a short terminal table.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from .cells import ROWS_PROPERTY
from .session import QclipSession

__all__ = ["Controller", "deselect_cells", "new_run_id", "run_metadata"]



def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip()
        return commit + ("-uncommitted-changes" if dirty.stdout.strip() else "") if commit else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run_metadata(config: pytest.Config, session: QclipSession) -> dict:
    import torch

    from .. import __version__
    from ..cache import library_versions

    device = session.options.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "qclip_version": __version__,
        "git_commit": _git_commit(config.rootpath),
        "libraries": library_versions(),
        "python": platform.python_version(),
        "device": device,
        "device_name": device_name,
        "matmul_precision": session.options.matmul_precision,
        "cpu_count": os.cpu_count(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "args": list(config.invocation_params.args),
        "models": session.options.models,
        "quantizers": session.options.quantizers,
        "thresholds": session.options.thresholds,
        # --qclip-equivalence overrides, kept so `qclip report` recomputes the same verdicts
        "equivalence": list(config.getoption("qclip_equivalence", None) or []),
        "cache": str(session.cache.root),
    }


class Controller:
    """Writes rows as reports arrive; at the end runs statistics, the report and the gates."""

    def __init__(self, config: pytest.Config, session: QclipSession):
        from ..expect.gate import parse_compare_fail

        self.config, self.session = config, session
        self._store = None
        self.resume_ref = config.getoption("qclip_resume")
        self._run_id = None
        self.resumed = bool(self.resume_ref)
        self.checks = [parse_compare_fail(t) for t in config.getoption("qclip_compare_fail")]
        self.baseline = config.getoption("qclip_baseline")
        if self.checks and not self.baseline:
            raise pytest.UsageError("--qclip-compare-fail needs --qclip-baseline RUN|FILE to compare against")
        self.baseline_rows = None
        self.baseline_meta: dict | None = None
        self.baseline_warnings: list[str] = []
        if self.baseline:  # the Controller exists on the controller only
            # loaded up front, before this run exists in the store, so 'latest' means the previous run
            from ..expect.gate import load_baseline
            from ..expect.provenance import load_baseline_meta

            try:
                self.baseline_rows = load_baseline(self.baseline, self.store)
            except (KeyError, FileNotFoundError, ValueError) as exc:
                raise pytest.UsageError(f"--qclip-baseline {self.baseline}: {exc}") from None
            self.baseline_meta = load_baseline_meta(self.baseline, self.store)
        self.started = False
        self.rows_written = 0
        self.cells_seen: set[str] = set()
        self.deselected_finished = 0
        self.regressions: list = []
        self.failures: list[tuple[str, str, str]] = []
        self.worker_devices: dict[str, str] = {}  # xdist worker id -> the device its cells ran on  # (cell key, status, reason) of failed cells
        self.summary_lines: list[str] = []
        self.report_dir: Path | None = None
        self.counters: dict[str, int] = {}

    def _add_counters(self, counters: dict) -> None:
        for k, v in counters.items():
            self.counters[k] = self.counters.get(k, 0) + int(v)

    @property
    def store(self):
        """The results store, opened on first use (a session without cells opens none)."""
        if self._store is None:
            from ..results import ResultStore

            path = self.config.getoption("qclip_results") or str(self.session.cache.root / "results.sqlite")
            self._store = ResultStore(path)
        return self._store

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            self._run_id = self.store.resolve(self.resume_ref) if self.resume_ref else new_run_id()
        return self._run_id

    # ----- collection -----------------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """xdist: workers collect, so they get the finished cells of a resumed run from the controller."""
        if self.resumed:
            done = sorted(self.store.finished_cells(self.run_id))
            node.workerinput["qclip_finished_cells"] = done
            self.deselected_finished = len(done)

    def deselect_finished(self, items: list) -> None:
        if not self.resumed:
            return
        self.deselected_finished = deselect_cells(self.config, items, self.store.finished_cells(self.run_id))


    def _ensure_started(self) -> None:
        if not self.started:
            self.store.start_run(self.run_id, run_metadata(self.config, self.session))
            self.started = True

    # ----- rows as reports arrive ---------------------------------------------------------------
    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = [r for name, value in report.user_properties if name == ROWS_PROPERTY for r in value]
        cell_key = _cell_key(report)
        if cell_key is None:
            return
        self._ensure_started()
        final = report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed)
        if not final:
            return
        status = {"passed": "passed", "failed": "failed", "skipped": "skipped"}[report.outcome]
        if report.when != "call" and report.failed:
            status = "error"
        if rows and report.when == "call":
            for r in rows:
                r["run_id"], r["status"] = self.run_id, status
            self.rows_written += self.store.add_rows(rows)
        message = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        elif report.failed:
            reason = failure_reason(report)
            self.failures.append((cell_key, status, reason))
            message = f"{reason}\n\n{str(report.longreprtext)[-2000:]}"
        self.store.add_cell_status(self.run_id, cell_key, status, message, float(report.duration))
        self.cells_seen.add(cell_key)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """xdist: a worker finished; add its counters (model loads, quantize calls, cache hits)."""
        out = getattr(node, "workeroutput", {})
        self._add_counters(out.get("qclip_counters", {}))
        if "qclip_device" in out:
            self.worker_devices[str(getattr(getattr(node, "gateway", None), "id", "?"))] = out["qclip_device"]

    # ----- end of session -------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from ..expect.equivalence import margin_function
        from ..expect.gate import run_gates
        from ..report import terminal_summary, write_report
        from ..report.sections_data import META_KEY, collect_summaries
        from ..stats import population_stats

        if not self.started:
            return
        t0 = time.perf_counter()
        self._add_counters(self.session.counters())
        self.store.start_run(self.run_id, {"counters": self.counters,
                                           "worker_devices": dict(sorted(self.worker_devices.items())),
                                           "finished": dt.datetime.now().isoformat(timespec="seconds")})
        rows = self.store.rows(self.run_id)
        self._record_provenance(rows)
        # what each dataset of the run read and left out, stored with the run for the report's Data section
        self.store.start_run(self.run_id, {META_KEY: collect_summaries(rows, self.session)})
        gates = None
        if self.checks:
            gates = run_gates(rows, self.baseline_rows, self.checks)
            self.regressions = [g for g in gates if not g.passed]
            if self.regressions and session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        margins = margin_function(self.config.getoption("qclip_equivalence", None) or ())
        stats = population_stats(rows, margins) if not rows.empty else None
        if not self.config.getoption("qclip_no_report") and not rows.empty:
            self.report_dir = write_report(self.store, self.run_id, Path(self.config.getoption("qclip_reports")),
                                           gates=gates, stats=stats,
                                           figure_memo=self.session.cache.root / "figures")
        self.summary_lines = terminal_summary(rows, stats) if stats is not None else []
        self.finish_seconds = time.perf_counter() - t0

    def _record_provenance(self, rows) -> None:
        """Store what produced the run's numbers (weights checksums, tiny mode, world, CPU capability) and, with
        a baseline, warn about every difference from the baseline's (qclip.expect.provenance)."""
        from ..models.provenance import run_provenance

        specs = sorted(rows["model"].unique()) if not rows.empty else []
        self.store.start_run(self.run_id, {"provenance": run_provenance(specs, self.session.cache,
                                                                        data=self.session.options.data)})
        if self.baseline:
            from ..expect.provenance import provenance_differences, warning_lines

            current = self.store.meta(self.run_id)
            diffs = provenance_differences(self.baseline_meta, current)
            self.baseline_warnings = warning_lines(self.baseline_meta, current, f"baseline {self.baseline}")
            self.store.start_run(self.run_id, {"baseline": {"ref": str(self.baseline), "differences": diffs}})

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.started:
            return
        tr = terminalreporter
        tr.section("qclip")
        tr.write_line(f"run {self.run_id}: {len(self.cells_seen)} cells, {self.rows_written} rows -> {self.store.path}"
                      + (f" (resumed; {self.deselected_finished} finished cells skipped)" if self.resumed else ""))
        for line in self.summary_lines:
            tr.write_line(line)
        if self.report_dir is not None:
            tr.write_line(f"report: {self.report_dir}/report.html (also {self.report_dir.parent}/latest/)")
        for key, status, reason in self.failures[:_MAX_FAILURE_LINES]:
            tr.write_line(f"{status}: {key}: {reason.splitlines()[0][:300]}", red=True)
        if len(self.failures) > _MAX_FAILURE_LINES:
            tr.write_line(f"… and {len(self.failures) - _MAX_FAILURE_LINES} more failed cells (see the report)", red=True)
        for line in self.baseline_warnings:
            tr.write_line(line, yellow=True)
        for g in self.regressions:
            tr.write_line(f"GATE FAILED: {g}", red=True)
            for d in g.details:
                tr.write_line(f"  {d}", red=True)


def deselect_cells(config: pytest.Config, items: list, done) -> int:
    """Drop the items of cells in ``done`` (a resumed run's finished cells); return how many."""
    keep, drop = [], []
    for item in items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        (drop if cell is not None and cell.key in done else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    return len(drop)


_MAX_FAILURE_LINES = 15


def failure_reason(report: pytest.TestReport) -> str:
    """The exception's type and message (``RuntimeError: shape ... is invalid``) of a failed report: the
    line pytest's short summary shows, not the last lines of the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = str(getattr(crash, "message", "") or "").strip()
    if message:
        return message
    text = str(report.longreprtext or "")
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    if errors:
        return errors[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"{report.when} failed (no message)"


def _cell_key(report: pytest.TestReport) -> str | None:
    """The cell key of a report, from its node id: ``bench/test_x.py::test_zeroshot[<cell id>]``."""
    for name, value in report.user_properties:
        if name == "qclip_cell":
            return value
    return None
