"""Unit and property tests of ``qclip.metrics`` (one file per module, shared inputs in ``_inputs``)."""
