"""Channel-wise equalisation (CWE) scale search with a token-weighted loss: AWQ, MBQ and QIG.

For one scaling group (a previous op, the linears it feeds, the module whose output is compared)
we look for per-input-channel scales ``s``: the linears get ``W * s``, the previous op ``1 / s``,
which leaves the fp output unchanged but moves quantization error between channels. Candidates
are AWQ's ``s = (mean_t |x|)^alpha`` (optionally divided by the weights' mean magnitude,
``duo_scaling``), normalised by ``sqrt(max(s) min(s))``, for ``alpha`` on a grid
``{0, 1/n, ..., (n-1)/n}``. Each candidate is scored by running ``compared`` with the linears
temporarily quantized:

* weight-only formats: ``W <- Q_W(W s) / s`` (the same product as ``Q_W(W s) (x / s)``);
* weight-activation formats: ``y = Q_W(W s) Q_X(x / s)`` with ``Q_X`` the format's per-token
  dynamic activation quantizer, applied by a forward pre-hook on each linear.

The score is the token-weighted loss of eq. (6)/(7) of the QIG paper,
``sum_bt lambda_bt * mean_h (y_fp - y_q)^2 / B`` (or ``|.|`` with ``loss="mae"``, the released
code's default). ``lambda=None`` is uniform, so AWQ is this search with uniform weights, MBQ with
modality weights and QIG with QIG weights. Ties keep the first (smallest) alpha, so constant
activations (every candidate is ``s = 1``) give ``alpha = 0``.

The linears' weights are restored to the very same tensors afterwards, even if ``compared``
raises; the caller applies the returned scales (folding ``1/s`` into the previous op).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from qigbench import parallel
from qigbench.config import omit_default, project
from qigbench.memory import batch_sizes_of, row_spans, rows_of
from qigbench.quant import QuantFormat, QuantSpec, fake_quantize, group_view
from qigbench.solvers.weights import SolverError, check_inputs, resolve_token_weights
from qigbench.tokens import valid_mask

log = logging.getLogger(__name__)

LossName = Literal["mse", "mae"]
#: AWQ's floor on a candidate scale (and on the duo-scaling denominator)
MIN_SCALE = 1e-4


@dataclass(frozen=True)
class ScaleSearchOptions:
    """What a method chooses about the search (embedded, field for field, in equalization configs)."""

    n_grid: int = 20  # alpha in {0, 1/n, ..., (n-1)/n}
    loss: LossName = "mse"
    #: AWQ "duo scaling": s = x_mean^alpha / w_mean^(1 - alpha) (left out of stored configs while off)
    duo_scaling: bool = omit_default(False)

    def __post_init__(self) -> None:
        if self.n_grid <= 0:
            raise SolverError(f"n_grid must be positive, got {self.n_grid}; AWQ uses 20 (alpha in 0, 0.05, ..., 0.95)")
        if self.loss not in ("mse", "mae"):
            raise SolverError(f"unknown scale-search loss {self.loss!r}; choose 'mse' or 'mae'")


@dataclass(frozen=True)
class ScaleSearchConfig(ScaleSearchOptions):
    #: evaluate ``compared`` on at most this many samples at a time (None: the whole batch at once);
    #: the engine sets it from the memory budget
    batch_chunk: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_chunk is not None and self.batch_chunk <= 0:
            raise SolverError(f"batch_chunk must be positive or None, got {self.batch_chunk}")

    @classmethod
    def of(cls, options: ScaleSearchOptions, batch_chunk: int | None = None) -> ScaleSearchConfig:
        """The search a method's options ask for (any config embedding them), at ``batch_chunk``."""
        return cls(**project(options, ScaleSearchOptions), batch_chunk=batch_chunk)

    @property
    def alphas(self) -> list[float]:
        return [i / self.n_grid for i in range(self.n_grid)]


@dataclass
class ScaleResult:
    """The chosen scales ``[H_in]`` (float32), their alpha, and the loss of every candidate."""

    scales: Tensor
    alpha: float
    losses: list[float]
    alphas: list[float]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def best_loss(self) -> float:
        return self.losses[self.alphas.index(self.alpha)]


