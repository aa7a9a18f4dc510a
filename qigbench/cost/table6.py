"""Table 6 reproduced at a real width: interleaved rounds of every compared method, ratios to MBQ.

The paper's Table 6 gives calibration GPU-hours on one A800 for MBQ, leave-one-out and QIG. This
module measures the same comparison where the numbers mean something: on ``shape:qwen2vl-7b`` at
width 1/4 or wider (a narrowed shape makes MBQ's fixed vision pass dominate and flatters QIG: QIG's
time grows about as width^1.07, MBQ's as width^0.77), at the real 448 x 448 resolution, with
``>= 3`` rounds, each round running every method once (in a rotated order) in a fresh process
(:mod:`qigbench.cost.isolated`). Each run's raw numbers are appended to a JSONL file as soon as it
finishes; a rerun with the same plan skips what the file already holds, so an interrupted run
loses at most the calibration in flight.

Ratios are taken within a round (t_method / t_mbq of the same round), then summarised over rounds
as median and range: the machine's load moves between rounds, not within one pair as much.

Every record names the machine it ran on (CPU model, cores, memory; the GPU on cuda). A round is
measured on one machine: a rerun on another machine runs the whole round again there (the other
machine's runs stay in the file, unpaired), and a summary shows one machine's rounds, never ratios
of runs from two. A row none of whose rounds ran on that machine (leave-one-out's one capped round,
run in another session) is taken whole from the machine that ran it, over that machine's own MBQ of
the same round, and marked with it. Several processes may run disjoint rounds into one file at once (``rounds=``;
appends are locked), e.g. one per core.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from qigbench.cost.goals import Verdict, check
from qigbench.cost.isolated import ALLOCATOR_ENV, IsolatedRequest, floor_probe_available
from qigbench.cost.paper import PAPER_TABLE6
from qigbench.errors import QigbenchError

#: The paper's QIG: m = 32 path points (App. B), QIG's default; spelt out so the plan states the setting
#: (the stored config, and so the label ``qig``, are the same as the default's).
PAPER_QIG: tuple[tuple[str, str], ...] = (("qig.steps", "32"),)
#: The fast variant (issue 19: the cheapest setting whose token weights agree with m = 32).
#: The named variant ``qig[preset=fast]`` (qigbench.sensitivity.qig_provider: 8-node Gauss-Legendre in
#: weight-only formats, m = 32 on flat groups and in weight-activation ones; docs/method_defaults.md
#: has its agreement).
FAST_VARIANT: tuple[tuple[str, str], ...] = (("qig.preset", "fast"),)
FAST_VARIANT_IS_STAND_IN = False
STAND_IN_GAP = ("measured on the stand-in qig.steps=4, not the fast variant issue 19's method side chooses "
                "to meet this goal (branch i19-method)")



class Table6Error(QigbenchError):
    """A plan that cannot run, or a results file that belongs to another plan."""


@dataclass(frozen=True)
class Variant:
    label: str  # the row's name in the table (a variant's label says its setting)
    method: str
    options: tuple[tuple[str, str], ...] = ()
    #: which of the paper's Table 6 columns this row is (None: not in the paper's table)
    paper_key: str | None = None
    #: at most this many rounds (None: every round). A capped variant (leave-one-out: hours a run on a
    #: CPU) runs after the plan's rounds, each run in a round of its own with a fresh MBQ run beside it
    max_rounds: int | None = None


def table6_variants(
    fast: tuple[tuple[str, str], ...] = FAST_VARIANT, loo_rounds: int | None = None
) -> tuple[Variant, ...]:
    """MBQ, QIG (m = 32), the fast variant, leave-one-out, GPTQ, QIG+GPTQ (m = 32); MBQ first (the base).

    ``loo_rounds``: cap leave-one-out's rounds (on a CPU one run at a real width takes hours)."""
    fast_label = "qig[" + ",".join(f"{k.removeprefix('qig.')}={v}" for k, v in fast) + "]"
    return (
        Variant("mbq", "mbq", (), "mbq"),
        Variant("qig", "qig", PAPER_QIG, "qig"),
        Variant(fast_label + (" (fast, stand-in)" if FAST_VARIANT_IS_STAND_IN else ""), "qig", fast),
        Variant("leave-one-out", "qig", (("sensitivity", "leave_one_out"),), "leave_one_out", max_rounds=loo_rounds),
        Variant("gptq", "gptq"),
        Variant("qig-gptq", "qig-gptq", PAPER_QIG),
    )


