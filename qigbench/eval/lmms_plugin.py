"""lmms-eval entry point: registers ``--model qigbench`` for lmms-eval's CLI.

lmms-eval 0.7.3 builds its model registry at import of ``lmms_eval.models`` and then calls
``ModelRegistryV2.load_entrypoint_manifests("lmms_eval.models")``: every entry point in that group
is loaded and must be a ``ModelManifest``, an iterable of them, or a callable returning one. This
module is that callable; it imports nothing heavy, so registering costs nothing until the model is
actually chosen. pyproject.toml::

    [project.entry-points."lmms_eval.models"]
    qigbench = "qigbench.eval.lmms_plugin:manifests"
"""

from __future__ import annotations

from typing import Any

MODEL_ID = "qigbench"
CLASS_PATH = "qigbench.eval.lmms_model.QigbenchVLM"


def manifests() -> list[Any]:
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH, aliases=("qigbench_vlm",))]
