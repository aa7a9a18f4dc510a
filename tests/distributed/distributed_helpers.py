"""Shared by the distributed tests: one tiny matrix, its reference rows, and a row digest."""

from __future__ import annotations

import os
from pathlib import Path

from qigbench.matrix.cases import table2
from qigbench.matrix.options import SuiteOptions
from qigbench.results import ResultsStore

#: The tiny matrix: RTN and AWQ x W3A16 and W4A8 on tiny-qwen2vl, one pack task (2 examples) plus
#: fidelity, 2 calibration samples: 5 configurations (with the fp one), 4 x 2 + 1 tasks, 17 rows.
MATRIX_ARGS = ["--model", "tiny-qwen2vl", "--methods", "rtn,awq", "--formats", "w3a16,w4a8"]
MATRIX_ARGS += ["--tasks", "qig_ocr,fidelity", "--limit", "2", "--samples", "2"]
#: A cheaper one for the fault tests: RTN x W3A16, W4A8, fidelity only (2 configurations).
SMALL = SuiteOptions(methods=("rtn",), formats=("W3A16", "W4A8"), tasks=("fidelity",), samples=2)


def digest(db: Path) -> dict[tuple[object, ...], float]:
    """Row key -> value; fails on a duplicate key (the store's unique key makes that impossible,
    so a duplicate here would mean the key itself was wrong)."""
    with ResultsStore(db) as store:
        rows = store.rows()
    found: dict[tuple[object, ...], float] = {}
    for row in rows:
        assert row.key not in found, f"duplicate row {row.key}"
        found[row.key] = row.value
    return found


def small_matrix(db: Path) -> tuple[SuiteOptions, list]:  # type: ignore[type-arg]
    options = SMALL.with_(db=db)
    return options, table2(options)


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