@dataclass(frozen=True)
class Table6Plan:
    """What one reproduction measures; every field but ``rounds`` is in the results file's plan key."""

    model: str = "shape:qwen2vl-7b@2+vision=2+width=4"
    format: str = "W3A16"
    samples: int = 32
    batch_size: int = 4
    image_size: int = 448
    rounds: int = 3
    device: str = "cpu"
    dtype: str = "auto"
    seed: int = 0
    threads: int = 1
    memory_budget: str | None = None
    variants: tuple[Variant, ...] = field(default_factory=table6_variants)

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.samples < 1:
            raise Table6Error(f"rounds and samples must be >= 1 (got {self.rounds}, {self.samples})")
        labels = [v.label for v in self.variants]
        if not labels or labels[0] != "mbq" or self.variants[0].method != "mbq":
            raise Table6Error("the first variant must be plain mbq: every ratio is to MBQ of the same round")
        if len(set(labels)) != len(labels):
            raise Table6Error(f"variant labels must be unique: {labels}")

    @property
    def key(self) -> str:
        plain = {k: v for k, v in asdict(self).items() if k != "rounds"}
        return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:12]

    def request(self, variant: Variant, cache_dir: str | None, weights_out: str = "") -> IsolatedRequest:
        return IsolatedRequest(
            model=self.model, method=variant.method, options=variant.options, format=self.format,
            samples=self.samples, batch_size=self.batch_size, image_size=self.image_size, device=self.device,
            dtype=self.dtype, seed=self.seed, cache_dir=cache_dir, threads=self.threads,
            memory_budget=self.memory_budget, weights_out=weights_out,
        )

    def regime(self) -> str:
        """The setting in words, printed next to every number."""
        return (f"{self.model}, {self.samples} samples at {self.image_size}x{self.image_size}, {self.format}, "
                f"{self.device}" + (f" ({self.threads} thread{'s' if self.threads > 1 else ''})"
                                    if self.device == "cpu" else ""))


def round_order(variants: Sequence[Variant], round_index: int) -> list[Variant]:
    """Round r runs the variants rotated by r, so no method always runs first (cold caches) or last."""
    k = round_index % len(variants)
    return [*variants[k:], *variants[:k]]


def schedule(plan: Table6Plan) -> list[tuple[str, Variant]]:
    """Every (round id, variant) of the plan, in running order: the plan's rounds ``"0"``, ``"1"``, ...
    (rotated), each with every uncapped variant; then one round of its own per capped run
    (``"leave-one-out#0"``), with MBQ beside it, so its ratio is to an MBQ measured next to it, not
    hours before. Round ids never shift when ``rounds`` grows, so a longer rerun extends the file."""
    free = [v for v in plan.variants if v.max_rounds is None]
    capped = [v for v in plan.variants if v.max_rounds is not None]
    order = [(str(r), v) for r in range(plan.rounds) for v in round_order(free, r)]
    for v in capped:
        for j in range(min(v.max_rounds or 0, plan.rounds)):
            order += [(f"{v.label}#{j}", plan.variants[0]), (f"{v.label}#{j}", v)]
    return order


# -- running -------------------------------------------------------------------------------------


UNRECORDED = "unrecorded machine"


def machine_of(record: dict[str, Any]) -> str:
    return str(record.get("machine") or UNRECORDED)


def boot_of(record: dict[str, Any]) -> str:
    """The boot a record was written in ("" for records written before runs named their boot)."""
    return str(record.get("boot") or "")


