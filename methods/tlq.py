"""TLQ (Shang et al., arXiv 2602.07899): token-level importance-aware, quantization-exposed
layer-wise calibration. No code was released and the equations were not retrievable: this is the
abstract-level specification (``docs/seed_methods.md``: what is paper and what is assumption), every gap an option.

What differs from the shared CWE search (AWQ's grid over alpha, MBQ's MAE loss):

* ``importance=gradient``: lambda per token from ``|dL/dY|`` of the caption cross-entropy at each
  block's output (``granularity=module``: at the attention / MLP outputs, as MBQ's hooks; A6-A8),
  one fp forward/backward per batch, with ``selection`` (token-level calibration set, A10),
  ``statistic``, ``floor`` and ``clipping``; ``importance=uniform`` switches it off;
* ``exposure=true``: group-sequential calibration — each group is searched on the inputs that
  the already-quantized earlier groups of the block produce (A11), on top of the block-level
  quantized propagation. ``exposure=false`` searches every group on the block's unquantized path.
* ``solver`` (A12): ``cwe`` (default) is the search above; ``gptq`` is GPTQ(lambda) with
  ``H = X^T diag(lambda) X`` — the shared :class:`~qigbench.bases.gptq_family.GPTQMethod` block loop
  and solver (``damp`` 1%, ``block_size`` 128), TLQ's lambda as QIG+GPTQ's. Exposure maps onto
  GPTQ's ``true_sequential``: ``exposure=true`` re-records each group's inputs after the earlier
  groups of the block were quantized (GPTQ's own true-sequential order, i.e. already
  quantization-exposed), ``exposure=false`` takes every group's Hessian from the block's
  unquantized path. The CWE-only options (``n_grid``, ``loss``) do not apply.
* ``target`` (A13): ``same_input`` (default) scores a candidate against the fp layer on the same,
  quantized, input (``W X^q``); ``fp_path`` against the fp model's own output ``W X^fp`` — the
  group's inspected module on the fp stream, recorded before the block changes — so the search
  also corrects the error that reaches the group from upstream. With the fp propagation of
  weight-only formats and ``exposure=false`` both targets coincide. CWE only: GPTQ's solver
  minimises ``||(W - Q) X||`` on one input and has no cross term ``X^fp X^qT`` for it; AWQ's clip
  search (``clip_search``) keeps its same-input target.

With ``importance=uniform exposure=false`` TLQ is the unweighted CWE search, bit for bit; with
``solver=gptq importance=uniform`` it is GPTQ (``exposure=true``: plain ``gptq``; ``false``:
``gptq -o true_sequential=false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig
from qigbench.bases.output_gradients import token_gradients
from qigbench.config import project
from qigbench.engine.context import BlockContext
from qigbench.engine.contracts import RunContext
from qigbench.models.family import GroupKind, ModelFamily
from qigbench.models.groups import ResolvedGroup
from qigbench.sensitivity.tlq_importance import TLQImportanceConfig, TLQImportanceProvider
from qigbench.solvers.scale_search import LossName


@dataclass(frozen=True)
class TLQConfig(EqualizationConfig, TLQImportanceConfig):
    """The CWE search's options, the importance provider's (``statistic``, ``selection``,
    ``floor``, ``clipping``: embedded, flat option names) and TLQ's own switches."""

    loss: LossName = "mae"  # MBQ's stack (the paper's baselines) [A12]
    exposure: bool = True
    importance: Literal["gradient", "uniform"] = "gradient"  # uniform: importance off
    granularity: Literal["block", "module"] = "block"  # block output (A8) | attention / MLP outputs (A7)
    #: granularity=module: block paths of the attention / MLP outputs; "" = the family's attention
    #: output and MLP down projection (the last linear of its last attention / MLP group)
    attention_module: str = ""
    mlp_module: str = ""
    solver: Literal["cwe", "gptq"] = "cwe"  # scale search (A12 default) | GPTQ(lambda)
    damp: float = 0.01  # solver=gptq: Hessian damping, a fraction of its mean diagonal
    block_size: int = 128  # solver=gptq: columns per lazy batch update
    target: Literal["same_input", "fp_path"] = "same_input"  # W X^q | W X^fp (A13)

    only_with: ClassVar[Mapping[str, tuple[str, Any]]] = {
        **{name: ("solver", "cwe")
           for name in ("n_grid", "loss", "duo_scaling", "clip_search", "skip_groups", "target")},
        **{name: ("solver", "gptq") for name in ("damp", "block_size")},
        **{name: ("importance", "gradient") for name in ("granularity", "statistic", "selection", "floor", "clipping")},
        **{name: ("granularity", "module") for name in ("attention_module", "mlp_module")},
    }

    def __post_init__(self) -> None:
        super().__post_init__()  # the scale search's checks and the only_with rules
        self.importance_config()  # validates statistic, selection, floor

    def importance_config(self) -> TLQImportanceConfig:
        return TLQImportanceConfig(**project(self, TLQImportanceConfig))

    def module_for(self, family: ModelFamily, kind: GroupKind) -> str:
        """Where a group of ``kind`` reads its importance: the block output, or (granularity=module)
        the attention / MLP output the family names (or the configured path)."""
        if self.granularity == "block":
            return ""
        if kind is GroupKind.ATTENTION:
            return self.attention_module or family.output_linear(GroupKind.ATTENTION)
        return self.mlp_module or family.output_linear(GroupKind.MLP)

    def modules(self, family: ModelFamily) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.module_for(family, k) for k in (GroupKind.ATTENTION, GroupKind.MLP)))


