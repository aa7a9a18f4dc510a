"""What the executors would submit (``--dry-run``), and the progress line's ETA; no model loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qigbench.cli import main
from qigbench.distributed.jobs import JobRecord, build_jobs
from qigbench.distributed.progress import Progress
from qigbench.matrix.cases import table2
from qigbench.matrix.options import SuiteOptions

PAPER = ["run", "--model", "qwen2vl", "--device", "cuda", "--dry-run"]
#: Table 2's configurations for one paper model with the default methods and formats
N_PAPER = len(table2(SuiteOptions(models=("qwen2vl",), device="cuda", verify_device=False)))


def test_one_job_per_configuration_with_the_union_of_its_tasks(tmp_path: Path) -> None:
    options = SuiteOptions(methods=("rtn", "qig"), formats=("W3A16",), db=tmp_path / "r.db")
    matrix = table2(options)
    jobs = build_jobs([matrix, matrix], options, None, tmp_path)  # a configuration in two tables runs once
    assert len(jobs) == len(matrix) == 3
    assert len({j.job_id for j in jobs}) == 3 and len({j.key for j in jobs}) == 3
    assert jobs[1].tasks == matrix[1][1]


def test_every_seed_is_its_own_job(tmp_path: Path) -> None:
    """The seed is not in the configuration hash: de-duplicating by the hash alone ran seed 0 only
    under --workers / Ray / SLURM while the local loop ran every seed."""
    options = SuiteOptions(methods=("rtn", "qig"), formats=("W3A16",), seeds=(0, 1, 2), db=tmp_path / "r.db")
    matrix = table2(options)
    jobs = build_jobs([matrix], options, None, tmp_path)
    quantized = [j for j in jobs if not j.case.is_fp]
    expected = [(m, s) for m in ("qig", "rtn") for s in (0, 1, 2)]
    assert sorted((j.case.method, j.case.seed) for j in quantized) == expected
    assert len(jobs) == len(matrix) and len({j.job_id for j in jobs}) == len(jobs)


def test_workers_dry_run_pins_one_gpu_per_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert main([*PAPER, "--workers", "4", "--db", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr().out
    assert f"dry run: {N_PAPER} jobs" in out
    pins = re.findall(r"worker (\d): CUDA_VISIBLE_DEVICES=(\d)", out)
    assert pins == [("0", "4"), ("1", "5"), ("2", "6"), ("3", "4")]
    assert not (tmp_path / "r.db").exists()  # a dry run writes nothing


def test_ray_dry_run_asks_one_gpu_per_task(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = [*PAPER, "--executor", "ray", "--ray-address", "ray://head:10001", "--mem-gb", "2"]
    assert main([*args, "--db", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr().out
    tasks = re.findall(r"@ray\.remote\((.*)\)", out)
    assert len(tasks) == N_PAPER and all("num_gpus=1.0" in t and "max_retries=2" in t for t in tasks)
    assert f"memory={2 * 2**30}" in tasks[0] and "ray://head:10001" in out


def test_slurm_dry_run_renders_submitits_job_array(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("submitit", reason="pip install -e '.[distributed]'")
    args = [*PAPER, "--executor", "slurm", "--partition", "gpu", "--time", "90", "--array-parallelism", "4"]
    assert main([*args, "--db", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr().out
    flags = (f"--array=0-{N_PAPER - 1}%4", "--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8")
    for flag in flags:
        assert f"#SBATCH {flag}" in out, out
    assert "%A_%a_0_log.out" in out  # one log per array task


def test_eta_uses_the_cost_of_finished_jobs_of_the_same_method(tmp_path: Path) -> None:
    options = SuiteOptions(methods=("rtn", "qig"), formats=("W3A16", "W4A8"), db=tmp_path / "r.db")
    jobs = [j for j in build_jobs([table2(options)], options, None, tmp_path) if not j.case.is_fp]
    lines: list[str] = []
    progress = Progress(total=len(jobs), slots=2, write=lines.append)
    progress.expect(jobs)
    cost = {"rtn": 10.0, "qig": 100.0}
    by_method = {m: [j for j in jobs if j.case.method == m] for m in cost}
    for method in cost:
        job = by_method[method][0]
        progress.started(job)
        progress.finished(job, JobRecord(job.job_id, job.key, (), cost[method], cost[method], "h", 0))
    assert progress.eta() == pytest.approx((10.0 + 100.0) / 2)  # one rtn and one qig left, 2 slots
    assert lines[-1].startswith("[2/4 done, 0 running, 0 failed] ETA 55s done")
    assert str(by_method["qig"][0].log_path) in lines[2]  # started lines name the job's log
