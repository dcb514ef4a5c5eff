"""qclip.benchmarks, the one table of benchmark families: every family has its cell file, its task
module, its report section, and every metric its cells record is declared."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qclip.benchmarks import FAMILIES, UnknownMetricError, direction_of, find_metric, metrics_matching
from qclip.report.document import SECTION_BUILDERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_has_its_cell_file_task_module_and_report_section(name):
    fam = FAMILIES[name]
    cells = ROOT / "bench" / f"test_{name}.py"
    assert cells.is_file(), f"{name}: no bench/test_{name}.py"
    assert f'pytest.mark.qclip(benchmark="{name}")' in cells.read_text()
    assert name in SECTION_BUILDERS, f"{name}: no report section (qclip/report/document.py SECTION_BUILDERS)"
    home = ROOT / "qclip" / ("perf" if fam.section == "cost" else "tasks") / (
        "throughput.py" if fam.section == "cost" else f"{fam.section}.py")
    assert home.is_file(), f"{name}: its group {fam.section!r} has no module {home.relative_to(ROOT)}"
    assert fam.metrics and all(m.unit for m in fam.metrics)


def test_every_metric_the_cells_record_is_declared():
    """The metric names in bench/ (literal first arguments of qclip.record, f-strings with their fields
    filled by examples) all resolve to a declaration of their family."""
    examples = {"k": "5", "kk": "200", "score": "mcm", "metric": "auroc"}
    for name in FAMILIES:
        text = (ROOT / "bench" / f"test_{name}.py").read_text()
        recorded = re.findall(r"qclip\.record\(\s*(f?)\"([^\"]+)\"", text)
        for is_f, metric in recorded:
            if is_f:
                metric = re.sub(r"\{(\w+)\}", lambda m: examples[m.group(1)], metric)
            find_metric(name, metric)  # raises UnknownMetricError


def test_lookups():
    assert direction_of("facet", "max_disparity@5") == "zero"
    assert direction_of("ood", "energy_fpr95") == "lower"
    with pytest.raises(UnknownMetricError, match="did you mean"):
        find_metric("calibration", "eece")
    assert {f for f, _ in metrics_matching("top1")} == {"zeroshot", "robustness"}
    with pytest.raises(KeyError, match="Expected a benchmark family"):
        find_metric("nope", "top1")
