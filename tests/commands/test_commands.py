"""The commands as a user runs them: ``qigbench.cli.main([...])`` in-process, asserting on what
is printed and on the exit status (0 done, 1 check failed, 2 bad input with a message that names
the fix, no traceback)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from qigbench.cli import main
from qigbench.engine.method import available_methods
from qigbench.results import ResultRow, ResultsStore, config_hash

Capture = pytest.CaptureFixture[str]


def _run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_methods_lists_every_plugin_with_each_option_and_default(capsys: Capture) -> None:
    code, out, _ = _run(capsys, "methods")
    assert code == 0
    listed: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("    "):
            listed[current].append(line.strip())
        else:
            current = line.split(":", 1)[0]
            listed[current] = []
    methods = available_methods()
    assert set(listed) == set(methods) and {"rtn", "awq", "mbq", "qig", "qvlm", "tlq"} <= set(listed)
    for name, cls in methods.items():
        defaults = cls.config_class()
        top = {option.split("=", 1)[0].split(".", 1)[0] for option in listed[name]}
        assert top == {f.name for f in dataclasses.fields(cls.config_class)}, name
        for f in dataclasses.fields(cls.config_class):
            value = getattr(defaults, f.name)
            if not dataclasses.is_dataclass(value):
                assert f"{f.name}={value!r}" in listed[name], (name, f.name)
    assert "qig.steps=32" in listed["qig"]  # a nested config's fields, prefixed (the paper's m = 32)


def test_methods_takes_no_arguments(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["methods", "awq"])
    assert exit_.value.code == 2 and "unrecognized arguments: awq" in capsys.readouterr().err


def test_models_shows_where_tiny_models_are_built(capsys: Capture, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "models", "--cache-dir", str(tmp_path))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert rows["alias"].split()[:3] == ["alias", "family", "source"]
    tiny = rows["tiny-qwen2vl"]
    assert tiny.split()[1] == "qwen2vl" and f"tiny: built offline into {tmp_path}/tiny" in tiny
    assert out.rstrip().endswith("works in place of an alias.")


def test_formats_explain_weights_and_activations(capsys: Capture) -> None:
    code, out, _ = _run(capsys, "formats", "W4A8", "W3A16g64")
    assert code == 0
    w4a8, w3 = out.splitlines()
    assert w4a8.split()[0] == "W4A8" and "4-bit symmetric, per-channel" in w4a8
    assert "activations: 8-bit symmetric, dynamic per-token" in w4a8
    assert w3.split()[0] == "W3A16g64" and "3-bit asymmetric, groups of 64" in w3 and "fp16 (not quantized)" in w3
    code, out, _ = _run(capsys, "formats")  # the paper's formats by default
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["W3A16", "W4A16", "W4A8", "W8A8"]


def test_a_bad_format_names_the_syntax(capsys: Capture) -> None:
    code, out, err = _run(capsys, "formats", "W4A16", "W5Q")
    assert code == 2 and "Traceback" not in err
    assert out.split()[0] == "W4A16"  # the formats before the bad one are explained
    assert "qigbench formats: error: cannot parse quantization format 'W5Q'" in err
    assert "expected W<bits>A<bits>" in err and "e.g. W3A16" in err


def _cache() -> list[str]:
    cache = os.environ.get("QIGBENCH_CACHE")
    return ["--cache-dir", cache] if cache else []


def test_quantize_rtn_on_the_tiny_model_prints_its_record(capsys: Capture, tmp_path: Path) -> None:
    save = tmp_path / "q"
    code, out, _ = _run(capsys, "quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--format", "W4A16g32",
                        "--samples", "2", "--batch-size", "2", "--no-progress", "--save", str(save), *_cache())
    assert code == 0
    record = json.loads(out)
    assert record["method"] == {"method": "rtn", "config": {}}
    assert (record["format"], record["propagation"]) == ("W4A16g32", "fp")
    errors = record["block_errors"]
    assert len(errors) == 2 and all(0 < e < 1 for e in errors)  # tiny-qwen2vl has two decoder blocks
    assert record["mean_block_error"] == pytest.approx(sum(errors) / 2, rel=1e-4)
    assert Path(record["saved_to"]) == save and (save / "config.json").is_file()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "tiny-nope", "--method", "rtn"], ["unknown model 'tiny-nope'; known aliases:", "tiny-qwen2vl",
                                                         "(or pass a local folder)"]),
        (["--model", "tiny-qwen2vl", "--method", "nope"], ["unknown method 'nope'; installed methods:", "awq",
                                                            "an entry point in pyproject.toml"]),
        (["--model", "tiny-qwen2vl", "--method", "rtn", "--format", "W9X"], ["cannot parse quantization format 'W9X'"]),
        (["--model", "tiny-qwen2vl", "--method", "awq", "-o", "n_grid"], ["must look like KEY=VALUE, e.g. n_grid=10"]),
    ],
)
def test_quantize_bad_input_names_the_fix(capsys: Capture, argv: list[str], expected: list[str]) -> None:
    code, out, err = _run(capsys, "quantize", *argv, "--samples", "2", "--no-progress", *_cache())
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("qigbench quantize: error: ")
    for text in expected:
        assert text in err


def _small_db(path: Path) -> Path:
    """fp16 and two methods on one model, two seeds, one task and the calibration KL."""
    rows = []
    configs = (("fp16", "FP16", 0.70, None), ("rtn", "W3A16", 0.60, 0.05), ("awq", "W3A16", 0.65, 0.02))
    for method, fmt, acc, kl in configs:
        for seed in (0, 1):
            common = dict(model="tiny-qwen2vl", method=method, format=fmt, config_hash=config_hash({"method": method}),
                          seed=seed, run_id="")
            rows.append(ResultRow(**common, task="chartqa", metric="accuracy", value=acc + 0.01 * seed))  # type: ignore[arg-type]
            if kl is not None:
                rows.append(ResultRow(**common, task="calib", metric="kl", value=kl))  # type: ignore[arg-type]
    with ResultsStore(path) as store:
        store.record(rows)
    return path


def test_report_writes_the_leaderboard_of_a_small_db(capsys: Capture, tmp_path: Path) -> None:
    db = _small_db(tmp_path / "results.db")
    out_dir = tmp_path / "report"
    code, out, _ = _run(capsys, "report", "--db", str(db), "--out", str(out_dir), "--title", "small")
    assert code == 0
    written = [Path(line) for line in out.splitlines()]
    assert written and all(p.is_file() and out_dir in p.parents for p in written)
    markdown = next(p for p in written if p.suffix == ".md").read_text()
    assert "small" in markdown and "awq" in markdown and "rtn" in markdown


def test_check_passes_on_its_own_baseline_and_fails_on_a_regression(capsys: Capture, tmp_path: Path) -> None:
    db = _small_db(tmp_path / "results.db")
    baseline = tmp_path / "baseline.json"
    code, out, _ = _run(capsys, "check", "--db", str(db), "--baseline", str(baseline), "--write-baseline")
    assert code == 0 and out.startswith(f"wrote {baseline}:")
    code, out, _ = _run(capsys, "check", "--db", str(db), "--baseline", str(baseline), "--tolerance", "0.02")
    assert code == 0 and "qigbench check: ok" in out
    worse = _small_db(tmp_path / "worse.db")
    with ResultsStore(worse) as store:
        row = next(r for r in store.rows(method="awq", task="chartqa", seed=0))
        store.record(dataclasses.replace(row, value=0.50))
    code, out, err = _run(capsys, "check", "--db", str(worse), "--baseline", str(baseline), "--tolerance", "0.02")
    assert code == 1 and "qigbench check: FAIL" in out and "REGRESSED tiny-qwen2vl / awq / W3A16" in err


@pytest.mark.parametrize("command", ["report", "check"])
def test_a_missing_db_says_how_to_make_one(capsys: Capture, tmp_path: Path, command: str) -> None:
    db = tmp_path / "none.db"
    extra = ["--out", str(tmp_path / "out")] if command == "report" else ["--baseline", str(tmp_path / "b.json")]
    code, out, err = _run(capsys, command, "--db", str(db), *extra)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip() == (
        f"qigbench {command}: error: results database {db} does not exist; run the suites with --db {db} first"
    )
    assert not (tmp_path / "out").exists() and not db.exists()  # nothing created on the way


def test_table6_report_only_refuses_the_flags_it_would_ignore(capsys: Capture, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "table6", "--report-only", "--round", "2", "--only", "qig",
                        "--out", str(tmp_path / "t6.jsonl"))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "--report-only runs nothing, so --round, --only would be ignored: drop them" in err
