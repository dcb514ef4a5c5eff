"""Every option the pytest plugin and the ``qclip`` command declare rejects a malformed value with one clear
line (the option, the value, what was expected), no traceback and the right exit status.

The options are enumerated from the declarations themselves (``qclip.plugin.pytest_addoption`` and
``qclip.cli.build_parser``), so an option added without an entry in the tables below fails
``test_every_*_option_has_a_malformed_value``, and one added without a parser fails its walk case.
Usage errors happen at configure time, before collection: the pytest cases run in-process on an empty
folder with ``--co``, the CLI cases through ``qclip.cli.parse_args``.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules they imported afterwards; a C extension imported there
# (numpy.fft through scipy, by the controller's session finish) cannot be loaded again later, so what
# those runs import is imported here first
for _name in ("qclip.cli", "qclip.run.controller", "qclip.data.config", "qclip.data.synthetic", "qclip.expect.gate",
              "qclip.models", "qclip.run.options", "qclip.quantize", "qclip.report", "qclip.results", "qclip.stats"):
    importlib.import_module(_name)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RUNS = ("20250101-120000-ab12", "20250102-120000-cd34")

# ----- the tables: one malformed value per option ({file}, {dir}, {store}: see the `paths` fixture) -----
PLUGIN_BAD: dict[str, list[str]] = {
    "--qclip-models": ["--qclip-models", "paperr"],
    "--qclip-quantizers": ["--qclip-quantizers", "bnb-nf5"],
    "--qclip-quantizer": ["--qclip-quantizer", "qclip_no_such_module:Quant"],
    "--qclip-data": ["--qclip-data", "/nonexistent.toml"],
    "--qclip-datasets": ["--qclip-datasets", "synth-imagnet"],
    "--qclip-cache": ["--qclip-cache", "{file}"],
    "--qclip-device": ["--qclip-device", "gpu"],
    "--qclip-matmul-precision": ["--qclip-matmul-precision", "low"],
    "--qclip-compile": ["--qclip-compile=yes"],
    "--qclip-batch-size": ["--qclip-batch-size", "0"],
    "--qclip-threshold": ["--qclip-threshold", "bnb-nf4"],
    "--qclip-results": ["--qclip-results", "{dir}"],
    "--qclip-resume": ["--qclip-resume", "nosuchrun"],
    "--qclip-reports": ["--qclip-reports", "{file}"],
    "--qclip-no-report": ["--qclip-no-report=yes"],
    "--qclip-baseline": ["--qclip-baseline", "nosuchrun"],
    "--qclip-compare-fail": ["--qclip-compare-fail", "top1"],
    "--qclip-fairness-gate": ["--qclip-fairness-gate", "ndkl@4"],
    "--qclip-equivalence": ["--qclip-equivalence", "max_disparity@*:-0.02"],
    "--qclip-min-samples": ["--qclip-min-samples", "0"],
    "--qclip-skew-k": ["--qclip-skew-k", "k"],
    "--qclip-calibration": ["--qclip-calibration", "synth-imagenet"],  # not image-caption pairs
    "--qclip-calibration-size": ["--qclip-calibration-size", "0"],
    "--qclip-calibration-seed": ["--qclip-calibration-seed", "x"],
    "--qclip-quantizer-option": ["--qclip-quantizer-option", "w4a8-lsq:lr"],
}
INI_BAD: dict[str, str] = {
    "qclip_thresholds": "bnb-nf4",
    "qclip_models": "paperr",
}
_GATE = ["--results", "{store}", "--baseline", RUNS[0], "--compare-fail", "top1:0.01"]
CLI_BAD: dict[tuple[str, str], list[str]] = {
    ("", "command"): ["nosuchcommand"],
    ("prepare", "--cache"): ["--cache", "{file}"],
    ("prepare", "--models"): ["--models", "tiny-z"],
    ("prepare", "--quiet"): ["--quiet=yes"],
    ("prepare", "--reproducible"): ["--reproducible=yes"],
    ("prepare", "--native"): ["--native=yes"],
    ("list", "--cache"): ["--quantizers", "--cache", "{file}"],
    ("list", "--models"): ["--models", "paperr"],
    ("list", "--quantizers"): ["--quantizers=yes"],
    ("list", "--datasets"): ["--datasets=yes"],
    ("list", "--data"): ["--datasets", "--data", "/nonexistent.toml"],
    ("list", "--no-eval"): ["--quantizers", "--no-eval=yes"],
    ("report", "--cache"): ["--cache", "{file}"],
    ("report", "RUN"): ["--results", "{store}", "nosuchrun"],
    ("report", "--results"): ["--results", "{dir}"],
    ("report", "--out"): ["--results", "{store}", "--out", "{file}"],
    ("gate", "--cache"): [*_GATE, "--cache", "{file}"],
    ("gate", "--results"): ["--results", "{dir}", "--baseline", RUNS[0], "--compare-fail", "top1:0.01"],
    ("gate", "--baseline"): ["--results", "{store}", "--baseline", "nosuchrun", "--compare-fail", "top1:0.01"],
    ("gate", "--current"): [*_GATE, "--current", "/nonexistent/results.csv"],
    ("gate", "--compare-fail"): ["--results", "{store}", "--baseline", RUNS[0], "--compare-fail", "top1"],
    ("perf", "--throughput"): ["--throughput=yes"],
    ("perf", "--cold-warm"): ["--cold-warm=yes"],
    ("perf", "--families"): ["--families=yes"],
    ("perf", "--table"): ["--table=yes"],
    ("perf", "--simulate-paper-grid"): ["--simulate-paper-grid=yes"],
    ("perf", "--device"): ["--device", "gpu"],
    ("perf", "--repeats"): ["--repeats", "0"],
    ("perf", "--batch-size"): ["--batch-size", "0"],
    ("perf", "--model"): ["--model", "nosuch:ViT-B-32"],
    ("perf", "--images"): ["--images", "many"],
    ("perf", "--bench-args"): ["--bench-args=-n 'x"],
    ("perf", "--cold"): ["--cold", "warm"],
    ("perf", "--runs"): ["--runs", "0"],
    ("perf", "--families-model"): ["--families-model", "tiny:tiny-z"],
    ("perf", "--families-quantizer"): ["--families-quantizer", "bnb-nf5"],
    ("perf", "--data"): ["--data", "/nonexistent.toml"],
    ("perf", "--models"): ["--models", "paperr"],
    ("perf", "--quantizers"): ["--quantizers", "bnb-nf5"],
    ("perf", "--fraction"): ["--fraction", "2"],
    ("perf", "--workers"): ["--workers", "0"],
    ("perf", "--encode-images"): ["--encode-images", "0"],
    ("perf", "--settings"): ["--settings", "bnb-nf5"],
    ("perf", "--matmul-precision"): ["--matmul-precision", "low"],
    ("perf", "--compile"): ["--compile=yes"],
    ("perf", "--json"): ["--json", "{dir}"],
    ("perf", "--markdown"): ["--markdown", "{dir}"],
}


# ----- what the plugin and the CLI declare ------------------------------------------------------------
class _Recorder:
    """Stands in for pytest's Parser and its groups: records what ``pytest_addoption`` declares."""

    def __init__(self):
        self.options: list[str] = []
        self.inis: list[str] = []

    def getgroup(self, name, description="", after=None):
        return self

    def addoption(self, *names, **attrs):
        self.options.append(max(names, key=len))  # the long name

    def addini(self, name, help, type=None, default=None, **kwargs):
        self.inis.append(name)


