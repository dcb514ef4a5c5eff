"""The qclip pytest plugin: options, parametrization, fixtures and session hooks. Hooks only.

Registered by the repository's root ``conftest.py`` and as a ``pytest11`` entry point. Cells attach
their result rows to their own test report (``user_properties``); the controller alone (never an
xdist worker) writes them to the results store as each report arrives, and at the end of the session
runs the population statistics and writes the report (:mod:`qclip.run.controller`).
"""

from __future__ import annotations

import pytest

from .run.cells import BENCHMARK_KINDS, ROWS_PROPERTY, Cell
from .run.context import CellContext
from .run.options import (
    OptionError,
    PluginOptions,
    check_compare_fail,
    check_quantizer_ref,
    parse_device,
    parse_equivalence,
    parse_gate,
    parse_nonnegative_int,
    parse_positive_int,
    parse_quantizer_option,
    parse_threshold,
)
from .run.planning import group_by_variant, item_cell
from .run.session import QclipSession
from .run.workers import one_gpu_per_worker, share_cores

__all__ = ["SESSION_KEY", "CONTROLLER_KEY", "OPTIONS_KEY"]

SESSION_KEY = pytest.StashKey[QclipSession]()
CONTROLLER_KEY = pytest.StashKey[object]()
OPTIONS_KEY = pytest.StashKey[PluginOptions]()


