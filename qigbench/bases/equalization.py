"""Channel-wise equalisation methods (AWQ, MBQ, QIG): per scaling group, search the scales with
a (token-weighted) loss, fold them into the block, then round the weights.

A plugin subclasses :class:`EqualizationMethod` and overrides :meth:`EqualizationMethod.token_weights` (and its
config); ``None`` means uniform, which the solvers treat bit-identically to explicit uniform weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch

from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method, MethodConfig
from qigbench.memory import row_bytes, rows_per_chunk
from qigbench.models.groups import ResolvedGroup
from qigbench.models.scaling import rows_index, rows_width
from qigbench.quant import fake_quantize
from qigbench.solvers.clip_search import search_clip
from qigbench.solvers.scale_search import ScaleSearchConfig, ScaleSearchOptions, search_scales


@dataclass(frozen=True)
class EqualizationConfig(MethodConfig, ScaleSearchOptions):
    """The scale search's options (``n_grid``, ``loss``, ``duo_scaling``: embedded, so they keep
    their flat option names) plus what the block loop does around it."""

    clip_search: bool = False  # AWQ's weight-clipping search after scaling
    skip_groups: tuple[str, ...] = ()  # e.g. ("o",) to leave a group unscaled
    #: group-sequential ("quantization-exposed") calibration: quantize each group right after its
    #: search, so later groups of the block are searched on the output of the quantized earlier
    #: ones (TLQ). Later scales fold into already-quantized rows (v_proj for o, up_proj for down),
    #: which keeps them on their grid. False: every group sees the block's unquantized path (AWQ).
    exposure: bool = False


EqualizationConfigT = TypeVar("EqualizationConfigT", bound=EqualizationConfig)


class EqualizationMethod(Method[EqualizationConfigT]):
    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        """lambda[N, T] for this group's loss; ``None`` = uniform."""
        return None

    def search_target(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        """The output ``[N, T, H]`` this group's candidates are scored against; ``None`` = the
        compared module with fp weights on the same (searched) input."""
        return None

    def search_config(self, batch_chunk: int | None = None) -> ScaleSearchConfig:
        return ScaleSearchConfig.of(self.config, batch_chunk)

    @staticmethod
    def search_chunk(ctx: BlockContext, group: ResolvedGroup) -> int:
        """Samples per scale-candidate evaluation that fit the memory budget (all of them if they fit)."""
        samples, tokens = int(ctx.token_types.shape[0]), int(ctx.token_types.shape[1])
        # x2: the candidate's output beside the (kept) reference output of the same rows
        per_row = 2 * row_bytes(group.inspect, tokens, autograd=False)
        return rows_per_chunk(ctx.budget(), per_row, samples)

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.config
        weights: dict[str, torch.Tensor | None] = {}
        if cfg.exposure:
            self._quantize_block_exposed(ctx)
            return
        for group in ctx.groups(scalable_only=True):
            if group.name in cfg.skip_groups:
                continue
            lam = self.token_weights(ctx, group)
            weights[group.name] = lam
            self._search(ctx, group, lam)
        if cfg.clip_search:
            self._clip(ctx, weights)
        ctx.rtn_()

    def _search(self, ctx: BlockContext, group: ResolvedGroup, lam: torch.Tensor | None) -> None:
        x = ctx.group_input(group).to(ctx.device)
        result = search_scales(
            x,
            ctx.group(group.name).linears,
            ctx.compared(group),
            ctx.fmt,
            token_weights=None if lam is None else lam.to(ctx.device),
            token_types=ctx.token_types.to(ctx.device),
            cfg=self.search_config(self.search_chunk(ctx, group)),
            target=self.search_target(ctx, group),
        )
        ctx.apply_scales_(group, result.scales)
        ctx.log(group.name, alpha=float(result.alpha))

    def _quantize_block_exposed(self, ctx: BlockContext) -> None:
        """Groups in block order: search (on inputs from the already-quantized earlier groups),
        clip, quantize; the next group's inputs are then recorded anew."""
        cfg = self.config
        for group in ctx.groups():
            lam = None
            if group.scalable and group.name not in cfg.skip_groups:
                lam = self.token_weights(ctx, group)
                self._search(ctx, group, lam)
            if cfg.clip_search:
                self._clip(ctx, {group.name: lam}, only=group.name)
            ctx.quantize_group_(group)
        ctx.rtn_()

    def _clip(self, ctx: BlockContext, weights: dict[str, torch.Tensor | None], only: str | None = None) -> None:
        """AWQ's clip search on the scaled weights. What it never clips comes from the family
        (``ModelFamily.unclipped``: q and k, as in AWQ, whose error is filtered by RoPE and the
        softmax; the q and k *rows* of a fused qkv linear, whose v rows are still clipped)."""
        for group in ctx.groups():
            if only is not None and group.name != only:
                continue
            lam = weights.get(group.name)
            for name in group.linear_names:
                linear = ctx.linear(name)
                frozen = group.unclipped.get(name, ())
                if rows_width(frozen) >= linear.out_features:
                    continue
                keep = None
                if frozen:
                    keep = torch.ones(linear.out_features, dtype=torch.bool)
                    keep[rows_index(frozen)] = False
                x = ctx.linear_input(name).to(ctx.device)
                ratio = search_clip(
                    linear.weight.data,
                    x,
                    None if lam is None else lam.to(ctx.device),
                    ctx.fmt.weight,
                    token_types=ctx.token_types.to(ctx.device),
                    rows=None if keep is None else keep.nonzero().flatten(),
                )
                ctx.quantize_linear_(name, fake_quantize(linear.weight.data, ctx.fmt.weight, ratio))
                ctx.log(group.name, **{f"clip_mean.{name}": float(ratio.float().mean())})
