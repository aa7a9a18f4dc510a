"""``qigbench quantize``: quantize one model with one method and save it with its record."""

from __future__ import annotations

import argparse
import json

from qigbench.errors import QigbenchError

NAME = "quantize"
HELP = "quantize a model (alias or path) with a method and save the result"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="alias (see `qigbench models`) or local path")
    parser.add_argument("--method", required=True, help="method plugin (see `qigbench methods`)")
    parser.add_argument("--format", default="W3A16", help="e.g. W3A16, W4A8, W4A16g64 (see `qigbench formats`)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="method option, e.g. -o n_grid=10 -o qig.steps=16 (repeatable)")
    parser.add_argument("--calib", help="calibration file (ShareGPT4V-style JSON or text); default: the "
                        "offline synthetic set for the model's kind")
    parser.add_argument("--samples", type=int, default=128, help="calibration samples (paper: 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int)
    parser.add_argument(
        "--device", default="cpu", help="compute device, e.g. cuda:0 (blocks move there one at a time)"
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--propagation", default="auto", choices=["auto", "fp", "quantized"])
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--cache-dir", help="where tiny models and synthetic data are built (env QIGBENCH_CACHE)")
    parser.add_argument("--resume-dir", help="save each finished block here and resume from it after an interruption")
    parser.add_argument("--memory-budget", help="bytes a streamed chunk of attribution / search may take, e.g. 8GiB "
                        "(default: half the device's free memory); lower it after an out-of-memory error")
    parser.add_argument("--save", help="directory for the quantized model and its record")
    parser.add_argument("--export", default="compressed-tensors", choices=["compressed-tensors", "fake-quant"],
                        help="layout of the saved weights: packed integer codes + quantization_config (vLLM, "
                        "transformers), or float weights on the grid")
    parser.add_argument("--heatmap", help="write the token-sensitivity heatmap (token-weighting methods) to this PNG")
    parser.add_argument("--no-progress", action="store_true")


def parse_options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise QigbenchError(f"method option {pair!r} must look like KEY=VALUE, e.g. n_grid=10")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    from qigbench.pipeline import (
        QuantizeRequest,
        check_file_target,
        check_save_target,
        quantize,
        save_quantized,
        write_heatmap,
    )

    request = QuantizeRequest(
        model=args.model, method=args.method, format=args.format, options=parse_options(args.option),
        calib=args.calib, samples=args.samples, seed=args.seed, batch_size=args.batch_size,
        max_length=args.max_length, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
        cache_dir=args.cache_dir, resume_dir=args.resume_dir, propagation=args.propagation,
        progress=not args.no_progress, memory_budget=args.memory_budget,
    )
    request.validate()
    if args.save:  # outputs are checked before calibrating: a late failure would lose the calibration
        check_save_target(args.save)
    if args.heatmap:
        check_file_target(args.heatmap, "--heatmap")
    result = quantize(request)
    record = result.record()
    summary = {k: record[k] for k in ("model_source", "method", "label", "format", "propagation", "seconds",
                                      "peak_memory_bytes", "mean_block_error")}
    summary["block_errors"] = [round(b["rel_error"], 6) for b in record["blocks"]]
    if args.save:
        summary["saved_to"] = str(save_quantized(result, args.save, export=args.export))
    if args.heatmap:
        written = write_heatmap(result, args.heatmap)
        summary["heatmap"] = str(written) if written else f"none: {args.method} computes no token weights"
    print(json.dumps(summary, indent=1, default=str))
    return 0
