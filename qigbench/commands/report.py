"""``qigbench report --db results.db --out reports/NAME/``: leaderboard as Markdown, HTML, CSV, LaTeX + plots."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "render a leaderboard (md/html/csv/latex + plots) from a results database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=Path("results.db"), help="results database (default: results.db)")
    parser.add_argument("--out", type=Path, required=True, help="output directory, e.g. reports/tiny/")
    parser.add_argument("--title", default="qigbench leaderboard")
    parser.add_argument("--model", action="append", help="only these models (repeatable)")
    parser.add_argument("--method", action="append", help="only these methods (repeatable)")
    parser.add_argument("--format", action="append", dest="formats", help="only these formats (repeatable)")
    parser.add_argument("--plot-metric", help="metric for the vs-bits plot (default: mean accuracy over tasks)")
    parser.add_argument(
        "--heatmap", action="append", type=Path, default=[], help="token-sensitivity heatmap PNG to embed (repeatable)"
    )
    parser.add_argument(
        "--no-discover-heatmaps",
        action="store_true",
        help="do not embed *heatmap*.png / heatmaps/*.png found next to the database",
    )
    parser.add_argument("--templates", type=Path, help="template directory (default: qigbench/report/templates)")
    parser.add_argument("--baseline", default="rtn", help="the method the paired-tests table tests every other "
                        "against (default rtn)")
    parser.add_argument("--print", action="store_true", dest="print_md",
                        help="also print the Markdown report (leaderboard.md) to stdout")


def run(args: argparse.Namespace) -> int:
    from qigbench.report.build import ReportOptions, build_report

    filters = {"model": args.model, "method": args.method, "format": args.formats}
    options = ReportOptions(
        title=args.title,
        plot_metric=args.plot_metric,
        heatmaps=tuple(args.heatmap),
        discover_heatmaps=not args.no_discover_heatmaps,
        templates=args.templates,
        filters={k: v for k, v in filters.items() if v},
        baseline=args.baseline,
    )
    written = build_report(args.db, args.out, options)
    for path in written:
        print(path)
    if args.print_md:
        print()
        print((Path(args.out) / "leaderboard.md").read_text(encoding="utf-8"))
    return 0
