"""The real checkpoints' shapes, as data: one :class:`ShapeSpec` per model, declared by its family file.

Each family file (``qigbench/models/families/<name>.py``) lists the real checkpoints it can build
at their exact shape in ``FAMILY.shapes``, every number copied from the checkpoint's
``config.json`` / ``preprocessor_config.json`` on the Hugging Face hub (named in ``checkpoint``,
cited next to the numbers); none of it is downloaded at run time. Values that could not be checked
against a copy of the file while writing are listed in ``unverified`` (and were taken from
transformers' own defaults for that checkpoint, which the library documents as "the ... style
configuration"). This module collects them.

Only what shapes the compute is kept: widths, head counts, key-value heads, vocabulary, depth,
rotary settings, the vision tower's geometry and the processor's image resolution. Weights are
random (seeded), and the tokenizer is the tiny models' BPE: it has the real special tokens but not
the real vocabulary, so text segments tokenise to different lengths than with the real tokenizer.
"""

from __future__ import annotations

from qigbench.models.registry import FAMILIES
from qigbench.models.specimen import ShapeSpec

__all__ = ["PREFIX", "SHAPES", "ShapeSpec"]

#: how a real-shape model is spelled where a model alias goes: ``shape:NAME@LAYERS...``
PREFIX = "shape:"

SHAPES: dict[str, ShapeSpec] = {spec.name: spec for family in FAMILIES for spec in family.shapes}
