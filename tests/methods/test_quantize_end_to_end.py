"""`qigbench quantize` on every tiny family with every method: the saved model loads back through
from_pretrained with its quantizers in place, reproduces the in-memory outputs, and evaluates."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from qigbench.cli import main
from qigbench.eval.fidelity import fidelity
from qigbench.models.aliases import ALIASES, SourceKind
from qigbench.models.loading import load_model
from qigbench.models.registry import family_named
from qigbench.models.tiny import TINY_SPECIMENS
from qigbench.pipeline import RECORD_NAME, load_quantized
from qigbench.quant import ChannelActQuantLinear, QuantLinear

FAMILIES = [a.name for a in ALIASES if a.kind is SourceKind.TINY]  # every tiny family, from the registry
TEXT_ONLY = {a.name for a in ALIASES if a.kind is SourceKind.TINY and not family_named(a.family).multimodal}
METHODS = ["rtn", "gptq", "awq", "smoothquant", "mbq", "qig", "qig-gptq"]
#: the other two seed methods of the project, each in both formats (Q-VLM's paper mode in one)
SEED_CASES = [("qvlm", fmt, ()) for fmt in ("W3A16", "W4A8")] + [("tlq", fmt, ()) for fmt in ("W3A16", "W4A8")]


def _options(method: str) -> list[str]:
    if method in {"qig", "qig-gptq"}:
        return ["-o", "qig.steps=4"] + (["-o", "n_grid=5"] if method == "qig" else [])
    if method in {"awq", "mbq", "tlq"}:
        return ["-o", "n_grid=5"]
    return []


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_quantize_save_load_evaluate(family: str, method: str, tmp_path: Path, cache_dir: Path, calib_for) -> None:  # type: ignore[no-untyped-def]
    if method == "mbq" and family in TEXT_ONLY:
        pytest.skip("MBQ balances vision against text: a text-only model has no vision tokens")
    # both formats across the matrix (deterministically), SmoothQuant is a weight-activation method
    fmt = "W4A8" if method == "smoothquant" else ("W3A16" if zlib.crc32((family + method).encode()) % 2 else "W4A8")
    _quantize_save_load_evaluate(family, method, fmt, tmp_path, cache_dir, calib_for)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("method", "fmt", "extra"), [
    *SEED_CASES, ("qvlm", "W4A8", ("mode=paper",)), ("qvlm", "W3A16", ("mode=paper", "sweeps=1"))
])
def test_seed_methods_save_load_evaluate(family: str, method: str, fmt: str, extra: tuple[str, ...], tmp_path: Path,
                                         cache_dir: Path, calib_for) -> None:  # type: ignore[no-untyped-def]
    """Q-VLM (both modes) and TLQ in both formats on every tiny family; Q-VLM's static ranges
    survive the save (they are not part of the plain checkpoint) and come back on load."""
    options = [a for o in extra for a in ("-o", o)]
    quantized = _quantize_save_load_evaluate(family, method, fmt, tmp_path, cache_dir, calib_for, options)
    if method == "qvlm" and fmt == "W4A8":
        channel = [m for m in quantized.model.modules() if isinstance(m, ChannelActQuantLinear)]
        assert channel and any(m.static for m in channel)


def _quantize_save_load_evaluate(family, method, fmt, tmp_path, cache_dir, calib_for, extra=()):  # type: ignore[no-untyped-def]
    out = tmp_path / "q"
    argv = ["quantize", "--model", family, "--method", method, "--format", fmt, "--samples", "4",
            "--max-length", str(64 + TINY_SPECIMENS[family].min_length),  # Phi-4-mm's images take >= 545 tokens
            "--cache-dir", str(cache_dir), "--save", str(out), "--no-progress",
            *_options(method), *extra]
    assert main(argv) == 0
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["format"] == fmt and record["method"]["method"] == method
    assert record["quantized_modules"] and all(0 <= b["rel_error"] < 1 for b in record["blocks"])

    quantized = load_quantized(out)
    assert sum(isinstance(m, QuantLinear) for m in quantized.model.modules()) == len(record["quantized_modules"])
    reference = load_model(family, cache_dir=cache_dir)
    batches = [b.inputs for b in calib_for(reference, n=2)]
    result = fidelity(reference.model, quantized.model, batches)
    assert result.tokens > 0 and 0 < result.kl < 10 and 0 <= result.flip_rate <= 1
    return quantized
