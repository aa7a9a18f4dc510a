"""Table 6's rounds: the schedule, resuming from the JSONL, ratios within a round, and the goals printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qigbench.cost import table6
from qigbench.cost.table6 import (
    FAST_VARIANT,
    PAPER_QIG,
    Table6Error,
    Table6Plan,
    load_plan,
    machine_of,
    read_records,
    run_table6,
    schedule,
    table6_variants,
)
from qigbench.cost.table6_summary import format_summary, summarise, summary_json

#: CPU seconds per variant and round (mbq varies by round: ratios are taken within a round)
CPU = {"mbq": 100.0, "qig": 400.0, "qig[preset=fast]": 150.0, "leave-one-out": 3000.0,
       "gptq": 50.0, "qig-gptq": 330.0}  # fmt: skip


def fake_result(request: Any, round_index: int) -> dict[str, Any]:
    label = next(v.label for v in table6_variants() if v.method == request.method and v.options == request.options)
    scale = 1.0 + 0.1 * round_index  # the machine gets slower round after round: the ratios must not move
    return {
        "cpu_seconds": CPU[label] * scale, "seconds": 2 * CPU[label] * scale, "peak_bytes": 2 * 2**30,
        "working_bytes": 2**28, "mean_block_error": 0.01, "phases": {"search": {"cpu_seconds": 40.0}},
        "load_average": [4.0, 5.0],
    }  # fmt: skip


def test_the_paper_qig_and_the_fast_variant_are_one_constant_each() -> None:
    variants = {v.label: v for v in table6_variants()}
    assert variants["qig"].options == PAPER_QIG == (("qig.steps", "32"),)
    assert variants["qig[preset=fast]"].options == FAST_VARIANT
    assert variants["leave-one-out"].options == (("sensitivity", "leave_one_out"),)
    assert next(iter(variants)) == "mbq"


def test_schedule_rotates_rounds_and_pairs_a_capped_variant_with_its_own_mbq() -> None:
    plan = Table6Plan(rounds=3, variants=table6_variants(loo_rounds=1))
    order = schedule(plan)
    by_round: dict[str, list[str]] = {}
    for r, v in order:
        by_round.setdefault(r, []).append(v.label)
    assert len(by_round["0"]) == len(by_round["1"]) == len(by_round["2"]) == 5  # every uncapped variant each round
    assert by_round["0"][0] == "mbq" and by_round["1"][0] != "mbq"  # rotated
    assert by_round["leave-one-out#0"] == ["mbq", "leave-one-out"]  # after the others, beside a fresh MBQ
    assert [r for r, v in order if v.label == "leave-one-out"] == ["leave-one-out#0"]
    assert order[-1][1].label == "leave-one-out"


def test_plan_checks() -> None:
    with pytest.raises(Table6Error, match="first variant must be plain mbq"):
        Table6Plan(variants=table6_variants()[1:])
    with pytest.raises(Table6Error, match=">= 1"):
        Table6Plan(rounds=0)
    assert Table6Plan(rounds=3).key == Table6Plan(rounds=5).key  # more rounds extend the same results
    assert Table6Plan(samples=32).key != Table6Plan(samples=128).key


def _fake_runs(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    def child(mode: str, request: Any, timeout: float | None) -> dict[str, Any]:
        calls.append(mode if mode == "build" else request.method)
        if mode == "build":
            return {"model_dir": "built", "calib": None}
        if mode == "floor":
            return {"cpu_seconds": 500.0, "floor_cpu_seconds": 240.0, "groups_measured_cpu_seconds": 300.0,
                    "search_cpu_seconds": 40.0, "points_cpu_seconds": 200.0, "groups": [{}]}  # fmt: skip
        tag = Path(request.weights_out).stem.rsplit("-r", 1)[1] if request.weights_out else str(_round_of_gptq(calls))
        return fake_result(request, int(tag) if tag.isdigit() else 0)

    monkeypatch.setattr(table6, "_child", child)


def _round_of_gptq(calls: list[str]) -> int:
    return calls.count("gptq") - 1


def test_runs_append_to_the_jsonl_and_a_rerun_resumes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=2, variants=table6_variants(loo_rounds=1))
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None)
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert len(records) == 2 * 5 + 2 and kinds.count("run") == 12
    # the floor probe (qigbench.cost.qig_floor) runs once per QIG row (m = 32 and the fast variant)
    assert kinds.count("floor") == 2 and calls.count("qig") == 2 * 2 + 1 + 2
    calls.clear()
    assert len(run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None)) == 12
    assert calls == []  # nothing left to run
    # a third round later: only its five calibrations run
    more = run_table6(Table6Plan(rounds=3, variants=plan.variants), out, str(tmp_path), weights_dir=tmp_path / "w",
                      say=lambda _: None)  # fmt: skip
    assert len(more) == 12 + 5 and calls.count("build") == 1  # leave-one-out stays at its one round


def test_an_interrupted_last_line_is_skipped_but_damage_elsewhere_is_an_error(tmp_path: Path) -> None:
    plan = Table6Plan()
    good = json.dumps({"kind": "run", "plan_key": plan.key, "round": 0, "label": "mbq"})
    out = tmp_path / "t6.jsonl"
    out.write_text(good + "\n" + '{"kind": "ru')
    assert len(read_records(out, plan)) == 1
    out.write_text('{"kind": "ru\n' + good + "\n")
    with pytest.raises(Table6Error, match="damaged"):
        read_records(out, plan)
    other = json.dumps({"kind": "run", "plan_key": "another", "round": 0, "label": "mbq"})
    out.write_text(other + "\n")
    assert read_records(out, plan) == []  # another plan's records are left alone


def test_summary_ratios_are_within_rounds_with_median_and_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=3, variants=table6_variants(loo_rounds=1))
    _fake_runs(monkeypatch, [])
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None)
    summary = summarise(load_plan(out), records)
    qig = summary.row("qig")
    assert qig.cpu_ratio.median == pytest.approx(4.0) and qig.cpu_ratio.low == pytest.approx(4.0)  # load-free
    assert qig.cpu_ratio.n == 3 and summary.row("leave-one-out").cpu_ratio.n == 1
    assert summary.row("mbq").cpu_seconds.low == pytest.approx(100.0)
    assert summary.rounds_complete == 3
    statuses = {v.goal.name: v.status for v in summary.verdicts}
    assert statuses["qig_time_vs_mbq"] == "KNOWN GAP" and statuses["qig_peak_vs_mbq"] == "met"
    assert statuses["loo_time_vs_mbq"] == "reported"
    text = format_summary(summary, "test machine")
    assert "| qig | 3 | 4.00 [4.00, 4.00] |" in text
    assert "| leave-one-out | 1 | 30.00 (1 round) |" in text
    assert "0.58 (1.055)" in text and "4.20 (4.421)" in text  # the paper's GPU-h and ratio to MBQ
    assert "time qig(m=32)/mbq 4.000 (goal <= 1.100, paper 1.055" in text and "KNOWN GAP" in text
    assert "shape:qwen2vl-7b@2+vision=2+width=4, 32 samples at 448x448, W3A16, cpu (1 thread)" in text


def test_a_partial_file_summarises_what_it_has(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plan = Table6Plan(rounds=1)
    records = [{"kind": "run", "plan_key": plan.key, "round": 0, "label": "mbq", **fake_result(
        type("R", (), {"method": "mbq", "options": ()})(), 0)}]  # fmt: skip
    summary = summarise(plan, records)
    assert [r.label for r in summary.rows] == ["mbq"] and summary.verdicts == ()
    assert "not measured yet: qig" in format_summary(summary, "m")


def test_a_failed_run_is_recorded_the_others_go_on_and_a_rerun_retries_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=1)
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    fake = table6._child

    def oom_once(mode: str, request: Any, timeout: float | None) -> dict[str, Any]:
        if request.method == "mbq" and mode == "measure" and "oom" not in calls:
            calls.append("oom")
            raise Table6Error("mbq {} (measure) failed with exit code -9 (killed: out of memory?)")
        return fake(mode, request, timeout)

    monkeypatch.setattr(table6, "_child", oom_once)
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None)
    assert "mbq" not in {r["label"] for r in records} and len(records) == 5  # the other five still ran
    assert read_records(out, plan, "failure")[0]["label"] == "mbq"
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None)
    assert len(records) == 6 and calls[-2:] == ["build", "mbq"] and calls.count("mbq") == 1  # only mbq reran


def _group(points: int, point: tuple[float, float, float], search: float = 0.0,
           chunked: tuple[float, float, float] | None = None, **diagnostics: Any) -> dict[str, Any]:
    from qigbench.cost.qig_floor import GroupFloor, PointTiming

    return GroupFloor(block=0, group="g", samples=4, points=points, point=PointTiming(*point), search=search,
                      point_chunked=PointTiming(*chunked) if chunked else None, target=0.0, attribution=0.0,
                      diagnostics=diagnostics).as_dict()  # fmt: skip


def test_the_floor_counts_the_points_evaluated_at_the_cheaper_timing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # fmt: skip
    """The floor is rebuilt from the stored groups: an exact shortcut counts as taken (one point for a linear
    group, no backward on the forward-only path, none for a degenerate input), a fast-preset fallback
    counts both rules' points, and each group costs the lower of its whole-batch and chunked timings."""
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=1)
    _fake_runs(monkeypatch, [])
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None, floor=False)
    groups = [
        _group(4, (2, 2, 6), search=40.0),  # 4 x 10 = 40
        _group(4, (2, 2, 6), points_evaluated=4),  # 40
        _group(4, (2, 2, 6), points_evaluated=2, fast_fallback=True, fast_points_evaluated=2),  # 40
        _group(32, (10, 10, 20), points_evaluated=1, shortcut_linear=True),  # one point, not 32: 40
        _group(4, (4, 1, 100), points_evaluated=4, shortcut_no_backward=True),  # 4 x (4 + 1) = 20
        _group(4, (5, 5, 10), chunked=(2, 2, 1), points_evaluated=4),  # chunks cheaper: 4 x 5 = 20
        _group(4, (5, 5, 10), points_evaluated=0, shortcut_no_path=True),  # degenerate: 0
    ]
    floor = {"kind": "floor", "label": "qig", "groups_measured_cpu_seconds": 300.0, "groups": groups,
             "machine": records[0]["machine"]}  # fmt: skip
    (f,) = summarise(plan, records, floor_records=[floor]).floors
    assert f.points == pytest.approx(200.0) and f.search == pytest.approx(40.0) and f.groups == 7


