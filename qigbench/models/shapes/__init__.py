"""Real-shape models: the real checkpoints' shapes (data) and an offline, deterministic builder."""

from __future__ import annotations

from qigbench.models.shapes.build import SHAPE_BUILD_VERSION, plan_build, shape_model_dir
from qigbench.models.shapes.data import SHAPES, ShapeSpec

__all__ = ["SHAPES", "SHAPE_BUILD_VERSION", "ShapeSpec", "plan_build", "shape_model_dir"]
