"""Issue 20, small lies a newcomer meets (the inputs side).

Was: the README's Commands table checked a default run against ``baseline.json`` ("37 missing");
``qigbench methods`` cited ``reference/q-vlm-and-tlq.md``, which the repository does not have;
``quantize`` without ``--save`` silently kept nothing although the README said it writes a model;
``qigbench formats`` imported torch to explain strings (5.6 s, 650 MB).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from regression_env import ROOT, offline_env, run

from qigbench.cli import main


def _commands_row(command: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return next(line for line in readme.splitlines() if line.startswith(f"| `qigbench {command}"))


def _entries(path: str) -> set[str]:
    return {e["config_hash"][:8] for e in json.loads((ROOT / path).read_text())["entries"]}


def test_the_commands_tables_check_line_fits_the_default_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The baseline the README names holds exactly the default run's configurations."""
    row = _commands_row("check")
    found = re.search(r"--baseline (\S+?)`", row)
    assert found is not None, row
    named = found.group(1)
    assert (ROOT / named).is_file(), named
    assert main(["run", "--dry-run", "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "rep")]) == 0
    jobs = {line.split(":")[0].strip().rsplit("-", 1)[-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ") and ":" in line and line.strip().startswith("tiny-")}
    assert jobs, "the dry run listed no jobs"
    assert _entries(named) == jobs  # nothing missing after `qigbench run`, nothing extra
    assert jobs < _entries("reports/baseline/baseline.json")  # CI's has the suites' extra configurations
    assert "baseline.json" in row  # and the row says when that one applies


def test_qigbench_methods_cites_only_files_the_repository_has(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    cited = set(re.findall(r"[\w./-]+/[\w.-]+\.(?:md|py|json)", out))
    assert "docs/seed_methods.md" in cited
    missing = sorted(path for path in cited if not (ROOT / path).exists())
    assert not missing, f"qigbench methods cites files the repository does not have: {missing}"


def test_quantize_without_save_says_it_kept_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["quantize", "--model", "tiny-qwen2vl", "--method", "rtn", "--samples", "2", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "the quantized model was not saved; pass --save DIR" in out.err, out.err
    assert "saved_to" not in json.loads(out.out)
    assert not any(tmp_path.iterdir())  # nothing written where the user stood
    assert "without `--save` nothing is written" in _commands_row("quantize")


def test_formats_explains_strings_without_importing_torch(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from qigbench.cli import main\n"
        "assert main(['formats', 'W4A16g64', 'W3A16-sym', 'W8A8']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'datasets') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = run([sys.executable, "-c", script], offline_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "W4A16g64   weights: 4-bit asymmetric, groups of 64" in done.stdout
    assert "HEAVY []" in done.stdout, done.stdout
