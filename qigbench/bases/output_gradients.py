"""Model-level gradient statistics (MBQ's modality sensitivity).

One forward/backward of the supervised caption loss per calibration batch; backward hooks on
chosen modules of every decoder block record ``mean |dL/d output|`` over vision tokens and over
answer tokens. Parameters never need gradients: the embedding output is made to require grad so
the backward reaches every block. This is the one step that holds the whole model on the compute
device (as MBQ does); a model loaded with a ``device_map`` stays where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qigbench import parallel
from qigbench.tokens import TokenType


@dataclass
class ModalityGradients:
    """Per block and per module name: summed |grad| and token counts, for vision and answer tokens."""

    vision: dict[str, torch.Tensor]  # name -> [n_blocks] mean |grad| over vision tokens
    text: dict[str, torch.Tensor]  # name -> [n_blocks] mean |grad| over answer tokens


def caption_loss_backward(
    model: nn.Module,
    embed: nn.Module,
    batches: Sequence[Any],
    device: torch.device | str,
    handles: list[Any],
    before_batch: Callable[[Any], None] | None = None,
) -> None:
    """One forward/backward of the caption loss per batch, the whole model on ``device`` (a
    ``device_map``'d model stays where it is) and back home afterwards. The embedding output is
    made to require grad so the backward reaches every block; ``handles`` (the caller's hooks) are
    removed at the end, whatever happens."""
    handles.append(embed.register_forward_hook(_requires_grad))
    was_training = model.training
    model.eval()
    home = next(model.parameters()).device
    placed = not hasattr(model, "hf_device_map")
    if placed:
        model.to(device)
    try:
        for batch in batches:
            if before_batch is not None:
                before_batch(batch)
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
            with torch.enable_grad():
                out = model(**inputs, labels=batch.labels.to(device), use_cache=False)
                out.loss.backward()
            model.zero_grad(set_to_none=True)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        if placed:
            model.to(home)


def _requires_grad(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
    return out.requires_grad_(True) if not out.requires_grad else out


def modality_gradients(
    model: nn.Module,
    blocks: nn.ModuleList,
    embed: nn.Module,
    batches: Sequence[Any],
    module_names: Sequence[str],
    device: torch.device | str,
) -> ModalityGradients:
    n = len(blocks)
    sums = {kind: {m: torch.zeros(n, dtype=torch.float64) for m in module_names} for kind in ("vision", "text")}
    counts = {"vision": 0.0, "text": 0.0}
    current: dict[str, torch.Tensor] = {}
    handles = []

    def grad_hook(i: int, name: str) -> Any:
        def hook(module: nn.Module, grad_input: Any, grad_output: tuple[torch.Tensor, ...]) -> None:
            g = grad_output[0].detach().abs().float().mean(dim=-1)  # [B, T]
            for kind in ("vision", "text"):
                sums[kind][name][i] += float((g * current[kind]).sum())

        return hook

    def select(batch: Any) -> None:
        current["vision"] = (batch.token_types == TokenType.VISION).float().to(device)
        current["text"] = batch.answer_mask.float().to(device)
        counts["vision"] += float(current["vision"].sum())
        counts["text"] += float(current["text"].sum())

    for i, block in enumerate(blocks):
        for name in module_names:
            handles.append(block.get_submodule(name).register_full_backward_hook(grad_hook(i, name)))
    caption_loss_backward(model, embed, batches, device, handles, before_batch=select)
    if parallel.active():  # data-parallel: the sums and token counts of every rank's batches
        keys = [(kind, m) for kind in ("vision", "text") for m in module_names]
        flat = parallel.all_reduce_sum(torch.cat([sums[k][m] for k, m in keys]))
        for j, (kind, m) in enumerate(keys):
            sums[kind][m] = flat[j * n : (j + 1) * n]
        counts["vision"], counts["text"] = parallel.sum_floats(counts["vision"], counts["text"])
    return ModalityGradients(
        vision={m: (s / max(counts["vision"], 1.0)).float() for m, s in sums["vision"].items()},
        text={m: (s / max(counts["text"], 1.0)).float() for m, s in sums["text"].items()},
    )


def token_gradients(
    model: nn.Module,
    blocks: nn.ModuleList,
    embed: nn.Module,
    batches: Sequence[Any],
    module_names: Sequence[str],
    device: torch.device | str,
    statistic: str = "abs",
) -> dict[int, dict[str, torch.Tensor]]:
    """Per-token gradient magnitudes of the caption loss at chosen outputs of every block (TLQ).

    ``module_names`` are block-relative; ``""`` is the block's own output. Returns
    ``{block: {name: s[N, T]}}`` with ``s = mean_h |dL/dY|`` (``statistic="abs"``) or
    ``mean_h (dL/dY)^2`` (``"fisher"``), the batches concatenated in order. The backward runs in
    the model's dtype; on CPU that is float32 (on fp16 models scale the loss: pitfall 3).
    Data-parallel: each rank differentiates its own batches; the scores of every rank are gathered
    (in rank order: the calibration set's own order), since TLQ's selection ranks the whole pool."""
    per_batch: dict[int, dict[str, list[torch.Tensor]]] = {i: {m: [] for m in module_names} for i in range(len(blocks))}
    handles = []

    def output_hook(i: int, name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            y = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(y, torch.Tensor) or not y.requires_grad:
                return

            def grad_hook(g: torch.Tensor) -> None:
                g = g.detach().float()
                stat = g.abs().mean(dim=-1) if statistic == "abs" else g.pow(2).mean(dim=-1)
                per_batch[i][name].append(stat.cpu())

            y.register_hook(grad_hook)

        return hook

    for i, block in enumerate(blocks):
        for name in module_names:
            target = block.get_submodule(name) if name else block
            handles.append(target.register_forward_hook(output_hook(i, name)))
    caption_loss_backward(model, embed, batches, device, handles)
    local = {i: {m: torch.cat(v, dim=0) for m, v in by_name.items() if v} for i, by_name in per_batch.items()}
    if not parallel.active():
        return local
    return {i: {m: parallel.all_gather_rows(s) for m, s in by_name.items()} for i, by_name in local.items()}
