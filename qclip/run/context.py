"""What a cell sees (:class:`CellContext`): the fp32 reference and the quantized model as embedding
sources, its dataset, its threshold and options, and ``record``, which attaches result rows to the cell's
test report (the controller alone writes them to the results store)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import DatasetUnavailable
from .cells import Cell
from .session import EmbeddingSource, QclipSession

__all__ = ["CellContext"]


class CellContext:
    """What a cell sees: embeddings (fp32 reference and quantized) and a record callback."""

    def __init__(self, session: QclipSession, cell: Cell, add_rows: Callable[[list[dict]], None]):
        self.session, self.cell, self._add_rows = session, cell, add_rows
        self.rows: list[dict] = []

    @property
    def dataset(self):
        return self.session.dataset(self.cell.dataset)

    @property
    def dataset_kind(self) -> str:
        return self.session.data_config.get(self.cell.dataset).kind if self.cell.dataset else ""

    def datasets_of_kind(self, kind: str) -> dict:
        """Every configured and available dataset of ``kind`` (loaded), e.g. the OOD sets of an OOD cell."""
        out = {}
        for name in self.session.data_config.names(kind):
            try:
                out[name] = self.session.dataset(name)
            except DatasetUnavailable:
                continue
        return out

    @property
    def reference(self) -> EmbeddingSource:
        """The fp32 model (computed through the cache even when -k deselected the fp32 cells)."""
        return EmbeddingSource(self.session, self.cell.model, "fp32")

    @property
    def quantized(self) -> EmbeddingSource:
        return EmbeddingSource(self.session, self.cell.model, self.cell.quantizer)

    @property
    def threshold(self) -> float:
        """Allowed drop of top-1 / R@1 for this cell's quantizer, in percentage points."""
        from ..expect.thresholds import threshold_for

        return threshold_for(self.session.options.thresholds, self.cell.quantizer)

    def assert_preserved(self, metric: str, value: float, reference: float) -> None:
        """Fail the cell when ``metric`` dropped by more than the quantizer's threshold (pp)."""
        import math

        if not (math.isfinite(value) and math.isfinite(reference)):
            raise AssertionError(f"{self.cell.model} {self.cell.quantizer} {self.cell.dataset}: "
                                 f"{metric} is not finite (quantized {value}, fp32 {reference})")
        drop = (reference - value) * 100.0
        limit = self.threshold
        if drop > limit + 1e-9:
            raise AssertionError(
                f"accuracy not preserved: model {self.cell.model}, quantizer {self.cell.quantizer}, dataset "
                f"{self.cell.dataset}: {metric} {value:.4f} quantized vs {reference:.4f} fp32, a drop of "
                f"{drop:.2f} pp > threshold {limit:g} pp (set with --qclip-threshold {self.cell.quantizer}=PP)"
            )

    @property
    def min_samples(self) -> int:
        """FACET: people needed in both subgroups for a class to count (--qclip-min-samples)."""
        return self.session.options.min_samples

    @property
    def skew_k(self) -> int:
        """FairFace: the k of Skew@k. ``--qclip-skew-k`` if given, else min(1000, N // 10): 1000 on
        FairFace-val (10,954 faces) as in FORMATS.md, a tenth of a smaller set (never most of it, where
        parity skew vanishes)."""
        if self.session.options.skew_k:
            return self.session.options.skew_k
        return max(1, min(1000, len(self.dataset) // 10))

    def check_fairness_gates(self) -> None:
        """Turn recorded fairness deltas into assertions for the gates the user asked for
        (``--qclip-fairness-gate METRIC:BOUND``: every recorded row whose metric matches the glob METRIC
        must have |delta| <= BOUND)."""
        import fnmatch
        import math

        broken = []
        for pattern, bound in self.session.options.fairness_gates:
            for row in self.rows:
                if fnmatch.fnmatchcase(row["metric"], pattern) and math.isfinite(row["delta"]) \
                        and abs(row["delta"]) > bound:
                    broken.append(f"{row['metric']}[{row['subgroup']}] delta {row['delta']:+.4f} "
                                  f"(quantized {row['value']:.4f}, fp32 {row['reference']:.4f}) exceeds {bound:g}")
        if broken:
            raise AssertionError(
                f"fairness gate failed for model {self.cell.model}, quantizer {self.cell.quantizer}, dataset "
                f"{self.cell.dataset}:\n  " + "\n  ".join(broken))

    def quant_report(self) -> dict:
        return self.session.model_meta(self.cell.model, self.cell.quantizer)["quant_report"]

    def record(self, metric: str, value: float, reference: float | None = None, n: int = 0, subgroup: str = "",
               extra: dict | None = None, dataset: str | None = None) -> dict:
        """Attach one result row; ``metric`` must be declared for the cell's family (qclip.benchmarks)."""
        from ..benchmarks import find_metric

        find_metric(self.cell.benchmark, metric)
        row = self.cell.row(metric, value, reference, n, subgroup, extra)
        if dataset is not None:
            row["dataset"] = dataset
        self.rows.append(row)
        self._add_rows([row])
        return row

