"""One real Table 6 run at the smallest size: the fresh-process children (build, measure) and the
summary, end to end, on tiny-qwen2vl with two rows (MBQ and the fast variant). The full six-row
benchmark is opt-in (``tests/benchmarks/test_bench_table6.py``); the runner's logic is tested with
fakes in ``test_table6.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from qigbench.cost.table6 import FAST_VARIANT, Table6Plan, read_records, run_table6, table6_variants
from qigbench.cost.table6_summary import summarise


@pytest.mark.slow
def test_two_rows_run_in_fresh_processes_and_summarise(tmp_path: Path) -> None:
    variants = tuple(v for v in table6_variants() if v.method == "mbq" or v.options == FAST_VARIANT)
    plan = Table6Plan(model="tiny-qwen2vl", samples=2, image_size=64, rounds=1, batch_size=2, variants=variants)
    out = tmp_path / "t6.jsonl"
    records = run_table6(plan, out, str(tmp_path / "cache"), weights_dir=tmp_path / "w", say=lambda _: None,
                         floor=False)  # fmt: skip
    assert [r["label"] for r in records] == ["mbq", "qig[preset=fast]"]
    assert len(read_records(out, plan)) == 2  # appended as each finished
    for r in records:
        assert r["cpu_seconds"] > 0 and r["peak_bytes"] > 0 and 0 < r["mean_block_error"] < 1
    summary = summarise(plan, records)
    assert summary.row("mbq").cpu_ratio.median == pytest.approx(1.0)
    fast = summary.row("qig[preset=fast]")
    assert fast.cpu_ratio.median == pytest.approx(records[1]["cpu_seconds"] / records[0]["cpu_seconds"])
