"""Suite machinery shared by the pytest suites (``suites/``) and ``qigbench run``.

* :mod:`.options` -- the matrix options and their per-tier defaults;
* :mod:`.matrix` -- the paper's tables as ``[(Case, tasks)]``;
* :mod:`.session` -- quantize once per configuration, evaluate, write the results store;
* :mod:`.evaluate` -- one task (harness or fidelity) on one model;
* :mod:`.heatmap` -- the QIG token-sensitivity heatmap next to the db.

Heavy modules (torch, the harnesses) load only when a session measures something.
"""
