"""Registers the qclip pytest plugin for the whole repository (bench/ and tests/), and runs the test suite
(``pytest tests``, the README's command) on two xdist workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["qclip.plugin", "pytester"]

_TESTS = Path(__file__).resolve().parent / "tests"
#: workers of ``pytest tests``: the suite's long tests (tiny-a's training, the distributed and plugin runs in
#: subprocesses) are mostly one busy core each, so two workers on a 2-core machine about halve the wall time
TEST_WORKERS = 2
#: test files whose tests share one expensive fixture: each runs on one worker, as one unit of work. The
#: tests of tests/test_embedded.py share the session's trained tiny-a (tests/conftest.py::trained_tiny);
#: split over two workers, the second would wait for the first one's training (the cache's file lock).
ONE_WORKER_FILES = ("tests/test_embedded.py",)
_DEFAULT_WORKERS = pytest.StashKey[bool]()  # on the controller: this hook switched xdist on


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``pytest tests`` means ``pytest tests -n 2``, scheduled by :class:`SuiteScheduling`.

    Why here: pytest reads one ini file for the repository, so ``addopts = -n 2`` would also spread
    ``pytest bench`` runs, whose cells must keep the user's own choice of workers. This hook runs in the
    root conftest (an initial conftest: pytest calls its ``pytest_cmdline_main``) after the command line is
    parsed and before xdist's own ``pytest_cmdline_main`` turns ``numprocesses`` into ``--tx`` specs, so
    setting the options here is the same as typing them.

    It does nothing (the run is exactly what was typed) unless all of these hold:

    * every path argument is the ``tests/`` folder itself (``pytest tests``, ``pytest tests -m "not slow"``,
      or plain ``pytest`` from the repository root through ``testpaths``); a file, a subfolder or a node id
      runs serially, as do ``pytest bench ...`` and the pytest runs the tests start in subprocesses;
    * xdist is loaded and no distribution option was given: ``-n`` (``-n 0`` for a serial run of
      everything), ``--dist``, ``-d`` or ``--tx``;
    * this is not an xdist worker, nor a run that cannot be distributed or asks to see the tests' output:
      ``--pdb``, ``--trace``, ``--collect-only``, ``--stepwise``, ``-s``;
    * the machine has at least two cores.
    """
    if not _runs_the_whole_suite(config):
        return
    workers = min(TEST_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1)
    if workers < 2:
        return
    config.option.numprocesses = workers
    config.option.dist = "load"  # the scheduler is SuiteScheduling (pytest_xdist_make_scheduler below)
    config.stash[_DEFAULT_WORKERS] = True


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """The scheduler of the runs :func:`pytest_cmdline_main` distributed; others get xdist's own."""
    if not config.stash.get(_DEFAULT_WORKERS, False):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        """One test per unit of work, except that the tests of each of ``ONE_WORKER_FILES`` are one unit.

        xdist's own ``--dist loadgroup`` would do this with ``xdist_group`` marks, but with pytest 9.2 its
        marks are silently ignored (pytest-xdist#1386: it renames node ids, which pytest 9.2 no longer
        allows), and ``--dist loadfile`` would also keep each slow file's tests on one worker. Units are
        handed out one at a time, largest first (xdist's loadscope reorder), then in collection order,
        which the workers start with the slow tests (tests/conftest.py): a long test handed out last would
        leave the other worker idle while it runs.
        """

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in ONE_WORKER_FILES else nodeid

    return SuiteScheduling(config, log)


def _runs_the_whole_suite(config: pytest.Config) -> bool:
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return False
    opt = config.option
    if (getattr(opt, "numprocesses", None) is not None or getattr(opt, "dist", "no") != "no"
            or getattr(opt, "tx", None) or getattr(opt, "distload", False)):
        return False
    if any(getattr(opt, name, False) for name in ("usepdb", "trace", "collectonly", "stepwise", "stepwise_skip")):
        return False
    if getattr(opt, "capture", "fd") == "no":  # -s: xdist workers' output would not reach the terminal
        return False
    paths = [a.split("::")[0] for a in config.args]
    return bool(paths) and all((config.invocation_params.dir / p).resolve() == _TESTS for p in paths)
