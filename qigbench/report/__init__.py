"""Leaderboard reports (Markdown, HTML, CSV, LaTeX, plots) and regression checks over a results db.

Names are imported on first use (PEP 562): ``qigbench check`` and ``qigbench --help`` import
:mod:`qigbench.report.regression` without paying for matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ReportOptions": "build",
    "build_report": "build",
    "find_heatmaps": "build",
    "Cell": "tables",
    "Table": "tables",
    "aggregate": "tables",
    "calibration": "tables",
    "fidelity": "tables",
    "leaderboard": "tables",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
