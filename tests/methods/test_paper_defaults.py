"""Each method's defaults are its paper's (docs/method_defaults.md); QIG's is 32-step IG (App. B)."""

from __future__ import annotations

import json
from pathlib import Path

from qigbench.cli import main
from qigbench.engine.method import get_method
from qigbench.pipeline import RECORD_NAME, QuantizeRequest


def test_quantize_qig_records_the_papers_32_steps(tmp_path: Path, cache_dir: Path) -> None:
    """The issue's must-show: ``qigbench quantize --model tiny-qwen2vl --method qig --format W3A16``
    records ``qig.steps = 32`` (two samples here, to keep it quick; the steps do not depend on them)."""
    out = tmp_path / "q"
    argv = ["quantize", "--model", "tiny-qwen2vl", "--method", "qig", "--format", "W3A16", "--samples", "2",
            "--save", str(out), "--export", "fake-quant", "--cache-dir", str(cache_dir), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["identity"]["config"]["qig"]["steps"] == 32
    assert record["method"]["config"]["qig"]["steps"] == 32
    assert record["label"] == "qig"  # the paper's setting is plain qig
    groups = {name: g for block in record["blocks"] for name, g in block["groups"].items()}
    assert groups["qkv"]["sens.steps_used"] == 32 and groups["qkv"]["sens.points_evaluated"] == 32
    # o and down are linear layers in a weight-only format: the exact one-point shortcut, logged
    assert groups["down"]["sens.shortcut_linear"] is True and groups["down"]["sens.steps_used"] == 32
    assert groups["down"]["sens.points_evaluated"] == 1


def test_qig_gptq_defaults_to_32_steps_and_the_request_says_so() -> None:
    assert get_method("qig").config.qig.steps == 32
    assert get_method("qig-gptq").config.qig.steps == 32
    request = QuantizeRequest(model="tiny-qwen2vl", method="qig", format="W3A16")
    assert request.identity().payload()["config"]["qig"]["steps"] == 32
    assert request.label() == "qig"
    assert QuantizeRequest(model="tiny-qwen2vl", method="qig", format="W3A16", options=(("qig.steps", "8"),)).label() == (
        "qig[steps=8]"
    )
    # passing the default explicitly is the paper's setting: the plain name
    assert QuantizeRequest(model="m", method="qig", format="W3A16", options=(("qig.steps", "32"),)).label() == "qig"