def _plugin_declared() -> _Recorder:
    from qclip.plugin import pytest_addoption

    rec = _Recorder()
    pytest_addoption(rec)
    return rec


def _cli_declared() -> list[tuple[str, str]]:
    """(subcommand, option) of every argument of ``qclip`` and its subcommands but -h ('' for the top)."""
    from qclip.cli import build_parser

    out = []

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = max(action.option_strings, key=len) if action.option_strings else (action.metavar or action.dest)
            out.append((command, name))
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, sub_name)

    walk(build_parser(), "")
    return out


def test_every_plugin_option_and_ini_value_has_a_malformed_value():
    rec = _plugin_declared()
    assert rec.options and rec.inis
    missing = sorted(set(rec.options) - set(PLUGIN_BAD)) + sorted(set(rec.inis) - set(INI_BAD))
    assert not missing, f"options without a malformed value in tests/test_options.py (add one): {missing}"
    stale = sorted(set(PLUGIN_BAD) - set(rec.options)) + sorted(set(INI_BAD) - set(rec.inis))
    assert not stale, f"entries for options the plugin no longer declares: {stale}"


def test_every_cli_argument_has_a_malformed_value():
    declared = _cli_declared()
    assert len(declared) > 20
    missing = sorted(set(declared) - set(CLI_BAD))
    assert not missing, f"qclip arguments without a malformed value in tests/test_options.py (add one): {missing}"
    stale = sorted(set(CLI_BAD) - set(declared))
    assert not stale, f"entries for arguments qclip no longer declares: {stale}"


