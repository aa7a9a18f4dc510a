"""Shared setup of the llm-compressor cross-check: one random LLaMA, one token set, both tools.

Why this shape: the comparison is only meaningful if both libraries see exactly the same model
weights and the same calibration token ids, and if both results are scored the same way. So:

* the calibration and held-out sets are fixed-length chunks of one token stream (no padding: the
  SmoothQuant statistics of llm-compressor are taken over every position, ours over non-padding
  positions; with no padding both see the same tokens);
* each run starts from a fresh ``from_pretrained`` of the same directory;
* llm-compressor's result is read back as plain dequantized weights (``weight`` after ``oneshot``
  is already on its grid; we check that against its own ``weight_scale``/``weight_zero_point``)
  and copied into a fresh fp model, so both results are scored by the same plain forward pass.

Imports of llm-compressor happen inside functions: this module is imported only after the test
modules' ``importorskip``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from qigbench.data.batch import CalibrationBatch
from qigbench.data.synthetic import write_text_set
from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.random_llama import RandomLlamaSpec, ensure_random_llama
from qigbench.models.registry import family_for
from qigbench.quant import parse_format
from qigbench.tokens import TokenType

#: hidden 256 (two g128 groups per row), intermediate 768 (six), 2 layers: big enough that GPTQ's
#: and AWQ's choices matter, small enough for a 2-core machine
SPEC = RandomLlamaSpec(
    hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4
)
#: the timing comparison's mid-size model: the solvers' cost, not per-call overhead, should dominate
BENCH_SPEC = RandomLlamaSpec(
    hidden_size=512, intermediate_size=1536, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=8
)
SEQ_LEN = 128
N_CALIB = 16
N_EVAL = 8
CALIB_BATCH = 4
#: our W4A16 = asymmetric int4, groups of 128 along the input dim = llm-compressor's W4A16_ASYM
OUR_FORMAT = "W4A16"
THEIR_SCHEME = "W4A16_ASYM"


@dataclass(frozen=True)
class TokenSets:
    calib: torch.Tensor  # [N_CALIB, SEQ_LEN] long
    held_out: torch.Tensor  # [N_EVAL, SEQ_LEN] long


def build_model_dir(cache: Path, spec: RandomLlamaSpec = SPEC) -> Path:
    return ensure_random_llama(spec, cache)


def token_sets(model_dir: Path, text_dir: Path) -> TokenSets:
    """Fixed-length chunks of the tokenized synthetic English passages (seed 0)."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    path = write_text_set(text_dir, 400, seed=0)
    stream: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stream += tok(json.loads(line)["text"])["input_ids"]
    need = (N_CALIB + N_EVAL) * SEQ_LEN
    if len(stream) < need:
        raise RuntimeError(f"text set gave {len(stream)} tokens, need {need}; write more passages")
    chunks = torch.tensor(stream[:need]).view(N_CALIB + N_EVAL, SEQ_LEN)
    return TokenSets(calib=chunks[:N_CALIB].clone(), held_out=chunks[N_CALIB:].clone())


def load_fp(model_dir: Path) -> nn.Module:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def our_batches(ids: torch.Tensor) -> list[CalibrationBatch]:
    out = []
    for i in range(0, ids.shape[0], CALIB_BATCH):
        chunk = ids[i : i + CALIB_BATCH]
        mask = torch.ones_like(chunk, dtype=torch.bool)
        types = torch.full_like(chunk, int(TokenType.TEXT))
        out.append(
            CalibrationBatch(
                inputs={"input_ids": chunk, "attention_mask": mask.long()},
                token_types=types,
                answer_mask=mask,
                labels=chunk.clone(),
            )
        )
    return out


def run_ours(
    model: nn.Module,
    ids: torch.Tensor,
    method: str,
    options: dict[str, Any] | None = None,
    fmt: str = OUR_FORMAT,
    propagation: str = "auto",
) -> float:
    """Calibrate ``model`` in place with our engine; returns the wall seconds of ``calibrate``."""
    engine = EngineConfig(device="cpu", propagation=propagation, progress=False)  # type: ignore[arg-type]
    # frozen CalibrationBatch fields are read-only, which the engine's structural CalibBatch protocol
    # does not spell out (the pipeline passes them the same way)
    batches: list[Any] = our_batches(ids)
    t0 = time.perf_counter()
    calibrate(model, family_for(model), batches, get_method(method, options or {}), parse_format(fmt), engine)
    return time.perf_counter() - t0


