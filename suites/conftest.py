"""Benchmark suites, one module per table of the QIG paper.

Run them with the options of the ``qigbench`` pytest plugin (``qigbench/pytest_plugin.py``)::

    pytest suites/ --model tiny-qwen2vl --methods rtn,awq,mbq,qig --formats w3a16,w4a8 --limit 10   # CPU, offline
    pytest suites/ --model qwen2vl --methods rtn,awq,mbq,qig --formats w3a16,w4a8 --device cuda    # the paper

Every measured number goes to ``--db`` (default ``results.db``); ``qigbench report`` and
``qigbench check`` read it. The suite tests only assert that numbers are well formed: the paper's
claims (e.g. QIG beats MBQ) are orderings in the committed baseline, checked by ``qigbench check``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
