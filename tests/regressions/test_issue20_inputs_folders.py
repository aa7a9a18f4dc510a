"""Issue 20 item 11 (inputs): a model folder without its weights, and SLURM without srun.

Was: ``OSError: Error no file named model.safetensors, or pytorch_model.bin, found in directory``
(a traceback, after the preflight said the folder was fine); a folder without its tokenizer /
processor files: ``OSError: Can't load image processor`` (a traceback, after loading the weights);
``--executor slurm`` off a SLURM node: submitit's ``RuntimeError: Could not detect "srun"``
(a traceback, after the results db was created).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qigbench.cli import main
from qigbench.models.tiny import ensure_tiny


def _quantize(folder: Path) -> list[str]:
    return ["quantize", "--model", str(folder), "--method", "rtn", "--samples", "2", "--no-progress"]


def test_a_folder_with_config_but_no_weights_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "Qwen2-VL-7B-Instruct"
    folder.mkdir()
    shutil.copy(ensure_tiny("tiny-qwen2vl") / "config.json", folder)
    (folder / "tokenizer.json").write_text("{}")
    assert main(_quantize(folder)) == 2
    err = capsys.readouterr().err
    assert f"model folder {folder} has config.json but not its weights" in err, err
    assert "no weight file (model.safetensors.index.json, model.safetensors" in err
    assert "it holds config.json, tokenizer.json" in err and "Copy the checkpoint's *.safetensors" in err


def test_a_sharded_folder_names_its_missing_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(ensure_tiny("tiny-qwen2vl") / "config.json", folder)
    shards = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    index = {"metadata": {}, "weight_map": {f"w{i}": shard for i, shard in enumerate(shards)}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / shards[0]).write_bytes(b"")
    assert main(_quantize(folder)) == 2
    err = capsys.readouterr().err
    assert "3 of the 4 shards that model.safetensors.index.json lists are missing" in err, err
    assert all(shard in err for shard in shards[1:])


def test_the_preflight_skips_a_folder_without_weights(tmp_path: Path) -> None:
    from qigbench.models.availability import availability

    folder = tmp_path / "empty-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    found = availability(str(folder))
    assert not found.available and "has config.json but not its weights" in found.reason


@pytest.mark.parametrize(("alias", "what"), [("tiny-qwen2vl", "image processor"), ("tiny-llama", "tokenizer")])
def test_a_folder_without_its_processor_files_is_a_message(
    alias: str, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``model.save_pretrained(DIR)`` alone leaves: config and weights, no tokenizer / processor."""
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(ensure_tiny(alias) / name, folder)
    assert main(_quantize(folder)) == 2
    err = capsys.readouterr().err
    assert f"model folder {folder} has config.json and weights but its" in err, err
    assert f"missing: the {what}" in err or f"the {what}" in err
    assert "save_pretrained(DIR)" in err


def test_slurm_without_srun_names_the_fixes_before_touching_the_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # no srun on PATH, as on a laptop
    db = tmp_path / "results.db"
    argv = ["run", "--executor", "slurm", "--db", str(db), "--out", str(tmp_path / "rep")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--executor slurm needs SLURM's srun" in err, err
    assert "module load slurm" in err and "--executor local" in err and "--workers N" in err and "--dry-run" in err
    assert not db.exists() and not (tmp_path / "results.db.jobs").exists()


def test_slurm_dry_run_still_renders_without_srun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    argv = ["run", "--executor", "slurm", "--dry-run", "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "rep")]
    assert main(argv) == 0
    assert "#SBATCH --array=" in capsys.readouterr().out
