"""Sanity checks shared by the suites: a measured number is well formed for its metric."""

from __future__ import annotations

import math

from qigbench.matrix.cases import Case
from qigbench.matrix.evaluate import TaskMetrics

BOUNDED = {"acc", "acc_norm", "accuracy", "exact_match", "relaxed_accuracy", "anls", "flip_rate"}


def assert_well_formed(case: Case, found: TaskMetrics) -> None:
    assert found.values, f"{case.ident()} {found.task}: no metrics"
    for metric, value in found.values.items():
        assert math.isfinite(value), f"{metric} = {value}"
        if metric in BOUNDED:
            assert 0.0 <= value <= 1.0, f"{metric} = {value} outside [0, 1]"
        if metric in ("kl", "block_error", "ppl"):
            assert value >= 0.0, f"{metric} = {value} < 0"
    if "block_error" in found.values and not case.is_fp:
        assert found.values["block_error"] > 0.0, "a quantized model with zero block error was not quantized"
