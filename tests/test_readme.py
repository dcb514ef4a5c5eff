"""The README's examples run as written: the quantizer snippet, the cell ids it shows, the install line,
and every command of its bash blocks (the cheap ones verbatim, the others through their own parsers)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_block_after(heading: str) -> str:
    section = README[README.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_the_adding_a_quantizer_snippet_runs_verbatim():
    from qclip.models.random_init import random_open_clip
    from qclip.quantize import base, create_quantizer, fresh_copy, is_quantizer

    code = _python_block_after("## Adding a quantizer")
    before = dict(base._REGISTRY)
    try:
        exec(compile(code, "README.md:adding-a-quantizer", "exec"), {"__name__": "readme_snippet"})
        names = set(base._REGISTRY) - set(before)
        assert len(names) == 1, names
        (name,) = names
        q = create_quantizer(name)
        assert is_quantizer(q) and q.available() == (True, "")
        ref = random_open_clip("ViT-B-32", tiny=True, seed=0)
        model = q.quantize(fresh_copy(ref))
        pixels = torch.randn(4, 3, ref.image_size, ref.image_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            got, want = model.encode_image(pixels), ref.encode_image(pixels)
        assert torch.isfinite(got).all() and not torch.equal(got, want)
        assert F.cosine_similarity(got, want).min() > 0.99
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(before)


def test_the_cell_ids_it_shows_exist():
    from qclip.benchmarks import FAMILIES
    from qclip.data.synthetic import DATASETS
    from qclip.models import expand_models
    from qclip.quantize import list_quantizers
    from qclip.run.cells import Cell

    shown = re.findall(r"test_(\w+)\[([^\]\s`]+)\]", README)
    assert shown, "the README shows no cell id"
    real = {f"test_{b}[{Cell(m.spec, m.short, q, b, ds).id}]"
            for b in FAMILIES for m in expand_models("tiny") for q in list_quantizers() for ds in DATASETS}
    for bench, cell_id in shown:
        assert f"test_{bench}[{cell_id}]" in real, f"test_{bench}[{cell_id}] is not a cell of the default run"


def test_the_install_lines_use_the_tested_versions():
    ci = (ROOT / ".ci" / "run").read_text()
    for text, where in ((README, "README.md"), (ci, ".ci/run")):
        installs = re.findall(r"pip install[^\n&]*-e '\.\[dev\]'[^\n&]*", text)
        assert installs, f"{where} installs nothing"
        assert all("-c constraints.txt" in line for line in installs), (where, installs)


def test_the_constraints_pin_every_dependency_within_its_lower_bound():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (str(req), pins[name])
        assert not any(s.operator == "==" for s in req.specifier), f"pyproject pins {req}: keep lower bounds there"


# ----- every command of the README's bash blocks runs, or at least parses -------------------------------------
#
# Cheap commands run verbatim in a subprocess. Expensive ones (an install, training, a benchmark run) are
# checked by their own parsers: pip's for `pip install`, qclip's for `qclip prepare` and friends, and
# pytest's collection (`--co`) for `pytest bench ...`, in a sandbox laid out like the repository (bench/,
# pytest.ini, the README's qclip.toml and mypkg/quant.py holding the README's quantizer) with a fresh cache
# and the small test-size synthetic world. A command that matches no rule fails the test: classify it.

#: runs every `pytest ...` command of the README in one process (imports paid once), each with --co
_COLLECT = r'''
import contextlib, io, json, os, sys
import pytest

class Items:
    def __init__(self):
        self.items = []

    def pytest_collection_finish(self, session):
        for item in session.items:
            skip = item.get_closest_marker("skip")
            self.items.append([item.nodeid, (skip.kwargs.get("reason") or "") if skip else ""])

jobs, out = json.load(open(sys.argv[1])), []
for job in jobs:
    os.chdir(job["cwd"])
    for name, text in job["files"].items():
        open(name, "w").write(text)
    items, log = Items(), io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            rc = int(pytest.main(job["args"], plugins=[items]))
    finally:
        for name in job["files"]:
            os.remove(name)
    out.append({"rc": rc, "items": items.items, "log": log.getvalue()[-3000:]})
json.dump(out, open(sys.argv[2], "w"))
'''


def _bash_commands(text: str) -> list[list[str]]:
    """The argv of every command line in the README's bash blocks (comments dropped, `\\` joined)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                out.append(argv)
    return out