# Every option has a parser: an argparse type= (qclip.run.options: the value's form) and, at configure time,
# qclip.run.options.plugin_options (what the value names: quantizers, models, datasets, files, runs).
def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("qclip", "qclip: quantization benchmarks for CLIP models")
    g.addoption("--qclip-models", metavar="SPECS", default=None,
                help="Comma-separated model specs or sets (tiny, paper, paper-hf; open_clip:ARCH/TAG, "
                     "hf:ID, tiny:NAME). Default: 'tiny' (the embedded population).")
    g.addoption("--qclip-quantizers", metavar="GLOB[,GLOB]", default="*",
                help="Quantizers to run, fnmatch patterns ('bnb-*'). Default: %(default)r (all registered).")
    g.addoption("--qclip-quantizer", metavar="MODULE:ATTR", type=check_quantizer_ref, action="append", default=[],
                help="Register a quantizer defined outside qclip (repeatable).")
    g.addoption("--qclip-data", metavar="TOML", default=None,
                help="Dataset config mapping names to roots. Default: ./qclip.toml if present, "
                     "else the embedded synthetic world.")
    g.addoption("--qclip-datasets", metavar="GLOB[,GLOB]", default="*",
                help="Datasets to run, fnmatch patterns. Default: %(default)r.")
    g.addoption("--qclip-cache", metavar="DIR", default=None,
                help="Cache folder (quantized-model metadata, embeddings, the synthetic world, tiny weights). "
                     "Default: $QCLIP_CACHE or ~/.cache/qclip.")
    g.addoption("--qclip-device", metavar="DEVICE", type=parse_device, default="cpu",
                help="cpu, cuda, cuda:N or auto. Default: %(default)r.")
    g.addoption("--qclip-matmul-precision", metavar="P", choices=("highest", "high", "medium"), default="highest",
                help="float32 matmul precision (torch.set_float32_matmul_precision). 'highest' (default) keeps the "
                     "fp32 reference exact; 'high' allows TF32 on Ampere/Hopper GPUs (several times faster fp32 "
                     "encoders; matmul inputs rounded to a 10-bit mantissa). Embeddings are cached apart per "
                     "precision.")
    g.addoption("--qclip-compile", action="store_true", default=False,
                help="Run each tower through torch.compile (nn.Module.compile; a module it cannot compile "
                     "falls back to eager). Off by default; its embeddings are cached apart.")
    g.addoption("--qclip-batch-size", metavar="N", type=parse_positive_int, default=256,
                help="Encoding batch size. Default: %(default)r.")
    g.addoption("--qclip-threshold", metavar="QUANTIZER=PP", type=parse_threshold, action="append", default=[],
                help="Allowed drop of top-1 / R@1 in percentage points for a quantizer (repeatable); "
                     "overrides the ini option qclip_thresholds and qclip/expect/thresholds.yaml.")
    g.addoption("--qclip-results", metavar="PATH", default=None,
                help="Results store (SQLite). Default: <cache>/results.sqlite.")
    g.addoption("--qclip-resume", metavar="RUN", default=None,
                help="Continue run RUN: cells it finished are deselected, new rows join it.")
    g.addoption("--qclip-reports", metavar="DIR", default="reports",
                help="Where reports are written (<DIR>/<run>/ and <DIR>/latest/). Default: %(default)r.")
    g.addoption("--qclip-no-report", action="store_true", default=False,
                help="Record results but write no report at the end of the session.")
    g.addoption("--qclip-baseline", metavar="RUN|FILE", default=None,
                help="Baseline run (id, 'latest', prefix) or results.csv/json to compare against.")
    g.addoption("--qclip-compare-fail", metavar="METRIC:THRESHOLD", type=check_compare_fail, action="append",
                default=[],
                help="Fail the session when METRIC regressed against the baseline by more than THRESHOLD "
                     "(absolute, or relative with %%). Repeatable.")
    g.addoption("--qclip-equivalence", metavar="[BENCH/]METRIC[@SUBGROUP]:MARGIN", type=parse_equivalence,
                action="append", default=[],
                help="Equivalence margin of the report's verdicts (TOST of the mean Δ against ±MARGIN, in the "
                     "metric's unit; 'none' for no test), overriding qclip/expect/equivalence.yaml; globs, "
                     "e.g. 'max_disparity@*:0.02'. Repeatable, the last match wins.")
    g.addoption("--qclip-fairness-gate", metavar="METRIC:BOUND", type=parse_gate, action="append", default=[],
                help="Turn a recorded fairness delta into an assertion: |delta of METRIC| <= BOUND. Repeatable.")
    g.addoption("--qclip-min-samples", metavar="N", type=parse_positive_int, default=25,
                help="FACET: people a class needs in both subgroups to count in min/max disparity. "
                     "Default: %(default)r.")
    g.addoption("--qclip-skew-k", metavar="K", type=parse_positive_int, default=None,
                help="FairFace: k of MaxSkew@k/MinSkew@k. Default: min(1000, set size // 10).")
    g.addoption("--qclip-quantizer-option", metavar="QUANTIZER:OPTION=VALUE", type=parse_quantizer_option,
                action="append", default=[],
                help="an option of one quantizer, repeatable (w4a8-lsq:lr=1e-4, bnb-int8:threshold=0); "
                     "part of its cache key. `qclip list --quantizers` lists each quantizer's options.")
    g.addoption("--qclip-calibration", metavar="DATASET", default=None,
                help="Image-caption pairs for quantizers that need data (static activation scales, GPTQ, QAT): "
                     "a COCO-format set of the dataset config. Default: the synthetic world's training pool "
                     "(embedded default only).")
    g.addoption("--qclip-calibration-size", metavar="N", type=parse_positive_int, default=1000,
                help="Calibration pairs drawn from it. Default: %(default)r.")
    g.addoption("--qclip-calibration-seed", metavar="SEED", type=parse_nonnegative_int, default=0,
                help="Seed of the calibration sample. Default: %(default)r.")
    parser.addini("qclip_thresholds", type="linelist", default=[],
                  help="QUANTIZER=PP lines: allowed accuracy drop per quantizer in percentage points.")
    parser.addini("qclip_models", default="tiny", help="Default for --qclip-models.")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _usage_error(exc: OptionError) -> pytest.UsageError:
    return pytest.UsageError(str(exc))


def _options(config: pytest.Config) -> PluginOptions:
    """Every --qclip-* option and ini value, parsed and validated once (a bad one is a UsageError)."""
    from .run.options import plugin_options

    try:
        return plugin_options(config.getoption, config.getini, config.rootpath,
                              progress=config.get_verbosity() >= 0)
    except OptionError as exc:
        raise _usage_error(exc) from None


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qclip(benchmark): the module's cells belong to this qclip benchmark family")
    options = config.stash[OPTIONS_KEY] = _options(config)  # registers --qclip-quantizer quantizers first
    if _is_worker(config):
        share_cores(int(config.workerinput.get("workercount", 1)))
        options = config.stash[OPTIONS_KEY] = one_gpu_per_worker(options, config.workerinput.get("workerid"))
    try:
        session = QclipSession(options.session)
    except OSError as exc:  # the cache folder cannot be created
        raise _usage_error(OptionError("--qclip-cache", options.session.cache or "(default)",
                                       f"Expected a folder qclip can create and write, but {exc}")) from None
    config.stash[SESSION_KEY] = session
    _validate(config, session)
    if not _is_worker(config):
        from .run.controller import Controller

        _validate_controller(config, options, session)
        config.stash[CONTROLLER_KEY] = Controller(config, config.stash[SESSION_KEY])
        config.pluginmanager.register(config.stash[CONTROLLER_KEY], "qclip-controller")


