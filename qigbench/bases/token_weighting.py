"""Bind a scaling group of the current block to the sensitivity providers' AttributionTarget.

``f_fp`` is the group's inspected module as it is; ``f_q`` is a copy whose linears are
round-to-nearest quantized in the run's format (activation quantizers pass gradients straight
through, so attribution can flow through them). ``x`` is the module's input along the fp path.
``x_q`` (the reference input) is ``None`` (zero baseline) for weight-only formats, as in the paper;
for weight-activation formats — and for weight-only ones when the provider asks for it
(``qig.baseline=quantized``) — it is the module's input along the *quantized path*: the block with
RTN-quantized linears run on the quantized stream (the fp stream for weight-only formats, which
propagate fp). So in block 0 the first group has
``x == x_q`` (nothing quantized upstream yet: the provider falls back to uniform and says so) while
later groups see the error of the quantized sub-layers before them — as in the released code.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from qigbench import parallel
from qigbench.engine.context import BlockContext, record_inputs
from qigbench.engine.replay import Replay
from qigbench.memory import row_bytes
from qigbench.models.groups import ResolvedGroup
from qigbench.quant import Granularity, QuantFormat, QuantLinear, set_submodule, straight_through_surrogate
from qigbench.sensitivity.base import AttributionTarget, SensitivityProvider, TokenWeights
from qigbench.sensitivity.qig_provider import QIGConfig, QIGProvider, SearchCounter
from qigbench.sensitivity.registry import get_provider

#: the providers a token-weighted method can use by name (``-o sensitivity=NAME``): QIG, and the
#: paper's Table 1 ablations
SensitivityName = Literal["qig", "uniform", "gradient", "attention", "leave_one_out"]


def rtn_copy(module: nn.Module, linear_names: list[str], ctx: BlockContext) -> nn.Module:
    """A copy of ``module`` with the listed (relative) linears RTN-quantized, straight-through."""
    twin = copy.deepcopy(module)
    for name in linear_names:
        child = twin.get_submodule(name) if name else twin
        if isinstance(child, QuantLinear) or not isinstance(child, nn.Linear):
            continue
        q = QuantLinear.from_linear(child, ctx.fmt, straight_through=True)
        if name:
            set_submodule(twin, name, q)
        else:
            twin = q
    return twin


def _relative_linears(group: ResolvedGroup, ctx: BlockContext) -> list[str]:
    prefix = group.spec.inspect
    out = []
    for name in ctx.linear_names():
        if name == prefix:
            out.append("")
        elif name.startswith(prefix + "."):
            out.append(name[len(prefix) + 1 :])
    return out


def attribution_target(
    ctx: BlockContext, group: ResolvedGroup, *, with_attention: bool = False, quantized_reference: bool = False
) -> AttributionTarget:
    """The target for ``group``; ``quantized_reference`` adds ``x_q`` for weight-only formats too."""
    g = ctx.group(group.name)
    fp_calls = ctx.compared(g, "fp")
    x = ctx.group_input(g, "fp")
    x_q = None
    if quantized_reference or not ctx.fmt.weight_only:
        # the block's RTN twin gives x^q, and its copy of the inspected module is f_q: the same RTN
        # of the same weights as a copy of the module alone (one deep copy and rounding, not two)
        x_q, block_twin = quantized_path(ctx, g)
        twin = block_twin.get_submodule(g.spec.inspect) if g.spec.inspect else block_twin
    else:
        twin = rtn_copy(g.inspect, _relative_linears(g, ctx), ctx)
    quantized = Replay(twin, fp_calls.calls, ctx.device)
    tokens = int(x.shape[1])
    grad_row = row_bytes(g.inspect, tokens, autograd=True) + row_bytes(twin, tokens, autograd=True)
    return AttributionTarget(
        f_fp=fp_calls,
        f_q=quantized,
        x=x.to(ctx.device),
        x_q=None if x_q is None else x_q.to(ctx.device),
        token_types=ctx.token_types.to(ctx.device),
        block_index=ctx.index,
        group=g.name,
        answer_mask=None if ctx.answer_mask is None else ctx.answer_mask.to(ctx.device),
        weight_activation=not ctx.fmt.weight_only,
        attention_rows=functools.partial(attention_probabilities, ctx) if with_attention else None,
        memory_budget=attribution_budget(ctx, g),
        row_bytes=grad_row,
        surrogate=lambda: straight_through_surrogate(twin),
        # a linear layer and its weight-only RTN twin: QIG's one-point shortcut is exact there
        linear=isinstance(g.inspect, nn.Linear) and ctx.fmt.weight_only,
        linear_weights=_linear_weights(g.inspect, twin, ctx),
        token_wise=(g.spec.token_wise or isinstance(g.inspect, nn.Linear)) and per_token_activations(ctx.fmt),
    )


def per_token_activations(fmt: QuantFormat) -> bool:
    """Whether ``fmt``'s activation quantizer sees one token at a time (or there is none): a
    per-tensor dynamic scale would let every token's range change every other token's output."""
    return fmt.activation is None or fmt.activation.granularity is Granularity.PER_TOKEN


def _linear_weights(module: nn.Module, twin: nn.Module, ctx: BlockContext) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(W, W_q)`` when the compared module is one linear layer and its twin a QuantLinear of it."""
    if not isinstance(module, nn.Linear) or not isinstance(twin, QuantLinear):
        return None
    return module.weight.detach().to(ctx.device), twin.weight.detach().to(ctx.device)


