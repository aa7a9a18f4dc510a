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
    steps8 = QuantizeRequest(model="tiny-qwen2vl", method="qig", format="W3A16", options=(("qig.steps", "8"),))
    assert steps8.label() == "qig[steps=8]"
    # passing the default explicitly is the paper's setting: the plain name
    assert QuantizeRequest(model="m", method="qig", format="W3A16", options=(("qig.steps", "32"),)).label() == "qig"


def test_each_method_propagates_as_its_paper_and_the_identity_records_it() -> None:
    """GPTQ (and QIG+GPTQ, its framework) feeds every block the quantized outputs, in W3A16 too;
    SmoothQuant takes its statistics from the fp model, in W4A8 too; the others follow the format
    (fp for weight-only, quantized for weight-activation: MBQ, QIG). A method's own rule enters the
    configuration's identity (a new hash), the format's rule does not (hashes stay)."""
    from qigbench.engine.contracts import EngineConfig
    from qigbench.matrix.cases import Case
    from qigbench.quant import parse_format

    w3, w4 = parse_format("W3A16"), parse_format("W4A8")
    auto = EngineConfig()
    expected = {("gptq", "W3A16"): "quantized", ("qig-gptq", "W3A16"): "quantized", ("gptq", "W4A8"): "quantized",
                ("smoothquant", "W4A8"): "fp", ("smoothquant", "W3A16"): "fp", ("qig", "W3A16"): "fp",
                ("qig", "W4A8"): "quantized", ("mbq", "W3A16"): "fp", ("awq", "W4A8"): "quantized"}  # fmt: skip
    for (method, fmt), stream in expected.items():
        plugin = get_method(method)
        assert auto.resolve_propagation(w3 if fmt == "W3A16" else w4, plugin.propagation) == stream, (method, fmt)
        request = QuantizeRequest(model="tiny-qwen2vl", method=method, format=fmt, samples=16)
        recorded = request.identity().payload().get("propagation")
        assert recorded == (None if stream == auto.resolve_propagation(w3 if fmt == "W3A16" else w4) else stream)
        case = Case("t", "tiny-qwen2vl", method, fmt, 16)
        assert case.config_hash() == request.config_hash()  # the suites and quantize agree
    assert EngineConfig(propagation="fp").resolve_propagation(w3, "quantized") == "fp"  # --propagation wins


def test_mbq_ratio_is_the_papers_unfloored_one_by_default() -> None:
    assert get_method("mbq").config.ratio_floor == "none"
    assert get_method("mbq", {"ratio_floor": "median"}).label() == "mbq[ratio_floor=median]"
