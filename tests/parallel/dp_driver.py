"""Run by the tests under ``torchrun --nproc-per-node 2``: calibrate every case of ``dp_cases`` on
the ranks through the package API (one launch for all of them), rank 0 saving each snapshot.

    torchrun --standalone --nproc-per-node 2 tests/parallel/dp_driver.py OUT [CASE ...]

Faults for the failure tests (``QIGBENCH_TEST_FAULT``): ``kill:RANK:BLOCK`` makes that rank kill
itself with SIGKILL when it reaches that block, ``hang:RANK:BLOCK`` makes it stop answering
(sleep), ``exit-after:BLOCK`` makes every rank exit 1 right after that block was saved (an
interruption, for resume). They patch the engine from here; the product code has no test hooks.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dp_cases import CASES, snapshot


def install_fault(spec: str) -> None:
    from qigbench import parallel
    from qigbench.engine import checkpoint, unit

    kind, _, rest = spec.partition(":")
    if kind in ("kill", "hang"):
        rank, block = (int(v) for v in rest.split(":"))
        original = unit.UnitContext.__iter__

        def faulty(self):  # type: ignore[no-untyped-def]
            if self.unit.start == block and parallel.world().rank == rank:
                print(f"fault: rank {rank} {kind} at block {block}", flush=True)
                if kind == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)
            yield from original(self)

        unit.UnitContext.__iter__ = faulty  # type: ignore[method-assign]
    elif kind == "exit-after":
        block = int(rest)
        save = checkpoint.Checkpoint.save_unit

        def save_then_exit(self, start, *args, **kwargs):  # type: ignore[no-untyped-def]
            save(self, start, *args, **kwargs)
            if start == block:
                print(f"fault: interrupted after block {block}", flush=True)
                os._exit(1)

        checkpoint.Checkpoint.save_unit = save_then_exit  # type: ignore[method-assign]
        # the ranks that do not write must stop too: at the next collective they would wait
        from qigbench.engine import run as engine_run

        gather = engine_run._gather_streams
        units = [0]

        def gather_then_exit(fp, q):  # type: ignore[no-untyped-def]
            out = gather(fp, q)
            units[0] += 1  # one gather per saved unit (one-block units, a run from block 0)
            if out is None and units[0] == block + 1:
                os._exit(1)
            return out

        engine_run._gather_streams = gather_then_exit
    else:
        raise SystemExit(f"unknown fault {spec!r}")


def main() -> int:
    from qigbench import parallel
    from qigbench.pipeline import quantize

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    wanted = set(sys.argv[2:])
    world = parallel.init_from_env("cpu")
    fault = os.environ.get("QIGBENCH_TEST_FAULT")
    if fault:
        install_fault(fault)
    resume_root = os.environ.get("QIGBENCH_TEST_RESUME")
    cache = os.environ.get("QIGBENCH_CACHE")
    try:
        for case in CASES:
            if wanted and case.name not in wanted:
                continue
            resume = str(Path(resume_root) / case.name) if resume_root else None
            t0 = time.process_time()
            result = quantize(case.request(cache, resume_dir=resume))
            cpu = time.process_time() - t0
            snap = snapshot(result)
            if world.is_main:
                out.mkdir(parents=True, exist_ok=True)
                torch.save({**snap, "cpu_seconds": cpu}, out / f"{case.name}.pt")
                print(f"{case.name}: done in {cpu:.1f}s CPU", flush=True)
    finally:
        parallel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
