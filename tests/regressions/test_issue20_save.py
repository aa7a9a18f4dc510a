"""Issue 20, items 13 and 14: data a user keeps.

* A saved checkpoint gets the permissions the umask gives (it was always ``drwx------``, from
  ``mkdtemp``), so a vLLM server or a cluster group running as another user can read it.
* A save killed between its two renames (the earlier save moved aside, the new one not yet in place)
  left ``.NAME.old-PID`` forever; the next save removes it (only leftovers of dead processes).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from regression_env import ROOT

from qigbench.pipeline import RECORD_NAME, QuantizeRequest, QuantizeResult, load_quantized, quantize, save_quantized

REQUEST = dict(model="tiny-llama", method="rtn", format="W4A16", samples=1, batch_size=1, progress=False)


@pytest.fixture(scope="module")
def result() -> QuantizeResult:
    return quantize(QuantizeRequest(**REQUEST))  # type: ignore[arg-type]


@pytest.fixture
def umask() -> Iterator[object]:
    def set_to(mask: int) -> None:
        os.umask(mask)

    before = os.umask(0o022)
    os.umask(before)
    yield set_to
    os.umask(before)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_a_saved_checkpoint_gets_the_umask_permissions(  # type: ignore[no-untyped-def]
    mask: int, result: QuantizeResult, umask, tmp_path: Path
) -> None:
    umask(mask)
    out = save_quantized(result, tmp_path / "model")
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask, oct(out.stat().st_mode)  # was 0o700 whatever the umask
    for path in out.rglob("*"):
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, (path.name, oct(path.stat().st_mode))


_KILLED_BETWEEN_RENAMES = textwrap.dedent(
    """
    import pathlib, sys, time
    from qigbench.pipeline import QuantizeRequest, quantize, save_quantized
    result = quantize(QuantizeRequest(**{request!r}))
    original = pathlib.Path.rename
    def rename(self, target):
        moved = original(self, target)
        if ".old-" in pathlib.Path(target).name:  # the earlier save is moved aside; the new one is not in place yet
            print("MOVED-ASIDE", flush=True)
            time.sleep(600)
        return moved
    pathlib.Path.rename = rename
    save_quantized(result, sys.argv[1])
    """
)


def test_the_leftover_of_a_save_killed_between_its_renames_is_removed_by_the_next_save(
    result: QuantizeResult, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    save_quantized(result, target)
    script = _KILLED_BETWEEN_RENAMES.format(request=REQUEST)
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if "MOVED-ASIDE" in line or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    left = sorted(p.name for p in tmp_path.glob(".model.*"))
    assert any(name.startswith(f".model.old-{proc.pid}") for name in left), left
    # a leftover of a process that still runs (another save in progress) is not touched
    alive = tmp_path / f".model.old-{os.getppid()}"
    alive.mkdir()
    save_quantized(result, target)
    assert sorted(p.name for p in tmp_path.glob(".model.*")) == [alive.name]  # was: the killed save's .old- stayed
    assert (target / RECORD_NAME).is_file()
    load_quantized(target)