# ----- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """A plain file, a folder, and a cache whose results store holds two runs."""
    from qclip.results import ResultStore

    root = tmp_path_factory.mktemp("options")
    (root / "afile.txt").write_text("not a folder\n")
    (root / "adir").mkdir()
    cache = root / "cache"
    cache.mkdir()
    with ResultStore(cache / "results.sqlite") as store:
        for run in RUNS:
            store.start_run(run, {})
    return {"file": str(root / "afile.txt"), "dir": str(root / "adir"), "store": str(cache / "results.sqlite"),
            "cache": str(cache)}


def _fill(args: list[str], paths: dict[str, str]) -> list[str]:
    return [a.format(**paths) for a in args]


def _bad_value(args: list[str], option: str) -> str:
    """The malformed value in ``args``: after ``option`` or its ``=``; a positional's is the last argument."""
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.partition("=")[2]
    return args[-1]


# pytest's own framing of an argparse error (the usage line and where the ini came from)
_PYTEST_FRAME = ("ERROR: usage: ", "  inifile:", "  rootdir:")


def _usage_line(res: pytest.RunResult) -> str:
    """The one line of a usage error (asserts there is exactly one, and no traceback)."""
    text = "\n".join(res.outlines + res.errlines)
    assert res.ret == pytest.ExitCode.USAGE_ERROR, text
    for bad in ("Traceback", "INTERNALERROR", "errors during collection", "error during collection"):
        assert bad not in text, text
    lines = [line for line in res.errlines if line.strip() and not line.startswith(_PYTEST_FRAME)]
    lines += [line for line in res.outlines if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _pytest(pytester: pytest.Pytester, paths: dict[str, str], *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--co", "-q", "--qclip-cache", paths["cache"],
                                        *args)


# ----- the pytest plugin -----------------------------------------------------------------------------
def test_the_base_arguments_alone_are_no_error(pytester, paths):
    res = _pytest(pytester, paths)
    assert res.ret == pytest.ExitCode.NO_TESTS_COLLECTED, "\n".join(res.outlines + res.errlines)


@pytest.mark.parametrize("option", sorted(PLUGIN_BAD))
def test_a_malformed_plugin_option_is_one_usage_line(pytester, paths, option):
    args = _fill(PLUGIN_BAD[option], paths)
    line = _usage_line(_pytest(pytester, paths, *args))
    assert option in line and _bad_value(args, option) in line, line


@pytest.mark.parametrize("name", sorted(INI_BAD))
def test_a_malformed_ini_value_is_one_usage_line(pytester, paths, name):
    line = _usage_line(_pytest(pytester, paths, "-o", f"{name}={INI_BAD[name]}"))
    assert name in line and INI_BAD[name] in line, line


@pytest.mark.parametrize("args, expected", [
    (["--qclip-compare-fail", "top1"], "Expected METRIC:X"),
    (["--qclip-resume", "nosuchrun"], f"Unknown run 'nosuchrun' in {{store}}. Newest runs: {RUNS[1]}, {RUNS[0]}."),
    (["--qclip-resume", "20250101-120000-ab13"], f"Did you mean '{RUNS[0]}'"),
    (["--qclip-data", "/nonexistent.toml"], "data config /nonexistent.toml does not exist"),
], ids=["compare-fail", "resume", "resume-close-match", "data"])
def test_the_issues_three_cases_on_pytest_bench(pytester, paths, args, expected):
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c", str(ROOT / "pytest.ini"),
                                       str(BENCH), "--co", "-q", "--qclip-cache", paths["cache"], *args)
    line = _usage_line(res)
    assert args[0] in line and expected.format(**paths) in line, line


def test_a_dataset_config_with_an_unknown_key_is_one_usage_line_naming_file_and_key(pytester, paths, tmp_path):
    cfg = tmp_path / "qclip.toml"
    cfg.write_text('[datasets.coco]\nkind = "coco"\nroot = "/nowhere"\nannotations = "x.json"\n')
    line = _usage_line(_pytest(pytester, paths, "--qclip-data", str(cfg)))
    assert "--qclip-data" in line and str(cfg) in line and "annotations" in line, line


