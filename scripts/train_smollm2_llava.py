"""Retrain smollm2-llava's vision tower and projector and install them into the package.

A wrapper of :mod:`qigbench.training.smollm2_llava` (the product logic lives there). The committed
weights (``qigbench/models/weights/``) come from this, with the defaults (recipe v2, seed 0, 1000 stage-0 +
400 stage-1 steps; 24.9 min wall, 24.7 min process CPU on one core of a 2-core machine):

    python scripts/train_smollm2_llava.py --out runs/smollm2-llava            # train, evaluate, install
    python scripts/train_smollm2_llava.py --out runs/smollm2-llava --no-install
"""

from __future__ import annotations

import argparse
import sys

from qigbench.training.smollm2_llava import main as training_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", required=True, help="run folder (checkpoint, weights, record, log)")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--limit", default="32", help="held-out items per task for the final evaluation")
    parser.add_argument("--no-install", action="store_true", help="leave the package's committed weights alone")
    args = parser.parse_args(argv)
    common = ["--out", args.out]
    code = training_main(["train", *common, "--seed", args.seed])
    code = code or training_main(["evaluate", *common, "--limit", args.limit])
    if not args.no_install:
        code = code or training_main(["install", *common])
    return code


if __name__ == "__main__":
    sys.exit(main())
