"""``qigbench check --db results.db --baseline reports/baseline/baseline.json``: CI regression gate.

Exit status 0 when every baseline metric is within tolerance and no declared ordering is broken;
1 when a metric regressed, an ordering broke (the reverse is significant: a paired test on the
db's seeds / examples, beyond the tolerance), or a baseline configuration is missing from the db.
Orderings the data cannot decide are listed as "not distinguishable" and do not fail.
``--write-baseline`` writes the baseline from the db instead (keeping the orderings already
declared in that file). ``--min-recovery [FLOOR]`` (0.95 when given bare) also fails when a
quantized configuration keeps less than FLOOR of its FP16 model's accuracy on a task
(llm-compressor's recovery convention, :mod:`qigbench.report.recovery`); with it, ``--baseline``
may be left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "check"
HELP = "fail (exit 1) when results regress against a baseline JSON, or write that baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=Path("results.db"), help="results database (default: results.db)")
    parser.add_argument(
        "--baseline", type=Path,
        help="baseline JSON, e.g. reports/baseline/baseline.json (optional with --min-recovery)",
    )
    parser.add_argument(
        "--min-recovery",
        type=float,
        nargs="?",
        const=0.95,
        metavar="FLOOR",
        help="fail when a quantized accuracy is below FLOOR x its FP16 value on a task (bare: 0.95, "
        "llm-compressor's default)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        help="allowed relative worsening (default: the baseline's, else report.regression.DEFAULT_TOLERANCE)",
    )
    parser.add_argument(
        "--abs-tolerance", type=float, help="allowed absolute worsening on top (default: baseline's, else 0)"
    )
    parser.add_argument(
        "--write-baseline", action="store_true", help="write the baseline from --db instead of checking"
    )
    parser.add_argument(
        "--ordering",
        action="append",
        default=[],
        metavar="BETTER>WORSE:METRIC[@TASK]",
        help="with --write-baseline: declare an expected ordering for every model/format having both methods",
    )
    parser.add_argument("--quiet", action="store_true", help="print only failures and the summary")


def run(args: argparse.Namespace) -> int:
    from qigbench.report.regression import Baseline, check
    from qigbench.results.errors import ResultsError
    from qigbench.results.store import ResultsStore

    if args.baseline is None and (args.write_baseline or args.min_recovery is None):
        raise ResultsError("pass --baseline FILE (e.g. reports/baseline/baseline.json), or --min-recovery to check "
                           "only how much FP16 accuracy the quantized models keep")
    if args.min_recovery is not None and not 0.0 < args.min_recovery <= 1.0:
        raise ResultsError(f"--min-recovery takes a fraction in (0, 1], e.g. 0.95; got {args.min_recovery:g}")
    with ResultsStore(args.db, readonly=True) as store:  # a reader: names what is wrong, never writes the db
        rows = store.rows()
    if args.write_baseline:
        return _write(args, rows)
    recovery_failed = _recovery(args, rows)
    if args.baseline is None:
        return 1 if recovery_failed else 0
    if args.ordering:
        raise ResultsError("--ordering only applies with --write-baseline; add orderings to the baseline JSON")
    baseline = Baseline.load(args.baseline)
    from qigbench.report.regression import DEFAULT_TOLERANCE  # imported on use: `--help` stays light

    tol = args.tolerance if args.tolerance is not None else baseline.tolerance
    tol = DEFAULT_TOLERANCE if tol is None else tol
    abs_tol = args.abs_tolerance if args.abs_tolerance is not None else (baseline.abs_tolerance or 0.0)
    if tol < 0 or abs_tol < 0:
        raise ResultsError("tolerances must be >= 0")
    findings = check(rows, baseline, tol, abs_tol)
    failing = [f for f in findings if f.fails]
    for f in findings:
        if f.fails or not args.quiet:
            print(f.message, file=sys.stderr if f.fails else sys.stdout)
    kinds = ("regression", "ordering", "missing", "improved", "new")
    counts = {k: sum(f.kind == k for f in findings) for k in kinds}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    verdicts = {k: sum(f.kind == k for f in findings) for k in ("holds", "indistinct", "untested")}
    summary += (
        f"; orderings: {verdicts['holds']} hold, {verdicts['indistinct']} not distinguishable, "
        f"{verdicts['untested']} means only, {counts['ordering']} broken"
    )
    verdict = "FAIL" if failing or recovery_failed else "ok"
    print(
        f"qigbench check: {verdict}: {len(baseline.entries)} baseline metrics, {len(baseline.orderings)} orderings, "
        f"tolerance {tol:g} relative + {abs_tol:g} absolute; {summary}"
    )
    return 1 if failing or recovery_failed else 0


def _recovery(args: argparse.Namespace, rows: list) -> bool:  # type: ignore[type-arg]
    """Print the recovery check's findings (when asked for); True when it fails."""
    if args.min_recovery is None:
        return False
    from qigbench.report.recovery import check_recovery

    found = check_recovery(rows, args.min_recovery)
    for line in found.lines():
        failing = line.startswith("RECOVERY")
        if failing or not args.quiet:
            print(line, file=sys.stderr if failing else sys.stdout)
    print(f"qigbench check: {'FAIL' if found.fails else 'ok'}: {found.summary()}")
    return found.fails


def _write(args: argparse.Namespace, rows: list) -> int:  # type: ignore[type-arg]
    from qigbench.report.regression import Baseline, baseline_from_rows
    from qigbench.results.environment import git_commit

    previous = Baseline.load(args.baseline).orderings if args.baseline.is_file() else []
    from qigbench.report.regression import DEFAULT_TOLERANCE

    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    abs_tol = 0.0 if args.abs_tolerance is None else args.abs_tolerance
    meta = {"source_db": str(args.db), "git_commit": git_commit()}
    baseline = baseline_from_rows(rows, previous, args.ordering, tol, abs_tol, meta)
    baseline.dump(args.baseline)
    print(f"wrote {args.baseline}: {len(baseline.entries)} metrics, {len(baseline.orderings)} orderings")
    return 0
