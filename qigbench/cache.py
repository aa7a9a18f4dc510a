"""Where qigbench keeps what it builds offline, and the one way anything is built into it.

Tiny, random, real-shape and SmolLM2 models, and the synthetic calibration sets, all live under
one root: the ``cache_dir`` a caller passes, else ``$QIGBENCH_CACHE``, else ``~/.cache/qigbench``.
Every entry is built by :func:`atomic_build`: into a temporary sibling folder, then renamed into
place, so a reader (or a concurrent pytest-xdist worker) sees a complete entry or none.

A low-layer module: it imports only the standard library.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "QIGBENCH_CACHE"
DEFAULT_CACHE = Path("~") / ".cache" / "qigbench"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$QIGBENCH_CACHE``, else ``~/.cache/qigbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE.expanduser()


def atomic_build(target: Path, build: Callable[[Path], object], *, marker: str | None = None) -> Path:
    """Run ``build(tmp_dir)`` and rename ``tmp_dir`` to ``target``, unless ``target`` is complete.

    ``marker`` names a file every finished entry holds: ``target`` is complete when it holds that
    file (a folder without it is a leftover from a build that predates the atomic rename, and is
    replaced). Without a marker the folder existing is enough. An interrupted build leaves nothing;
    the loser of a race between two builders discards its copy and returns the winner's.
    """

    def complete() -> bool:
        return (target / marker).is_file() if marker is not None else target.exists()

    if complete():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache entry should read like any folder
        if marker is not None and target.exists() and not complete():
            shutil.rmtree(target)  # never complete, so nobody can be reading it as a finished entry
        try:
            os.replace(tmp, target)
        except OSError:
            if not complete():  # someone else finished first: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def file_sha256(path: Path) -> str:
    """Content hash of a file (provenance of calibration files and of converted model sources)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
