"""Regression corpus for issue 11 (slow or unclear failures; noise a newcomer meets).

Each test failed on the code before the fix and passes after it. Subprocess tests run the real
entry points (``pytest suites/``, ``qigbench``) the way a user does, from the repository root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment with the hub off, an empty HF cache and a private qigbench cache
    (shared tiny models are reused through QIGBENCH_CACHE when the caller sets it)."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_CACHE=str(tmp_path / "hf-home" / "hub"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
