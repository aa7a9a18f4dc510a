"""NaN / Inf in a model's weights, found before they turn into undefined quantization scales.

The quantizer refuses a non-finite tensor, but it cannot say which one, nor why it is there. The
block loop can: :func:`check_model` looks at every parameter outside the decoder blocks once, and
:func:`check_unit` at a unit's blocks before the method touches them, so a NaN is reported with the
tensor's module path, whether it is the weight or the bias, how many values are non-finite, and
causes that fit what was seen:

* found before the method changed anything: it came with the model as loaded (a damaged or
  diverged checkpoint, a previous step that wrote it), or — only in float16 — values past
  +-65504 became Inf when the checkpoint was cast;
* found later: a step of this run produced it (the method's preparation, a scale or solver step on
  these weights, or the previous blocks' outputs overflowing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from qigbench.errors import QuantInputError

#: how many offending tensors a message lists before "and N more"
_SHOWN = 3


class NonFiniteWeightError(QuantInputError):
    """A weight or bias (or a block's input) holds NaN/Inf; the message names it and what to do."""


@dataclass(frozen=True)
class NonFinite:
    """One tensor with non-finite values."""

    name: str  # full module path of the parameter, e.g. model.layers.3.mlp.down_proj.weight
    nan: int
    inf: int
    numel: int
    dtype: torch.dtype

    @property
    def kind(self) -> str:
        """``weight``, ``bias`` or the parameter's own name."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def module(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name

    def describe(self) -> str:
        counts = ", ".join(f"{n} {what}" for n, what in ((self.nan, "NaN"), (self.inf, "Inf")) if n)
        return (
            f"the {self.kind} of {self.module} ({self.name}) has {self.nan + self.inf} non-finite value(s) "
            f"({counts}) of {self.numel}, dtype {str(self.dtype).removeprefix('torch.')}"
        )


def count_non_finite(tensor: torch.Tensor, name: str) -> NonFinite | None:
    """``NonFinite`` for ``tensor`` when it holds NaN/Inf, else ``None``.

    Fast path: one sum (any NaN or Inf makes the sum NaN or Inf; a finite tensor whose sum
    overflows, as float16 can, only costs the full count): ~30x cheaper than ``isfinite().all()``
    on CPU, so checking a 7B model before calibrating takes seconds."""
    if not tensor.is_floating_point() or tensor.numel() == 0 or tensor.device.type == "meta":
        return None  # a meta tensor (offloaded by a device map) holds no values to check
    t = tensor.detach()
    if bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all()):
        return None
    nan = int(torch.isnan(t).sum())
    return NonFinite(name, nan, int((~torch.isfinite(t)).sum()) - nan, t.numel(), t.dtype)


def non_finite_parameters(module: nn.Module, prefix: str = "") -> list[NonFinite]:
    """Every parameter of ``module`` with NaN/Inf, by full path (buffers are left out: a mask buffer
    may hold -inf on purpose)."""
    found = []
    tensors: Iterable[tuple[str, torch.Tensor]] = module.named_parameters()
    for name, tensor in tensors:
        bad = count_non_finite(tensor, f"{prefix}{name}")
        if bad is not None:
            found.append(bad)
    return found


def _listing(found: Sequence[NonFinite]) -> str:
    shown = "; ".join(f.describe() for f in found[:_SHOWN])
    more = f"; and {len(found) - _SHOWN} more tensor(s)" if len(found) > _SHOWN else ""
    return shown + more


def _blocks_of(found: Sequence[NonFinite], blocks_path: str) -> str:
    """``decoder block 3`` / ``decoder blocks 0, 5`` / ``the model outside its decoder blocks``."""
    indices = sorted({int(f.name[len(blocks_path) + 1:].split(".")[0]) for f in found
                      if f.name.startswith(blocks_path + ".")})
    outside = any(not f.name.startswith(blocks_path + ".") for f in found)
    parts = [f"decoder block{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices))}"] if indices else []
    if outside:
        parts.append("the model outside its decoder blocks (embeddings, vision tower, head)")
    return " and ".join(parts)


def _fp16_hint(found: Sequence[NonFinite]) -> str:
    if not any(f.dtype == torch.float16 for f in found):
        return ""
    return (
        " The weights are float16: values beyond +-65504 become Inf when a bfloat16/float32 checkpoint is cast "
        "to float16 (and Inf - Inf gives NaN), so load it with --dtype bfloat16 or --dtype float32."
    )


def check_model(model: nn.Module, blocks_path: str, method: str) -> None:
    """Refuse NaN/Inf anywhere in the model before ``method`` changes anything: it came with the
    model as loaded."""
    found = non_finite_parameters(model)
    if found:
        raise NonFiniteWeightError(
            f"{method}: non-finite weights in {_blocks_of(found, blocks_path)}, before quantization changed "
            f"anything: {_listing(found)}. They came with the model as loaded: the checkpoint is damaged "
            "(re-download it, or re-copy the *.safetensors files and compare their size / sha256 with the source) "
            "or a previous step that wrote it produced them (a fine-tune that diverged, an earlier export or "
            "merge); quantizing it would give undefined scales, so fix the checkpoint first." + _fp16_hint(found)
        )


def check_unit(modules: Sequence[nn.Module], indices: Sequence[int], blocks_path: str, method: str) -> None:
    """Refuse NaN/Inf in a unit's blocks before ``method`` works on them (they were finite when the
    run started, see :func:`check_model`: the method's preparation or an earlier unit wrote them)."""
    found = [
        bad for module, i in zip(modules, indices, strict=True)
        for bad in non_finite_parameters(module, prefix=f"{blocks_path}.{i}.")
    ]
    if found:
        raise NonFiniteWeightError(
            f"{method}: {_listing(found)}, before {method} started on block {indices[0]}; every weight was finite "
            f"when the run started, so a previous step of this run produced them ({method}'s model-level "
            "preparation, or its work on an earlier block): rerun with another method or format to confirm, and "
            "report it with the command line." + _fp16_hint(found)
        )


def diagnose(
    exc: QuantInputError,
    modules: Sequence[nn.Module],
    indices: Sequence[int],
    blocks_path: str,
    method: str,
    inputs: Sequence[torch.Tensor],
) -> NonFiniteWeightError | None:
    """After ``method`` failed on a unit with a NaN/Inf: which tensor of the unit holds it now (its
    weights were finite when it started), or whether the unit's inputs do. ``None`` when neither
    (the original error stands)."""
    if "NaN/Inf" not in str(exc):
        return None
    found = [
        bad for module, i in zip(modules, indices, strict=True)
        for bad in non_finite_parameters(module, prefix=f"{blocks_path}.{i}.")
    ]
    if found:
        return NonFiniteWeightError(
            f"{method}: {_listing(found)}; these weights were finite when {method} started on block {indices[0]}, "
            f"so a step of this run produced them ({method}'s scaling or solver on this block): rerun with another "
            "method or format to confirm, and report it with the command line." + _fp16_hint(found)
        )
    bad_inputs = [count_non_finite(t, f"input batch {k}") for k, t in enumerate(inputs)]
    bad = [b for b in bad_inputs if b is not None]
    if bad:
        n = sum(b.nan + b.inf for b in bad)
        where = "the embeddings / vision tower" if indices[0] == 0 else f"block {indices[0] - 1}"
        hint = (
            " The activations are float16, whose range ends at +-65504: run with --dtype bfloat16 or float32."
            if any(b.dtype == torch.float16 for b in bad)
            else ""
        )
        return NonFiniteWeightError(
            f"{method}: the inputs of block {indices[0]} hold {n} non-finite value(s) in {len(bad)} calibration "
            f"batch(es): the outputs of {where} overflowed or a previous step of this run produced them; every "
            "weight up to here was finite." + hint
        )
    return None
