"""Expectations and gates: per-quantizer accuracy thresholds, conformance to published references, the
regression gate against a baseline and the fairness gate. They judge results; they compute no metric."""
