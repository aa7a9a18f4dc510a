"""Block error and next-token KL to the fp model for several methods and formats on one model.

    python scripts/fidelity_table.py --model smollm2-135m --formats W3A16g64,W4A8 \\
        --methods rtn,awq,qig,gptq,qig-gptq --samples 8 --max-length 128

Prints a Markdown table (block rel. error / KL in nats per token); the suites' ``--tasks fidelity``
measure the same numbers into the results store, this is the quick one-model view.
"""

from __future__ import annotations

import argparse
import time

import torch

from qigbench.data.defaults import default_calibration
from qigbench.eval.fidelity import fidelity, text_batches
from qigbench.models.loading import load_model
from qigbench.pipeline import QuantizeRequest, quantize

PROMPTS = [
    "The history of the river valley begins with",
    "In the morning the market opens and the first traders",
    "A simple recipe for bread needs flour, water and",
    "The committee met on Tuesday to discuss the budget for",
    "Mountains in the north are covered with snow until",
    "She opened the letter and read the first line:",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--formats", default="W3A16,W4A8")
    parser.add_argument("--methods", default="rtn,awq,qig,gptq,qig-gptq")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = load_model(args.model)
    held_out = text_batches(reference.tokenizer, PROMPTS, batch_size=3)
    calib = str(default_calibration(reference, seed=args.seed))
    rows = []
    for fmt in args.formats.split(","):
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            request = QuantizeRequest(model=args.model, method=method, format=fmt, calib=calib, samples=args.samples,
                                      seed=args.seed, max_length=args.max_length, progress=False)
            result = quantize(request)
            fid = fidelity(reference.model, result.loaded.model, held_out)
            rows.append((fmt, method, result.report.mean_block_error, fid.kl, fid.flip_rate, time.perf_counter() - t0))
            print(f"{fmt} {method}: block error {rows[-1][2]:.4f}, KL {fid.kl:.4f}, flips {fid.flip_rate:.3f}, "
                  f"{rows[-1][5]:.0f}s", flush=True)
    print("\n| format | method | block error | KL | flip rate | seconds |\n|---|---|---|---|---|---|")
    for fmt, method, err, kl, flips, sec in rows:
        print(f"| {fmt} | {method} | {err:.4f} | {kl:.4f} | {flips:.3f} | {sec:.0f} |")


if __name__ == "__main__":
    main()
