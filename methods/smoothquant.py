"""SmoothQuant: migrate activation outliers into the weights with s_j = max|X_j|^a / max|W_j|^(1-a)
(alpha = 0.5 by default), folded into the previous op (X / s) and the linears (W * s), then
round-to-nearest with per-channel weights and per-token activations.

``statistic="range"`` with ``weight_factor=2.0`` reproduces llm-compressor's SmoothQuantModifier,
which takes the channel range max X_j - min X_j and 2 max|W_j| in place of max|X_j| and max|W_j|
(the cross-check in tests/crosscheck compares the scales with that setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method, MethodConfig
from qigbench.solvers.migration import activation_absmax, activation_range, search_smooth_alpha, smooth_scales
from qigbench.solvers.weights import SolverError

STATISTICS = {"absmax": activation_absmax, "range": activation_range}


@dataclass(frozen=True)
class SmoothQuantConfig(MethodConfig):
    alpha: float = 0.5
    search_alpha: bool = False  # pick alpha per group on a 20-point grid by the output error
    groups: tuple[str, ...] = ("qkv", "gate_up")  # the norm-preceded groups, as in SmoothQuant
    statistic: Literal["absmax", "range"] = "absmax"  # per-channel activation statistic: max|X| (paper) or max-min
    weight_factor: float = 1.0  # multiplies max|W_j| (llm-compressor uses 2.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.statistic not in STATISTICS:
            raise SolverError(
                f"SmoothQuant statistic {self.statistic!r} is unknown; use statistic=absmax (the paper) "
                "or statistic=range (llm-compressor's max - min)"
            )


class SmoothQuant(Method[SmoothQuantConfig]):
    name = "smoothquant"
    #: SmoothQuant (Xiao et al., Sec. 4) takes its activation statistics from the fp model's
    #: calibration pass, not from a partly quantized one
    propagation = "fp"

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.config
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
                weights = [lin.weight.detach() for lin in linears]
                act = STATISTICS[cfg.statistic](x, types)
                scales = smooth_scales(act, weights, cfg.alpha, weight_factor=cfg.weight_factor)
                alpha = cfg.alpha
            ctx.apply_scales_(group, scales)
            ctx.log(group.name, alpha=float(alpha))
        ctx.rtn_()
