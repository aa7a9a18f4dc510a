"""Issue 20, the suites' small lies:

* ``pytest suites/ --db new.db`` reported "SKIPPED ... already in new.db" on a brand-new db. Why: a
  (configuration, task) that two tables share (Table 2's FP16 row and the Q-VLM setting's; plain QIG
  at W4A8 in Table 2 and the ablations) was measured by the first table's item, and the second
  item, finding the rows this very run had written, said they were "already in" the db (or, for a
  quantized model still cached, evaluated it again). Now the second item gets the numbers measured
  once in this session, and "already in" means rows that were there before the run.
* ``pytest suites`` wrote its heatmap PNGs into ``./heatmaps`` of the working directory; they go to
  ``DB.heatmaps/`` next to the database (``results.db.heatmaps/``), where ``qigbench report`` finds them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from regression_env import ROOT, offline_env, run

SELECT = "qwen2vl-fp16 or qwen2vl-qig-W4A8-s0-fidelity"


def test_a_new_db_has_nothing_already_in_it_and_heatmaps_stay_with_the_db(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "pytest", str(ROOT / "suites"), "--rootdir", str(ROOT), "-p", "no:cacheprovider",
            "-q", "-rs", "-k", SELECT, "--model", "tiny-qwen2vl", "--methods", "qig", "--formats", "w4a8",
            "--tasks", "qig_mc_chart", "--limit", "2", "--samples", "2"]  # --db: the default, results.db
    found = run(args, offline_env(tmp_path), cwd=tmp_path)
    out = found.stdout + found.stderr
    assert found.returncode == 0, out[-4000:]
    assert "--on-conflict replace to re-run" not in out, out[-4000:]  # was: SKIPPED ... already in results.db
    assert "7 passed" in out, out[-4000:]  # Tables 2 (x2), 6, 1, 4, A1 and the Q-VLM setting
    assert "1 calibrations, 2 evaluations, 0 skipped" in out and "5 shared with another table" in out, out[-2000:]
    assert not (tmp_path / "heatmaps").exists()  # was: ./heatmaps of the working directory
    assert sorted(p.name for p in (tmp_path / "results.db.heatmaps").glob("*.png")) == ["tiny-qwen2vl-qig-W4A8-s0.png"]
