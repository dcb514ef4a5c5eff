"""pytest glue: the per-process session (cache, data, model pool), the per-cell context, which cells run
(planning), the controller that writes results and the report, and the parsed options. ``qclip.plugin``
wires these into pytest's hooks."""
