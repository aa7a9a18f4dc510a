"""Checks and measurements behind issue 20's family work (items 4, 7, 8); a thin wrapper over the package.

    python scripts/family_checks.py sha CACHE OUT.json        # sha256 of every file of every built tiny model
    python scripts/family_checks.py hashes OUT.json           # config hash of every tiny matrix case
    python scripts/family_checks.py order MODEL SAMPLES [FMT] # GPTQ block error: data-flow vs definition order
    python scripts/family_checks.py slices MODEL SAMPLES [FMT] [VARIANT]  # AWQ: o/down scaled vs unscaled

Run ``sha`` and ``hashes`` on two commits and compare the files: equal files mean no tiny model's bytes
and no configuration hash moved.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def sha(cache: str, out: str) -> None:
    from qigbench.models.aliases import ALIASES, SourceKind
    from qigbench.models.tiny import ensure_tiny

    digests = {}
    for alias in (a for a in ALIASES if a.kind is SourceKind.TINY):
        folder = ensure_tiny(alias.name, cache)
        digests[alias.name] = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
        }
    Path(out).write_text(json.dumps(digests, indent=1, sort_keys=True))
    print({k: len(v) for k, v in digests.items()})


def hashes(out: str) -> None:
    from qigbench.matrix.cases import TABLES
    from qigbench.matrix.options import SuiteOptions
    from qigbench.pipeline import QuantizeRequest

    methods = ("rtn", "gptq", "awq", "smoothquant", "mbq", "qig", "qig-gptq", "qvlm", "tlq")
    found: dict[str, str] = {}
    for models in (("tiny-qwen2vl",), ("tiny-qwen2vl", "tiny-llama", "tiny-internvl", "tiny-llava")):
        opts = SuiteOptions(models=models, methods=methods, formats=("w3a16", "w4a8"))
        for name, table in TABLES.items():
            for case, _ in table(opts):
                found[f"{name}|{case.ident()}"] = case.config_hash()
    for method in methods:
        request = QuantizeRequest(model="tiny-llama", method=method, format="W3A16", samples=4)
        found[f"quantize|{method}"] = request.config_hash()
    Path(out).write_text(json.dumps(found, indent=1, sort_keys=True))
    print(len(found), "hashes")


def _blocks(model: str, method: str, fmt: str, samples: int, options: tuple[tuple[str, str], ...] = ()) -> Any:
    from qigbench.pipeline import QuantizeRequest, quantize

    start = time.process_time()
    result = quantize(QuantizeRequest(model=model, method=method, format=fmt, samples=samples, options=options,
                                      progress=False))  # fmt: skip
    blocks = result.report.blocks
    return {
        "rel_error": [b["rel_error"] for b in blocks],
        "groups": [list(b["groups"]) for b in blocks],
        "alpha": [{g: s["alpha"] for g, s in b["groups"].items() if "alpha" in s} for b in blocks],
        "cpu_s": round(time.process_time() - start, 1),
    }


def order(model: str, samples: str, fmt: str = "W3A16g32") -> None:
    """GPTQ (true-sequential) with the groups in data-flow order (now) and in module-definition order (before)."""
    import qigbench.engine.context as context
    from qigbench.models.groups import resolve_groups

    def definition_order(block: Any, family: Any) -> Any:
        index = {name: i for i, (name, _) in enumerate(block.named_modules())}
        return sorted(resolve_groups(block, family), key=lambda g: min(index[n] for n in g.linear_names))

    for label, resolver in (("data-flow", resolve_groups), ("definition", definition_order)):
        context.resolve_groups = resolver  # type: ignore[attr-defined]
        print(label, json.dumps(_blocks(model, "gptq", fmt, int(samples))), flush=True)
    context.resolve_groups = resolve_groups  # type: ignore[attr-defined]


def slices(model: str, samples: str, fmt: str = "W3A16g32", variant: str = "") -> None:
    """AWQ with "o" and "down" scaled (through fused slices on Phi-3) and with them left unscaled (before)."""
    variants = {"scaled": (), "unscaled": (("skip_groups", "o,down"),)}
    for label, options in variants.items():
        if not variant or variant == label:
            print(label, json.dumps(_blocks(model, "awq", fmt, int(samples), options)), flush=True)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    command, *args = sys.argv[1:]
    {"sha": sha, "hashes": hashes, "order": order, "slices": slices}[command](*args)