def this_boot() -> str:
    """This boot of this machine (the kernel's boot id; "" where there is none). A VM under the same
    machine label can run 1.3-1.5x slower in one session than in another (measured at stops 26 and 27),
    so a round is paired within one boot: a round cut off by a session's end reruns whole."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def this_machine(device: str) -> str:
    """The machine a run here is stamped with (qigbench.cost.table.machine_label)."""
    from qigbench.cost.table import machine_label

    return machine_label(device)


def read_records(path: Path, plan: Table6Plan, kind: str = "run") -> list[dict[str, Any]]:
    """The ``kind`` records (``run``, ``failure``, ``floor``, ``agreement``) of ``plan`` in a results file
    (other plans' are left alone)."""
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # only the last line can be cut short by an interruption; anything else is damage
            if n == len(path.read_text().splitlines()):
                continue
            raise Table6Error(
                f"{path}:{n} is not JSON; the results file is damaged (move it away to start over)"
            ) from None
        if record.get("plan_key") == plan.key and record.get("kind") == kind:
            records.append(record)
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # processes running other rounds append to the same file
        try:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _child(mode: str, request: IsolatedRequest, timeout: float | None) -> dict[str, Any]:
    env = {**os.environ, **ALLOCATOR_ENV}
    if request.device == "cpu":
        env["OMP_NUM_THREADS"] = str(request.threads)
    done = subprocess.run(
        [sys.executable, "-m", "qigbench.cost.isolated", mode], input=request.to_json(), capture_output=True,
        text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        why = " (killed: out of memory?)" if done.returncode == -9 else ""
        raise Table6Error(f"{request.method} {dict(request.options)} ({mode}) failed with exit code "
                          f"{done.returncode}{why}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_table6(
    plan: Table6Plan,
    out: Path,
    cache_dir: str | None = None,
    weights_dir: Path | None = None,
    timeout: float | None = None,
    say: Callable[[str], None] = print,
    floor: bool = True,
    rounds: Collection[str] | None = None,
    machine: str | None = None,
    agreement_of: Callable[[str, str], dict[str, float]] | None = None,
    labels: Collection[str] | None = None,
    boot: str | None = None,
) -> list[dict[str, Any]]:
    """Run every round of ``plan`` not yet in ``out`` on this machine (JSONL, appended run by run) and
    return all its records.

    ``weights_dir``: where each run's token weights are saved (for the agreement of the fast variant
    with m = 32); default: next to the cache, never in the repository. Once a round holds both, their
    agreement is appended as a record (``agreement_of``, default :func:`file_agreement`), so it outlives
    the weights. ``floor``: then, once, probe QIG's floor (m = 32 and the fast variant) on the same
    inputs, where the probe is installed. ``rounds``: run only these round ids (``"0"``,
    ``"leave-one-out#0"``; default all), e.g. one process per core on disjoint rounds.
    ``machine``: what the records are stamped with (default :func:`this_machine`). ``labels``: run only
    these rows (the plan, and so its key and pairing, stay whole), e.g. two processes finishing one round
    on two cores. ``boot`` (default :func:`this_boot`): a round not complete in one boot counts only this
    boot's runs, so it reruns whole here rather than pair runs of two sessions.
    """
    machine = machine or this_machine(plan.device)
    boot = this_boot() if boot is None else boot
    agreement_of = agreement_of or file_agreement
    done = read_records(out, plan)
    have = _have(plan, done, machine, boot)
    weights_dir = weights_dir or Path(cache_dir or os.environ.get("QIGBENCH_CACHE") or "/tmp") / "table6" / plan.key
    weights_dir.mkdir(parents=True, exist_ok=True)
    planned = schedule(plan)
    if rounds is not None:
        unknown = set(rounds) - {r for r, _ in planned}
        if unknown:
            raise Table6Error(f"no round(s) {sorted(unknown)} in this plan; its rounds are "
                              f"{sorted({r for r, _ in planned})}")  # fmt: skip
        planned = [(r, v) for r, v in planned if r in rounds]
    if labels is not None:
        unknown = set(labels) - {v.label for v in plan.variants}
        if unknown:
            raise Table6Error(f"no row(s) {sorted(unknown)} in this plan; its rows are "
                              f"{[v.label for v in plan.variants]}")  # fmt: skip
        planned = [(r, v) for r, v in planned if v.label in labels]
    todo = [(r, v) for r, v in planned if (r, v.label) not in have]
    floors = _floor_todo(plan, out, machine) if floor else []
    if not todo and not floors:
        return done
    elsewhere = len({(r["round"], r["label"]) for r in done}) - len(have)
    say(f"table6 {plan.key}: {len(todo)} calibrations to run ({len(have)} already in {out} from this machine"
        + (f", {elsewhere} from other machines, not paired with these" if elsewhere > 0 else "")
        + f"); {plan.regime()}; machine: {machine}")
    built = _child("build", plan.request(plan.variants[0], cache_dir), timeout)
    say(f"  model {built['model_dir']}")
    for i, (r, variant) in enumerate(todo, 1):
        weights = weights_dir / f"{_slug(variant.label)}-r{_slug(r)}.pt"
        request = plan.request(variant, cache_dir, str(weights) if variant.method != "gptq" else "")
        try:
            result = _child("measure", request, timeout)
        except (Table6Error, subprocess.TimeoutExpired) as err:
            # recorded and skipped: the other runs go on, and a rerun tries this one again
            _append(out, {"kind": "failure", "plan_key": plan.key, "round": r, "label": variant.label,
                          "machine": machine, "boot": boot, "error": str(err)[-4000:]})  # fmt: skip
            first = str(err).splitlines()[0]
            say(f"  [{i}/{len(todo)}] round {r} {variant.label}: FAILED ({first}); a rerun retries it")
            continue
        record = {"kind": "run", "plan_key": plan.key, "plan": asdict(plan), "round": r, "label": variant.label,
                  "machine": machine, "boot": boot, "weights_file": str(weights) if request.weights_out else "",
                  **result}
        _append(out, record)
        done.append(record)
        say(f"  [{i}/{len(todo)}] round {r} {variant.label}: {result['cpu_seconds']:.1f} CPU s, "
            f"{result['seconds']:.1f} s wall, peak {result['peak_bytes'] / 2**30:.2f} GiB, "
            f"load {result['load_average'][0]}")
        agreed = _record_agreement(plan, out, done, r, machine, agreement_of, boot)
        if agreed:
            say(f"  round {r} {agreed['label']} vs {plan.variants[1].label}: Spearman min "
                f"{agreed['spearman_min']:.4f}, max |d-lambda| {agreed['max_abs_dlambda']:.2e}")
    for variant in floors:
        try:
            result = _child("floor", plan.request(variant, cache_dir), timeout)
        except (Table6Error, subprocess.TimeoutExpired) as err:
            say(f"  floor probe {variant.label}: FAILED ({str(err).splitlines()[0]})")
            continue
        _append(out, {"kind": "floor", "plan_key": plan.key, "label": variant.label, "machine": machine,
                      "boot": boot, **result})
        say(f"  floor probe {variant.label}: floor {result['floor_cpu_seconds']:.1f} CPU s over its groups "
            f"(spent {result['groups_measured_cpu_seconds']:.1f})")
    return done


def _record_agreement(
    plan: Table6Plan, out: Path, records: Sequence[dict[str, Any]], round_id: str, machine: str,
    agreement_of: Callable[[str, str], dict[str, float]], boot: str = "",
) -> dict[str, Any] | None:  # fmt: skip
    """Once round ``round_id`` holds the fast variant's and m = 32's token weights, append their agreement
    (the weights live outside the repository; the record is what a later summary reads)."""
    ref, fast = plan.variants[1], plan.variants[2] if len(plan.variants) > 2 else None
    if fast is None or fast.method != ref.method or "sensitivity" in dict(fast.options):
        return None
    runs = {r["label"]: r for r in records
            if r["round"] == round_id and machine_of(r) == machine and boot_of(r) == boot}  # fmt: skip
    files = [runs.get(v.label, {}).get("weights_file", "") for v in (ref, fast)]
    if not all(f and Path(f).exists() for f in files):
        return None
    have = {(a["round"], machine_of(a)) for a in read_records(out, plan, "agreement") if a["label"] == fast.label}
    if (round_id, machine) in have:
        return None
    agreed = {"kind": "agreement", "plan_key": plan.key, "round": round_id, "label": fast.label,
              "reference": ref.label, "machine": machine, "boot": boot,
              **agreement_of(files[0], files[1])}  # fmt: skip
    _append(out, agreed)
    return agreed


def _have(plan: Table6Plan, done: Sequence[dict[str, Any]], machine: str, boot: str) -> set[tuple[str, str]]:
    """(round, label) already measured on ``machine``: every run of a round complete within one boot, and
    this boot's runs of the others."""
    wanted: dict[str, set[str]] = {}
    for round_id, v in schedule(plan):
        wanted.setdefault(round_id, set()).add(v.label)
    groups: dict[tuple[str, str], set[str]] = {}
    mine = [r for r in done if machine_of(r) == machine]
    for rec in mine:
        groups.setdefault((str(rec["round"]), boot_of(rec)), set()).add(rec["label"])
    complete = {rnd for (rnd, _), labels in groups.items() if rnd in wanted and wanted[rnd] <= labels}
    return {(r["round"], r["label"]) for r in mine if str(r["round"]) in complete or boot_of(r) == boot}


def floor_variants(plan: Table6Plan) -> list[Variant]:
    """The rows whose floor is probed: QIG at m = 32 and the fast variant (QIG-weighted scale searches)."""
    return [v for v in plan.variants[1:3] if v.method == "qig" and "sensitivity" not in dict(v.options)]


def _floor_todo(plan: Table6Plan, out: Path, machine: str) -> list[Variant]:
    if not floor_probe_available():
        return []
    have = {r["label"] for r in read_records(out, plan, "floor") if machine_of(r) == machine}
    return [v for v in floor_variants(plan) if v.label not in have]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-=." else "_" for c in label)


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


def file_agreement(ref_file: str, other_file: str) -> dict[str, float]:
    """Token-weight agreement of two saved runs (per sample over non-padding tokens)."""
    import torch

    from qigbench.cost.agreement import agreement

    return agreement(torch.load(ref_file), torch.load(other_file))


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
            f"| {r.label}{' (*)' if r.machine else ''} | {r.cpu_ratio.n} | {r.cpu_ratio.text()} | {r.wall_ratio.text()} | "
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


def load_plan(path: Path) -> Table6Plan:
    """The plan stored in a results file's first run record (to summarise a file without its flags)."""
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "run":
            data = dict(record["plan"])
            data["variants"] = tuple(Variant(**{**v, "options": tuple(tuple(o) for o in v["options"])})
                                     for v in data["variants"])  # fmt: skip
            return Table6Plan(**data)
    raise Table6Error(f"{path} holds no run record")
