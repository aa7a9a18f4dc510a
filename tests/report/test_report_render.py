"""qigbench report: four formats from a synthetic db, escaping, numbers that match the db."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from report_synthetic import make_db

from qigbench.cli import main
from qigbench.report import ReportOptions, aggregate, build_report, leaderboard
from qigbench.report.render import latex_escape, markdown_escape, to_latex
from qigbench.results import ResultRow, ResultsError, ResultsStore

EVIL = "<script>alert(1)</script>_x%$y$"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("rep")
    db = make_db(where / "results.db", models=("tiny-qwen2vl", "qwen2vl", EVIL))
    heat = where / "qig_heatmap.png"  # a heatmap next to the db is discovered and embedded
    heat.write_bytes(_tiny_png())
    assert main(["report", "--db", str(db), "--out", str(where / "out")]) == 0
    return where / "out"


def _tiny_png() -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_all_formats_written(report: Path) -> None:
    for name in ("index.html", "leaderboard.md", "tables.tex", "leaderboard.csv", "fidelity.csv", "calibration.csv"):
        assert (report / name).stat().st_size > 0, name
    for name in ("accuracy_vs_bits.png", "accuracy_vs_bits.svg", "calibration_time.png", "qig_heatmap.png"):
        assert (report / "plots" / name).is_file(), name


def test_html_is_escaped_and_self_contained(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;_x%" in page
    assert page.count("data:image/png;base64,") == 3  # two plots + the heatmap, embedded
    assert 'src="plots/' not in page and "<link" not in page  # nothing external


def test_markdown_escapes(report: Path) -> None:
    md = (report / "leaderboard.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "![calibration time per method](plots/calibration_time.png)" in md


def test_csv_parses_back_to_the_db_means(report: Path) -> None:
    rows = list(csv.DictReader((report / "leaderboard.csv").open()))
    by = {(r["Model"], r["Method"]): r for r in rows}
    assert (EVIL, "qig") in by
    # synthetic: tiny-qwen2vl (model 0), qig W3A16 chartqa = 0.70 - 0.08 + 0.03 + mean(0, 0.002) -> 65.10 %
    assert float(by[("tiny-qwen2vl", "qig")]["W3A16 chartqa"]) == pytest.approx(65.1)
    avg = float(by[("tiny-qwen2vl", "qig")]["W3A16 Avg"])
    tasks = [float(by[("tiny-qwen2vl", "qig")][f"W3A16 {t}"]) for t in ("chartqa", "mmmu", "vizwiz")]
    assert avg == pytest.approx(sum(tasks) / 3)
    # FP16 row repeated in both format groups; paper reference only for the paper's model
    fp = by[("qwen2vl", "FP16")]
    assert fp["W3A16 chartqa"] == fp["W4A8 chartqa"] and float(fp["W3A16 Paper avg"]) == 73.22
    assert float(by[("qwen2vl", "qig")]["W4A8 Paper avg"]) == 67.77
    assert by[("tiny-qwen2vl", "qig")]["W3A16 Paper avg"] == ""
    assert by[("tiny-qwen2vl", "awq")]["W4A8 chartqa"] == ""  # awq not run at W4A8
    calib = {(r["Model"], r["Method"]): r for r in csv.DictReader((report / "calibration.csv").open())}
    overhead = float(calib[("tiny-qwen2vl", "qig")]["W3A16 vs MBQ"])
    assert overhead == pytest.approx(42.5 / 40.5 - 1)


def test_latex_escapes(report: Path) -> None:
    tex = (report / "tables.tex").read_text()
    assert r"<script>alert(1)</script>\_x\%\$y\$" in tex
    assert "_x%" not in tex
    assert latex_escape(r"a_b%c&d$e#f{g}h~i^j\k") == (
        r"a\_b\%c\&d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )


def test_ranks_follow_metric_direction() -> None:
    rows = [
        ResultRow(model="m", method=meth, format="W3A16", config_hash="h", task="t", metric=metric, value=v)
        for meth, v in (("rtn", 0.5), ("mbq", 0.6), ("qig", 0.7))
        for metric in ("accuracy", "kl")
    ]
    from qigbench.report import fidelity

    aggs = aggregate(rows)
    acc = {head[1]: cells[0].rank for head, cells in leaderboard(aggs).rows}
    kl = {head[1]: cells[0].rank for head, cells in fidelity(aggs).rows}
    assert acc == {"rtn": None, "mbq": 2, "qig": 1}
    assert kl == {"rtn": 1, "mbq": 2, "qig": None}  # lower KL is better
    assert r"\textbf{70.00}" in to_latex(leaderboard(aggs))


def test_markdown_escape_pipes_and_emphasis() -> None:
    assert markdown_escape("a|b_c*<d>") == r"a\|b\_c\*&lt;d&gt;"


def test_several_config_hashes_get_labelled(tmp_path: Path) -> None:
    rows = [
        ResultRow(model="m", method="qig", format="W3A16", config_hash=h, task="t", metric="accuracy", value=0.5)
        for h in ("aaaaaaaa11", "bbbbbbbb22")
    ]
    assert {head[1] for head, _ in leaderboard(aggregate(rows)).rows} == {"qig [aaaaaa]", "qig [bbbbbb]"}


def test_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="run the suites"):
        build_report(tmp_path / "none.db", tmp_path / "out")
    ResultsStore(tmp_path / "empty.db").close()
    with pytest.raises(ResultsError, match="no results"):
        build_report(tmp_path / "empty.db", tmp_path / "out")
    db = make_db(tmp_path / "r.db", models=("tiny",))
    with pytest.raises(ResultsError, match="register"):
        build_report(db, tmp_path / "out", ReportOptions(plot_metric="bleu"))
    with pytest.raises(ResultsError, match="--templates"):
        build_report(db, tmp_path / "out", ReportOptions(templates=tmp_path))
    with pytest.raises(ResultsError, match="--heatmap"):
        build_report(db, tmp_path / "out", ReportOptions(heatmaps=(tmp_path / "nope.png",)))


def test_indistinguishable_entries_share_a_mark_and_cells_show_intervals() -> None:
    from qigbench.report import fidelity
    from qigbench.report.render import to_csv
    from qigbench.stats import ExampleScores

    base = [0.2, 0.5, 0.3, 0.9, 0.4, 0.6, 0.7, 0.35]
    per_method = {
        "qig": [b + 0.001 * (-1) ** i for i, b in enumerate(base)],  # noise around mbq: tied with it
        "mbq": base,
        "awq": [b + 0.3 for b in base],  # clearly worse on every prompt
        "rtn": [b + 0.6 for b in base],  # worse still
    }
    rows = []
    for method, xs in per_method.items():
        ex = ExampleScores.of(xs)
        rows.append(
            ResultRow(
                model="m",
                method=method,
                format="W4A8",
                config_hash="h",
                task="fidelity",
                metric="kl",
                value=ex.mean(),
                examples=ex,
            )
        )
    table = fidelity(aggregate(rows))
    ranks = {head[1]: cells[0].rank for head, cells in table.rows}
    assert ranks == {"mbq": 1, "qig": 1, "awq": 2, "rtn": None}
    qig = next(cells[0] for head, cells in table.rows if head[1] == "qig")
    # one seed: a bootstrap percentile interval, shown as its ends (a half-width would misstate it)
    assert qig.low is not None and qig.high is not None and qig.low < qig.value < qig.high
    assert qig.text == f"{qig.value:.4g} [{qig.low:.4g}, {qig.high:.4g}]" and " ± " not in qig.text
    header = to_csv(table).splitlines()[0]
    assert header.endswith("W4A8 KL,W4A8 KL ci95 low,W4A8 KL ci95 high")
    assert r"$\pm$" in to_latex(table)


def test_seeds_pool_into_one_row_with_a_t_interval() -> None:
    rows = [
        ResultRow(
            model="m", method="qig", format="W3A16", config_hash="h", seed=s, task="t", metric="accuracy", value=v
        )
        for s, v in ((0, 0.50), (1, 0.52), (2, 0.54))
    ]
    (agg,) = aggregate(rows)
    assert agg.seeds == 3 and agg.interval is not None and agg.interval.method == "t over seeds"
    # mean 52%, sd 2 points, se 2/sqrt(3), t_2 = 4.303 -> half-width 4.97 points
    (row,) = leaderboard([agg]).rows
    assert row[1][0].text == "52.00 ± 4.97"


def test_marks_stay_monotone_when_pairwise_ties_are_not_transitive() -> None:
    """C's noise ties it with the leader A, B is reliably behind A; C (worse mean) must not outrank B."""
    per_seed = {"qig": (0.10, 0.10, 0.10), "mbq": (0.20, 0.21, 0.20), "rtn": (-0.5, 1.4, -0.2)}  # kl: lower wins
    rows = [
        ResultRow(model="m", method=meth, format="W4A8", config_hash="h", seed=s, task="f", metric="kl", value=v)
        for meth, vals in per_seed.items()
        for s, v in enumerate(vals)
    ]
    from qigbench.report import fidelity

    ranks = {head[1]: cells[0].rank for head, cells in fidelity(aggregate(rows)).rows}
    assert ranks["qig"] == 1 and ranks["mbq"] == 2 and ranks["rtn"] == 2


