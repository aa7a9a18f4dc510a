"""TLQ (Shang et al., arXiv 2602.07899): token-level importance-aware, quantization-exposed
layer-wise calibration. No code was released and the equations were not retrievable: this is the
abstract-level specification of ``reference/q-vlm-and-tlq.md`` section 2, every gap an option.

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

from dataclasses import dataclass

import torch

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig
from qigbench.bases.output_gradients import token_gradients
from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.engine.contracts import RunContext
from qigbench.errors import QigbenchError
from qigbench.models.family import GroupKind, ModelFamily
from qigbench.sensitivity.tlq_importance import TLQImportanceConfig, TLQImportanceProvider


@dataclass(frozen=True)
class TLQConfig(EqualizationConfig):
    loss: str = "mae"  # MBQ's stack (the paper's baselines) [A12]
    exposure: bool = True
    importance: str = "gradient"  # "gradient" | "uniform" (importance off)
    granularity: str = "block"  # "block" (block output, A8) | "module" (attention / MLP outputs, A7)
    statistic: str = "abs"  # "abs" (mean |g|) | "fisher" (mean g^2)
    selection: float = 1.0  # token-level calibration set: keep the top fraction (A10)
    floor: float = 0.0
    clipping: str = "none"
    #: granularity=module: block paths of the attention / MLP outputs; "" = the family's attention
    #: output and MLP down projection (the last linear of its last attention / MLP group)
    attention_module: str = ""
    mlp_module: str = ""
    solver: str = "cwe"  # "cwe" (scale search, A12 default) | "gptq" (GPTQ(lambda))
    damp: float = 0.01  # solver=gptq: Hessian damping, a fraction of its mean diagonal
    block_size: int = 128  # solver=gptq: columns per lazy batch update
    target: str = "same_input"  # "same_input" (W X^q) | "fp_path" (W X^fp), A13

    def __post_init__(self) -> None:
        if self.solver not in ("cwe", "gptq"):
            raise QigbenchError(f"tlq solver={self.solver!r}: use cwe (the scale search) or gptq (GPTQ(lambda))")
        if self.target not in ("same_input", "fp_path"):
            raise QigbenchError(
                f"tlq target={self.target!r}: use same_input (fp layer on the quantized input) or fp_path "
                "(the fp model's own output)"
            )
        if self.solver == "gptq" and self.target == "fp_path":
            raise QigbenchError(
                "tlq target=fp_path needs solver=cwe: the GPTQ solver fits W on one input (no X^fp X^q cross term)"
            )
        if self.solver == "gptq" and (self.clip_search or self.skip_groups):
            raise QigbenchError("tlq clip_search and skip_groups belong to solver=cwe; drop them for solver=gptq")
        defaults = TLQConfig.__dataclass_fields__
        ignored = [
            name
            for name, used_by in (("n_grid", "cwe"), ("loss", "cwe"), ("damp", "gptq"), ("block_size", "gptq"))
            if self.solver != used_by and getattr(self, name) != defaults[name].default
        ]
        if ignored:
            raise QigbenchError(
                f"tlq {', '.join(ignored)} only apply to solver={'gptq' if self.solver == 'cwe' else 'cwe'}; "
                f"drop them or pass -o solver={'gptq' if self.solver == 'cwe' else 'cwe'}"
            )
        if self.importance not in ("gradient", "uniform"):
            raise QigbenchError(f"tlq importance={self.importance!r}: use gradient (on) or uniform (off)")
        if self.granularity not in ("block", "module"):
            raise QigbenchError(f"tlq granularity={self.granularity!r}: use block or module")
        self.importance_config()  # validates statistic, selection, floor

    def importance_config(self) -> TLQImportanceConfig:
        return TLQImportanceConfig(self.statistic, self.selection, self.floor, self.clipping)  # type: ignore[arg-type]

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


class TLQ(EqualizationMethod):
    name = "tlq"
    config_class = TLQConfig

    def __init__(self, config: TLQConfig | None = None) -> None:
        super().__init__(config)
        self.scores: dict[int, dict[str, torch.Tensor]] = {}
        self._targets: dict[str, torch.Tensor] = {}

    @property
    def cfg(self) -> TLQConfig:
        assert isinstance(self.config, TLQConfig)
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


class _WeightedGPTQ(GPTQMethod):
    """The shared GPTQ block loop with TLQ's lambda in the Hessian (solver=gptq)."""

    name = "tlq"

    def __init__(self, config: GPTQMethodConfig, tlq: TLQ) -> None:
        super().__init__(config)
        self.tlq = tlq

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        return self.tlq.token_weights(ctx, group)