def _validate(config: pytest.Config, session: QclipSession) -> None:
    """Checks that need the session, before collecting anything: the dataset config loads (its
    DataConfigError is one usage line, not one collection error per bench file) and --qclip-datasets
    names configured datasets."""
    from .run.options import check_session_options

    try:
        check_session_options(config.stash[OPTIONS_KEY], session)
    except OptionError as exc:
        raise _usage_error(exc) from None


def _validate_controller(config: pytest.Config, options: PluginOptions, session: QclipSession) -> None:
    """On the controller, before any worker starts: --qclip-resume names a run in the results store."""
    from .run.options import resolve_run

    if options.resume:
        try:
            resolve_run("--qclip-resume", options.resume, options.results or session.cache.root / "results.sqlite")
        except OptionError as exc:
            raise _usage_error(exc) from None


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand this process's counters to the controller (``workeroutput``)."""
    config = session.config
    if _is_worker(config) and SESSION_KEY in config.stash:
        config.workeroutput["qclip_counters"] = config.stash[SESSION_KEY].counters()
        config.workeroutput["qclip_device"] = config.stash[SESSION_KEY].options.device


@pytest.hookimpl(optionalhook=True)  # xdist's hook: without xdist (absent, or ``-p no:xdist``) it is never called
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per GPU when cells run on CUDA, else let xdist decide."""
    device = str(config.getoption("qclip_device", default="cpu"))
    if device.startswith("cuda") or device == "auto":
        import torch

        if device.startswith("cuda") or torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("qclip")
    if marker is None:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: a test using the 'cell' fixture needs "
                                "@pytest.mark.qclip(benchmark=...)")
    benchmark = marker.kwargs.get("benchmark") or marker.args[0]
    session: QclipSession = metafunc.config.stash[SESSION_KEY]
    from .run.planning import plan_cells

    params = []
    for cell, skip_reason in plan_cells(session, benchmark, BENCHMARK_KINDS[benchmark]):
        marks = [pytest.mark.xdist_group(cell.model_id)]
        if skip_reason:
            marks.append(pytest.mark.skip(reason=skip_reason))
        params.append(pytest.param(cell, id=cell.id, marks=marks))
    if not params:
        params = [pytest.param(None, id="no-cells", marks=pytest.mark.skip(
            reason=f"no {benchmark} cells: no dataset of kind {BENCHMARK_KINDS[benchmark]} configured, "
                   "or every model/quantizer filtered out"))]
    metafunc.parametrize("cell", params)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    for item in items:  # every report of a cell (skips at setup included) names its cell
        cell = item_cell(item)
        if cell is not None:
            item.user_properties.append(("qclip_cell", cell.key))
    group_by_variant(items)
    controller = config.stash.get(CONTROLLER_KEY, None)
    if controller is not None:
        controller.deselect_finished(items)
    elif _is_worker(config) and "qclip_finished_cells" in config.workerinput:
        from .run.controller import deselect_cells

        deselect_cells(config, items, set(config.workerinput["qclip_finished_cells"]))


@pytest.fixture(scope="session")
def qclip_session(request: pytest.FixtureRequest) -> QclipSession:
    """The per-process :class:`QclipSession` (cache, data, model pool, embedder)."""
    return request.config.stash[SESSION_KEY]


@pytest.fixture
def qclip(request: pytest.FixtureRequest, cell: Cell, qclip_session: QclipSession) -> CellContext:
    """The cell's context: fp32 and quantized embeddings through the cache, and ``record``."""
    from .errors import DatasetUnavailable, ModelUnavailable
    from .models import check_available

    ok, reason = check_available(cell.model)
    if not ok:
        pytest.skip(reason)
    if cell.dataset:
        try:
            qclip_session.dataset(cell.dataset)
        except DatasetUnavailable as exc:
            pytest.skip(str(exc))
    props = request.node.user_properties

    def add_rows(rows: list[dict]) -> None:
        props.append((ROWS_PROPERTY, rows))

    try:
        return CellContext(qclip_session, cell, add_rows)
    except ModelUnavailable as exc:  # pragma: no cover - check_available said yes, the load said no
        pytest.skip(str(exc))
