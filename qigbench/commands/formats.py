"""``qigbench formats W3A16 W4A8 ...``: show how format strings are understood."""

from __future__ import annotations

import argparse

NAME = "formats"
HELP = "explain quantization format strings (default: the paper's formats)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("formats", nargs="*", default=["W3A16", "W4A16", "W4A8", "W8A8"])


def run(args: argparse.Namespace) -> int:
    from qigbench.quant import parse_format

    for text in args.formats:
        fmt = parse_format(text)
        w = fmt.weight
        grid = "symmetric" if w.symmetric else "asymmetric"
        where = f"groups of {w.group_size}" if w.group_size else w.granularity.value
        act = "fp16 (not quantized)"
        if fmt.activation is not None:
            act = f"{fmt.a_bits}-bit symmetric, dynamic {fmt.activation.granularity.value}"
        print(f"{fmt.name:10s} weights: {w.bits}-bit {grid}, {where}; activations: {act}")
    return 0
