"""Calibration cost: measure a method on a few blocks of a real-shape model, predict the whole model."""

from __future__ import annotations

from qigbench.cost.predict import CostModelError, Measurement, Phase, Prediction, predict

__all__ = ["CostModelError", "Measurement", "Phase", "Prediction", "predict"]
