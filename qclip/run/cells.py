"""Cells: one (model, quantizer, benchmark, dataset) combination, one parametrized test."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..benchmarks import FAMILIES

__all__ = ["Cell", "BENCHMARK_KINDS", "ROWS_PROPERTY", "safe_id"]

#: the user_properties key under which a cell's result rows ride on its test report
ROWS_PROPERTY = "qclip_rows"

#: which dataset kinds each benchmark family runs on ("" = needs no dataset), from qclip.benchmarks
BENCHMARK_KINDS: dict[str, tuple[str, ...]] = {name: f.kinds for name, f in FAMILIES.items()}


def safe_id(text: str) -> str:
    """Lower-case id fragment with only letters, digits, dots and underscores (no '-', which separates)."""
    return re.sub(r"[^a-z0-9._]+", "_", text.lower()).strip("_")


@dataclass(frozen=True)
class Cell:
    """A benchmark cell. ``id`` is what pytest shows and ``-k`` matches; it is never parsed back."""

    model: str  # model spec
    model_id: str  # short id of the model for test ids
    quantizer: str
    benchmark: str
    dataset: str  # dataset name ('' for model-only benchmarks)

    @property
    def id(self) -> str:
        parts = [self.model_id, self.quantizer, safe_id(self.dataset).replace("_", "") if self.dataset else ""]
        return "-".join(p for p in parts if p)

    @property
    def key(self) -> str:
        """Unique across benchmarks: the results store's cell id."""
        return f"{self.benchmark}[{self.id}]"

    @property
    def is_reference(self) -> bool:
        return self.quantizer == "fp32"

    def row(self, metric: str, value: float, reference: float | None = None, n: int = 0, subgroup: str = "",
            extra: dict | None = None) -> dict:
        """A results-store row for this cell (delta = value - reference)."""
        v = float(value)
        r = float("nan") if reference is None else float(reference)
        return {
            "cell_id": self.key, "model": self.model, "quantizer": self.quantizer, "benchmark": self.benchmark,
            "dataset": self.dataset, "metric": metric, "subgroup": subgroup, "value": v, "reference": r,
            "delta": v - r if not (math.isnan(v) or math.isnan(r)) else float("nan"), "n": int(n),
            "extra": extra,
        }