def test_the_floor_arithmetic_adds_the_rest_of_mbqs_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=1)
    _fake_runs(monkeypatch, [])
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None, floor=False)
    groups = [_group(4, (5, 5, 0), search=40.0, points_evaluated=4)] + [_group(4, (5, 5, 0), points_evaluated=4)] * 4
    groups.append(_group(32, (5, 5, 0), points_evaluated=0))  # 5 x 40 + 0 = 200 of path, 40 of search
    floor = {"kind": "floor", "label": "qig", "groups_measured_cpu_seconds": 300.0, "groups": groups,
             "machine": records[0]["machine"]}  # fmt: skip
    summary = summarise(plan, records, floor_records=[floor])
    (f,) = summary.floors
    assert f.rest == pytest.approx(100.0 - 40.0)  # MBQ's 100 CPU s less its 40 s of search (no prepare timed here)
    assert f.total == pytest.approx(300.0)
    text = format_summary(summary, "m")
    assert "| qig | 6 | 200 | 40 | 60 | 300 | 3.00 | 4.00 (1 round) | 1.25 |" in text


def test_a_round_is_measured_on_one_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Runs from another machine are kept but never paired: the rerun here measures the whole round again,
    and the summary shows one machine's rounds."""
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=1)
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None, floor=False,
               machine="machine A", rounds=["0"])  # fmt: skip
    assert calls.count("mbq") == 1
    old = [json.loads(line) for line in out.read_text().splitlines()]
    old[0].pop("machine")  # an unstamped record (written before records named their machine)
    out.write_text("".join(json.dumps(r) + "\n" for r in old[:1]))
    calls.clear()
    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None, floor=False,
                         machine="machine B")  # fmt: skip
    assert calls.count("mbq") == 1 and len(records) == 7  # round 0 again, all six, on B
    summary = summarise(plan, records)
    assert summary.machine == "machine B" and summary.elsewhere == 1 and summary.row("mbq").cpu_ratio.n == 1
    text = format_summary(summary, "where the summary is printed")
    assert "machine: machine B" in text and "1 run(s) of this plan on other machines are left out" in text


