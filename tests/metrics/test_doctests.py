"""Run the doctests of every qclip.metrics module, and check the package's public surface."""

from __future__ import annotations

import doctest
import importlib
import inspect
import subprocess
import sys

import pytest

import qclip.metrics

MODULES = ["zeroshot", "retrieval", "fairness", "skew", "calibration", "ood", "spectral", "robustness", "spurious_gap", "agreement"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(f"qclip.metrics.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no doctest"
    assert result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_public_functions_are_documented_and_switchable(name):
    module = importlib.import_module(f"qclip.metrics.{name}")
    for fn_name in module.__all__:
        fn = getattr(module, fn_name)
        if not inspect.isfunction(fn):
            continue
        assert fn.__doc__ and ">>>" in fn.__doc__, f"{name}.{fn_name} lacks a doctest"
        assert "validate_args" in inspect.signature(fn).parameters, f"{name}.{fn_name} lacks validate_args"
        assert getattr(qclip.metrics, fn_name) is fn, f"{fn_name} not re-exported by qclip.metrics"


def test_metrics_import_neither_pytest_nor_torch():
    code = "import sys, qclip.metrics; print(sorted({'torch', 'pytest'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
