"""``qigbench eval --model DIR_OR_ALIAS --tasks a,b``: run tasks through lmms-eval / lm-eval."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

NAME = "eval"
HELP = "evaluate a model on paper tasks (vizwiz, mmmu, ..., piqa, wikitext) or the offline task pack"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or alias (tiny-qwen2vl, smollm2-135m, ...)")
    parser.add_argument(
        "--tasks", required=True, help="comma-separated: paper aliases, qig_* pack tasks, lmms:NAME, lm:NAME"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples of each task")
    parser.add_argument("--output", type=Path, default=None, help="folder for the harness results JSON")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--include-path", type=Path, default=None, help="extra folder of task YAMLs (for local copies of datasets)"
    )
    parser.add_argument("--pack-seed", type=int, default=0, help="seed of the offline task pack (qig_* tasks)")
    parser.add_argument("--pack-size", type=int, default=32, help="examples per offline pack task")


def run(args: argparse.Namespace) -> int:
    import torch

    from qigbench.device import check_device
    from qigbench.errors import check_positive
    from qigbench.eval.aliases import check_offline_data, resolve_tasks
    from qigbench.eval.runner import evaluate_lm, evaluate_vlm
    from qigbench.eval.tasks import LM_SUBDIR, LMMS_SUBDIR, write_task_pack
    from qigbench.models.loading import load_model

    check_positive("--batch-size", args.batch_size)
    check_positive("--limit", args.limit)
    check_positive("--pack-size", args.pack_size)
    args.device = check_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = args.tasks.split(",")
    resolved = resolve_tasks(names)  # unknown names and missing data fail here, before the model loads
    for task in resolved:
        if task.alias is not None:
            check_offline_data(task.alias)
    from qigbench.pipeline import RECORD_NAME, load_quantized

    if (Path(args.model) / RECORD_NAME).exists():  # saved by `qigbench quantize --save`: packed or fake-quant
        loaded = load_quantized(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    else:
        loaded = load_model(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    with tempfile.TemporaryDirectory(prefix="qigbench-pack-") as tmp:
        root = write_task_pack(tmp, seed=args.pack_seed, n=args.pack_size) if any(t.pack for t in resolved) else None
        results = []
        for harness in ("lmms", "lm"):
            chosen = [t.requested for t in resolved if t.harness == harness]
            if not chosen:
                continue
            include = [str(root / (LMMS_SUBDIR if harness == "lmms" else LM_SUBDIR))] if root else []
            include += [str(args.include_path)] if args.include_path else []
            common = {
                "include_path": include or None,
                "limit": args.limit,
                "batch_size": args.batch_size,
                "device": args.device,
            }
            if harness == "lmms":
                results.append(evaluate_vlm(loaded.model, loaded.processor, chosen, **common))
            else:
                results.append(evaluate_lm(loaded.model, loaded.tokenizer, chosen, **common))
    for result in results:
        print(result.table())
        if args.output is not None:
            print(f"results written to {result.write(args.output)}")
    return 0