class TLQ(EqualizationMethod[TLQConfig]):
    name = "tlq"

    def __init__(self, config: TLQConfig | None = None) -> None:
        super().__init__(config)
        self.scores: dict[int, dict[str, torch.Tensor]] = {}
        self._targets: dict[str, torch.Tensor] = {}

    @property
    def cfg(self) -> TLQConfig:
        return self.config

    def prepare(self, run: RunContext) -> None:
        if self.cfg.importance == "uniform":
            return
        self.scores = token_gradients(
            run.model, run.blocks, run.model.get_submodule(run.family.embed_tokens), run.batches,
            self.cfg.modules(run.family), run.config.device, self.cfg.statistic,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{block}|{name}": s for block, by_name in self.scores.items() for name, s in by_name.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.scores = {}
        for key, s in state.items():
            block, _, name = key.partition("|")
            self.scores.setdefault(int(block), {})[name] = s

    def quantize_block(self, ctx: BlockContext) -> None:
        cfg = self.cfg
        if cfg.solver == "gptq":
            solver_cfg = GPTQMethodConfig(block_size=cfg.block_size, damp=cfg.damp, true_sequential=cfg.exposure)
            _WeightedGPTQ(solver_cfg, self).quantize_block(ctx)
            return
        self._targets = self._fp_path_outputs(ctx) if cfg.target == "fp_path" else {}
        try:
            super().quantize_block(ctx)
        finally:
            self._targets = {}

    def _fp_path_outputs(self, ctx: BlockContext) -> dict[str, torch.Tensor]:
        """Each searched group's fp output on the fp model's own input (the fp stream), taken
        before any group of the block is scaled or quantized."""
        out = {}
        with torch.no_grad():
            for group in ctx.groups(scalable_only=True):
                if group.name not in self.cfg.skip_groups:
                    out[group.name] = ctx.compared(group, "fp")(ctx.group_input(group, "fp").to(ctx.device))
        return out

    def search_target(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return self._targets.get(group.name)  # None (same_input): the solver's fp output on the same input

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        if self.cfg.importance == "uniform":
            return None
        key = self.cfg.module_for(ctx.family, group.spec.kind)
        result = TLQImportanceProvider(self.scores, self.cfg.importance_config()).weights(
            ctx.index, key, ctx.token_types
        )
        ctx.log(group.name, **{f"tlq.{k}": v for k, v in result.diagnostics.items() if isinstance(v, (int, float))})
        ctx.artifacts.setdefault("token_weights", {})[group.name] = result.weights.detach().cpu()
        return result.weights


class _WeightedGPTQ(GPTQMethod[GPTQMethodConfig]):
    """The shared GPTQ block loop with TLQ's lambda in the Hessian (solver=gptq)."""

    name = "tlq"

    def __init__(self, config: GPTQMethodConfig, tlq: TLQ) -> None:
        super().__init__(config)
        self.tlq = tlq

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return self.tlq.token_weights(ctx, group)
