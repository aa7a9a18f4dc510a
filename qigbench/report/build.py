"""``build_report``: read a results database, write the leaderboard in four formats plus figures.

Output directory layout::

    index.html          self-contained (inline CSS, figures embedded as base64)
    leaderboard.md      all tables + figure links
    tables.tex          all tables (booktabs)
    leaderboard.csv, fidelity.csv, orderings.csv, calibration.csv   raw values
    plots/*.png, plots/*.svg                        figures (heatmaps copied here too)

Templates are ``string.Template`` files in ``qigbench/report/templates/`` (package data, so an installed
wheel renders reports too; no jinja2 dependency).
"""

from __future__ import annotations

import base64
import html
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from qigbench.report import plots, render
from qigbench.report.orderings import DEFAULT_BASELINE, orderings
from qigbench.report.tables import Table, aggregate, calibration, fidelity, leaderboard, unknown_metrics
from qigbench.results.errors import ResultsError
from qigbench.results.metrics import metric_info
from qigbench.results.store import ResultsStore

TEMPLATE_NAMES = ("report.html", "report.md", "tables.tex")


def default_templates() -> Path:
    """The templates shipped inside the package (``qigbench/report/templates``)."""
    return Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class ReportOptions:
    title: str = "qigbench leaderboard"
    plot_metric: str | None = None  # None = mean accuracy over tasks
    heatmaps: tuple[Path, ...] = ()  # extra heatmap PNGs to embed
    discover_heatmaps: bool = True  # also embed *heatmap*.png / heatmaps/*.png found next to the db
    templates: Path | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)  # passed to ResultsStore.rows
    baseline: str = DEFAULT_BASELINE  # the method the paired-tests table tests every other against


@dataclass(frozen=True)
class Figure:
    path: Path  # the PNG
    caption: str


def heatmaps_beside(db: str | Path) -> Path:
    """Where the suites put a database's token-sensitivity heatmaps: ``DB.heatmaps/`` next to it
    (``results.db`` -> ``results.db.heatmaps/``), named after it like ``DB.jobs/``, so they never
    land in a bare ``heatmaps/`` of the working directory."""
    db = Path(db).resolve()
    return db.with_name(db.name + ".heatmaps")


def find_heatmaps(db: Path, out: Path | None = None) -> list[Path]:
    """Token-sensitivity heatmap PNGs of the database (``DB.heatmaps/*.png``, where the suites write
    them; ``*heatmap*.png`` or ``heatmaps/*.png`` beside it, where older runs did) and in the report's
    own ``heatmaps/`` (where ``qigbench run`` does)."""
    here = db.resolve().parent
    found = set(here.glob("*heatmap*.png")) | set((here / "heatmaps").glob("*.png"))
    found |= set(heatmaps_beside(db).glob("*.png"))
    if out is not None:
        found |= set((out.resolve() / "heatmaps").glob("*.png"))
    return sorted(found)


def _templates(directory: Path | None) -> dict[str, Template]:
    where = directory or default_templates()
    missing = [n for n in TEMPLATE_NAMES if not (where / n).is_file()]
    if missing:
        raise ResultsError(
            f"report templates {', '.join(missing)} not found in {where}; pass --templates DIR pointing at "
            "qigbench/report/templates"
        )
    return {n: Template((where / n).read_text(encoding="utf-8")) for n in TEMPLATE_NAMES}


