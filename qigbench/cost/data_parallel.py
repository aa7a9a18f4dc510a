"""What data-parallel calibration buys: peak working memory per rank and calibration time, N ranks
against one process, each with one thread (a benchmark, not a timed test).

    python -m qigbench.cost.data_parallel --model shape:qwen2vl-7b@2+vision=1+width=4 \\
        --method gptq --method awq --method mbq --method qig --samples 32 --ranks 2 --json out.json

For every method the driver runs, one after the other (A then B, so both see the same machine;
``--rounds R`` repeats the pair and keeps each variant's least disturbed round, the smallest
CPU time): one process (``worker``), then ``torchrun --nproc-per-node N ... worker``. Each worker
loads the model and the calibration set, then measures only ``engine.calibrate``: its wall time,
its process CPU time, its *activation memory* -- the engine's ``activation_bytes``, the peak bytes
of the calibration activations a block's work holds (streams, recorded calls and inputs, counted
from the tensors: :mod:`qigbench.engine.held`), which is what sharing the samples divides -- and
its *working memory* -- the peak resident set during calibration minus the resident set before it
(the loaded model and the calibration inputs, which every rank holds whole), which adds what no
number of ranks divides (solver temporaries, Hessians, a batch's gradient pre-pass). The workers
run with ``MALLOC_MMAP_THRESHOLD_=131072``: glibc then maps every large block and returns it when
freed, so the resident set follows live memory (by default it keeps freed large blocks for reuse,
and a peak would count whatever an earlier phase left). The driver samples the machine's load
average while each run goes.

On a shared CPU box wall time says more about the neighbours than about the code, so the table
puts the **critical path in CPU time** beside it: the slowest rank's CPU seconds against the one
process's (the ranks wait for each other at every collective, so the slowest rank bounds the
run; with a free core per rank, wall time follows it). On a GPU the same driver measures device
memory (``max_memory_allocated``) instead of the resident set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the goals (qigbench/cost/goals.py) the table's ratios are checked against
GOAL_ACTIVATIONS = "dp_activation_memory"
GOAL_WORKING = "dp_working_memory"
GOAL_TIME = "dp_time"


def _worker(args: argparse.Namespace) -> int:
    import torch

    from qigbench import parallel
    from qigbench.cost.probes import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    from qigbench.data.defaults import default_calibration
    from qigbench.engine.held import STAT
    from qigbench.engine.method import get_method
    from qigbench.engine.run import EngineConfig, calibrate
    from qigbench.memory import parse_bytes
    from qigbench.models.loading import load_model
    from qigbench.pipeline import QuantizeRequest, calibration_batches

    torch.set_num_threads(args.threads)
    world = parallel.init_from_env(args.device)
    device = parallel.rank_device(args.device)
    options = tuple(tuple(o.split("=", 1)) for o in args.option)
    request = QuantizeRequest(model=args.model, method=args.method, format=args.format, options=options,  # type: ignore[arg-type]
                              samples=args.samples, batch_size=args.batch_size, device=device,
                              cache_dir=args.cache_dir, progress=False, memory_budget=args.memory_budget)
    method = get_method(request.method, dict(request.options))
    with parallel.main_first():
        loaded = load_model(request.model, dtype=request.torch_dtype(), device="cpu", cache_dir=args.cache_dir)
        if loaded.family.multimodal:
            calib = default_calibration(loaded, args.cache_dir, n=max(128, args.samples), seed=0,
                                        image_size=args.image_size)
            request = dataclasses.replace(request, calib=str(calib))
        batches, _ = calibration_batches(request, loaded, method)
    on_cuda = torch.device(device).type == "cuda"
    parallel.barrier()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = current_rss_bytes()
        reset_peak_rss()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    config = EngineConfig(device=device, progress=False, memory_budget=parse_bytes(args.memory_budget))
    report = calibrate(loaded.model, loaded.family, batches, method, request.quant_format, config)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    peak = torch.cuda.max_memory_allocated(device) if on_cuda else peak_rss_bytes()
    mine = {"rank": world.rank, "cpu_seconds": cpu, "wall_seconds": wall, "before_bytes": before,
            "peak_bytes": peak, "working_bytes": max(peak - before, 0),
            "activation_bytes": max((int(b.get(STAT, 0)) for b in report.blocks), default=0),
            "samples": sum(int(b.token_types.shape[0]) for b in batches) if world.size == 1
            else report.parallel.get("samples_per_rank", [0] * world.size)[world.rank],
            "mean_block_error": report.mean_block_error}
    ranks = parallel.gather_objects(mine)
    if world.is_main:
        Path(args.out).write_text(json.dumps({"ranks": ranks, "world_size": world.size,
                                              "backend": world.backend}, indent=1))
    parallel.shutdown()
    return 0


class LoadSampler:
    """The 1-minute load average, sampled every second while a run goes."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


@dataclass
class Run:
    """One launch: its ranks' numbers, the launch's wall time and the load while it ran."""

    ranks: list[dict[str, Any]]
    launch_seconds: float
    load: float
    world_size: int

    @property
    def cpu_critical(self) -> float:
        return max(r["cpu_seconds"] for r in self.ranks)

    @property
    def wall(self) -> float:
        return max(r["wall_seconds"] for r in self.ranks)

    @property
    def working(self) -> int:
        return max(r["working_bytes"] for r in self.ranks)

    @property
    def activations(self) -> int:
        return max(int(r.get("activation_bytes", 0)) for r in self.ranks)