def llmc_dataset(ids: torch.Tensor) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})


def disable_pin_memory() -> None:
    """llm-compressor's AWQ pins its cached block inputs before the grid search
    (``IntermediatesCache.pin_memory``); pinning needs an accelerator, so on a CPU-only build it
    fails. Pinning only speeds host-to-device copies, so making it a no-op changes no result."""
    from llmcompressor.pipelines.cache import IntermediatesCache

    def no_pin(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    IntermediatesCache.pin_memory = no_pin  # type: ignore[method-assign]


def run_theirs(model: nn.Module, ids: torch.Tensor, recipe: list[Any]) -> float:
    """``oneshot`` on CPU with the same token ids (no shuffling); returns its wall seconds."""
    from llmcompressor import oneshot

    disable_pin_memory()
    dataset = llmc_dataset(ids)
    t0 = time.perf_counter()
    oneshot(
        model=model,
        dataset=dataset,
        recipe=recipe,
        num_calibration_samples=int(ids.shape[0]),
        max_seq_length=int(ids.shape[1]),
        shuffle_calibration_samples=False,
        batch_size=1,
    )
    return time.perf_counter() - t0


def gptq_recipe() -> list[Any]:
    from llmcompressor.modifiers.gptq import GPTQModifier

    # actorder=None: plain column order, as our gptq's default (act_order=False)
    return [GPTQModifier(targets="Linear", scheme=THEIR_SCHEME, ignore=["lm_head"], actorder=None)]


def awq_recipe() -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    return [
        AWQModifier(n_grid=20),
        QuantizationModifier(targets="Linear", scheme=THEIR_SCHEME, ignore=["lm_head"]),
    ]


def smoothquant_recipe(alpha: float) -> list[Any]:
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    return [SmoothQuantModifier(smoothing_strength=alpha)]


def their_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """llm-compressor's result as plain fp parameters: every parameter it changed (the smoothed
    norms too) with each quantized linear's weight dequantized from its own qparams.

    After ``oneshot`` GPTQ has written grid values into ``weight`` while QuantizationModifier
    (used after AWQ) leaves ``weight`` in float and fake-quantizes it in the forward pass; reading
    ``fake_quantize(weight, weight_scale, weight_zero_point)`` gives the weights actually used in
    both cases (the tests check that against llm-compressor's own forward pass).
    """
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    out = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    n_quantized = 0
    for name, module in model.named_modules():
        scheme = getattr(module, "quantization_scheme", None)
        if not isinstance(module, nn.Linear) or scheme is None or not hasattr(module, "weight_scale"):
            continue
        w = module.weight.detach().float()
        zero = getattr(module, "weight_zero_point", None)
        out[f"{name}.weight"] = fake_quantize(w, module.weight_scale.float(), zero, scheme.weights).float()
        n_quantized += 1
    if n_quantized == 0:
        raise AssertionError("llm-compressor quantized no linear; did the recipe match the model?")
    return out


def our_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our calibrated model as plain fp parameters (QuantLinear weights are already on the grid)."""
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()}


def model_with_state(model_dir: Path, state: dict[str, torch.Tensor]) -> nn.Module:
    """A fresh fp model of ``model_dir`` carrying ``state``'s values for every parameter it has."""
    fresh = load_fp(model_dir)
    own = fresh.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise AssertionError(f"the calibrated state lacks {missing[:3]}")
    fresh.load_state_dict({k: state[k] for k in own})
    return fresh


@torch.no_grad()
def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


@dataclass(frozen=True)
class OutputError:
    rel_mse: float  # ||L_q - L_fp||^2 / ||L_fp||^2 over all held-out positions
    kl: float  # mean KL(p_fp || p_q) per position

    def __str__(self) -> str:
        return f"rel.MSE {self.rel_mse:.4e}, KL {self.kl:.4e}"


def output_error(reference: torch.Tensor, quantized: torch.Tensor) -> OutputError:
    rel = float((quantized - reference).pow(2).sum() / reference.pow(2).sum())
    logp = torch.log_softmax(reference, dim=-1)
    logq = torch.log_softmax(quantized, dim=-1)
    kl = float((logp.exp() * (logp - logq)).sum(-1).mean())
    return OutputError(rel, kl)
