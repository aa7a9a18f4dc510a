"""Issue 20: a full ``pytest tests`` left 7.4 GB in pytest's temp folder, 5.3 GB of it from one
shapes test (six real-shape builds, each with the real vocabulary's embedding and head, in a
module-scoped folder nobody removed). Large artefacts are now removed by the tests that make them,
and a passing test's ``tmp_path`` is removed when it ends (``tmp_path_retention_policy``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from regression_env import ROOT, offline_env, run


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_a_passing_tests_tmp_path_is_removed_when_it_ends(tmp_path: Path) -> None:
    (tmp_path / "test_scratch.py").write_text(
        "def test_passes(tmp_path):\n"
        "    (tmp_path / 'big.bin').write_bytes(b'x' * 2**20)\n"
        "\n"
        "def test_fails(tmp_path):\n"
        "    (tmp_path / 'kept.bin').write_bytes(b'x')\n"
        "    assert False\n"
    )
    basetemp = tmp_path / "basetemp"
    done = run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_scratch.py"), "-q", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), f"--basetemp={basetemp}"],
        offline_env(tmp_path),
        timeout=120,
    )
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
    assert not list(basetemp.glob("test_passes*")), "a passing test's tmp_path was left behind"
    assert list(basetemp.glob("test_fails*/kept.bin")), "a failing test keeps its folder to look at"


def test_the_real_shape_build_test_leaves_nothing_behind(tmp_path: Path) -> None:
    """The smallest real-shape case of tests/models/test_shapes.py (LLaMA-2-7B, 1 block, width/8:
    its 32000-row embedding and head alone are 131 MB at float32)."""
    basetemp = tmp_path / "basetemp"
    env = offline_env(tmp_path, QIGBENCH_CACHE=os.environ.get("QIGBENCH_CACHE", str(tmp_path / "cache")))
    done = run(
        [sys.executable, "-m", "pytest", "tests/models/test_shapes.py", "-q", "-p", "no:cacheprovider",
         "-k", "runs_the_calibration_path and llama2", "-o", "tmp_path_retention_policy=all",
         f"--basetemp={basetemp}"],
        env,
        timeout=600,
    )
    assert "1 passed" in done.stdout, done.stdout[-3000:]
    # even with pytest keeping every tmp_path, the test removed its own build
    assert _size(basetemp) < 2 * 2**20, f"{_size(basetemp) / 2**20:.0f} MiB left in {basetemp}"