def test_a_row_never_run_on_the_main_machine_comes_whole_from_the_one_that_ran_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Leave-one-out's capped round, run in a later session on another machine, is shown over that
    machine's own MBQ of the same round and marked; no other row takes a run from there."""
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=2, variants=table6_variants(loo_rounds=1))
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    kw: dict[str, Any] = {"weights_dir": tmp_path / "w", "say": lambda _: None, "floor": False}
    run_table6(plan, out, str(tmp_path), machine="machine A", rounds=["0", "1"], **kw)
    both = run_table6(plan, out, str(tmp_path), machine="machine B", rounds=["leave-one-out#0"], **kw)
    assert [r["label"] for r in both if machine_of(r) == "machine B"] == ["mbq", "leave-one-out"]
    summary = summarise(plan, both)
    assert summary.machine == "machine A" and summary.elsewhere == 0
    loo, mbq = summary.row("leave-one-out"), summary.row("mbq")
    assert loo.machine == "machine B" and loo.cpu_ratio.n == 1 and mbq.machine == "" and mbq.cpu_ratio.n == 2
    assert all(r.machine == "" for r in summary.rows if r.label != "leave-one-out")
    text = format_summary(summary)
    assert "| leave-one-out (*) | 1 |" in text and "its ratios are to MBQ of the same round on machine B" in text
    rows = {r["label"]: r for r in summary_json(summary)["rows"]}
    assert rows["leave-one-out"]["machine"] == "machine B" and rows["mbq"]["machine"] == ""


