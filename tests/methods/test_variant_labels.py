"""A variant's label travels with every row, table, plot and heatmap (issue 19): a result computed
with a shortcut that can change it is never shown as the plain method.

One function names a configuration, :func:`qigbench.results.identity.variant_label` (through
``Method.label`` and the suites' ``case_label``): the display name plus every result-changing option
away from the method's defaults. Options that cannot change the result (``qig.chunk_size``,
``qig.shortcuts``) and options given at their default value keep the plain name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qigbench.cli import main
from qigbench.config import OptionError
from qigbench.engine.method import get_method
from qigbench.matrix.cases import TABLES, check_method_options
from qigbench.matrix.options import SuiteOptionError, build_options
from qigbench.report.render import markdown_escape
from qigbench.results.identity import variant_label
from qigbench.results.store import ResultsStore
from qigbench.sensitivity.qig_provider import QIGConfig


def test_label_is_the_plain_name_at_the_defaults_and_lists_each_change() -> None:
    assert get_method("qig").label() == "qig"
    assert get_method("qig", {"qig.steps": "32"}).label() == "qig"  # the default, given explicitly
    assert get_method("qig", {"qig.steps": "4"}).label() == "qig[steps=4]"
    assert get_method("qig", {"qig.chunk_size": "2", "qig.shortcuts": "false"}).label() == "qig"  # exact options
    assert get_method("qig-gptq", {"qig.quadrature": "gauss", "qig.steps": "8"}).label() == (
        "qig+gptq[steps=8,quadrature=gauss]"
    )
    assert get_method("mbq", {"n_grid": "10"}).label() == "mbq[n_grid=10]"
    assert variant_label("qig", QIGConfig(steps=4), name="loo") == "loo[steps=4]"
    assert variant_label("mbq", None, name="mbq[ocr-16]") == "mbq[ocr-16]"


def test_suite_cases_carry_the_users_options_in_their_labels() -> None:
    opts = build_options(methods="rtn,mbq,qig", formats="W3A16", method_options=["qig.steps=8"])
    cases = [c for c, _ in TABLES["table2"](opts)] + [c for c, _ in TABLES["table6"](opts)]
    labels = {c.stored_method for c in cases}
    assert "qig[steps=8]" in labels and "qig" not in labels
    assert {"rtn", "mbq"} <= labels  # options a method does not have leave it alone
    loo = next(c for c in cases if c.label == "loo")
    assert loo.stored_method == "loo" and not loo.user_options  # qig.steps does not apply to leave-one-out
    steps8 = next(c for c in cases if c.stored_method == "qig[steps=8]")
    plain = build_options(methods="qig", formats="W3A16")
    assert steps8.config_hash() != next(c for c, _ in TABLES["table2"](plain)).config_hash()
    same = build_options(methods="qig", formats="W3A16", method_options=["qig.steps=32"])
    assert {c.stored_method for c, _ in TABLES["table2"](same) if not c.is_fp} == {"qig"}
    scoped = build_options(methods="qig,qig-gptq", formats="W3A16", method_options=["qig-gptq:qig.steps=4"])
    assert {c.stored_method for c, _ in TABLES["table2"](scoped) if not c.is_fp} == {"qig", "qig+gptq[steps=4]"}


def test_an_option_that_applies_to_nothing_is_an_error() -> None:
    opts = build_options(methods="rtn,awq", formats="W3A16", method_options=["qig.steps=8"])
    with pytest.raises(SuiteOptionError, match=r"qig\.steps=8 apply to no configuration"):
        check_method_options([TABLES["table2"](opts)], opts)
    with pytest.raises(SuiteOptionError, match=r"\[METHOD:\]KEY=VALUE"):
        build_options(method_options=["qig.steps"])
    bad = build_options(methods="awq", formats="W3A16", method_options=["awq:qig.steps=8"])
    with pytest.raises(OptionError, match="no option 'qig'"):
        TABLES["table2"](bad)


def test_a_variants_label_reaches_the_store_report_plots_and_heatmap(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``qigbench run -o qig.steps=2``: rows, Markdown and HTML leaderboards, the calibration-time
    plot's legend and the heatmap's title all say ``qig[steps=2]``, never plain ``qig``."""
    import qigbench.report.plots as plots
    import qigbench.sensitivity.heatmap as heatmap

    legends: list[str] = []
    titles: list[str] = []
    save = plots.save

    def keep_legend(fig: Any, stem: Path) -> list[Path]:
        for ax in fig.axes:
            if ax.get_legend() is not None:
                legends.extend(t.get_text() for t in ax.get_legend().get_texts())
        return save(fig, stem)

    plot = heatmap.plot_sensitivity_heatmap

    def keep_title(*args: Any, **kwargs: Any) -> Path:
        titles.append(kwargs.get("title", ""))
        return plot(*args, **kwargs)

    monkeypatch.setattr(plots, "save", keep_legend)
    monkeypatch.setattr(heatmap, "plot_sensitivity_heatmap", keep_title)
    db, out = tmp_path / "r.db", tmp_path / "report"
    argv = ["run", "--model", "tiny-qwen2vl", "--methods", "qig", "--formats", "W3A16", "--tasks", "fidelity",
            "--samples", "2", "--limit", "2", "-o", "qig.steps=2", "-o", "n_grid=4", "--db", str(db), "--out", str(out),
            "--cache-dir", str(cache_dir), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    store = ResultsStore(db)
    methods = {r.method for r in store.rows()}
    store.close()
    assert len(methods) == 1
    (label,) = methods
    assert label.startswith("qig[") and "steps=2" in label and "n_grid=4" in label
    md = (out / "leaderboard.md").read_text()
    assert markdown_escape(label) in md
    assert "| qig |" not in md
    assert label in (out / "index.html").read_text()
    assert label in legends and "qig" not in legends
    assert titles and all(label in t for t in titles)
    assert any(label in p.name for p in (out / "heatmaps").glob("*.png"))
