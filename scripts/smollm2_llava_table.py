"""smollm2-llava's accuracy table and paired orderings, read from a results database.

Fill the database with ``qigbench run`` (the commands are in the README section 'A real-weights
VLM: smollm2-llava'), then:

    python scripts/smollm2_llava_table.py --db runs/table.db > table.md

Prints, per (format, method): each pack task's accuracy and their mean, as mean ± the half-width
of the 95% interval (t over seeds with two seeds or more, else a bootstrap over the one seed's
examples; :func:`qigbench.stats.interval`), the seeds measured, and the paired tests (the
project's :func:`qigbench.stats.compare`: same seeds, same examples) of every method against RTN
and of RTN against FP16. Only what the database holds is printed: a cell with no rows is
"not measured".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qigbench.report.regression import Key, samples
from qigbench.results.store import ResultsStore
from qigbench.stats import Measurement, compare, interval, mean_of

#: accuracy metric of each pack task smollm2-llava is measured on
TASKS = {
    "qig_vqa_colour": "exact_match",
    "qig_vqa_shape": "exact_match",
    "qig_vqa_count": "exact_match",
    "qig_mc_chart": "acc",
    "qig_mc_diagram": "acc",
}
FP = "fp16"


def _cell(m: Measurement | None) -> str:
    if m is None:
        return "not measured"
    iv = interval(m)
    half = "" if iv is None else f" ± {100 * (iv.high - iv.low) / 2:.1f}"
    return f"{100 * m.mean:.1f}{half}"


def _pick(found: dict[Key, Measurement], method: str, fmt: str, task: str) -> Measurement | None:
    got = [v for (_, me, f, _, t, mt), v in found.items() if me == method and f == fmt and t == task and mt == TASKS[t]]
    return got[0] if got else None


def _mean(found: dict[Key, Measurement], method: str, fmt: str) -> Measurement | None:
    parts = [_pick(found, method, fmt, t) for t in TASKS]
    return None if any(p is None for p in parts) else mean_of([p for p in parts if p is not None])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-llava")
    parser.add_argument("--formats", default="W3A16g64,W4A8")
    args = parser.parse_args(argv)
    with ResultsStore(args.db, readonly=True) as store:
        rows = [r for r in store.rows() if r.model == args.model]
    found = samples(rows)
    methods = sorted({r.method for r in rows if r.method != FP})
    seeds: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        seeds.setdefault((r.method, r.format), set()).add(r.seed)
    fp_format = next((r.format for r in rows if r.method == FP), None)
    head = "| format | method | seeds | " + " | ".join(TASKS) + " | mean |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    lines = [(fp_format, FP)] if fp_format else []
    lines += [(f, m) for f in args.formats.split(",") for m in methods]
    for fmt, method in lines:
        cells = [_cell(_pick(found, method, fmt, t)) for t in TASKS] + [_cell(_mean(found, method, fmt))]
        have = sorted(seeds.get((method, fmt), set()))
        print(f"| {fmt} | {method} | {','.join(map(str, have)) or '-'} | " + " | ".join(cells) + " |")
    print()
    print("Paired tests (95%; bootstrap over seeds x examples), accuracy mean over the five tasks:")
    fp = _mean(found, FP, fp_format) if fp_format else None
    for fmt in args.formats.split(","):
        rtn = _mean(found, "rtn", fmt)
        pairs = [(m, _mean(found, m, fmt), rtn, "rtn") for m in methods if m != "rtn"]
        pairs.append((FP, fp, rtn, "rtn"))
        for name, a, b, bname in pairs:
            if a is None or b is None:
                continue
            c = compare(a, b, higher_is_better=True)
            print(
                f"- {fmt}: {name} - {bname} = {100 * c.diff:+.1f} points "
                f"[{100 * c.low:+.1f}, {100 * c.high:+.1f}] ({c.test}, n={c.n}): {c.verdict.value}"
            )
    print()
    print("Paired tests on the fidelity prompts' KL to FP16 (lower is better):")
    for fmt in args.formats.split(","):
        rtn = _fidelity(found, "rtn", fmt)
        for name in methods:
            a = _fidelity(found, name, fmt)
            if name == "rtn" or a is None or rtn is None:
                continue
            c = compare(a, rtn, higher_is_better=False)
            print(
                f"- {fmt}: KL {name} {a.mean:.3f} vs rtn {rtn.mean:.3f}, diff {c.diff:+.3f} "
                f"[{c.low:+.3f}, {c.high:+.3f}] ({c.test}, n={c.n}): {c.verdict.value}"
            )
    return 0


def _fidelity(found: dict[Key, Measurement], method: str, fmt: str) -> Measurement | None:
    want = (method, fmt, "fidelity", "kl")
    got = [v for (_, me, f, _, t, mt), v in found.items() if (me, f, t, mt) == want]
    return got[0] if got else None


if __name__ == "__main__":
    sys.exit(main())