def test_raising_leave_one_outs_cap_extends_the_runs_made_under_the_lower_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cap says how many rounds run, not what one measures: ``--loo-rounds 2`` after ``--loo-rounds 1``
    runs leave-one-out's second round only and summarises both, under either plan."""
    out = tmp_path / "t6.jsonl"
    one, two = (Table6Plan(rounds=2, variants=table6_variants(loo_rounds=k)) for k in (1, 2))
    assert one.key != two.key and one.key in two.keys and two.key in one.keys
    assert Table6Plan(rounds=2, samples=64).key not in one.keys  # what a run measures still parts plans
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    kw: dict[str, Any] = {"weights_dir": tmp_path / "w", "say": lambda _: None, "floor": False}
    run_table6(one, out, str(tmp_path), **kw)
    calls.clear()
    records = run_table6(two, out, str(tmp_path), **kw)
    assert [c for c in calls if c != "build"] == ["mbq", "qig"]  # leave-one-out#1 and its MBQ, nothing else
    assert {r["round"] for r in records if r["label"] == "leave-one-out"} == {"leave-one-out#0", "leave-one-out#1"}
    def runs(rs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(r["plan_key"], r["round"], r["label"]) for r in rs]

    assert runs(read_records(out, one)) == runs(records)  # either plan reads both caps' runs
    assert summarise(one, records).row("leave-one-out").cpu_ratio.n == 2


