"""Launching torchrun from the tests: 2 gloo ranks on CPU, one thread each, the test's cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class Launch:
    code: int
    output: str
    seconds: float


def torchrun(args: list[str], cache_dir: Path, *, env: dict[str, str] | None = None, timeout: float = 900,
             nproc: int = 2) -> Launch:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` (a script path or ``-m module ...``)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "QIGBENCH_CACHE": str(cache_dir),
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return Launch(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)
