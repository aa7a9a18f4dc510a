"""What produced a number: git commit, library versions, device.

Versions come from package metadata (no heavy imports), so recording them costs milliseconds.
The device is only probed through torch when the caller does not name it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

#: Distributions whose versions change benchmark numbers.
TRACKED_PACKAGES: tuple[str, ...] = ("torch", "transformers", "lmms_eval", "lm_eval", "qigbench")


def package_versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name.replace("_", "-")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name.replace("_", "-")] = "not installed"
    return out


def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD of the repository holding qigbench (or ``cwd``), with ``-dirty`` for local edits."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def describe_device(device: str | None = None) -> str:
    """``device`` as given, or the first CUDA device's name, or ``cpu``."""
    if device:
        if device.startswith("cuda"):
            try:
                import torch

                if torch.cuda.is_available():
                    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
            except (ImportError, RuntimeError, AssertionError):
                pass
        return device
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    except ImportError:
        pass
    return "cpu"


def environment_info(device: str | None = None, cwd: str | Path | None = None) -> dict[str, Any]:
    """``{"git_commit", "versions", "device"}`` for stamping a run."""
    return {"git_commit": git_commit(cwd), "versions": package_versions(), "device": describe_device(device)}
