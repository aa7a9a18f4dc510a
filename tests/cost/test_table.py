"""Table 6 layout: hours per method, the delta to the first method, the paper's GPU-hours alongside."""

from __future__ import annotations

import re

from qigbench.cost import Measurement, Phase, predict
from qigbench.cost.measure import CostRequest, MeasuredRun
from qigbench.cost.table import CostRow, Setting, format_table, paper_key
from qigbench.engine.run import CalibrationReport
from qigbench.models.shapes import SHAPES
from qigbench.models.shapes.alias import parse_shape_alias


def _row(label: str, per_block: float) -> CostRow:
    shape = parse_shape_alias("shape:internvl2-26b@2+vision=1+width=8")
    m = Measurement(
        blocks=2, block_seconds=(per_block, per_block), block_phase_peak_bytes=2**30, capture=Phase(10.0, 2**30),
        prepare=Phase(), prepare_at=(), total_seconds=10.0 + 2 * per_block, resident_bytes_per_block=0,
        block_bytes=2**20, vision_layers_built=1,
    )
    run = MeasuredRun(CostRequest(shape=shape, method=label), m, CalibrationReport({}, "W3A16", "fp", "cpu"))
    return CostRow(label, run, predict(m, 48, 45))


def test_table6_layout_with_the_paper_alongside() -> None:
    setting = Setting(SHAPES["internvl2-26b"], parse_shape_alias("shape:internvl2-26b@2+vision=1+width=8"),
                      "cpu", "float32", 4, 448, "W3A16")
    text = format_table(setting, [_row("mbq", 60.0), _row("qig", 65.0), CostRow("gptq", None, None, "out of memory")])
    assert "0.95 / 4.20 / 0.99" in text  # the paper's MBQ / leave-one-out / QIG GPU-hours for InternVL2-26B
    assert "0.80 h" in text  # mbq: 48 x 60 s + 10 s capture = 2890 s
    assert "(+4.0 min)" in text  # qig: 48 x 5 s more
    assert "failed: out of memory" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith(("| mbq", "| qig"))}
    assert re.search(r"\| 0\.95 +\|$", rows["mbq"]) and re.search(r"\| 0\.99 +\|$", rows["qig"])  # own paper column
    assert "2 of 48 decoder blocks, vision tower 1 of 45 layers, language-model width 1/8" in text
    assert "LLaMA decoder of InternLM2's exact shape" in text  # the substitution is stated


def test_paper_columns() -> None:
    assert paper_key("qig", ()) == "qig"
    assert paper_key("qig", (("sensitivity", "leave_one_out"),)) == "leave_one_out"
    assert paper_key("qig", (("sensitivity", "gradient"),)) is None
    assert paper_key("gptq", ()) is None
