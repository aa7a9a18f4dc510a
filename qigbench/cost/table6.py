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
of runs from two (:mod:`qigbench.cost.table6_summary` summarises them). Several processes may run
disjoint rounds into one file at once (``rounds=``; appends are locked), e.g. one per core.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from qigbench.cost.isolated import ALLOCATOR_ENV, IsolatedRequest, floor_probe_available
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
    """What one reproduction measures; every field but ``rounds`` is in the results file's plan key
    (a variant's cap on its rounds is too, but files written under another cap hold the same plan's
    runs and are read as this plan's: :attr:`keys`)."""

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

    @property
    def keys(self) -> frozenset[str]:
        """This plan's key and the keys of the same plan under every other cap on the capped
        variants' rounds (none, 1 .. ``rounds``): a cap says how many rounds run, not what one
        measures, so ``--loo-rounds 3`` extends the runs of ``--loo-rounds 1``."""
        capped = [i for i, v in enumerate(self.variants) if v.max_rounds is not None]
        keys = {self.key}
        for caps in itertools.product([None, *range(1, self.rounds + 1)], repeat=len(capped)):
            variants = list(self.variants)
            for i, cap in zip(capped, caps, strict=True):
                variants[i] = replace(variants[i], max_rounds=cap)
            keys.add(replace(self, variants=tuple(variants)).key)
        return frozenset(keys)

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
    (other plans' are left alone; the same plan under another cap on a variant's rounds is this one's)."""
    if not path.exists():
        return []
    keys = plan.keys
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
        if record.get("plan_key") in keys and record.get("kind") == kind:
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


def file_agreement(ref_file: str, other_file: str) -> dict[str, float]:
    """Token-weight agreement of two saved runs (per sample over non-padding tokens)."""
    import torch

    from qigbench.cost.agreement import agreement

    return agreement(torch.load(ref_file), torch.load(other_file))


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