def check_out(out: Path) -> None:
    """``--out`` is a folder this process can create and write into (checked before any work)."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"report --out {out} is an existing file; pass a folder, e.g. {out.with_suffix('')}/")
    where = out
    while not where.exists() and where != where.parent:
        where = where.parent  # missing folders are created: the first existing one must take files
    try:
        if not where.is_dir():
            raise NotADirectoryError(20, "not a folder", str(where))
        with tempfile.TemporaryFile(dir=where):  # a real probe: os.access says yes to root on read-only mounts
            pass
    except OSError as err:
        raise _unwritable(out, err, where) from None


def _unwritable(out: Path, err: OSError, where: Path | str | None = None) -> ResultsError:
    return ResultsError(
        f"report --out {out}: cannot write into {where or err.filename or out} ({err.strerror or err}); pass --out "
        "a folder you can write, e.g. reports/NAME/"
    )


def build_report(db: str | Path, out: str | Path, options: ReportOptions | None = None) -> list[Path]:
    """Render the report for ``db`` into ``out``; returns the files written."""
    options = options or ReportOptions()
    db, out = Path(db), Path(out)
    check_out(out)
    try:
        return _build(db, out, options)
    except OSError as err:  # the disk filled up, or the folder's permissions changed, half-way
        if err.filename is not None and not Path(err.filename).resolve().is_relative_to(out.resolve()):
            raise  # not a file of the report
        raise _unwritable(out, err) from None


def _build(db: Path, out: Path, options: ReportOptions) -> list[Path]:
    if options.plot_metric is not None:
        metric_info(options.plot_metric)  # unknown metric: error naming the known ones
    templates = _templates(options.templates)
    for src in options.heatmaps:
        if not Path(src).is_file():
            raise ResultsError(f"heatmap {src} does not exist; pass an existing PNG with --heatmap")
    with ResultsStore(db, readonly=True) as store:  # never creates or repairs the file it reads
        rows = store.rows(**options.filters)
        runs = store.runs()
    if not rows:
        raise ResultsError(f"no results in {db} (filters: {dict(options.filters) or 'none'}); run the suites first")
    aggs = aggregate(rows)
    board, fid = leaderboard(aggs), fidelity(aggs)
    tables = [t for t in (board, fid, orderings(board, fid, options.baseline), calibration(aggs)) if t.rows]
    notes = [f"metric {m!r} is not registered (direction unknown) and is left out" for m in unknown_metrics(aggs)]
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(aggs, db, out / "plots", options)
    written = [f.path for f in figures]

    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    models = sorted({r.model for r in rows})
    summary = f"{len(rows)} rows, {len({r.config_key for r in rows})} configurations, models: {', '.join(models)}"
    common = {"title": options.title, "generated": generated, "db": str(db), "summary": summary}
    esc = html.escape
    page = templates["report.html"].substitute(
        {k: esc(v) for k, v in common.items()},
        notes=("<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>") if notes else "",
        tables="\n".join(render.to_html(t) for t in tables),
        figures="\n".join(_html_figure(f) for f in figures) or "<p>no figures</p>",
        environment=_html_environment(runs, rows),
    )
    md = templates["report.md"].substitute(
        {k: render.markdown_escape(v) for k, v in common.items()},
        notes="".join(f"> note: {render.markdown_escape(n)}\n" for n in notes),
        tables="\n".join(render.to_markdown(t) for t in tables),
        figures="\n\n".join(
            f"![{render.markdown_escape(f.caption)}]({_relative(f.path, out)})" for f in figures
        )
        or "_no figures_",
        environment=_md_environment(runs),
    )
    tex = templates["tables.tex"].substitute(
        title=render.latex_escape(options.title).replace("\n", " "),
        generated=generated,
        tables="\n".join(render.to_latex(t) for t in tables),
    )
    for name, text in (("index.html", page), ("leaderboard.md", md), ("tables.tex", tex)):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    for table in tables:
        (out / f"{table.name}.csv").write_text(render.to_csv(table), encoding="utf-8")
        written.append(out / f"{table.name}.csv")
    return written


def _figures(aggs: Sequence[Any], db: Path, where: Path, options: ReportOptions) -> list[Figure]:
    figures = []
    fig = plots.metric_vs_bits(aggs, options.plot_metric)
    if fig is not None:
        what = "mean accuracy" if options.plot_metric is None else options.plot_metric
        stem = "accuracy_vs_bits" if options.plot_metric is None else f"{options.plot_metric}_vs_bits"
        figures.append(Figure(plots.save(fig, where / stem)[0], f"{what} vs weight bits per method"))
    fig = plots.calibration_bars(aggs)
    if fig is not None:
        figures.append(Figure(plots.save(fig, where / "calibration_time")[0], "calibration time per method"))
    out = where.parent
    heatmaps = [*(find_heatmaps(db, out) if options.discover_heatmaps else []), *options.heatmaps]
    for src in dict.fromkeys(Path(p).resolve() for p in heatmaps):
        dst = src
        if not src.is_relative_to(out.resolve()):  # outside the report folder: copied in, so it travels with it
            dst = where / src.name
            where.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        figures.append(Figure(dst, f"token sensitivity: {src.stem}"))
    return figures


def _relative(path: Path, out: Path) -> str:
    return path.resolve().relative_to(out.resolve()).as_posix()


def _html_figure(fig: Figure) -> str:
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    cap = html.escape(fig.caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _environments(runs: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    seen = {}
    for r in runs:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items()))
        seen[(r["git_commit"], r["device"], versions)] = r["run_id"]
    return [(run_id, commit, device, versions) for (commit, device, versions), run_id in seen.items()]


def _html_environment(runs: list[dict[str, Any]], rows: Sequence[Any]) -> str:
    envs = _environments(runs)
    if not envs:  # rows written without start_run: show what the rows carry
        envs = sorted(
            {("", r.git_commit, r.device, ", ".join(f"{k} {v}" for k, v in sorted(r.versions.items()))) for r in rows}
        )
    cells = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(x)}</td>" for x in env) + "</tr>" for env in envs
    )
    return (
        "<table><thead><tr><th>run</th><th>git commit</th><th>device</th><th>versions</th></tr></thead>"
        f"<tbody>{cells}</tbody></table>"
    )


def _md_environment(runs: list[dict[str, Any]]) -> str:
    esc = render.markdown_escape
    lines = ["| run | git commit | device | versions |", "|---|---|---|---|"]
    lines += [f"| {esc(a)} | {esc(b)} | {esc(c)} | {esc(d)} |" for a, b, c, d in _environments(runs)]
    return "\n".join(lines) + "\n"


__all__ = ["ReportOptions", "Table", "build_report", "default_templates", "find_heatmaps", "heatmaps_beside"]
