"""SmoothQuant: migrate activation outliers into the weights with s_j = max|X_j|^a / max|W_j|^(1-a)
(alpha = 0.5 by default), folded into the previous op (X / s) and the linears (W * s), then
round-to-nearest with per-channel weights and per-token activations.
"""

from __future__ import annotations

from dataclasses import dataclass

from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method, MethodConfig
from qigbench.solvers.smoothquant import activation_absmax, search_smooth_alpha, smooth_scales


@dataclass(frozen=True)
class SmoothQuantConfig(MethodConfig):
    alpha: float = 0.5
    search_alpha: bool = False  # pick alpha per group on a 20-point grid by the output error
    groups: tuple[str, ...] = ("qkv", "gate_up")  # the norm-preceded groups, as in SmoothQuant


class SmoothQuant(Method):
    name = "smoothquant"
    config_class = SmoothQuantConfig

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.config
        assert isinstance(cfg, SmoothQuantConfig)
        for group in ctx.groups(scalable_only=True):
            if group.name not in cfg.groups:
                continue
            x = ctx.group_input(group).to(ctx.device)
            types = ctx.token_types.to(ctx.device)
            linears = ctx.group(group.name).linears
            if cfg.search_alpha:
                found = search_smooth_alpha(x, linears, ctx.compared(group), ctx.fmt, token_types=types)
                scales, alpha = found.scales, found.alpha
            else:
                weights = [lin.weight.data for lin in linears]
                scales, alpha = smooth_scales(activation_absmax(x, types), weights, cfg.alpha), cfg.alpha
            ctx.apply_scales_(group, scales)
            ctx.log(group.name, alpha=float(alpha))
        ctx.rtn_()
