"""The two shapes every calibrated method takes, with token weights as the only open question.

* :class:`CWEMethod` — channel-wise equalisation (AWQ, MBQ, QIG): per scaling group, search the
  scales with a (token-weighted) loss, fold them into the block, then round the weights.
* :class:`GPTQMethod` — GPTQ and QIG+GPTQ: per group, in order, accumulate a (token-weighted)
  Hessian from the inputs the already-quantized part of the block produces, then solve.

A method plugin subclasses one of them and overrides :meth:`token_weights` (and its config);
``None`` means uniform, which the solvers treat bit-identically to explicit uniform weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.engine.method import Method, MethodConfig
from qigbench.quant import fake_quantize
from qigbench.solvers.gptq import GPTQConfig, gptq_quantize
from qigbench.solvers.hessian import HessianAccumulator
from qigbench.solvers.scale_search import ScaleSearchConfig, search_clip, search_scales


@dataclass(frozen=True)
class CWEConfig(MethodConfig):
    n_grid: int = 20  # alpha in {0, 1/n, ..., (n-1)/n}
    loss: str = "mse"  # "mse" | "mae"
    clip_search: bool = False  # AWQ's weight-clipping search after scaling
    skip_groups: tuple[str, ...] = ()  # e.g. ("o",) to leave a group unscaled


class CWEMethod(Method):
    config_class = CWEConfig

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        """lambda[N, T] for this group's loss; ``None`` = uniform."""
        return None

    def search_config(self) -> ScaleSearchConfig:
        cfg = self.config
        assert isinstance(cfg, CWEConfig)
        return ScaleSearchConfig(n_grid=cfg.n_grid, loss=cfg.loss)  # type: ignore[arg-type]

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.config
        assert isinstance(cfg, CWEConfig)
        weights: dict[str, torch.Tensor | None] = {}
        for group in ctx.groups(scalable_only=True):
            if group.name in cfg.skip_groups:
                continue
            lam = self.token_weights(ctx, group)
            weights[group.name] = lam
            x = ctx.group_input(group).to(ctx.device)
            result = search_scales(
                x,
                ctx.group(group.name).linears,
                ctx.compared(group),
                ctx.fmt,
                token_weights=None if lam is None else lam.to(ctx.device),
                token_types=ctx.token_types.to(ctx.device),
                cfg=self.search_config(),
            )
            ctx.apply_scales_(group, result.scales)
            ctx.log(group.name, alpha=float(result.alpha))
        if cfg.clip_search:
            self._clip(ctx, weights)
        ctx.rtn_()

    def _clip(self, ctx: BlockContext, weights: dict[str, torch.Tensor | None]) -> None:
        """AWQ's clip search on the scaled weights (q/k are skipped, as in AWQ: their error is
        filtered by the softmax and clipping them hurts)."""
        for group in ctx.groups():
            lam = weights.get(group.name)
            for name in group.linear_names:
                if name.endswith(("q_proj", "k_proj")):
                    continue
                linear = ctx.block.get_submodule(name)
                x = ctx.linear_input(name).to(ctx.device)
                ratio = search_clip(
                    linear.weight.data,
                    x,
                    None if lam is None else lam.to(ctx.device),
                    ctx.fmt.weight,
                    token_types=ctx.token_types.to(ctx.device),
                )
                ctx.quantize_linear_(name, fake_quantize(linear.weight.data, ctx.fmt.weight, ratio))
                ctx.log(group.name, **{f"clip_mean.{name}": float(ratio.float().mean())})


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
                linear = ctx.block.get_submodule(name)
                acc = HessianAccumulator(linear.in_features, device=ctx.device)
                acc.add(inputs[name], None if lam is None else lam.to(ctx.device), ctx.token_types.to(ctx.device))
                result = gptq_quantize(linear.weight.data, acc.hessian, ctx.fmt.weight, solver_cfg)
                ctx.quantize_linear_(name, result.weight.to(linear.weight.dtype))
                ctx.log(group.name, **{f"gptq_loss.{name}": float(result.loss)})
            ctx.invalidate()
