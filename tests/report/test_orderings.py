"""The report's paired tests against RTN: the differences, their intervals and verdicts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from qigbench.report.build import ReportOptions, build_report
from qigbench.report.orderings import orderings
from qigbench.report.tables import aggregate, fidelity, leaderboard
from qigbench.results import ResultRow, ResultsStore, config_hash
from qigbench.stats import ExampleScores

TASKS = ("qig_vqa_colour", "qig_mc_chart")


def _rows(correct: dict[str, float], seeds: tuple[int, ...] = (0, 1, 2), n: int = 60) -> list[ResultRow]:
    """Per-example 0/1 accuracy: method m answers each example right with probability correct[m]."""
    rng = np.random.default_rng(0)
    rows = []
    for method, p in correct.items():
        fmt = "FP16" if method == "fp16" else "W3A16"
        chash = config_hash({"method": method})
        for seed in seeds:
            for task in TASKS:
                hits = (rng.random(n) < p).astype(float)
                rows.append(ResultRow(
                    model="m", method=method, format=fmt, config_hash=chash, seed=seed, task=task,
                    metric="exact_match", value=float(hits.mean()), examples=ExampleScores.of(hits.tolist()),
                ))
            if method != "fp16":
                kl = rng.random(12) * 0.1 + (1.0 - p)
                rows.append(ResultRow(
                    model="m", method=method, format=fmt, config_hash=chash, seed=seed, task="fidelity",
                    metric="kl", value=float(kl.mean()), examples=ExampleScores.of(kl.tolist()),
                ))
    return rows


def _table(rows: list[ResultRow]):  # type: ignore[no-untyped-def]
    aggs = aggregate(rows)
    return orderings(leaderboard(aggs), fidelity(aggs))


def _cells(table, method: str) -> list:  # type: ignore[no-untyped-def]
    return next(cells for (_, m), cells in table.rows if m == method)


def test_a_clearly_better_method_is_better_and_an_equal_one_is_not_distinguishable() -> None:
    table = _table(_rows({"fp16": 0.95, "rtn": 0.2, "mbq": 0.8, "qig": 0.2}))
    assert [c for _, c in table.columns] == ["Δ Avg accuracy", "Δ KL"]
    mbq, qig, fp = _cells(table, "mbq"), _cells(table, "qig"), _cells(table, "FP16")
    assert "better (3 seeds)" in mbq[0].text and "better (3 seeds)" in mbq[1].text  # accuracy up, KL down
    assert mbq[0].low is not None and mbq[0].low > 0 and mbq[1].high is not None and mbq[1].high < 0
    assert "not distinguishable" in qig[0].text
    assert fp[0].text.endswith("better (3 seeds)") and fp[1].value is None  # FP16 has no fidelity row
    assert all(head[1] != "rtn" for head, _ in table.rows)  # the baseline is not tested against itself


def test_the_difference_is_the_mean_accuracy_gap_in_points() -> None:
    rows = _rows({"rtn": 0.3, "awq": 0.6})
    by = {(r.method, r.seed, r.task): r.value for r in rows if r.metric == "exact_match"}
    want = 100 * np.mean([by[("awq", s, t)] - by[("rtn", s, t)] for s in (0, 1, 2) for t in TASKS])
    cell = _cells(_table(rows), "awq")[0]
    assert cell.value is not None and abs(cell.value - want) < 1e-9
    assert cell.low is not None and cell.high is not None and cell.low <= cell.value <= cell.high


def test_without_a_baseline_row_nothing_is_tested() -> None:
    assert _table(_rows({"awq": 0.6, "mbq": 0.5})).rows == []


def test_the_report_writes_the_paired_tests_table(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        run = store.start_run(env={"git_commit": "0", "device": "cpu", "versions": {}}, note="test")
        store.record([replace(r, run_id=run.run_id) for r in _rows({"fp16": 0.9, "rtn": 0.2, "gptq": 0.7}, seeds=(0,))])
    written = build_report(db, tmp_path / "out", ReportOptions(baseline="rtn"))
    assert tmp_path / "out" / "orderings.csv" in written
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "### Paired tests against RTN" in md and "better (1 seed)" in md
