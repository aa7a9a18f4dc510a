"""The QIG floor probe (qigbench.cost.qig_floor) on tiny-qwen2vl: it times m x (f, f_q, backward)
and the search beside what the run spent, without changing the calibration."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from qigbench.cost.qig_floor import format_floor_table, probe_qig_floor
from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.errors import QigbenchError
from qigbench.models.loading import load_model
from qigbench.quant import parse_format


@pytest.fixture(scope="module")
def tiny(cache_dir: Path, calib_for):  # type: ignore[no-untyped-def]
    loaded = load_model("tiny-qwen2vl", cache_dir=cache_dir)
    return loaded, calib_for(loaded, 4)


def test_probe_times_every_group_and_leaves_the_calibration_as_it_was(tiny) -> None:  # type: ignore[no-untyped-def]
    loaded, batches = tiny
    fmt = parse_format("W3A16g16")
    options = (("qig.steps", "4"), ("n_grid", "4"))
    probed_model, plain_model = copy.deepcopy(loaded.model), copy.deepcopy(loaded.model)
    seen: list[str] = []
    found = probe_qig_floor(probed_model, loaded.family, batches, fmt, options=options, repeats=1,
                            on_group=lambda g: seen.append(g.group))  # fmt: skip
    assert [g.group for g in found.groups] == seen == ["qkv", "o", "gate_up", "down"] * 2
    for g in found.groups:
        assert g.points == 4 and g.samples == 4 and g.floor > 0 and g.measured > 0
        assert g.point.forward_fp > 0 and g.point.backward > 0
        # the linear groups took the exact one-point shortcut: their floor counts that one point, not 4
        linear = g.group in ("o", "down")
        assert bool(g.diagnostics.get("shortcut_linear")) == linear and g.evaluated == (1 if linear else 4)
        assert g.floor == pytest.approx(g.evaluated * g.point.total + g.search)
        assert g.lowest == min(g.floor, g.floor_chunked)
    assert "measured / floor" in format_floor_table(found.groups)
    plain = calibrate(plain_model, loaded.family, batches, get_method("qig", dict(options)), fmt,
                      EngineConfig(progress=False))  # fmt: skip
    assert [b["rel_error"] for b in found.report.blocks] == [b["rel_error"] for b in plain.blocks]
    for a, b in zip(probed_model.parameters(), plain_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_probe_needs_qig_weights(tiny) -> None:  # type: ignore[no-untyped-def]
    loaded, batches = tiny
    with pytest.raises(QigbenchError, match="token weights come from QIG"):
        probe_qig_floor(loaded.model, loaded.family, batches, parse_format("W3A16g16"),
                        options=(("sensitivity", "uniform"),))  # fmt: skip


def test_the_command_prints_the_floor_table_and_the_ratio(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m qigbench.cost.qig_floor``: one line per group as it finishes, the table, the total
    ratio (the whole-run sums, chunked floor included, add up the groups)."""
    from qigbench.cost.qig_floor import main

    argv = ["--model", "tiny-qwen2vl", "--format", "W3A16g16", "--samples", "2", "--batch-size", "2",
            "--image-size", "56", "-o", "qig.steps=2", "-o", "n_grid=2", "--groups", "qkv", "--repeats", "1",
            "--cache-dir", str(cache_dir)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| block | group |" in out and "measured / floor" in out and "goal <= 1.2" in out
    rows = [line for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == 2  # qkv of each of tiny-qwen2vl's two blocks


def test_report_sums_add_up_the_groups(tiny) -> None:  # type: ignore[no-untyped-def]
    loaded, batches = tiny
    found = probe_qig_floor(copy.deepcopy(loaded.model), loaded.family, batches, parse_format("W3A16g16"),
                            options=(("qig.steps", "2"), ("n_grid", "2")), groups=["gate_up"], repeats=1)  # fmt: skip
    assert found.floor == pytest.approx(sum(g.floor for g in found.groups))
    assert found.floor_chunked == pytest.approx(sum(g.floor_chunked for g in found.groups))
    assert found.ratio == pytest.approx(found.measured / found.floor)
