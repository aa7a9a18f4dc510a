"""GPTQ-style methods (GPTQ, QIG+GPTQ): per group, in block order, accumulate a (token-weighted)
Hessian from the inputs the already-quantized part of the block produces, then solve.

A plugin subclasses :class:`GPTQMethod` and overrides :meth:`GPTQMethod.token_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.engine.method import Method, MethodConfig
from qigbench.solvers.gptq import GPTQConfig, gptq_quantize
from qigbench.solvers.hessian import HessianAccumulator


@dataclass(frozen=True)
class GPTQMethodConfig(MethodConfig):
    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False


class GPTQMethod(Method):
    config_class = GPTQMethodConfig

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return None

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.config
        assert isinstance(cfg, GPTQMethodConfig)
        solver_cfg = GPTQConfig(block_size=cfg.block_size, damp=cfg.damp, act_order=cfg.act_order)
        for group in ctx.groups():
            lam = self.token_weights(ctx, group)
            # inputs are re-recorded after the previous groups were quantized ("true sequential")
            inputs = {name: ctx.linear_input(name).to(ctx.device) for name in group.linear_names}
            for name in group.linear_names:
                linear = ctx.linear(name)
                acc = HessianAccumulator(linear.in_features, device=ctx.device)
                acc.add(inputs[name], None if lam is None else lam.to(ctx.device), ctx.token_types.to(ctx.device))
                result = gptq_quantize(linear.weight.data, acc.hessian, ctx.fmt.weight, solver_cfg)
                ctx.quantize_linear_(name, result.weight.to(linear.weight.dtype))
                ctx.log(group.name, **{f"gptq_loss.{name}": float(result.loss)})
            ctx.invalidate()
