"""GPTQ-style methods (GPTQ, QIG+GPTQ): per group, in block order, accumulate a (token-weighted)
Hessian from the inputs the already-quantized part of the block produces, then solve.

A plugin subclasses :class:`GPTQMethod` and overrides :meth:`GPTQMethod.token_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch

from qigbench import parallel
from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method, MethodConfig
from qigbench.models.groups import ResolvedGroup
from qigbench.solvers.gptq_solver import GPTQConfig, gptq_quantize
from qigbench.solvers.hessian import HessianAccumulator


@dataclass(frozen=True)
class GPTQMethodConfig(MethodConfig, GPTQConfig):
    """The solver's config (``block_size``, ``damp``, ``act_order``, ``static_groups``,
    ``max_damp_retries``: embedded, so they keep their flat option names) plus the block order."""

    #: re-record each group's inputs after the groups before it were quantized (GPTQ's
    #: "true sequential"); False takes every Hessian from the block's fp inputs (fewer passes,
    #: as llm-compressor's sequential pipeline does)
    true_sequential: bool = True


GPTQMethodConfigT = TypeVar("GPTQMethodConfigT", bound=GPTQMethodConfig)


class GPTQMethod(Method[GPTQMethodConfigT]):
    #: GPTQ (Frantar et al., Sec. 5): each block is calibrated on the outputs of the already
    #: quantized blocks before it, in every format (QIG+GPTQ is the same framework)
    propagation = "quantized"

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return None

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.config
        solver_cfg = GPTQConfig.of(cfg)
        groups = ctx.groups()
        if cfg.true_sequential:
            for group in groups:
                self._solve(ctx, group.name, self._hessians(ctx, group), solver_cfg)
                ctx.invalidate()
        else:
            hessians = {group.name: self._hessians(ctx, group) for group in groups}
            for group in groups:
                self._solve(ctx, group.name, hessians[group.name], solver_cfg)
            ctx.invalidate()

    def _hessians(self, ctx: BlockContext, group: ResolvedGroup) -> dict[str, torch.Tensor]:
        """H' per linear of the group; linears reading the same input (q/k/v) share one."""
        lam = self.token_weights(ctx, group)
        weights = None if lam is None else lam.to(ctx.device)
        types = ctx.token_types.to(ctx.device)
        by_input: dict[tuple[int, ...], torch.Tensor] = {}
        out = {}
        for name in group.linear_names:
            calls = ctx.linear_calls(name)
            key = tuple(id(call.input()) for call in calls)
            if key not in by_input:
                acc = HessianAccumulator(ctx.linear(name).in_features, device=ctx.device)
                start = 0  # streamed per recorded batch: H' is a sum over samples
                for call in calls:
                    x = call.input()
                    stop = start + int(x.shape[0])
                    lam = None if weights is None else weights[start:stop]
                    acc.add(x.to(ctx.device), lam, types[start:stop])
                    start = stop
                by_input[key] = acc.hessian
            out[name] = by_input[key]
        return out

    def _solve(
        self, ctx: BlockContext, group: str, hessians: dict[str, torch.Tensor], solver_cfg: GPTQConfig
    ) -> None:
        """Solve the group's linears. Data-parallel: the solve reads only the reduced Hessian and the
        weight, so each linear is solved by one rank (:func:`qigbench.parallel.share_out`, balanced
        by its cost) and broadcast: the ranks solve side by side instead of all solving everything."""
        names = list(hessians)
        ranks = parallel.world().size if parallel.active() else 1
        owners = parallel.share_out([solve_cost(ctx.linear(n)) for n in names], ranks)
        me = parallel.world().rank if ranks > 1 else 0
        solved: dict[str, tuple[torch.Tensor, float]] = {}
        for name, owner in zip(names, owners, strict=True):
            hessian = hessians.pop(name)  # a linear's Hessian is dropped once it is no longer needed
            if owner == me:
                linear = ctx.linear(name)
                result = gptq_quantize(linear.weight.data, hessian, ctx.fmt.weight, solver_cfg)
                solved[name] = (result.weight.to(linear.weight.dtype), float(result.loss))
            del hessian
        for name, owner in zip(names, owners, strict=True):
            weight, loss = solved.pop(name, (torch.empty_like(ctx.linear(name).weight.data), 0.0))
            if ranks > 1:
                weight = parallel.broadcast_tensor(weight, owner)
                loss = float(parallel.broadcast_tensor(torch.tensor([loss], dtype=torch.float64), owner)[0])
            ctx.quantize_linear_(name, weight)
            ctx.log(group, **{f"gptq_loss.{name}": loss})


def solve_cost(linear: torch.nn.Linear) -> float:
    """Relative cost of one GPTQ solve: the inverse Hessian's factorisations (~in^3) plus the
    column sweep and its lazy updates (~out x in^2)."""
    n_in, n_out = int(linear.in_features), int(linear.out_features)
    return float(2 * n_in**3 + n_out * n_in**2)
