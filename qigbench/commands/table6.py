"""``qigbench table6``: the paper's Table 6 reproduced at a real width, in interleaved rounds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "table6"
HELP = (
    "reproduce Table 6 (calibration cost of MBQ, QIG at m = 32, the fast variant, leave-one-out, GPTQ, QIG+GPTQ) "
    "on a real-shape model: interleaved rounds in fresh processes, process-CPU-time and peak-memory ratios to MBQ"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="shape:qwen2vl-7b@2+vision=2+width=4",
                        help="a real shape with its depth and width (default: Qwen2-VL-7B, 2 blocks, vision depth 2, "
                        "width 1/4; no +width is the full width), or any model alias (tiny-qwen2vl: a quick look)")
    parser.add_argument("--format", default="W3A16")
    parser.add_argument("--samples", type=int, default=None, help="calibration samples (default 32; 128 on cuda)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3 for a median and range)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per calibration on CPU (default 1)")
    parser.add_argument("--memory-budget", help="bytes a streamed chunk may take, e.g. 8GiB")
    parser.add_argument("--loo-rounds", type=int, help="cap leave-one-out's rounds (each in a round of its own "
                        "with MBQ, after the others); on a CPU one leave-one-out run at a real width takes hours")
    parser.add_argument("--methods", help="comma-separated row labels to run (default: all six), e.g. mbq,gptq")
    parser.add_argument("--out", default="reports/scale/table6.jsonl",
                        help="JSONL of every run's raw numbers, appended as each finishes; a rerun resumes from it")
    parser.add_argument("--summary", help="also write the summary here (.md; a .json beside it)")
    parser.add_argument("--report-only", action="store_true", help="summarise --out without running anything")
    parser.add_argument("--cache-dir", help="where shapes and synthetic data are built (env QIGBENCH_CACHE)")
    parser.add_argument("--timeout", type=float, help="seconds one calibration may take")
    parser.add_argument("--round", action="append", dest="round_ids", metavar="ID",
                        help="run only this round (repeatable; ids 0, 1, ..., and leave-one-out#0): several "
                        "processes can run disjoint rounds into one --out at once, e.g. one per core")
    parser.add_argument("--only", action="append", dest="only_labels", metavar="LABEL",
                        help="run only this row of the plan (repeatable; the plan and its pairing stay whole), "
                             "e.g. two processes finishing one round on two cores")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor probe (let one process run it)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from qigbench.cost.goals import enforce
    from qigbench.cost.table import machine_label
    from qigbench.cost.table6 import (
        Table6Error,
        Table6Plan,
        file_agreement,
        load_plan,
        machine_of,
        read_records,
        run_table6,
    )
    from qigbench.cost.table6_summary import format_summary, summarise, summary_json
    from qigbench.models.shapes.alias import parse_shape_alias

    out = Path(args.out)
    if args.report_only:
        running = [flag for flag, given in (("--round", args.round_ids), ("--only", args.only_labels),
                                            ("--no-floor", args.no_floor)) if given]  # fmt: skip
        if running:
            raise Table6Error(f"--report-only runs nothing, so {', '.join(running)} would be ignored: drop "
                              f"{'them' if len(running) > 1 else 'it'}, or drop --report-only to run")  # fmt: skip
        plan = load_plan(out)
    else:
        if args.model.startswith("shape:"):
            parse_shape_alias(args.model)  # a bad spelling fails before anything runs
        samples = args.samples or (128 if args.device.startswith("cuda") else 32)
        from qigbench.cost.table6 import table6_variants

        plan = Table6Plan(
            variants=table6_variants(loo_rounds=args.loo_rounds), model=args.model, format=args.format,
            samples=samples, batch_size=args.batch_size,
            image_size=args.image_size, rounds=args.rounds, device=args.device, dtype=args.dtype,
            threads=args.threads, memory_budget=args.memory_budget,
        )  # fmt: skip
        if args.methods:
            wanted = {m.strip() for m in args.methods.split(",")} | {"mbq"}
            known = {v.label for v in plan.variants}
            unknown = wanted - known
            if unknown:
                raise Table6Error(f"unknown row(s) {sorted(unknown)}; choose from {sorted(known)}")
            plan = replace(plan, variants=tuple(v for v in plan.variants if v.label in wanted))
    records = read_records(out, plan) if args.report_only else run_table6(
        plan, out, args.cache_dir, timeout=args.timeout, rounds=args.round_ids, floor=not args.no_floor,
        labels=args.only_labels)
    summary = summarise(plan, records, file_agreement, read_records(out, plan, "floor"),
                        read_records(out, plan, "agreement"))
    done = {(r["round"], r["label"], machine_of(r)) for r in records}
    failed = [f for f in read_records(out, plan, "failure")
              if machine_of(f) == summary.machine and (f["round"], f["label"], machine_of(f)) not in done
              and (args.round_ids is None or f["round"] in args.round_ids)]  # fmt: skip
    text = format_summary(summary, machine_label(plan.device))
    print(text)
    if args.summary:
        path = Path(args.summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        path.with_suffix(".json").write_text(json.dumps(summary_json(summary), indent=1) + "\n")
    enforce(summary.verdicts)
    if failed:
        print(f"\n{len(failed)} run(s) failed and are missing above (rerun the same command to retry them):")
        for f in failed:
            print(f"- round {f['round']} {f['label']}: {f['error'].splitlines()[0]}")
        return 1
    return 0