def attribution_budget(ctx: BlockContext, group: ResolvedGroup) -> int:
    """Bytes an attribution chunk may take: the run's memory budget, but never more than the scale
    search of this group needs for all samples at once (so attributing costs no more peak memory
    than the search that follows it; the extra path points become more, smaller calls)."""
    tokens = int(ctx.token_types.shape[1])
    search = row_bytes(group.inspect, tokens, autograd=False) * int(ctx.token_types.shape[0])
    return min(ctx.budget(), search)


def quantized_path_input(ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor:
    """Input of ``group``'s inspected module when the block runs with RTN-quantized linears on the
    quantized stream (the fp stream when no quantized stream was kept)."""
    return quantized_path(ctx, group)[0]


@torch.no_grad()
def quantized_path(ctx: BlockContext, group: ResolvedGroup) -> tuple[torch.Tensor, nn.Module]:
    """:func:`quantized_path_input` and the RTN twin of the block it ran through.

    Each batch's forward through the twin stops as soon as the module's input is recorded (nothing
    after it can change it): for the first group of a block that is one norm, not a block."""
    twin = rtn_copy(ctx.block, ctx.linear_names(), ctx)
    stream = ctx.q_inputs if ctx.q_inputs is not None else ctx.fp_inputs
    recorded = record_inputs(twin, ctx.calls, stream, {"x": twin.get_submodule(group.spec.inspect)}, ctx.device,
                             stop_early=True)  # fmt: skip
    return torch.cat([call.input() for call in recorded["x"]], dim=0), twin


@torch.no_grad()
def attention_probabilities(ctx: BlockContext, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """The block's attention probabilities ``[n, heads, T, T]`` of samples ``start:stop`` on the fp
    stream (Table 1's attention-based sensitivity). The attention module is replayed once with
    transformers' eager attention, the only implementation that returns the probabilities."""
    group = next((g for g in ctx.groups() if g.spec.kind.value == "attention" and g.spec.inspect not in g.spec.linears),
                 None)
    if group is None:
        raise RuntimeError(f"{ctx.family.name}: no attention group whose inspected module is the attention itself")
    attention = group.inspect
    config = getattr(attention, "config", None)
    if config is None or not hasattr(config, "_attn_implementation"):
        raise RuntimeError(f"{type(attention).__name__} has no config._attn_implementation to switch to eager")
    replay = ctx.compared(group, "fp")
    replay = replay.rows(start, replay.total if stop is None else stop)
    previous = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        probs = [attention(*call.args, **call.kwargs)[1] for call in replay.calls]
    finally:
        config._attn_implementation = previous
    return torch.cat(probs, dim=0)


def make_provider(sensitivity: SensitivityName, qig: QIGConfig) -> SensitivityProvider:
    """The provider a token-weighted method uses: QIG with its config, or an ablation by name."""
    if sensitivity == "qig":
        # one counter per run: the released code's warm-up counts searches across blocks
        return QIGProvider(qig, counter=SearchCounter())
    return get_provider(sensitivity)


#: how a provider's per-sample diagnostics combine over the ranks of a data-parallel run, so the
#: record says what one process would (the others are the same on every rank, or describe the
#: rank's own execution, e.g. ``seconds``, ``sample_chunks``: rank 0's are recorded)
RANK_REDUCTIONS = {"completeness_residual": "max", "steps_used": "max", "degenerate_fallback": "any",
                   "degenerate_input": "all", "padding_share": "mean"}


def _global_diagnostics(values: dict[str, Any], rows: int) -> dict[str, Any]:
    if not parallel.active():
        return values
    out = dict(values)
    for key, how in RANK_REDUCTIONS.items():
        if key not in out or not isinstance(out[key], (int, float, bool)):
            continue
        v = out[key]
        if how == "max":
            out[key] = type(v)(parallel.all_reduce_max(torch.tensor([float(v)], dtype=torch.float64))[0])
        elif how == "any":
            out[key] = parallel.any_rank(bool(v))
        elif how == "all":
            out[key] = parallel.all_ranks(bool(v))
        else:  # mean over samples
            weighted, n = parallel.sum_floats(float(v) * rows, float(rows))
            out[key] = weighted / max(n, 1.0)
    return out


def group_target(provider: SensitivityProvider, ctx: BlockContext, group: ResolvedGroup) -> AttributionTarget:
    """The attribution target ``provider`` needs for one group of the current block (with the
    attention probabilities or the quantized-path input only when the provider asks for them)."""
    wants_attention = getattr(provider, "name", "") == "attention"
    wants_xq = bool(getattr(provider, "wants_quantized_input", False))
    return attribution_target(ctx, group, with_attention=wants_attention, quantized_reference=wants_xq)


def record_weights(ctx: BlockContext, group: ResolvedGroup, result: TokenWeights) -> torch.Tensor:
    """Log a provider's diagnostics to the block's stats and keep its weights for the heatmap."""
    numbers = {k: v for k, v in result.diagnostics.items() if isinstance(v, (int, float, bool))}
    numbers = _global_diagnostics(numbers, int(ctx.token_types.shape[0]))  # what one process would record
    ctx.log(group.name, **{f"sens.{k}": v for k, v in numbers.items()})
    ctx.artifacts.setdefault("token_weights", {})[group.name] = result.weights.detach().cpu()
    return result.weights


def group_token_weights(provider: SensitivityProvider, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor:
    """lambda[N, T] for one group of the current block; diagnostics go to the block's stats and the
    weights to its artifacts (for the heatmap)."""
    return record_weights(ctx, group, provider(group_target(provider, ctx, group)))


@dataclass(frozen=True)
class SensitivityChoice:
    """The config part of a method whose token weights come from a sensitivity provider (QIG,
    QIG+GPTQ): ``sensitivity`` picks the provider (the Table 1 ablations), ``qig`` is QIG's own
    config (``-o qig.steps=32``), which applies only with ``sensitivity=qig``. List it before the
    method base's config so that its ``only_with`` rule is the one the config check finds."""

    sensitivity: SensitivityName = "qig"
    qig: QIGConfig = field(default_factory=QIGConfig)

    only_with: ClassVar[Mapping[str, tuple[str, Any]]] = {"qig": ("sensitivity", "qig")}


class ProviderWeighted:
    """Method mixin, listed before the method base: the token weights of every group come from the
    provider the config's :class:`SensitivityChoice` names, built once per run."""

    provider: SensitivityProvider

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # the method base's __init__
        choice: SensitivityChoice = self.config  # type: ignore[attr-defined]
        self.provider = make_provider(choice.sensitivity, choice.qig)

    def keeps_quantized_stream(self) -> bool:
        return bool(getattr(self.provider, "wants_quantized_input", False))

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return group_token_weights(self.provider, ctx, group)

