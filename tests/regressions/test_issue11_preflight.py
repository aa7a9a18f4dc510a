"""Models and datasets that are not on this machine are found once, before any calibration."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from regression_env import offline_env, run

from qigbench.cli import main

FIXES = ("hf download Qwen/Qwen2-VL-7B-Instruct", "--model /path/to/Qwen2-VL-7B-Instruct", "--model tiny-qwen2vl")


@pytest.fixture
def empty_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Offline, with an HF cache that holds nothing."""
    import huggingface_hub.constants as hf

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    yield cache
    from qigbench.models import availability

    availability.forget_failures()


def test_offline_real_model_suite_skips_every_item_in_seconds_naming_the_fixes(tmp_path: Path) -> None:
    """Was: 145 items failing one by one with transformers tracebacks (58 min with hub retries)."""
    start = time.perf_counter()
    done = run(
        [sys.executable, "-m", "pytest", "suites/", "--model", "qwen2vl", "--limit", "2", "-q",
         "-p", "no:cacheprovider", "--db", str(tmp_path / "r.db")],
        offline_env(tmp_path),
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert " passed" not in out and " failed" not in out and " skipped" in out
    assert all(fix in out for fix in FIXES), out[-3000:]
    assert "Traceback" not in out and "OSError" not in out
    # the budget: the fix must be named within a minute (it takes a few seconds); nothing
    # was calibrated or written
    assert elapsed < 60, f"{elapsed:.0f}s"
    assert len(out.splitlines()) < 40
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["quantize", "--model", "qwen2vl", "--method", "rtn"],
        ["eval", "--model", "qwen2vl", "--tasks", "qig_ocr"],
        ["run", "--model", "qwen2vl"],
    ],
    ids=["quantize", "eval", "run"],
)
def test_commands_name_the_fixes_for_an_uncached_hub_model(
    argv: list[str], empty_hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "rep")] if argv[0] == "run" else []
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert all(fix in err for fix in FIXES), err
    assert not (tmp_path / "rep").exists()


def test_a_cached_checkpoint_counts_as_available_without_the_network(empty_hub: Path) -> None:
    """The HF cache layout try_to_load_from_cache reads: refs/main -> snapshots/<rev>/files."""
    from qigbench.models import availability as av

    repo = empty_hub / "models--Qwen--Qwen2-VL-7B-Instruct"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text("{}")
    assert not av.availability("qwen2vl").available  # config without weights is not a checkpoint
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    assert not av.availability("qwen2vl").available  # a shard is missing
    (snap / "model-1.safetensors").write_bytes(b"x")
    assert av.availability("qwen2vl").available


def test_an_online_hub_failure_is_remembered_not_retried(monkeypatch: pytest.MonkeyPatch, empty_hub: Path) -> None:
    """Online, the hub answers the probe, but the load fails (unreachable files, gated repo): the
    first load pays for the hub client's retries, later ones do not."""
    from qigbench.models import availability as av
    from qigbench.models import hub, loading
    from qigbench.models.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(hub, "probe", lambda url, timeout: (True, ""))  # issue 20: the hub is probed first
    hub.forget()
    calls = []

    def unreachable(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(loading, "_load", unreachable)
    try:
        for _ in range(3):
            with pytest.raises(ModelUnavailableError, match="hf download Qwen/Qwen2-VL-7B-Instruct"):
                loading.load_model("qwen2vl")
        assert len(calls) == 1
        assert not av.availability("qwen2vl").available
    finally:
        av.forget_failures()
        hub.forget()


def test_run_names_every_missing_dataset_before_calibrating(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import qigbench.pipeline

    def no_calibration(*args: object, **kwargs: object) -> None:
        raise AssertionError("calibrated before the data check")

    monkeypatch.setattr(qigbench.pipeline, "quantize", no_calibration)
    argv = ["run", "--tasks", "vizwiz,mmmu,qig_ocr", "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "rep")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "lmms-lab-encoder/VizWiz-VQA" in err and "lmms-lab-encoder/MMMU" in err and "--include-path" in err


def test_suite_skips_tasks_without_data_before_calibrating(tmp_path: Path) -> None:
    """Was: minutes of calibration, then one failure per task on missing VizWiz/MMMU/... data."""
    done = run(
        [sys.executable, "-m", "pytest", "suites/test_table2_main.py", "--model", "tiny-qwen2vl", "--methods", "rtn",
         "--formats", "w4a8", "--tasks", "vizwiz,mmmu", "-k", "not fidelity", "-q", "-p", "no:cacheprovider",
         "--db", str(tmp_path / "r.db")],
        offline_env(tmp_path),
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "4 skipped" in out, out[-3000:]
    assert "lmms-lab-encoder/VizWiz-VQA" in out and "lmms-lab-encoder/MMMU" in out
    assert not (tmp_path / "r.db").exists()  # nothing was calibrated or recorded
