"""Where qigbench keeps what it builds offline (converted models, synthetic calibration sets).

One rule for every builder: ``QIGBENCH_CACHE`` if set, else ``~/.cache/qigbench``; builders write
into a temporary sibling directory and rename it into place, so a half-written entry is never seen.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "QIGBENCH_CACHE"


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache root: the argument, else ``$QIGBENCH_CACHE``, else ``~/.cache/qigbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qigbench"


def build_atomically(target: Path, build: Callable[[Path], object]) -> Path:
    """Run ``build(tmp_dir)`` and rename ``tmp_dir`` to ``target``, unless ``target`` already exists.

    The rename is atomic on one filesystem, so concurrent builders (pytest-xdist workers) either
    see a complete entry or none; the loser of a race discards its copy.
    """
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache entry should read like any folder
        try:
            tmp.rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