def test_templates_ship_inside_the_package() -> None:
    """An installed wheel (the GPU-box workflow) has no checkout: the templates must be package data."""
    import tomllib
    from pathlib import Path

    import qigbench.report
    from qigbench.report.build import TEMPLATE_NAMES, default_templates

    package = Path(qigbench.report.__file__).resolve().parent
    assert default_templates().parent == package
    assert all((default_templates() / n).is_file() for n in TEMPLATE_NAMES)
    pyproject = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())
    assert "templates/*" in pyproject["tool"]["setuptools"]["package-data"]["qigbench.report"]


def test_an_interval_is_a_half_width_only_where_it_is_symmetric() -> None:
    """t over seeds is symmetric: ``mean ± half``; one seed's bootstrap over 10 examples with one hit
    ([0, 0.3] or so) is not, and "10.00 ± 15.54" would claim accuracies below 0."""
    from qigbench.report import fidelity
    from qigbench.stats import ExampleScores

    def row(seed: int, value: float, examples: ExampleScores | None = None) -> ResultRow:
        return ResultRow(model="m", method="rtn", format="W4A8", config_hash="h", task="fidelity", metric="kl",
                         value=value, seed=seed, examples=examples)

    t_cell = fidelity(aggregate([row(0, 0.10), row(1, 0.12), row(2, 0.11)])).rows[0][1][0]
    assert " ± " in t_cell.text and t_cell.low is not None and t_cell.high is not None
    assert abs((t_cell.high - t_cell.value) - (t_cell.value - t_cell.low)) < 1e-9
    skewed = ExampleScores.of([1.0] + [0.0] * 9)
    b_cell = fidelity(aggregate([row(0, skewed.mean(), skewed)])).rows[0][1][0]
    assert " ± " not in b_cell.text and b_cell.low is not None and b_cell.low >= 0.0
    assert b_cell.text == f"{b_cell.value:.4g} [{b_cell.low:.4g}, {b_cell.high:.4g}]"
