"""Calibration data: ShareGPT4V-style captions, an OCR set, plain text, and offline synthetic sets.

``load_calibration(source, model=...)`` is the one entry point; it returns a
:class:`CalibrationSet` of :class:`CalibrationBatch` (model inputs, token types, answer mask,
labels) plus provenance. ``default_calibration(model)`` builds an offline synthetic set of the
right kind into the cache.
"""

from qigbench.data.batch import CalibrationBatch, CalibrationKind, CalibrationSet
from qigbench.data.defaults import default_calibration
from qigbench.data.loader import load_calibration
from qigbench.data.records import CalibrationDataError, CalibrationImageError, CalibrationSizeError
from qigbench.data.synthetic import write_caption_set, write_text_set

__all__ = [
    "CalibrationBatch",
    "CalibrationDataError",
    "CalibrationImageError",
    "CalibrationKind",
    "CalibrationSet",
    "CalibrationSizeError",
    "default_calibration",
    "load_calibration",
    "write_caption_set",
    "write_text_set",
]
