"""Accuracy recovery (quantized / FP16, llm-compressor's convention): the leaderboard column and
``qigbench check --min-recovery``."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_synthetic import TASKS, make_db, synthetic_rows

from qigbench.cli import main
from qigbench.report.recovery import DEFAULT_FLOOR, check_recovery, ratio, recoveries
from qigbench.report.tables import aggregate, leaderboard
from qigbench.results import ResultRow, ResultsStore, config_hash


def test_ratio_is_rounded_like_llm_compressor_and_undefined_without_a_base() -> None:
    assert ratio(0.66, 0.70) == 0.94
    assert ratio(0.6615, 0.70) == 0.95  # 0.945 rounds up: passes a 0.95 floor, as theirs does
    assert ratio(0.5, 0.0) is None


def test_every_quantized_task_gets_its_fp16_ratio() -> None:
    rows = synthetic_rows(("tiny-qwen2vl",), seeds=(0, 1))
    found = {(r.method, r.format, r.task): r for r in recoveries(rows)}
    # fidelity metrics (kl, flip rate) have no recovery; 4 methods x 2 formats x 3 tasks do
    assert len(found) == 4 * 2 * len(TASKS)
    rtn = found[("rtn", "W3A16", "chartqa")]
    assert rtn.base == pytest.approx(0.70)
    assert rtn.quantized == pytest.approx(0.70 - 0.08 + 0.001)  # seeds 0 and 1 averaged
    assert rtn.recovery == round(rtn.quantized / 0.70, 2) == 0.89
    assert rtn.passes(DEFAULT_FLOOR) is False
    qig = found[("qig", "W4A8", "chartqa")]
    assert qig.recovery == 0.96 and qig.passes(DEFAULT_FLOOR)


def test_a_zero_fp16_score_has_no_recovery_and_a_missing_fp16_row_fails() -> None:
    rows = [
        ResultRow(model="m", method="fp16", format="FP16", config_hash=config_hash({}), seed=0, task="t",
                  metric="acc", value=0.0),
        ResultRow(model="m", method="rtn", format="W4A8", config_hash="abc", seed=0, task="t", metric="acc",
                  value=0.0),
        ResultRow(model="n", method="rtn", format="W4A8", config_hash="abc", seed=0, task="t", metric="acc",
                  value=0.3),
    ]
    found = check_recovery(rows, 0.95)
    assert [r.model for r in found.undefined] == ["m"] and not found.failing
    assert found.without_base == ("n",) and found.fails
    assert any("nothing to recover" in line for line in found.lines())


def test_leaderboard_shows_recovery_per_format_and_marks_the_floor() -> None:
    table = leaderboard(aggregate(synthetic_rows(("tiny-qwen2vl",))))
    columns = table.columns
    assert ("W3A16", "Recovery") in columns and ("W4A8", "Recovery") in columns
    where = columns.index(("W3A16", "Recovery"))
    cells = {head[1]: cells[where] for head, cells in table.rows}
    assert cells["FP16"].text == "ref"
    # rtn at W3A16: Avg 62.x / 71.x
    assert cells["rtn"].value == pytest.approx(0.89, abs=0.005) and "(< 0.95)" in cells["rtn"].text
    assert cells["rtn"].rank is None  # recovery is not ranked again (it orders like Avg)
    w4 = columns.index(("W4A8", "Recovery"))
    qig = next(c for head, c in table.rows if head[1] == "qig")
    assert qig[w4].value is not None and qig[w4].value >= 0.95 and "<" not in qig[w4].text


def test_check_min_recovery_fails_below_the_floor_and_passes_a_lower_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_db(tmp_path / "results.db", models=("tiny-qwen2vl",))
    assert main(["check", "--db", str(db), "--min-recovery"]) == 1
    err = capsys.readouterr().err
    assert "RECOVERY  tiny-qwen2vl / rtn / W3A16" in err and "< 0.95" in err
    assert main(["check", "--db", str(db), "--min-recovery", "0.85"]) == 0
    out = capsys.readouterr().out
    assert "recovery >= 0.85: 24 pass, 0 below" in out


def test_check_min_recovery_combines_with_a_baseline(tmp_path: Path) -> None:
    db = make_db(tmp_path / "results.db", models=("tiny-qwen2vl",))
    base = tmp_path / "baseline.json"
    assert main(["check", "--db", str(db), "--baseline", str(base), "--write-baseline"]) == 0
    assert main(["check", "--db", str(db), "--baseline", str(base)]) == 0
    assert main(["check", "--db", str(db), "--baseline", str(base), "--min-recovery"]) == 1


def test_check_needs_a_baseline_or_a_recovery_floor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = make_db(tmp_path / "results.db", models=("tiny-qwen2vl",))
    assert main(["check", "--db", str(db)]) == 2
    assert "--min-recovery" in capsys.readouterr().err
    assert main(["check", "--db", str(db), "--min-recovery", "95"]) == 2
    assert "fraction in (0, 1]" in capsys.readouterr().err
    store = ResultsStore(db)
    assert store.rows()  # the db was not touched
    store.close()
