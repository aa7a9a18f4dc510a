"""lmms-eval's own CLI finds ``--model qigbench`` through the ``lmms_eval.models`` entry point.

The test installs a minimal dist-info (the same entry point pyproject.toml declares) on
PYTHONPATH of a subprocess, runs ``python -m lmms_eval`` on one offline pack task and checks the
results file: the CLI exits 0 even when a task fails, so the exit code proves nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qigbench.eval.lmms_plugin import CLASS_PATH, MODEL_ID
from qigbench.eval.tasks import LMMS_SUBDIR


def install_entry_point(site: Path) -> None:
    info = site / "qigbench_lmms_plugin-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qigbench-lmms-plugin\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[lmms_eval.models]\nqigbench = qigbench.eval.lmms_plugin:manifests\n")


def test_entry_point_manifest_points_at_the_wrapper():
    from qigbench.eval.lmms_plugin import manifests

    (manifest,) = manifests()
    assert (manifest.model_id, manifest.simple_class_path) == (MODEL_ID, CLASS_PATH)


@pytest.mark.slow  # ~60 s: lmms-eval's CLI indexes all its built-in task YAMLs at start
def test_lmms_eval_cli_runs_our_model_on_a_pack_task(pack, tiny_vlm, tmp_path):
    site = tmp_path / "site"
    install_entry_point(site)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        MODEL_ID,
        "--model_args",
        "pretrained=tiny-qwen2vl",
        "--tasks",
        "qig_vqa_count",
        "--include_path",
        str(pack / LMMS_SUBDIR),
        "--limit",
        "3",
        "--batch_size",
        "2",
        "--device",
        "cpu",
        "--output_path",
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    files = sorted(out.rglob("*results*.json"))
    assert files, f"no results file (exit code {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads(files[-1].read_text())["results"]
    assert 0.0 <= results["qig_vqa_count"]["exact_match,none"] <= 1.0
