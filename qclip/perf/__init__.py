"""Performance measurement: throughput and memory helpers, the ``qclip perf`` comparisons, the cost table
and the paper-grid simulation. See :mod:`qclip.perf.run` for the command."""

from .throughput import PeakMemory, Timing, items_per_s, peak_memory, time_call, weight_bytes

__all__ = ["Timing", "PeakMemory", "time_call", "items_per_s", "peak_memory", "weight_bytes"]
