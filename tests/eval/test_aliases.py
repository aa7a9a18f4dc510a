"""Paper aliases point at the harnesses' real tasks; missing data and unknown names give clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from qigbench.cli import main
from qigbench.eval.aliases import PAPER_TASKS, check_offline_data, resolve_task
from qigbench.eval.errors import MissingDatasetError, UnknownTaskError

SITE = Path(__import__("lmms_eval").__file__).parent.parent


def _harness_yaml(alias) -> dict:
    """The dataset_path / dataset_name the harness's own YAML (or its included template) declares."""
    root = SITE / ("lmms_eval" if alias.harness == "lmms" else "lm_eval") / "tasks"
    loader = type("L", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda loader_, node: None)
    for path in root.rglob("*.yaml"):
        text = path.read_text(errors="ignore")
        if re.search(rf'^(task|group):\s*"?{re.escape(alias.task)}"?\s*$', text, re.M):
            config = yaml.load(text, Loader=loader) or {}
            if "include" in config and "dataset_path" not in config:
                config = {**(yaml.load((path.parent / config["include"]).read_text(), Loader=loader) or {}), **config}
            return config
    raise AssertionError(f"{alias.task} not found in {root}")


@pytest.mark.parametrize(
    "name",
    ["vizwiz", "mmmu", "chartqa", "ai2d", "scienceqa", "docvqa", "ocrbench", "piqa", "arc_e", "arc_c", "wikitext"],
)
def test_alias_datasets_match_the_harness_yaml(name):
    alias = PAPER_TASKS[name]
    config = _harness_yaml(alias)
    assert config.get("dataset_path") == alias.dataset
    if "dataset_name" in config and config["dataset_name"] is not None:
        assert config["dataset_name"] == alias.config


def test_every_paper_alias_resolves():
    assert set(PAPER_TASKS) == {
        "vizwiz",
        "mmmu",
        "chartqa",
        "ai2d",
        "scienceqa",
        "docvqa",
        "ocrbench",
        "piqa",
        "arc_e",
        "arc_c",
        "mmlu",
        "wikitext",
    }
    assert resolve_task("arc_c").task == "arc_challenge" and resolve_task("arc_c").harness == "lm"
    assert resolve_task("qig_pack").pack and resolve_task("lmms:mme").task == "mme"


def test_missing_dataset_names_it_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path, raising=False)
    with pytest.raises(MissingDatasetError) as err:
        check_offline_data(PAPER_TASKS["mmmu"])
    message = str(err.value)
    assert "lmms-lab-encoder/MMMU" in message and "mmmu_val" in message
    assert "HF cache" in message and "dataset_path" in message


def test_cli_reports_missing_data_without_traceback(capsys, monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path, raising=False)
    assert main(["eval", "--model", "tiny-llama", "--tasks", "piqa", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "baber/piqa" in err and "Traceback" not in err


def test_unknown_task_lists_the_known_ones(capsys):
    with pytest.raises(UnknownTaskError, match="vizwiz"):
        resolve_task("vizwis")
    assert main(["eval", "--model", "tiny-llama", "--tasks", "vizwis"]) == 2


def test_cli_eval_on_pack_tasks_writes_results(capsys, tmp_path):
    code = main(
        [
            "eval",
            "--model",
            "tiny-llama",
            "--tasks",
            "qig_text_mc",
            "--limit",
            "4",
            "--pack-size",
            "4",
            "--device",
            "cpu",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "qig_text_mc" in out and "acc" in out
    results = json.loads((tmp_path / "results_lm.json").read_text())["results"]
    assert 0.0 <= results["qig_text_mc"]["acc,none"] <= 1.0
