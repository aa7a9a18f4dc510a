"""A matrix job may take N GPUs (``--gpus-per-job N``): the pool pins N devices per worker, Ray
asks ``num_gpus=N``, SLURM ``--gpus-per-node N``, and each job's configuration is calibrated on N
torchrun ranks; ``--dry-run`` shows each. On CPU, N gloo ranks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dp_launch import ROOT

from qigbench.results import ResultsStore


def _qigbench(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "qigbench", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


MATRIX = ["run", "--model", "qwen2vl", "--methods", "awq", "--formats", "w3a16", "--device", "cuda", "--dry-run"]


def _dry_run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    from qigbench.cli import main

    assert main([*MATRIX, "--db", str(tmp_path / "r.db"), *args]) == 0
    return capsys.readouterr().out


def test_dry_run_pool_pins_n_devices_per_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    out = _dry_run(["--workers", "2", "--gpus-per-job", "2"], tmp_path, capsys)
    assert "worker 0: CUDA_VISIBLE_DEVICES=0,1, device cuda, each job on 2 torchrun ranks (NCCL)" in out
    assert "worker 1: CUDA_VISIBLE_DEVICES=2,3, device cuda, each job on 2 torchrun ranks (NCCL)" in out
    assert "--nproc-per-node=2 -m qigbench.distributed.ranks" in out and "awq-W3A16" in out.split("runs")[-1]
    from qigbench.distributed.jobs import JobError
    from qigbench.distributed.pool import PoolExecutor

    with pytest.raises(JobError, match="need 6 GPUs; 4 are visible"):
        PoolExecutor(3, "cuda", gpus_per_job=2)


def test_dry_run_ray_asks_n_gpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _dry_run(["--executor", "ray", "--ray-address", "ray://head:10001", "--gpus-per-job", "4"], tmp_path, capsys)
    assert "num_gpus=4.0" in out and "each task runs its job on 4 ranks" in out


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="submitit renders the sbatch script")
def test_dry_run_slurm_asks_n_gpus_per_node_and_launches_torchrun(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = _dry_run(["--executor", "slurm", "--partition", "gpu", "--gpus-per-job", "4"], tmp_path, capsys)
    assert "#SBATCH --gpus-per-node=4" in out
    assert "each task runs its job on 4 ranks over the node's 4 GPUs" in out and "--nproc-per-node=4" in out


@pytest.mark.slow
def test_a_two_rank_job_records_what_one_process_measures(tmp_path: Path, cache_dir: Path) -> None:
    """A real pool run on CPU: the AWQ job calibrates on 2 gloo ranks (8 samples in 2 batches), rank
    0 evaluates and writes its record; its calibration's block error is the one-process one's, bit
    for bit."""
    db = tmp_path / "r.db"
    args = ["run", "--model", "tiny-qwen2vl", "--methods", "awq", "--formats", "w4a8", "--tasks", "fidelity",
            "--limit", "2", "--samples", "8", "--device", "cpu", "--workers", "1", "--gpus-per-job", "2",
            "--db", str(db), "--cache-dir", str(cache_dir), "--no-report"]
    out = _qigbench(args, tmp_path)
    assert " 0 failed" in out, out
    logs = list((tmp_path / "r.db.jobs" / "logs").glob("*awq*.torchrun.log"))
    assert len(logs) == 1 and "--nproc-per-node=2" in logs[0].read_text()
    with ResultsStore(db) as store:
        rows = {r.metric: r for r in store.rows(method="awq")}
    from qigbench.matrix.cases import table2
    from qigbench.matrix.options import build_options
    from qigbench.matrix.session import SuiteSession
    from qigbench.pipeline import quantize

    options = build_options(models=["tiny-qwen2vl"], methods="awq", formats="w4a8", tasks="fidelity", limit=2,
                            samples=8, device="cpu", db=tmp_path / "ref.db", cache_dir=str(cache_dir))
    case = next(c for c, _ in table2(options) if c.method == "awq")
    one = quantize(SuiteSession(options).request(case))
    assert rows["block_error"].value == one.report.mean_block_error
