"""Table 6's summary: ratios to MBQ of the same round, median and range over rounds, the floor
arithmetic, the goals, and the Markdown / JSON it is written as.

The runs come from :mod:`qigbench.cost.table6` (``read_records``); a ratio pairs runs of one round,
one boot and one machine. The summary shows one machine's rounds (the one holding the most runs); a
row none of whose rounds ran there (leave-one-out's capped rounds, run in another session) is taken
whole from the machine that ran it, over that machine's own MBQ of the same round, and marked.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qigbench.cost.goals import Verdict, check
from qigbench.cost.paper import PAPER_TABLE6
from qigbench.cost.table6 import (
    FAST_VARIANT_IS_STAND_IN,
    STAND_IN_GAP,
    UNRECORDED,
    Table6Error,
    Table6Plan,
    boot_of,
    machine_of,
)

# -- summarising ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        vals = list(values)
        if not vals:
            raise Table6Error("no values to summarise")
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))

    def text(self, digits: int = 2) -> str:
        if self.n == 1:
            return f"{self.median:.{digits}f} (1 round)"
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Row:
    label: str
    paper_key: str | None
    cpu_ratio: Spread  # process CPU time / MBQ's of the same round
    wall_ratio: Spread
    cpu_seconds: Spread
    peak_ratio: float  # peak (RSS on CPU) / MBQ's, median over rounds
    working_ratio: float  # peak above the loaded model / MBQ's
    peak_bytes: float
    working_bytes: float
    mean_block_error: float
    phases: dict[str, float]  # median CPU seconds per timed phase
    #: where the row's rounds ran when not on the summary's machine (a row no round of which ran
    #: there, e.g. leave-one-out's one capped round, is taken with that machine's own MBQ); "" = there
    machine: str = ""


@dataclass(frozen=True)
class Summary:
    plan: Table6Plan
    rows: tuple[Row, ...]
    rounds_complete: int
    agreement: dict[str, dict[str, float]]  # label -> agreement with qig[steps=32] (Spearman, max |d-lambda|)
    verdicts: tuple[Verdict, ...]
    load_average: Spread | None
    floors: tuple[Floor, ...] = ()
    machine: str = UNRECORDED  # every run summarised ran here
    elsewhere: int = 0  # runs of this plan on other machines, left out

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)


@dataclass(frozen=True)
class Floor:
    """What a QIG row cannot cost less than, from the floor probe (process CPU seconds).

    ``points`` = sum over the probed groups of the points the provider evaluated x (forward of f +
    forward of f_q + one backward where taken), each group at the lower of its two timings (one call on
    every sample, or the provider's chunks; :attr:`qigbench.cost.qig_floor.GroupFloor.lowest`), so the
    exact shortcuts (one point for a linear group) stay in the floor;
    ``search`` = the groups' scale searches, each timed alone; ``rest`` = the part of MBQ's run that is
    neither its prepare pass, its token weights nor its searches (capture, propagation, block errors:
    work QIG does too). So the row's calibration costs at least ``points + search + rest``."""

    label: str
    points: float
    search: float
    rest: float
    groups: int
    measured_groups: float  # what the probed run spent on the same groups (target + attribution + search)

    @property
    def total(self) -> float:
        return self.points + self.search + self.rest


def floors_of(rows: Sequence[Row], floor_records: Sequence[dict[str, Any]]) -> tuple[Floor, ...]:
    """The floors, recomputed from each record's per-group timings and diagnostics (so a record stored
    before the floor counted shortcuts reads right), with the rest of the calibration taken from MBQ's
    measured phases."""
    from qigbench.cost.qig_floor import GroupFloor

    by_label = {r.label: r for r in rows}
    mbq = by_label.get("mbq")
    if mbq is None:
        return ()
    rest = mbq.cpu_seconds.median - sum(mbq.phases.get(p, 0.0) for p in ("prepare", "token_weights", "search"))
    floors = []
    for f in floor_records:
        groups = [GroupFloor.from_dict(g) for g in f["groups"]]
        search = sum(g.search for g in groups)
        floors.append(Floor(f["label"], sum(g.lowest for g in groups) - search, search, rest, len(groups),
                            f["groups_measured_cpu_seconds"]))  # fmt: skip
    return tuple(floors)


def _by_round(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """The runs of each round in each boot (a ratio pairs runs of one boot; the last run of a label wins)."""
    rounds: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        rounds.setdefault((str(r["round"]), boot_of(r)), {})[r["label"]] = r
    return rounds


def _paired(rounds: dict[tuple[str, str], dict[str, dict[str, Any]]], label: str) -> list[dict[str, dict[str, Any]]]:
    """The rounds holding ``label`` and MBQ; for MBQ's own row, the rounds it is the base of (not one
    whose other rows never ran), unless it is in no other."""
    paired = [runs for runs in rounds.values() if label in runs and "mbq" in runs]
    if label == "mbq" and any(len(runs) > 1 for runs in paired):
        paired = [runs for runs in paired if len(runs) > 1]
    return paired


def _machines_by_runs(records: Sequence[dict[str, Any]]) -> list[str]:
    """The machines of ``records``, the one holding the most runs first (ties: the one that ran last)."""
    counts: dict[str, int] = {}
    for r in records:
        counts[machine_of(r)] = counts.get(machine_of(r), 0) + 1
    last = {machine_of(r): i for i, r in enumerate(records)}
    return sorted(counts, key=lambda m: (counts[m], last[m]), reverse=True)


def main_machine(records: Sequence[dict[str, Any]]) -> str:
    """The machine holding the most runs (ties: the one that ran last)."""
    machines = _machines_by_runs(records)
    return machines[0] if machines else UNRECORDED


def summarise(
    plan: Table6Plan, records: Sequence[dict[str, Any]],
    agreement_of: Callable[[str, str], dict[str, float]] | None = None,
    floor_records: Sequence[dict[str, Any]] = (),
    agreement_records: Sequence[dict[str, Any]] = (),
    machine: str | None = None,
) -> Summary:  # fmt: skip
    """Per variant: ratios to MBQ of the same round (over every round holding both), median and range;
    ``floor_records``: the floor probe's (``kind == "floor"``) for the floor arithmetic;
    ``agreement_records``: the stored agreements (``kind == "agreement"``; the last one wins, else the
    saved weights are compared with ``agreement_of``). Only ``machine``'s records are summarised
    (default: the machine holding the most runs)."""
    machine = machine or main_machine(records)
    others = [r for r in records if machine_of(r) != machine]
    records = [r for r in records if machine_of(r) == machine]
    floor_records = [f for f in floor_records if machine_of(f) == machine]
    rounds = _by_round(records)
    borrowed: set[int] = set()  # other machines' runs some row is taken from
    rows = []
    for v in plan.variants:
        paired, row_machine = _paired(rounds, v.label), ""
        if not paired and v.label != "mbq":
            # never measured here: from the machine that measured it, each run over its own round's MBQ
            for other in _machines_by_runs(others):
                paired = _paired(_by_round([r for r in others if machine_of(r) == other]), v.label)
                if paired:
                    row_machine = other
                    borrowed |= {id(run) for p in paired for run in (p[v.label], p["mbq"])}
                    break
        if not paired:
            continue
        runs, bases = [p[v.label] for p in paired], [p["mbq"] for p in paired]
        pairs = list(zip(runs, bases, strict=True))
        phases = sorted({p for run in runs for p in run.get("phases", {})})
        rows.append(Row(
            label=v.label, paper_key=v.paper_key,
            cpu_ratio=Spread.of(a["cpu_seconds"] / b["cpu_seconds"] for a, b in pairs),
            wall_ratio=Spread.of(a["seconds"] / b["seconds"] for a, b in pairs),
            cpu_seconds=Spread.of(a["cpu_seconds"] for a in runs),
            peak_ratio=statistics.median(a["peak_bytes"] / b["peak_bytes"] for a, b in pairs),
            working_ratio=statistics.median(a["working_bytes"] / b["working_bytes"] for a, b in pairs),
            peak_bytes=statistics.median(a["peak_bytes"] for a in runs),
            working_bytes=statistics.median(a["working_bytes"] for a in runs),
            mean_block_error=statistics.median(a["mean_block_error"] for a in runs),
            phases={p: statistics.median(run["phases"].get(p, {}).get("cpu_seconds", 0.0) for run in runs)
                    for p in phases},
            machine=row_machine,
        ))  # fmt: skip
    elsewhere = sum(1 for r in others if id(r) not in borrowed)
    if not rows:
        raise Table6Error(f"no round with MBQ in it yet for plan {plan.key}")
    agreement: dict[str, dict[str, float]] = {}
    for a in agreement_records:
        if machine_of(a) == machine:
            agreement[a["label"]] = {k: v for k, v in a.items() if isinstance(v, float)}
    ref = plan.variants[1]  # qig at m = 32: the last run of it with weights is the reference
    ref_file = _last_weights(records, ref.label)
    if agreement_of is not None and ref_file:
        for v in plan.variants[2:]:
            other = _last_weights(records, v.label)
            if v.method == ref.method and other and v.label not in agreement:
                agreement[v.label] = agreement_of(ref_file, other)
    loads = [x for r in records for x in r.get("load_average", []) if x is not None]
    complete = sum(1 for runs in rounds.values() if all(v.label in runs for v in plan.variants
                                                          if v.max_rounds is None))  # fmt: skip
    summary = Summary(plan, tuple(rows), complete, agreement, (), Spread.of(loads) if loads else None,
                      floors_of(rows, floor_records), machine, elsewhere)  # fmt: skip
    return replace(summary, verdicts=tuple(table6_verdicts(summary)))


def _last_weights(records: Sequence[dict[str, Any]], label: str) -> str:
    files = [r["weights_file"] for r in records if r["label"] == label and r.get("weights_file")
             and Path(r["weights_file"]).exists()]  # fmt: skip
    return files[-1] if files else ""


def table6_verdicts(s: Summary) -> list[Verdict]:
    """The registered goals this reproduction measures (qigbench/cost/goals.py)."""
    regime = s.plan.regime()
    rows = {r.label: r for r in s.rows}
    labels = [v.label for v in s.plan.variants]
    if len(labels) < 6:
        return []  # a subset of the rows: no Table 6 goals
    qig, fast, loo, gptq, qig_gptq = (rows.get(labels[i]) for i in (1, 2, 3, 4, 5))
    out = []
    if qig:
        out += [check("qig_time_vs_mbq", qig.cpu_ratio.median, regime),
                check("qig_peak_vs_mbq", qig.peak_ratio, regime)]
    if fast:
        out.append(check("qig_fast_time_vs_mbq", fast.cpu_ratio.median, regime))
    if loo:
        out.append(check("loo_time_vs_mbq", loo.cpu_ratio.median, regime))
    if gptq and qig_gptq:
        out += [check("qig_gptq_time_vs_gptq", qig_gptq.cpu_ratio.median / gptq.cpu_ratio.median, regime),
                check("qig_gptq_peak_vs_gptq", qig_gptq.peak_ratio / gptq.peak_ratio, regime)]
    if not (qig and fast):
        return out
    stand_in = STAND_IN_GAP if FAST_VARIANT_IS_STAND_IN and fast.label.endswith("(fast, stand-in)") else None
    agree = s.agreement.get(fast.label)
    if agree:
        out.append(check("fast_spearman_min", agree["spearman_min"], regime, gap=stand_in))
        out.append(check("fast_max_dlambda", agree["max_abs_dlambda"], regime, gap=stand_in))
    if qig.mean_block_error > 0:
        delta = fast.mean_block_error / qig.mean_block_error - 1
        out.append(check("fast_block_error_delta", delta, regime, gap=stand_in))
    return out


# -- rendering -----------------------------------------------------------------------------------


def paper_ratio(key: str | None, model: str = "internvl2-8b") -> str:
    if key is None:
        return "—"
    paper = PAPER_TABLE6[model]
    return f"{paper[key]:.2f} ({paper[key] / paper['mbq']:.3f})"


def format_summary(s: Summary, machine: str | None = None) -> str:
    """Markdown: the measured ratios beside the paper's GPU-hours, then the goals.

    ``machine``: the machine in words where the runs are not stamped with one (records before stamping)."""
    machine = s.machine if s.machine != UNRECORDED else (machine or UNRECORDED)
    gib = 2**30
    p = s.plan
    peak = "peak RSS" if p.device == "cpu" else "peak allocated"
    lines = [
        f"Table 6 at real width: {p.regime()}; {s.rounds_complete} complete interleaved round(s); machine: {machine}"
        + (f", load average {s.load_average.text(1)} while it ran" if s.load_average else ""),
        "",
        f"| method | rounds | CPU time / MBQ, median [range] | wall / MBQ | CPU s (median) | {peak} / MBQ | working "
        f"memory / MBQ | {peak} GiB | working GiB | mean block error | paper GPU-h InternVL2-8B (/ MBQ) | "
        "InternVL2-26B |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s.rows:
        lines.append(
            f"| {r.label}{' (*)' if r.machine else ''} | {r.cpu_ratio.n} | {r.cpu_ratio.text()} | "
            f"{r.wall_ratio.text()} | "
            f"{r.cpu_seconds.median:.0f} | {r.peak_ratio:.2f} | {r.working_ratio:.2f} | {r.peak_bytes / gib:.2f} | "
            f"{r.working_bytes / gib:.2f} | "
            f"{r.mean_block_error:.4g} | {paper_ratio(r.paper_key)} | {paper_ratio(r.paper_key, 'internvl2-26b')} |"
        )
    for r in s.rows:
        if r.machine:
            lines += ["", f"(*) {r.label}: no round of it ran on {machine}; its ratios are to MBQ of the same "
                      f"round on {r.machine}, where it ran (its other columns are that machine's too)"]
    missing = [v.label for v in p.variants if v.label not in {r.label for r in s.rows}]
    if missing:
        lines += ["", f"not measured yet: {', '.join(missing)}"]
    if s.elsewhere:
        lines += ["", f"{s.elsewhere} run(s) of this plan on other machines are left out (a ratio pairs runs of "
                  "one machine; a row is taken from another machine only where none of it ran here)"]
    if s.agreement:
        ref = p.variants[1].label
        lines += ["", f"Token weights against {ref} (last runs, per sample over non-padding tokens):", ""]
        for label, a in s.agreement.items():
            lines.append(f"- {label}: Spearman mean {a['spearman_mean']:.4f}, min {a['spearman_min']:.4f}; "
                         f"max |d-lambda| {a['max_abs_dlambda']:.2e} (max lambda {a['max_lambda']:.2e})")
    phase_rows = [r for r in s.rows if any(v > 0 for v in r.phases.values())]
    if phase_rows:
        names = sorted({k for r in phase_rows for k, v in r.phases.items() if v > 0})
        lines += ["", "Where the CPU time goes (median CPU s per run, phases timed from outside the engine; "
                  "token_weights contains provider):", "",
                  "| method | total | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for r in phase_rows:
            lines.append(f"| {r.label} | {r.cpu_seconds.median:.0f} | "
                         + " | ".join(f"{r.phases.get(n, 0.0):.0f}" for n in names) + " |")
    if s.floors and any(r.label == "mbq" for r in s.rows):
        mbq = s.row("mbq").cpu_seconds.median
        lines += ["", "Floor (the QIG floor probe; process CPU s): what each QIG row's work costs with no overhead "
                  "(each group's evaluated path points, exact shortcuts counted as taken, at the lower of its "
                  "whole-batch and chunked timings; each piece timed alone, so a run can come within a few "
                  "percent below it)", "",
                  "| method | groups | evaluated points x (f + f_q + backward) | searches | "
                  "rest of the run (from MBQ's) | floor | floor / MBQ | measured / MBQ | "
                  "spent on the groups / their floor |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for f in s.floors:
            measured = next((r.cpu_ratio.text() for r in s.rows if r.label == f.label), "—")
            group_floor = f.points + f.search
            lines.append(f"| {f.label} | {f.groups} | {f.points:.0f} | {f.search:.0f} | {f.rest:.0f} | {f.total:.0f} | "
                         f"{f.total / mbq:.2f} | {measured} | "
                         f"{f.measured_groups / group_floor if group_floor else float('nan'):.2f} |")
    if s.verdicts:
        lines += ["", "Goals (qigbench/cost/goals.py):", ""] + [f"- {v.line}" for v in s.verdicts]
    return "\n".join(lines)


def summary_json(s: Summary) -> dict[str, Any]:
    return {
        "plan": asdict(s.plan), "plan_key": s.plan.key, "rounds_complete": s.rounds_complete,
        "rows": [asdict(r) for r in s.rows], "agreement": s.agreement,
        "verdicts": [{"goal": v.goal.name, "value": v.value, "status": v.status, "line": v.line} for v in s.verdicts],
        "load_average": asdict(s.load_average) if s.load_average else None,
        "floors": [{**asdict(f), "total": f.total} for f in s.floors],
        "machine": s.machine, "runs_on_other_machines": s.elsewhere,
    }  # fmt: skip