def _steps(argv: list[str]) -> list[list[str]]:
    steps = [[]]
    for token in argv:
        if token == "&&":
            steps.append([])
        else:
            steps[-1].append(token)
    return steps


def _toml_after(heading: str) -> str:
    match = re.search(r"```toml\n(.*?)```", README[README.index(heading):], re.S)
    assert match, f"no toml block after {heading!r}"
    return match.group(1)


def _env(tmp_path: Path, sandbox: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(sandbox), env.get("PYTHONPATH", "")) if p)
    env["QCLIP_CACHE"] = str(tmp_path / "cache")
    env["QCLIP_WORLD_SIZE"] = "test"
    for name in ("QCLIP_DATA", "PYTEST_ADDOPTS"):  # the commands as a user types them
        env.pop(name, None)
    return env


def _sandbox(tmp_path: Path) -> Path:
    """A folder laid out like the repository root for the README's commands."""
    box = tmp_path / "repo"
    box.mkdir()
    (box / "bench").symlink_to(ROOT / "bench", target_is_directory=True)
    shutil.copy(ROOT / "pytest.ini", box / "pytest.ini")
    (box / "mypkg").mkdir()
    (box / "mypkg" / "__init__.py").write_text("")
    (box / "mypkg" / "quant.py").write_text(_python_block_after("## Adding a quantizer"))
    return box


def _k_words(argv: list[str]) -> list[str]:
    """The words of a `-k a or b` expression (only plain ones: words joined by `or`)."""
    if "-k" not in argv:
        return []
    expr = argv[argv.index("-k") + 1]
    words = expr.split(" or ")
    return words if all(re.fullmatch(r"[\w.\-\[\]]+", w) for w in words) else []


def _check_pip_install(step: list[str]) -> None:
    from pip._internal.commands import create_command  # pip's own parser: the options must exist

    options, args = create_command("install").parse_args(step[2:])
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for editable in options.editables:
        path, _, extra = editable.partition("[")
        assert (ROOT / path / "pyproject.toml").is_file(), step
        assert all(e in extras for e in extra.rstrip("]").split(",") if e), (editable, sorted(extras))
    constraints = [c for c in options.constraints if not os.path.isabs(c)]
    assert constraints and all((ROOT / c).is_file() for c in constraints), (step, options.constraints)


def _check_qclip_parses(step: list[str], tmp_path: Path, monkeypatch) -> None:
    from qclip.cli import parse_args
    from qclip.results import ResultStore

    monkeypatch.setenv("QCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").mkdir(exist_ok=True)
    with ResultStore(tmp_path / "cache" / "results.sqlite") as store:  # so `qclip report latest` names a run
        store.start_run("20261201-000000-abcd", {"args": ["readme"]})
    try:
        parse_args(step[1:])
    except SystemExit as exc:  # argparse: exit status 2 and one error line
        pytest.fail(f"the README's `{shlex.join(step)}` does not parse (exit {exc.code})")


