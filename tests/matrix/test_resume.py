"""An interrupted suite run, re-run, finishes without redoing the configurations it had finished.

The first run is interrupted (KeyboardInterrupt, as from Ctrl-C or a CI timeout) at its third
calibration; the re-run must calibrate exactly the one missing configuration, and the store must
hold each row once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from qigbench.results import ResultsStore

ROOT = Path(__file__).resolve().parents[2]
INTERRUPT = """
import os
import qigbench.matrix.session as session

_real = session.quantize
_calls = 0


def _quantize(request, loaded=None):
    global _calls
    _calls += 1
    if _calls > int(os.environ.get("QIG_INTERRUPT_AFTER", "1000")):
        raise KeyboardInterrupt("simulated kill")
    return _real(request, loaded)


session.quantize = _quantize
"""


def _suite(tmp_path: Path, interrupt_after: int | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    if interrupt_after is not None:
        env["QIG_INTERRUPT_AFTER"] = str(interrupt_after)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "suites" / "test_table2_main.py"),
        "-p",
        "interrupt",
        "-p",
        "no:cacheprovider",
        "-q",
        "--model",
        "tiny-qwen2vl",
        "--methods",
        "rtn",
        "--formats",
        "w3a16,w4a8,w4a16",
        "--tasks",
        "fidelity",
        "--samples",
        "2",
        "--db",
        str(tmp_path / "r.db"),
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _calibrations(out: str) -> int:
    found = re.search(r"qigbench: (\d+) calibrations", out)
    assert found, out[-3000:]
    return int(found[1])


def test_interrupted_run_resumes_without_redoing_finished_configurations(tmp_path: Path) -> None:
    (tmp_path / "interrupt.py").write_text(INTERRUPT)
    first = _suite(tmp_path, interrupt_after=2)
    assert first.returncode == 2, first.stdout[-3000:] + first.stderr[-3000:]  # pytest: interrupted
    assert _calibrations(first.stdout) == 2
    with ResultsStore(tmp_path / "r.db") as store:
        assert len(store.configs_done()) == 2
        assert store.count() == 2 * 3  # kl, flip_rate, block_error per finished configuration

    second = _suite(tmp_path, interrupt_after=None)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert _calibrations(second.stdout) == 1, second.stdout[-2000:]
    assert "2 skipped" in second.stdout
    with ResultsStore(tmp_path / "r.db") as store:
        done = store.configs_done()
        rows = store.rows()
    assert sorted(k.format for k in done) == ["W3A16", "W4A16", "W4A8"]
    assert len(rows) == 3 * 3
    assert len({r.key for r in rows}) == len(rows)  # nothing duplicated
    assert len({r.run_id for r in rows}) == 2  # two runs wrote; the second added only the missing one

    third = _suite(tmp_path, interrupt_after=0)  # everything is done: nothing may even calibrate
    assert third.returncode == 0, third.stdout[-3000:]
    assert "3 skipped" in third.stdout