def search_scales(
    x: Tensor,
    linears: Sequence[nn.Linear],
    compared: Callable[[Tensor], Any],
    fmt: QuantFormat,
    token_weights: Tensor | None = None,
    token_types: Tensor | None = None,
    cfg: ScaleSearchConfig | None = None,
    compared_input: Tensor | None = None,
    target: Tensor | None = None,
) -> ScaleResult:
    """Grid-search AWQ-style scales for ``linears`` (which all read ``x [B, T, H_in]``).

    ``compared(compared_input)`` (default ``compared(x)``) must run the inspected module, whose
    forward uses ``linears``; a tuple output counts by its first element (HF attention modules).
    ``target`` ``[B, T, H_out]`` is the output the candidates are scored against (default: the
    fp ``compared`` on the same input; TLQ's ``target=fp_path`` passes the fp model's own output).
    """
    cfg = cfg if cfg is not None else ScaleSearchConfig()
    check_inputs(x)
    check_linears(linears, int(x.shape[-1]))
    x_mean = activation_mean(x, token_types, batch_sizes_of(compared, int(x.shape[0])))
    w_mean = weight_mean(linears, fmt.weight) if cfg.duo_scaling else None
    candidates = [awq_scales(x_mean, alpha, w_mean) for alpha in cfg.alphas]
    inp = x if compared_input is None else compared_input
    losses = evaluate_scales(inp, linears, compared, fmt, candidates, token_weights, token_types, cfg, target)
    best = first_argmin(losses)
    log.debug("scale search: alpha=%.2f loss=%.4g (alpha=0: %.4g)", cfg.alphas[best], losses[best], losses[0])
    return ScaleResult(scales=candidates[best], alpha=cfg.alphas[best], losses=losses, alphas=cfg.alphas)


def activation_mean(x: Tensor, token_types: Tensor | None = None, batch_sizes: Sequence[int] | None = None) -> Tensor:
    """Per-channel ``mean |x|`` over the non-padding tokens (of every rank), float32 ``[H]``.

    Summed per recorded batch (``batch_sizes``: the rows of each; None: one batch) in float32 and
    across batches and ranks in float64, so the mean does not depend on how the samples were
    shared out (:mod:`qigbench.parallel.sums`)."""
    valid = valid_mask(token_types).to(x.device) if token_types is not None else None
    parts, count = [], 0
    for b0, b1 in parallel.batch_spans(batch_sizes, 0, int(x.shape[0])):
        flat = x[b0:b1].detach().reshape(-1, x.shape[-1]).float().abs()
        if valid is not None:
            flat = flat[valid[b0:b1].reshape(-1)]
        parts.append(flat.sum(dim=0))
        count += int(flat.shape[0])
    count = parallel.total(count)
    if count == 0:
        raise SolverError("every token is padding; the scale search needs at least one real token")
    return (parallel.all_reduce_sum(parallel.float64_total(parts)) / count).float()


def weight_mean(linears: Sequence[nn.Linear], spec: QuantSpec) -> Tensor:
    """AWQ duo scaling's weight statistic: ``|W|`` normalised per quantization group, averaged over rows."""
    weight = torch.cat([lin.weight.detach().float() for lin in linears], dim=0)
    grouped = group_view(weight.abs(), spec)
    normed = grouped / grouped.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return normed.reshape(weight.shape).mean(dim=0)


def awq_scales(x_mean: Tensor, alpha: float, w_mean: Tensor | None = None) -> Tensor:
    """``s = x_mean^alpha [/ w_mean^(1-alpha)]``, floored, divided by ``sqrt(max(s) min(s))``."""
    if w_mean is None:
        s = x_mean.pow(alpha).clamp_min(MIN_SCALE)
    else:
        s = (x_mean.pow(alpha) / (w_mean.pow(1 - alpha) + MIN_SCALE)).clamp_min(MIN_SCALE)
    return s / (s.max() * s.min()).sqrt()


