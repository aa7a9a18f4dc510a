"""Suite options: command-line parsing through the real plugin, defaults by tier, matrix expansion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qigbench.errors import QigbenchError
from qigbench.matrix import cases
from qigbench.matrix.options import FIDELITY_TASK, TINY_VLM_TASKS, build_options, split_list

PROBE = """
import json, os


def test_probe(qig_options):
    o = qig_options
    out = {k: getattr(o, k) for k in ("models", "methods", "formats", "tasks", "limit", "samples", "seeds",
                                      "device", "on_conflict", "cache_dir")}
    out["db"] = str(o.db)
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump(out, f)
"""


def test_plugin_parses_suite_options(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    args = [
        "--model",
        "tiny-qwen2vl,tiny-llava-ov",
        "--model",
        "tiny-internvl",
        "--methods",
        "RTN, qig",
        "--formats",
        "w3a16,w4a8g64",
        "--tasks",
        "qig_ocr",
        "--limit",
        "7",
        "--samples",
        "5",
        "--seeds",
        "0,1",
        "--db",
        "x/r.db",
        "--device",
        "cpu",
        "--on-conflict",
        "replace",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_probe.py"), *args]
    env = {"PROBE_OUT": str(tmp_path / "out.json"), "PATH": "", "HOME": str(tmp_path)}
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    got = json.loads((tmp_path / "out.json").read_text())
    assert got == {
        "models": ["tiny-qwen2vl", "tiny-llava-ov", "tiny-internvl"],
        "methods": ["rtn", "qig"],
        "formats": ["W3A16", "W4A8g64"],
        "tasks": ["qig_ocr"],
        "limit": 7,
        "samples": 5,
        "seeds": [0, 1],
        "device": "cpu",
        "on_conflict": "replace",
        "cache_dir": str(tmp_path / "c"),
        "db": "x/r.db",
    }


def test_bad_options_name_the_fix() -> None:
    with pytest.raises(QigbenchError, match="W<bits>A<bits>"):
        build_options(formats="w3")
    with pytest.raises(QigbenchError, match="integers"):
        build_options(seeds="a")
    with pytest.raises(QigbenchError, match="replace or skip"):
        build_options(on_conflict="overwrite")
    with pytest.raises(QigbenchError, match="qigbench models"):
        build_options(models="no-such-model").vlm_models  # noqa: B018


def test_split_list_mixes_repeats_and_commas() -> None:
    assert split_list(["a,b", " c ", ""]) == ["a", "b", "c"]
    assert split_list(None) == []


def test_tier_defaults() -> None:
    tiny = build_options(models="tiny-qwen2vl")
    assert tiny.vlm_tasks() == TINY_VLM_TASKS and tiny.samples_for("tiny-qwen2vl") == 16
    assert tiny.language_models() == ("tiny-llama",)
    real = build_options(models="qwen2vl")
    assert "vizwiz" in real.vlm_tasks() and real.samples_for("qwen2vl") == 128
    assert real.language_models() == ("llama2",)
    assert build_options(models="tiny-qwen2vl,smollm2-135m").language_models() == ("smollm2-135m",)


def test_table2_expands_methods_formats_tasks_seeds() -> None:
    opts = build_options(models="tiny-qwen2vl", methods="rtn,qig", formats="w3a16,w4a8", seeds="0,1")
    m = cases.table2(opts)
    fp, quant = m[0], m[1:]
    assert fp[0].is_fp and FIDELITY_TASK not in fp[1]
    assert len(quant) == 2 * 2 * 2
    assert all(tasks == (*TINY_VLM_TASKS, FIDELITY_TASK) for _, tasks in quant)
    assert len({c.key() for c, _ in quant}) == len(quant)  # seeds, formats, methods all distinct
    # the seed is its own key column, not part of the hash: a configuration's seeds pool in reports
    assert len({c.config_hash() for c, _ in quant}) == len(quant) // 2
    assert {c.seed for c, _ in quant} == {0, 1}


def test_tables_respect_their_paper_format() -> None:
    only_w4a8 = build_options(models="tiny-qwen2vl", formats="w4a8")
    assert cases.table5(only_w4a8) == []  # Table 5 is W3A16
    assert {c.format for c, _ in cases.tableA3(only_w4a8)} == {"W4A8"}
    assert [c.samples for c, _ in cases.tableA3(only_w4a8)] == [16, 16, 32, 32]  # --samples and twice that


def test_config_hash_is_portable_and_option_sensitive(tmp_path: Path) -> None:
    a = cases.Case("table2", "tiny-qwen2vl", "qig", "W4A8", 16)
    assert a.config_hash() == cases.Case("tableX", "tiny-qwen2vl", "qig", "W4A8", 16).config_hash()  # table-free
    b = cases.Case("table4", "tiny-qwen2vl", "qig", "W4A8", 16, options=(("qig.clipping", "none"),))
    assert a.config_hash() != b.config_hash()
    assert b.stored_method == "qig[clipping=none]"
    assert cases.Case("t", "m", "qig-gptq", "W3A16", 16).stored_method == "qig+gptq"


def test_suite_options_reach_the_session_without_touching_tests(tmp_path: Path) -> None:
    # importing the plugin has no side effects (no store, no model) until a suite asks for one
    import qigbench.pytest_plugin as plugin

    assert not (tmp_path / "results.db").exists()
    assert callable(plugin.pytest_addoption)
