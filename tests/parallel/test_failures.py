"""A rank that dies or hangs fails the run with a message, within the collective timeout, instead
of leaving the others waiting forever; an interrupted torchrun calibration resumes under torchrun."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from dp_cases import CASES, snapshot
from dp_launch import HERE, torchrun

CASE = next(c for c in CASES if c.name == "awq-W3A16")


def test_a_killed_rank_fails_the_run_with_a_message(tmp_path: Path, cache_dir: Path) -> None:
    launch = torchrun([str(HERE / "dp_driver.py"), str(tmp_path), CASE.name], cache_dir,
                      env={"QIGBENCH_TEST_FAULT": "kill:1:1", "QIGBENCH_COLLECTIVE_TIMEOUT": "60"}, timeout=300)
    assert launch.code != 0
    assert "fault: rank 1 kill at block 1" in launch.output
    # rank 0 reports the closed connection, or torchrun stops it first and names the dead rank
    assert "another rank died" in launch.output or "exitcode  : -9" in launch.output, launch.output[-3000:]
    assert not (tmp_path / f"{CASE.name}.pt").exists()


def test_a_hanging_rank_times_out_with_a_message(tmp_path: Path, cache_dir: Path) -> None:
    # 30 s, not less: on 2 shared cores one rank can fall behind the other by several seconds
    launch = torchrun([str(HERE / "dp_driver.py"), str(tmp_path), CASE.name], cache_dir,
                      env={"QIGBENCH_TEST_FAULT": "hang:1:1", "QIGBENCH_COLLECTIVE_TIMEOUT": "30"}, timeout=400)
    assert launch.code != 0
    assert "rank 0 of 2" in launch.output and "no answer from the other ranks within 30s" in launch.output, (
        launch.output[-3000:]
    )
    assert "fault: rank 1 hang at block 1" in launch.output and "in block 1 failed" in launch.output  # where
    # not a hang: start-up and block 0, then the 30 s timeout, then torchrun stops rank 1 (it sleeps an hour)
    assert launch.seconds < 300


def test_an_interrupted_torchrun_quantize_resumes_and_saves(tmp_path: Path, cache_dir: Path) -> None:
    """The command users run: ``torchrun -m qigbench quantize ... --resume-dir D --save S``, killed
    after block 0 (both ranks exit), then run again: it resumes at block 1 and rank 0 saves a model
    equal to one process's, with the world size in its record."""
    case = next(c for c in CASES if c.name == "qig-gptq-W4A8")  # quantized stream, token weights, Hessians
    resume, save = tmp_path / "resume", tmp_path / "model"
    argv = [str(HERE / "dp_cli.py"), "quantize", "--model", "tiny-qwen2vl", "--method", case.method,
            "--format", case.format, "--samples", "6", "--batch-size", "2", "--device", "cpu", "--no-progress",
            "--resume-dir", str(resume), "--cache-dir", str(cache_dir)]
    for key, value in case.options:
        argv += ["-o", f"{key}={value}"]
    first = torchrun([*argv, "--save", str(save)], cache_dir, env={"QIGBENCH_TEST_FAULT": "exit-after:0"})
    assert first.code != 0 and "fault: interrupted after block 0" in first.output, first.output[-3000:]
    assert json.loads((resume / "manifest.json").read_text())["next_block"] == 1
    assert not save.exists()
    second = torchrun([*argv, "--save", str(save)], cache_dir)
    assert second.code == 0, second.output[-3000:]
    record = json.loads((save / "qigbench_quantization.json").read_text())
    assert record["resumed_from_block"] == 1
    assert record["parallel"]["world_size"] == 2 and record["parallel"]["samples_per_rank"] == [2, 4]

    from qigbench.pipeline import load_quantized, quantize

    one = snapshot(quantize(case.request(cache_dir)))
    saved = load_quantized(save)
    from qigbench.models.registry import get_blocks

    blocks = get_blocks(saved.model, saved.family)
    weights = {f"{i}.{k}": v for i, b in enumerate(blocks) for k, v in b.state_dict().items()}
    for name, value in weights.items():
        assert torch.equal(value, one["tensors"][name]), name
    assert [b["rel_error"] for b in record["blocks"]] == one["errors"]


def test_a_command_that_cannot_run_under_torchrun_says_so(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from qigbench.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; refused before any process group is joined
    assert main(["formats"]) == 2
    assert "qigbench formats does not run under torchrun" in capsys.readouterr().err
