"""Suite machinery shared by the pytest suites (``suites/``) and ``qigbench run``.

* :mod:`.options` -- the matrix options and their per-tier defaults;
* :mod:`.cases` -- the paper's tables as ``[(Case, tasks)]``;
* :mod:`.session` -- quantize once per configuration, evaluate, write the results store;
* :mod:`.evaluate` -- one task (harness or fidelity) on one model.

QIG runs also leave their token-sensitivity heatmap (``qigbench.pipeline.write_heatmap``) in a
``DB.heatmaps/`` folder next to the db (``qigbench run``: in the report's ``heatmaps/``), where
``qigbench report`` finds it.

Heavy modules (torch, the harnesses) load only when a session measures something.
"""