@dataclass
class Row:
    method: str
    one: Run
    many: Run
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, float]:
        return {GOAL_ACTIVATIONS: self.many.activations / max(self.one.activations, 1),
                GOAL_WORKING: self.many.working / max(self.one.working, 1),
                GOAL_TIME: self.many.cpu_critical / max(self.one.cpu_critical, 1e-9)}

    def line(self) -> str:
        from qigbench.cost.goals import check

        gib, mib = 2**30, 2**20
        ratios = self.ratios()
        act, work, cpu = (ratios[g] for g in (GOAL_ACTIVATIONS, GOAL_WORKING, GOAL_TIME))
        wall = self.many.wall / max(self.one.wall, 1e-9)

        def ok(goal: str) -> str:
            verdict = check(goal, ratios[goal])
            return "yes" if verdict.met else "**no**"

        return (f"| {self.method} | {self.one.activations / mib:.0f} | {self.many.activations / mib:.0f} | "
                f"{act:.2f}x ({ok(GOAL_ACTIVATIONS)}) | {self.one.working / gib:.2f} | {self.many.working / gib:.2f} | "
                f"{work:.2f}x | {self.one.cpu_critical:.0f} | {self.many.cpu_critical:.0f} | {cpu:.2f}x "
                f"({ok(GOAL_TIME)}) | {self.one.wall:.0f} | {self.many.wall:.0f} | {wall:.2f}x | "
                f"{self.one.load:.1f} / {self.many.load:.1f} |")


def _header() -> str:
    from qigbench.cost.goals import get_goal

    act, time_ = get_goal(GOAL_ACTIVATIONS).goal_text(), get_goal(GOAL_TIME).goal_text()
    return (
        "| method | activation MiB, 1 process | activation MiB per rank, max | activation ratio "
        f"({act}) | working GiB, 1 process | working GiB per rank, max | working-set ratio (no goal) | "
        f"CPU s, 1 process | CPU s, slowest rank | CPU critical-path ratio ({time_}) | wall s, 1 process | "
        "wall s, N ranks | wall ratio | load avg (1 / N) |\n|" + "---|" * 14
    )


def _launch(argv: list[str], ranks: int, out: Path, env: dict[str, str]) -> Run:
    if ranks == 1:
        cmd = [sys.executable, "-m", "qigbench.cost.data_parallel", "worker", *argv, "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m",
               "qigbench.cost.data_parallel", "worker", *argv, "--out", str(out)]
    start = time.perf_counter()
    with LoadSampler() as load:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    data = json.loads(out.read_text())
    return Run(data["ranks"], time.perf_counter() - start, load.mean, data["world_size"])


def _least_disturbed(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.cpu_critical)


def _driver(args: argparse.Namespace) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "131072"}
    common = ["--model", args.model, "--format", args.format, "--samples", str(args.samples),
              "--batch-size", str(args.batch_size), "--device", args.device, "--image-size", str(args.image_size),
              "--threads", str(args.threads)]
    for opt in args.option:
        common += ["--option", opt]
    if args.cache_dir:
        common += ["--cache-dir", args.cache_dir]
    if args.memory_budget:
        common += ["--memory-budget", args.memory_budget]
    folder = Path(args.work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in args.method:  # NAME or NAME:KEY=VALUE,KEY=VALUE (options of that method only)
        method, _, own = entry.partition(":")
        argv = [*common, "--method", method, *[a for o in own.split(",") if o for a in ("--option", o)]]
        ones, manys = [], []
        for r in range(args.rounds):  # A, B, A, B ...
            ones.append(_launch(argv, 1, folder / f"{method}-1-r{r}.json", env))
            manys.append(_launch(argv, args.ranks, folder / f"{method}-{args.ranks}-r{r}.json", env))
        one, many = _least_disturbed(ones), _least_disturbed(manys)
        rows.append(Row(entry, one, many))
        print(f"{method}: 1 process {one.cpu_critical:.0f} s CPU, {one.working / 2**30:.2f} GiB; {args.ranks} ranks "
              f"{many.cpu_critical:.0f} s CPU (slowest), {many.working / 2**30:.2f} GiB per rank", flush=True)
    print(f"\n{args.ranks} ranks x {args.threads} thread vs 1 process x {args.threads} thread "
          f"({args.rounds} round{'s' if args.rounds > 1 else ''}); {args.model}, "
          f"{args.format}, {args.samples} samples ({args.image_size} px), batch {args.batch_size}, "
          f"device {args.device}\n")
    print(_header().replace("N ranks", f"{args.ranks} ranks"))
    for row in rows:
        print(row.line())
    from qigbench.cost.goals import check

    regime = f"{args.model}, {args.format}, {args.samples} samples, {args.ranks} ranks, {args.device}"
    print()
    for row in rows:
        for goal, ratio in row.ratios().items():
            print(f"{row.method}: {check(goal, ratio, regime=regime).line}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"settings": {k: v for k, v in vars(args).items() if k != "func"},
             "rows": [{"method": r.method, "one": vars(r.one), "many": vars(r.many)} for r in rows]}, indent=1))
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="shape:qwen2vl-7b@2+vision=1+width=4")
    p.add_argument("--format", default="W3A16")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir")
    p.add_argument("--memory-budget")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qigbench.cost.data_parallel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="one calibration, measured (run by the driver, alone or under torchrun)")
    _add_common(worker)
    worker.add_argument("--method", required=True)
    worker.add_argument("--out", required=True)
    worker.set_defaults(func=_worker)
    _add_common(parser)
    parser.add_argument("--method", action="append", default=None, metavar="NAME[:KEY=VALUE,...]")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="A/B pairs per method; the least disturbed is kept")
    parser.add_argument("--work-dir", default="dp-bench")
    parser.add_argument("--json")
    parser.set_defaults(func=_driver)
    args = parser.parse_args(argv)
    if args.command is None and not args.method:
        args.method = ["gptq", "awq", "mbq", "qig"]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
