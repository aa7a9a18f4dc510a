"""The default run's report, opened in a real browser (headless Chromium over the DevTools protocol).

What a newcomer sees after README command 1: every figure decodes, the console is clean, every
table has rows, and the page fits a 1280 px window without horizontal scrolling. A full-page
screenshot is written next to the report (``screenshot.png``); set ``QIGBENCH_REPORT_DIR`` to keep
the run's folder (report, screenshot, db) after the test.

Skips with the install command where no Chromium can be found (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chromium import INSTALL, find_chromium, inspect_page

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1280

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason=f"needs Chromium for the browser check: `{INSTALL}` (as root)"
)


def _env(tmp: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp / "hf-home"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        QIGBENCH_CACHE=str(cache),
    )
    return env


@pytest.fixture(scope="module")
def default_report(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """``qigbench run`` with no arguments (README command 1), in a folder of its own."""
    import subprocess

    where = tmp_path_factory.mktemp("default-run")
    done = subprocess.run(
        [sys.executable, "-m", "qigbench.cli", "run"],
        env=_env(where, cache_dir),
        cwd=where,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = where / "reports" / "latest" / "index.html"
    assert html.is_file(), done.stdout[-2000:]
    yield html
    keep = os.environ.get("QIGBENCH_REPORT_DIR")
    if keep:
        shutil.copytree(where, keep, dirs_exist_ok=True)


@needs_chromium
@pytest.mark.slow
def test_default_report_renders_cleanly_in_chromium(default_report: Path) -> None:
    shot = default_report.parent / "screenshot.png"
    page = inspect_page(default_report, width=WIDTH, screenshot=shot)
    assert page.console_errors == []
    assert page.images, "the report has no figures"
    broken = [i for i in page.images if not i["decoded"] or i["width"] == 0 or i["height"] == 0]
    assert broken == []
    assert page.tables, "the report has no tables"
    empty = [t for t in page.tables if t["rows"] == 0 or t["placeholder"]]
    assert empty == []
    assert page.viewport_width == WIDTH
    assert page.scroll_width <= WIDTH, f"page is {page.scroll_width} px wide: it scrolls sideways at {WIDTH} px"
    wide = [t for t in page.tables if t["width"] > WIDTH]
    assert wide == [], f"tables wider than the window: {wide}"
    assert shot.is_file() and shot.stat().st_size > 10_000
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size[0] == WIDTH and image.size[1] > 900


@needs_chromium
def test_the_browser_check_sees_each_kind_of_breakage(tmp_path: Path) -> None:
    """The probe is not blind: a broken image, a console error, an empty table and a too-wide
    block are each reported (so the test above can fail)."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        "<img alt='broken' src='data:image/png;base64,iVBORw0KGgoAAAAN'>"
        "<table><thead><tr><th>a</th></tr></thead><tbody></tbody></table>"
        "<div style='width:2000px'>wide</div>"
        "<script>console.error('boom')</script>"
        "</body></html>",
        encoding="utf-8",
    )
    found = inspect_page(page, width=WIDTH)
    assert any("boom" in e for e in found.console_errors)
    assert [i["decoded"] for i in found.images] == [False]
    assert [t["rows"] for t in found.tables] == [0]
    assert found.scroll_width > WIDTH
