"""qigbench check: passes on the db it was baselined from, fails on regressions, broken orderings, gaps."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from report_synthetic import make_db

from qigbench.cli import main
from qigbench.report.regression import Baseline, Ordering, baseline_from_rows, check, parse_ordering_spec
from qigbench.results import ResultRow, ResultsError


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    db = make_db(tmp_path / "results.db", models=("tiny-qwen2vl",))
    base = tmp_path / "baseline" / "baseline.json"
    args = ["check", "--db", str(db), "--baseline", str(base), "--write-baseline", "--ordering", "qig>mbq:kl"]
    assert main(args) == 0
    return db, base


def _doctor(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_passes_on_the_original(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, base = setup
    data = json.loads(base.read_text())
    assert data["orderings"] == [
        {"better": "qig", "worse": "mbq", "metric": "kl", "model": "tiny-qwen2vl", "format": f}
        for f in ("W3A16", "W4A8")
    ]
    assert main(["check", "--db", str(db), "--baseline", str(base), "--tolerance", "0.02"]) == 0
    assert "qigbench check: ok" in capsys.readouterr().out


def test_accuracy_drop_beyond_tolerance_fails_and_says_where(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, base = setup
    # qig W3A16 chartqa is 0.651 (mean over seeds); -5% relative is beyond 2%
    _doctor(db, "UPDATE results SET value = value * 0.95 WHERE method='qig' AND format='W3A16' AND task='chartqa'")
    assert main(["check", "--db", str(db), "--baseline", str(base), "--tolerance", "0.02"]) == 1
    err = capsys.readouterr().err
    assert "REGRESSED tiny-qwen2vl / qig / W3A16" in err and "chartqa accuracy" in err and "-5.0%" in err
    assert err.count("REGRESSED") == 1
    # the same drop is inside a 6% tolerance
    assert main(["check", "--db", str(db), "--baseline", str(base), "--tolerance", "0.06"]) == 0


def test_lower_is_better_metrics_regress_upwards(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, base = setup
    _doctor(db, "UPDATE results SET value = value * 0.5 WHERE metric='kl' AND method='rtn'")  # KL halves: better
    assert main(["check", "--db", str(db), "--baseline", str(base)]) == 0
    assert "improved" in capsys.readouterr().out
    _doctor(db, "UPDATE results SET value = value * 4 WHERE metric='flip_rate' AND method='rtn'")  # worse
    assert main(["check", "--db", str(db), "--baseline", str(base)]) == 1
    assert "flip_rate" in capsys.readouterr().err


def test_broken_ordering_fails(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, base = setup
    data = json.loads(base.read_text())
    data["entries"] = []  # orderings alone: the failure below is the ordering, not a per-metric regression
    base.write_text(json.dumps(data))
    # qig's KL (0.02) becomes worse than mbq's (0.03) at W4A8, beyond 2% slack
    _doctor(db, "UPDATE results SET value = 0.031 WHERE metric='kl' AND method='qig' AND format='W4A8'")
    assert main(["check", "--db", str(db), "--baseline", str(base), "--tolerance", "0.05"]) == 0  # 0.031 <= 0.0315
    assert main(["check", "--db", str(db), "--baseline", str(base), "--tolerance", "0.02"]) == 1
    err = capsys.readouterr().err
    assert "ORDERING  tiny-qwen2vl / W4A8: qig should beat mbq on kl" in err
    assert "W3A16" not in err


def test_missing_configuration_is_an_error_not_a_pass(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, base = setup
    _doctor(db, "DELETE FROM results WHERE method='awq'")
    assert main(["check", "--db", str(db), "--baseline", str(base)]) == 1
    assert "MISSING   tiny-qwen2vl / awq / W3A16" in capsys.readouterr().err


def test_changed_config_hash_points_at_rebaselining(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, base = setup
    _doctor(db, "UPDATE results SET config_hash='feedbeef' WHERE method='mbq' AND format='W3A16'")
    assert main(["check", "--db", str(db), "--baseline", str(base)]) == 1
    err = capsys.readouterr().err
    assert "config hashes feedbeef" in err and "--write-baseline" in err


def test_rewrite_keeps_declared_orderings(setup: tuple[Path, Path]) -> None:
    db, base = setup
    assert main(["check", "--db", str(db), "--baseline", str(base), "--write-baseline"]) == 0
    assert len(Baseline.load(base).orderings) == 2


def test_refuses_baseline_whose_ordering_already_fails(setup: tuple[Path, Path]) -> None:
    db, base = setup
    args = ["check", "--db", str(db), "--baseline", str(base), "--write-baseline", "--ordering", "rtn>qig:kl"]
    assert main(args) == 2  # a QigbenchError: message printed, no traceback


def test_direction_law_on_one_value() -> None:
    """Worsening by more than tol*|base| fails, by less passes, for both directions."""
    for metric, sign in (("accuracy", -1), ("kl", +1)):
        row = ResultRow(model="m", method="q", format="W4A8", config_hash="h", task="t", metric=metric, value=0.5)
        base = baseline_from_rows([row])
        for factor, fails in ((0.019, False), (0.021, True), (-0.5, False)):
            moved = ResultRow(**{**row.__dict__, "value": 0.5 * (1 + sign * factor)})
            findings = check([moved], base, tolerance=0.02)
            assert any(f.fails for f in findings) is fails, (metric, factor)


def test_ordering_needs_both_methods_and_spec_parsing() -> None:
    assert parse_ordering_spec("qig>mbq:accuracy@chartqa") == ("qig", "mbq", "accuracy", "chartqa")
    with pytest.raises(ResultsError, match="BETTER>WORSE"):
        parse_ordering_spec("qig beats mbq")
    row = ResultRow(model="m", method="qig", format="W4A8", config_hash="h", task="t", metric="kl", value=0.1)
    findings = check([row], Baseline([], [Ordering("qig", "mbq", "kl", "m", "W4A8")]), tolerance=0.0)
    assert [f.kind for f in findings] == ["missing", "new"]


def test_bad_baseline_files(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="--write-baseline"):
        Baseline.load(tmp_path / "none.json")
    (tmp_path / "b.json").write_text('{"version": 7}')
    with pytest.raises(ResultsError, match="version"):
        Baseline.load(tmp_path / "b.json")


def _kl_rows(qig: list[float], mbq: list[float], seed: int = 0) -> list[ResultRow]:
    """One seed of per-prompt KL for qig and mbq on the same prompts (ids 0..n-1)."""
    from qigbench.stats import ExampleScores

    rows = []
    for method, xs in (("qig", qig), ("mbq", mbq)):
        ex = ExampleScores.of(xs)
        rows.append(
            ResultRow(
                model="m",
                method=method,
                format="W4A8",
                config_hash="h",
                seed=seed,
                task="fidelity",
                metric="kl",
                value=ex.mean(),
                examples=ex,
            )
        )
    return rows


def test_ordering_verdicts_are_paired_tests() -> None:
    rng = __import__("numpy").random.default_rng(0)
    difficulty = list(rng.uniform(0.5, 2.0, size=12))  # shared by both methods: pairing removes it
    o = Ordering("qig", "mbq", "kl", "m", "W4A8")
    base = Baseline([], [o])

    def verdict(offsets: list[float]) -> list[str]:
        rows = _kl_rows([d + e for d, e in zip(difficulty, offsets, strict=True)], difficulty)
        return [f.kind for f in check(rows, base, tolerance=0.0) if f.kind != "new"]

    noise = list(rng.normal(scale=0.05, size=12))
    assert verdict([x - sum(noise) / 12 for x in noise]) == ["indistinct"]  # zero mean gap, noise only
    assert verdict([x - 0.2 for x in noise]) == ["holds"]  # qig's KL lower on (nearly) every prompt
    assert verdict([x + 0.2 for x in noise]) == ["ordering"]  # the reverse is significant: fails
    # the same reverse gap inside a tolerance (slack 0.25 * mean KL) is not a failure
    rows = _kl_rows([d + e + 0.2 for d, e in zip(difficulty, noise, strict=True)], difficulty)
    assert [f.kind for f in check(rows, base, tolerance=0.25) if f.kind != "new"] == ["indistinct"]


def test_not_distinguishable_is_reported_apart_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qigbench.results import ResultsStore

    rows = _kl_rows([0.10, 0.30, 0.20, 0.25], [0.11, 0.28, 0.21, 0.24])
    db = tmp_path / "r.db"
    store = ResultsStore(db)
    store.record(rows)
    store.close()
    base = tmp_path / "b.json"
    Baseline([], [Ordering("qig", "mbq", "kl", "m", "W4A8")], 0.02, 0.0).dump(base)
    assert main(["check", "--db", str(db), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert (
        "not distinguishable  m / W4A8: qig should beat mbq on kl" in out and "paired bootstrap over 4 examples" in out
    )
    assert "0 hold, 1 not distinguishable, 0 means only, 0 broken" in out