def test_calls_running_some_rounds_or_some_rows_fill_one_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``rounds`` (``--round``) and ``labels`` (``--only``) run part of the plan, whose key stays whole:
    calls side by side on two cores fill the rounds, paired as if one call had run them."""
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=2)
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    kw: dict[str, Any] = {"weights_dir": tmp_path / "w", "say": lambda _: None, "floor": False}
    first = run_table6(plan, out, str(tmp_path), rounds=["1"], **kw)
    assert {r["round"] for r in first} == {"1"} and len(first) == 6
    some = run_table6(plan, out, str(tmp_path), rounds=["0"], labels=["qig"], **kw)
    assert [r["label"] for r in some if r["round"] == "0"] == ["qig"] and calls[-2:] == ["build", "qig"]
    calls.clear()
    both = run_table6(plan, out, str(tmp_path), **kw)
    assert len(both) == 12 and calls.count("qig") == 2  # not qig again: fast and leave-one-out are method qig
    summary = summarise(plan, both)
    assert summary.rounds_complete == 2 and summary.row("qig").cpu_ratio.median == pytest.approx(4.0)
    with pytest.raises(Table6Error, match=r"no round\(s\) \['7'\]"):
        run_table6(plan, out, str(tmp_path), say=lambda _: None, rounds=["7"])
    with pytest.raises(Table6Error, match=r"no row\(s\) \['qig\[steps=4\]'\]"):
        run_table6(plan, out, str(tmp_path), say=lambda _: None, labels=["qig[steps=4]"])


def test_a_round_cut_off_in_one_boot_reruns_whole_in_the_next(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One machine label can run at another speed after a reboot: a complete round stays, a round cut off
    reruns whole, and the summary never pairs a run with an MBQ of another boot."""
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=2)
    calls: list[str] = []
    _fake_runs(monkeypatch, calls)
    kw: dict[str, Any] = {"weights_dir": tmp_path / "w", "say": lambda _: None, "floor": False, "machine": "m"}
    run_table6(plan, out, str(tmp_path), rounds=["0"], boot="A", **kw)
    run_table6(plan, out, str(tmp_path), rounds=["1"], labels=["mbq", "gptq"], boot="A", **kw)  # then cut off
    calls.clear()
    records = run_table6(plan, out, str(tmp_path), boot="B", **kw)
    assert calls.count("mbq") == 1 and calls.count("gptq") == 1 and len(calls) == 1 + 6  # round 1 whole, on B
    assert {r["boot"] for r in records if r["round"] == "0"} == {"A"}
    summary = summarise(plan, records)
    assert summary.rounds_complete == 2 and summary.row("qig").cpu_ratio.n == 2
    assert summary.row("gptq").cpu_ratio.n == 3  # A's cut-off round 1 still pairs its own MBQ and GPTQ
    # had B stopped before its MBQ, its other rows would pair with nothing (A's round-1 MBQ is another boot)
    partial = [r for r in records if not (r["round"] == "1" and r["boot"] == "B" and r["label"] == "mbq")]
    assert summarise(plan, partial).row("qig").cpu_ratio.n == 1


def test_the_fast_variants_agreement_is_stored_and_outlives_the_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "t6.jsonl"
    plan = Table6Plan(rounds=2)
    _fake_runs(monkeypatch, [])
    fake = table6._child

    def with_weights(mode: str, request: Any, timeout: float | None) -> dict[str, Any]:
        if mode == "measure" and request.weights_out:
            Path(request.weights_out).write_text(request.method)  # what the child saves
        return fake(mode, request, timeout)

    monkeypatch.setattr(table6, "_child", with_weights)
    compared: list[tuple[str, str]] = []

    def agreement_of(ref: str, other: str) -> dict[str, float]:
        compared.append((Path(ref).name, Path(other).name))
        return {"spearman_min": 0.995, "spearman_mean": 0.999, "max_abs_dlambda": 4e-4, "max_lambda": 2.0}

    records = run_table6(plan, out, str(tmp_path), weights_dir=tmp_path / "w", say=lambda _: None, floor=False,
                         agreement_of=agreement_of)  # fmt: skip
    assert compared == [("qig-r0.pt", "qig_preset=fast_-r0.pt"), ("qig-r1.pt", "qig_preset=fast_-r1.pt")]
    stored = read_records(out, plan, "agreement")
    assert [a["round"] for a in stored] == ["0", "1"] and stored[0]["reference"] == "qig"
    for f in (tmp_path / "w").iterdir():
        f.unlink()  # a later session: the weights are gone, the records are not
    summary = summarise(plan, records, agreement_of=None, agreement_records=stored)
    assert summary.agreement["qig[preset=fast]"]["spearman_min"] == pytest.approx(0.995)
    statuses = {v.goal.name: v.status for v in summary.verdicts}
    assert statuses["fast_spearman_min"] == "met" and statuses["fast_max_dlambda"] == "met"


def _append_many(path: str, tag: int) -> None:
    for i in range(60):
        table6._append(Path(path), {"kind": "run", "tag": tag, "i": i, "pad": "x" * 20000})


def test_appends_from_processes_running_side_by_side_never_interleave(tmp_path: Path) -> None:
    import multiprocessing

    out = tmp_path / "t6.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(out), tag)) for tag in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = out.read_text().splitlines()
    assert len(lines) == 120 and all(json.loads(line)["pad"] == "x" * 20000 for line in lines)