def evaluate_scales(
    compared_input: Tensor,
    linears: Sequence[nn.Linear],
    compared: Callable[[Tensor], Any],
    fmt: QuantFormat,
    candidates: Sequence[Tensor],
    token_weights: Tensor | None,
    token_types: Tensor | None,
    cfg: ScaleSearchConfig,
    target: Tensor | None = None,
) -> list[float]:
    """Token-weighted output loss of ``compared`` for each candidate scale vector (shared by AWQ and SQ);
    ``target`` replaces the fp output on the same input as the reference (see :func:`search_scales`).

    Each recorded batch's loss is summed in float32, the batches' in float64 (exact in any order,
    :mod:`qigbench.parallel.sums`); data-parallel, the ranks' sums and sample counts are all-reduced
    once for all candidates, which gives one process's losses bit for bit."""
    batch, tokens = int(compared_input.shape[0]), int(compared_input.shape[1])
    if target is not None and tuple(target.shape[:2]) != (batch, tokens):
        raise SolverError(f"target has shape {tuple(target.shape)}, expected [{batch}, {tokens}, H] like the input")
    lam = resolve_token_weights(token_weights, token_types, (batch, tokens)).to(compared_input.device)
    chunk = cfg.batch_chunk or batch
    # spans follow the recorded batches of a Replay (sliced with .rows); plain callables get slices
    sizes = batch_sizes_of(compared, batch)
    spans = row_spans(sizes, chunk)
    parts = [rows_of(compared, b0, b1, batch) for b0, b1 in spans]
    with torch.no_grad():
        if target is None:
            reference = [_output(part, compared_input[b0:b1]) for part, (b0, b1) in zip(parts, spans, strict=True)]
        else:
            reference = [target[b0:b1].to(compared_input.device) for b0, b1 in spans]
        totals = []
        for scales in candidates:
            per_batch = []
            with scaled_linears(linears, scales, fmt):
                for part, (b0, b1), y_fp in zip(parts, spans, reference, strict=True):
                    y_q = _output(part, compared_input[b0:b1])
                    for a, b in parallel.batch_spans(sizes, b0, b1):  # one partial per recorded batch
                        per_batch.append(
                            weighted_token_loss(y_fp[a - b0 : b - b0], y_q[a - b0 : b - b0], lam[a:b], cfg.loss)
                        )
            totals.append(parallel.float64_total(per_batch))
    # one collective for every candidate; the loss is over every rank's samples
    reduced, batch = parallel.all_reduce_sum(torch.stack(totals)), parallel.total(batch)
    return [float(total / batch) for total in reduced.unbind()]


def weighted_token_loss(y_fp: Tensor, y_q: Tensor, lam: Tensor, loss: LossName) -> Tensor:
    """``sum_bt lambda_bt * mean_h err_bth`` (not yet divided by B); zero-weight tokens are skipped."""
    diff = (y_fp.float() - y_q.float()).reshape(lam.shape[0], lam.shape[1], -1)
    per_token = diff.pow(2).mean(dim=-1) if loss == "mse" else diff.abs().mean(dim=-1)
    per_token = per_token.masked_fill(lam == 0, 0.0)  # padding garbage (even NaN) never enters the loss
    return (lam * per_token).sum()


@contextmanager
def scaled_linears(linears: Sequence[nn.Linear], scales: Tensor, fmt: QuantFormat) -> Iterator[None]:
    """Temporarily make each linear compute ``Q_W(W s) Q_X(x / s)`` (``Q_X`` = identity if weight-only)."""
    originals = [lin.weight.data for lin in linears]
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for lin, weight in zip(linears, originals, strict=True):
            s = scales.to(device=weight.device, dtype=torch.float32)
            q = fake_quantize(weight.float() * s, fmt.weight)
            if fmt.activation is None:
                lin.weight.data = (q / s).to(weight.dtype)
            else:
                lin.weight.data = q.to(weight.dtype)
                handles.append(lin.register_forward_pre_hook(_quantize_scaled_input(s, fmt.activation)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for lin, weight in zip(linears, originals, strict=True):
            lin.weight.data = weight


def _quantize_scaled_input(scales: Tensor, spec: QuantSpec) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        scaled = (x.float() / scales).to(x.dtype)
        return (fake_quantize(scaled, spec), *args[1:])

    return hook


def _output(compared: Callable[[Tensor], Any], x: Tensor) -> Tensor:
    y = compared(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    if not isinstance(y, Tensor):
        raise SolverError(f"compared(x) must return a tensor (or a tuple starting with one), got {type(y).__name__}")
    return y


def first_argmin(values: Sequence[float]) -> int:
    """Index of the smallest value, the *first* one on ties (NaN never wins)."""
    best = 0
    for i, v in enumerate(values):
        if v < values[best] or (values[best] != values[best] and v == v):
            best = i
    return best


def check_linears(linears: Sequence[nn.Linear], in_features: int) -> None:
    if len(linears) == 0:
        raise SolverError("the scale search needs at least one linear to scale (the group's balanced linears)")
    for lin in linears:
        if not isinstance(lin, nn.Linear):
            raise SolverError(f"expected nn.Linear modules to scale, got {type(lin).__name__}")
        if lin.in_features != in_features:
            raise SolverError(
                f"a linear has in_features={lin.in_features} but x has {in_features} channels; every linear of a "
                "scaling group must read the same input x"
            )