def test_a_usage_error_under_xdist_surfaces_once_from_the_controller(paths):
    """With -n the controller fails at configure time, before a worker starts: one line, once."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c",
                           str(ROOT / "pytest.ini"), str(BENCH), "-n", "2", "--qclip-cache", paths["cache"],
                           "--qclip-resume", "nosuchrun"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    text = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, text
    assert text.count("--qclip-resume nosuchrun: Unknown run 'nosuchrun'") == 1, text
    assert "Traceback" not in text and "INTERNALERROR" not in text and "[gw" not in text, text


# ----- the qclip command ---------------------------------------------------------------------------------
def _cli_error(capsys, argv: list[str]) -> str:
    """Parse ``argv`` as ``qclip`` does: exit status 2, one ``error:`` line after argparse's usage, returned."""
    from qclip.cli import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("usage: ") and all(line.startswith(" ") for line in lines[1:-1]), err
    assert ": error: " in lines[-1] and sum(": error: " in line for line in lines) == 1, err
    return lines[-1]


@pytest.mark.parametrize("command, option", sorted(CLI_BAD), ids=lambda x: x or "qclip")
def test_a_malformed_cli_argument_is_one_error_line_and_exit_status_2(capsys, paths, command, option):
    args = _fill(CLI_BAD[(command, option)], paths)
    line = _cli_error(capsys, [command, *args] if command else args)
    assert option in line and _bad_value(args, option) in line, line
    if command:
        assert line.startswith(f"qclip {command}: error: "), line


def test_unknown_runs_and_quantizers_suggest_close_matches(capsys, paths):
    line = _cli_error(capsys, ["report", "--results", paths["store"], "20250102-120000-cd35"])
    assert f"Did you mean '{RUNS[1]}'" in line, line
    line = _cli_error(capsys, ["perf", "--families-quantizer", "bnb-nf5"])
    assert "Did you mean 'bnb-nf4'" in line, line


def test_the_qclip_command_exits_2_with_one_line(paths):
    """The installed path end to end: ``python -m qclip`` (main) on an unknown run."""
    proc = subprocess.run([sys.executable, "-m", "qclip", "gate", "--results", paths["store"], "--baseline", "nosuchrun",
                           "--compare-fail", "top1:0.01"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    assert "--baseline nosuchrun: Unknown run 'nosuchrun'" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value, message", [
    ("w4a8-lsq:no_such_option=3", "no_such_option"),
    ("no-such-quantizer:lr=1", "no-such-quantizer"),
    ("w4a8-lsq:lr=-1", "lr"),
])
def test_quantizer_options_name_what_is_wrong(value, message):
    from qclip.run.options import OptionError, check_quantizer_options, parse_quantizer_option

    with pytest.raises(OptionError, match="--qclip-quantizer-option") as err:
        check_quantizer_options("--qclip-quantizer-option", [parse_quantizer_option(value)])
    assert message in str(err.value)


def test_quantizer_options_reach_the_quantizer_and_its_key():
    from qclip.run.options import check_quantizer_options, parse_quantizer_option
    from qclip.run.session import QclipSession, SessionOptions

    triples = [parse_quantizer_option(v) for v in ("w4a8-lsq:lr=1e-4", "w4a8-lsq:steps=50", "bnb-int8:threshold=0",
                                                   "w4a8-lsq:distill_weight=2.5")]
    assert triples[0] == ("w4a8-lsq", "lr", 1e-4) and triples[1][2] == 50 and isinstance(triples[1][2], int)
    opts = check_quantizer_options("--qclip-quantizer-option", triples)
    session = QclipSession(SessionOptions(quantizer_options=opts, progress=False))
    q = session.make_quantizer("w4a8-lsq")
    assert (q.config.lr, q.config.steps, q.config.distill_weight) == (1e-4, 50, 2.5)
    assert session.make_quantizer("bnb-int8").config.threshold == 0
    plain = QclipSession(SessionOptions(progress=False))
    assert q.config_json() != plain.make_quantizer("w4a8-lsq").config_json()
    assert parse_quantizer_option("x:flag=true")[2] is True and parse_quantizer_option("x:s=abc")[2] == "abc"