def test_every_readme_command_runs_or_parses(tmp_path, monkeypatch):
    box = _sandbox(tmp_path)
    env = _env(tmp_path, box)
    commands = _bash_commands(README)
    assert commands, "the README shows no command"
    run_verbatim, collect, unclassified = [], [], []
    for argv in commands:
        for step in _steps(argv):
            if step[:3] == ["python3", "-m", "venv"]:
                # creating a venv with pip takes seconds: create it without pip, then activate it verbatim
                subprocess.run(["python3", "-m", "venv", "--without-pip", *step[3:]], cwd=box, env=env, check=True)
                assert (box / step[3] / "bin" / "activate").is_file()
            elif step[:1] == ["."]:
                run_verbatim.append(shlex.join(step))
            elif step[:2] == ["pip", "install"]:
                _check_pip_install(step)
            elif step[:3] == ["qclip", "list", "--quantizers"]:
                run_verbatim.append(shlex.join(step))
            elif step[:1] == ["qclip"]:
                _check_qclip_parses(step, tmp_path, monkeypatch)
            elif step[:2] == ["pytest", "bench"]:
                files = {"qclip.toml": _toml_after("Datasets are configured")} if "qclip.toml" in step else {}
                collect.append((step, {"cwd": str(box), "files": files,
                                       "args": [*step[1:], "--co", "-qq", "-p", "no:cacheprovider"]}))
            elif step == ["pytest", "tests"]:
                # the whole suite is CI's job (.ci/run runs it); here: the arguments parse, tests/ exists
                assert "pytest tests" in (ROOT / ".ci" / "run").read_text()
                assert (ROOT / "tests").is_dir()
                collect.append((step, {"cwd": str(ROOT), "files": {},
                                       "args": ["tests", "--help", "-p", "no:cacheprovider"]}))
            else:
                unclassified.append(shlex.join(step))
    assert not unclassified, f"README commands this test does not know how to check: {unclassified}"
    assert (box / ".venv" / "bin" / "activate").is_file(), "the README never creates the venv it activates"

    # one process for every collection, started first; the verbatim commands run meanwhile
    jobs, results = tmp_path / "jobs.json", tmp_path / "collected.json"
    # the quantizer the README registers with --qclip-quantizer stays registered in that process: last
    collect.sort(key=lambda c: "--qclip-quantizer" in c[0])
    jobs.write_text(json.dumps([job for _, job in collect]))
    collector = subprocess.Popen([sys.executable, "-c", _COLLECT, str(jobs), str(results)], cwd=box, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for command in run_verbatim:
            done = subprocess.run(["bash", "-c", command], cwd=box, env=env, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, f"`{command}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            if command == "qclip list --quantizers":
                from qclip.quantize import list_quantizers

                listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
                assert set(list_quantizers()) <= listed, done.stdout
        log, _ = collector.communicate(timeout=300)
    finally:
        if collector.poll() is None:
            collector.kill()
    assert collector.returncode == 0 and results.is_file(), log[-4000:]

    for (step, _), got in zip(collect, json.loads(results.read_text()), strict=True):
        where = f"`{shlex.join(step)}` (collected with --co):\n{got['log']}"
        assert got["rc"] == 0, where
        if step[1] != "bench":
            continue
        ids = [nodeid for nodeid, _ in got["items"]]
        assert ids, f"{where}\nit selects no cell"
        words = _k_words(step)
        if words:  # -k selected what it says
            assert all(any(w in i for w in words) for i in ids), (words, [i for i in ids if not any(
                w in i for w in words)][:5])
        if "--qclip-quantizer" in step:
            name = _k_words(step)[0]
            assert all(name in i for i in ids) and not any(reason for _, reason in got["items"]), got["items"][:5]
        if "qclip.toml" in step:  # the README's datasets: every one of them gets cells
            for dataset in tomllib.loads(_toml_after("Datasets are configured"))["datasets"]:
                assert any(f"-{dataset}]" in i for i in ids), (dataset, ids[:5])
        if step == ["pytest", "bench", "-n", "2"]:
            assert any(i.endswith("test_zeroshot[tiny-a-bnb-nf4-synthimagenet]") for i in ids), ids[:5]


def test_the_readme_stays_short():
    assert len(README) <= 10_000, f"README.md has {len(README)} characters; move reference material to docs/"


def test_the_readme_entry_point_names_the_quantizer_group(tmp_path, monkeypatch):
    """The entry-point table is in the group qclip reads, and its value loads the README's quantizer
    (saved as mypkg/quant.py, as the README says)."""
    from qclip.quantize import ENTRY_POINT_GROUP, base, load_quantizer_from_path

    entry = tomllib.loads(_toml_after("## Adding a quantizer"))["project"]["entry-points"]
    assert set(entry) == {ENTRY_POINT_GROUP}
    monkeypatch.syspath_prepend(str(_sandbox(tmp_path)))
    before = dict(base._REGISTRY)
    try:
        for name, target in entry[ENTRY_POINT_GROUP].items():
            assert load_quantizer_from_path(target, register=False).name == name
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(before)
        for module in ("mypkg.quant", "mypkg"):
            sys.modules.pop(module, None)


def test_the_readme_dataset_config_loads(tmp_path):
    from qclip.data.config import DataConfig

    path = tmp_path / "qclip.toml"
    path.write_text(_toml_after("Datasets are configured"))
    config = DataConfig.load(path)
    assert set(config.names()) == {"imagenet", "coco", "facet", "fairface"}
    for name in config.names():
        ok, reason = config.get(name).available()
        assert ok or (reason and "root" in reason), (name, reason)
