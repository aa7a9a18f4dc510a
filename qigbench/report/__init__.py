"""Leaderboard reports (Markdown, HTML, CSV, LaTeX, plots) and regression checks over a results db."""

from __future__ import annotations

from qigbench.report.build import ReportOptions, build_report, find_heatmaps
from qigbench.report.tables import Cell, Table, aggregate, calibration, fidelity, leaderboard

__all__ = [
    "Cell",
    "ReportOptions",
    "Table",
    "aggregate",
    "build_report",
    "calibration",
    "fidelity",
    "find_heatmaps",
    "leaderboard",
]
