"""The house rules the layout promises: no import cycle inside qclip, the layer contracts of
pyproject.toml (import-linter), and metric math only in qclip.metrics / qclip.stats."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), function-level imports included."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for m in adj:
        if m not in index:
            visit(m)
    return out


def test_no_import_cycle_inside_qclip():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the dev extra)")
    assert _cycles(grimp.build_graph("qclip")) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    class Graph:
        modules = {"a", "b", "c"}
        edges = {"a": {"b"}, "b": {"a"}, "c": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]

    assert _cycles(Graph()) == [["a", "b"]]


def test_the_layer_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' -c constraints.txt")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


#: what computes softmaxes, normalisations, t-distributions or significance marks
MATH = re.compile(r"softmax\(|np\.exp\(|linalg\.norm\(|F\.normalize\(|scipy\.stats|scipy\.special|stdtrit|"
                  r"\bt\.ppf\(|\"\*\*\" if|'\*\*' if|ttest_")
#: model code (attention, the tiny models' own training and evaluation) computes inside the models layer
ALLOWED = ("qclip/metrics/", "qclip/stats.py", "qclip/models/")


def test_metric_math_lives_in_metrics_and_stats():
    offenders = []
    for path in [*ROOT.joinpath("qclip").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if MATH.search(code) and not code.strip().startswith(('"', "'", "*", "Top-label")):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "metric math outside qclip/metrics and qclip/stats:\n" + "\n".join(offenders)
