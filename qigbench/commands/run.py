"""``qigbench run``: quantize, evaluate, store and report a matrix in one command.

The default runs offline on a laptop CPU in a few minutes: tiny-qwen2vl, RTN / AWQ / MBQ / QIG at
W3A16 and W4A8, three offline pack tasks (10 examples each) plus fidelity to the fp model, 16
calibration samples. The same machinery as ``pytest suites/`` (:mod:`qigbench.matrix`), without
pytest; on a GPU, ``qigbench run --model qwen2vl --device cuda`` runs the paper's Table 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

NAME = "run"
HELP = "run a benchmark matrix end to end (quantize, evaluate, store, report)"
TINY_LIMIT = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", help="alias or folder, repeatable or comma list (tiny-qwen2vl)")
    parser.add_argument("--methods", help="comma list (default rtn,awq,mbq,qig,qvlm,tlq)")
    parser.add_argument("--formats", help="comma list (default W3A16,W4A8; the model's own where it names them, "
                        "e.g. W3A16g64,W4A8 for smollm2-llava)")
    parser.add_argument("--tasks", help="comma list of paper aliases / qig_* pack tasks / 'fidelity' (default by tier)")
    parser.add_argument(
        "--table",
        action="append",
        help="paper tables to run (default table2): table2, table5, table6, tableA2, tableA3, table1, table4, tableA1",
    )
    parser.add_argument("--limit", type=int,
                        help=f"examples per task (default {TINY_LIMIT} on the offline tiny-* and smollm2-*, else all)")
    parser.add_argument("--samples", type=int,
                        help="calibration samples (default 16 on the offline tiny-* and smollm2-*, else 128)")
    parser.add_argument("--seeds", help="comma list of seeds (default 0)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="[METHOD:]KEY=VALUE",
                        help="method option for every configuration it applies to, e.g. -o qig.steps=8 "
                        "(repeatable; stored as qig[steps=8]); METHOD:KEY=VALUE scopes it to one method")
    parser.add_argument("--db", type=Path, default=Path("results.db"), help="results database (default results.db)")
    parser.add_argument("--out", type=Path, default=Path("reports/latest"), help="report folder (reports/latest)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument(
        "--on-conflict",
        choices=("replace", "skip"),
        default="skip",
        help="configurations/tasks already in the db: skip (default) or re-run and replace",
    )
    parser.add_argument("--cache-dir", help="qigbench cache (models, calibration sets, task pack)")
    parser.add_argument("--no-report", action="store_true", help="only fill the database")
    from qigbench.distributed.arguments import add_arguments as add_distributed_arguments

    add_distributed_arguments(parser)
    parser.add_argument("--memory-budget", help="bytes a streamed chunk of attribution / search may take, e.g. "
                        "8GiB (default: half the device's free memory)")


def run(args: argparse.Namespace) -> int:
    import torch

    from qigbench.distributed.arguments import run_jobs, wants_jobs
    from qigbench.errors import QigbenchError
    from qigbench.matrix.cases import TABLES, check_method_options, items
    from qigbench.matrix.options import build_options, model_defaults, pin_threads, split_list
    from qigbench.matrix.preflight import preflight
    from qigbench.matrix.session import ConfigClaimed, SuiteSession
    from qigbench.report.build import ReportOptions, build_report, check_out

    if not args.no_report and not args.dry_run:
        check_out(args.out)  # an unwritable --out fails now, not after the whole matrix has run
    tables = [t for spec in (args.table or ["table2"]) for t in spec.split(",") if t]
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise QigbenchError(f"unknown table {unknown}; choose from {', '.join(TABLES)}")
    formats = args.formats or ",".join(model_defaults(split_list(args.model), "formats")) or None
    options = build_options(
        models=args.model,
        methods=args.methods,
        formats=formats,
        tasks=args.tasks,
        seeds=args.seeds,
        limit=args.limit,
        samples=args.samples,
        db=args.db,
        on_conflict=args.on_conflict,
        cache_dir=args.cache_dir,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        heatmap_dir=args.out / "heatmaps",  # with the report they belong to, not next to --db
        verify_device=not args.dry_run and args.executor == "local",
        memory_budget=args.memory_budget,
        method_options=getattr(args, "option", None),
    )
    pin_threads(options)
    if options.limit is None and options.tiny:
        options = options.with_(limit=TINY_LIMIT)
    matrices = [TABLES[t](options) for t in tables]
    check_method_options(matrices, options)
    if wants_jobs(args):
        if not args.dry_run and args.executor == "local":  # --workers N: this machine runs the jobs
            checked = preflight([pair for matrix in matrices for pair in items(matrix)], options)
            if not checked.ok:
                raise QigbenchError("nothing was run:\n  - " + "\n  - ".join(checked.lines()))
        start = time.perf_counter()
        code = run_jobs(args, options, matrices, note="qigbench run " + ",".join(tables))
        if args.dry_run:
            return code
        print(f"matrix done in {time.perf_counter() - start:.0f}s; results in {options.db}")
        for line in model_notes(options.models):
            print(line)
        return _report(args, options, tables, build_report, ReportOptions) or code
    session = SuiteSession(options, note="qigbench run " + ",".join(tables))
    for matrix in matrices:
        for case, tasks in matrix:
            session.expect(case, tasks)
    todo = [pair for matrix in matrices for pair in items(matrix)]
    checked = preflight(todo, options)  # every model and dataset, before the first calibration
    if not checked.ok:
        raise QigbenchError("nothing was run:\n  - " + "\n  - ".join(checked.lines()))
    start = time.perf_counter()
    try:
        for n, (case, task) in enumerate(todo, 1):
            where = f"[{n}/{len(todo)}] {case.model} {case.stored_method} {case.format} {task}"
            if not session.is_cached(case) and session.is_done(case, task):
                session.counters.skipped += 1
                print(f"{where}: already in {options.db}, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            try:
                found = session.measure(case, task)
            except ConfigClaimed as held:
                session.counters.skipped += 1
                print(f"{where}: skipped, {held}", flush=True)
                continue
            values = ", ".join(f"{k}={v:.4g}" for k, v in found.values.items())
            print(f"{where}: {values} ({time.perf_counter() - t0:.1f}s)", flush=True)
    finally:
        print(session.summary())
        session.close()
    print(f"matrix done in {time.perf_counter() - start:.0f}s; results in {options.db}")
    for line in model_notes(options.models):
        print(line)
    return _report(args, options, tables, build_report, ReportOptions)


#: the second README command: the offline model whose accuracy does tell methods apart
REAL_WEIGHTS_RUN = "qigbench run --model smollm2-llava"


def model_notes(models: tuple[str, ...]) -> list[str]:
    """What the run's models can and cannot show (printed after the matrix, and in the report title)."""
    out = []
    for model in models:
        if model.startswith("tiny-"):
            out.append(
                f"model: {model} (offline, random weights): its accuracy is at chance for every method and FP16 "
                "alike, so it cannot tell methods apart; only the fidelity columns (KL, flip rate, block error) "
                f"differ. Accuracy that does discriminate: `{REAL_WEIGHTS_RUN}` (real SmolLM2-135M decoder; "
                "README, 'A real-weights VLM')"
            )
        elif model == "smollm2-llava":
            out.append(
                f"model: {model} (real SmolLM2-135M decoder, a dequantized Q4_1 GGUF; vision tower trained here): "
                "read orderings at W3A16g64 and W4A8 (4-bit weight-only formats may flatter on its 4-bit-grid weights)"
            )
        else:
            out.append(f"model: {model}")
    return out


def _report(args: argparse.Namespace, options: Any, tables: list[str], build_report: Any, report_options: Any) -> int:
    if not args.no_report:
        title = f"qigbench run: {', '.join(tables)} on {', '.join(options.models)}"
        if all(m.startswith("tiny-") for m in options.models):
            title += " (random weights: accuracy at chance, fidelity differs)"
        written = build_report(options.db, args.out, report_options(title=title))
        html = next((p for p in written if p.suffix == ".html"), written[0] if written else args.out)
        print(f"report: {html}")
    return 0
