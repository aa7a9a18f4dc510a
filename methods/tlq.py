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

With ``importance=uniform exposure=false`` TLQ is the unweighted CWE search, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qigbench.engine.context import BlockContext, ResolvedGroup
from qigbench.engine.cwe import CWEConfig, CWEMethod
from qigbench.engine.gradients import token_gradients
from qigbench.engine.run import RunContext
from qigbench.errors import QigbenchError
from qigbench.models.family import GroupKind
from qigbench.sensitivity.tlq import TLQImportanceConfig, TLQImportanceProvider


@dataclass(frozen=True)
class TLQConfig(CWEConfig):
    loss: str = "mae"  # MBQ's stack (the paper's baselines) [A12]
    exposure: bool = True
    importance: str = "gradient"  # "gradient" | "uniform" (importance off)
    granularity: str = "block"  # "block" (block output, A8) | "module" (attention / MLP outputs, A7)
    statistic: str = "abs"  # "abs" (mean |g|) | "fisher" (mean g^2)
    selection: float = 1.0  # token-level calibration set: keep the top fraction (A10)
    floor: float = 0.0
    clipping: str = "none"
    attention_module: str = "self_attn.o_proj"
    mlp_module: str = "mlp.down_proj"

    def __post_init__(self) -> None:
        if self.importance not in ("gradient", "uniform"):
            raise QigbenchError(f"tlq importance={self.importance!r}: use gradient (on) or uniform (off)")
        if self.granularity not in ("block", "module"):
            raise QigbenchError(f"tlq granularity={self.granularity!r}: use block or module")
        self.importance_config()  # validates statistic, selection, floor

    def importance_config(self) -> TLQImportanceConfig:
        return TLQImportanceConfig(self.statistic, self.selection, self.floor, self.clipping)  # type: ignore[arg-type]

    def modules(self) -> tuple[str, ...]:
        return ("",) if self.granularity == "block" else (self.attention_module, self.mlp_module)


class TLQ(CWEMethod):
    name = "tlq"
    config_class = TLQConfig

    def __init__(self, config: TLQConfig | None = None) -> None:
        super().__init__(config)
        self.scores: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def cfg(self) -> TLQConfig:
        assert isinstance(self.config, TLQConfig)
        return self.config

    def prepare(self, run: RunContext) -> None:
        if self.cfg.importance == "uniform":
            return
        self.scores = token_gradients(
            run.model, run.blocks, run.model.get_submodule(run.family.embed_tokens), run.batches,
            self.cfg.modules(), run.config.device, self.cfg.statistic,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{block}|{name}": s for block, by_name in self.scores.items() for name, s in by_name.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.scores = {}
        for key, s in state.items():
            block, _, name = key.partition("|")
            self.scores.setdefault(int(block), {})[name] = s

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        if self.cfg.importance == "uniform":
            return None
        key = ""
        if self.cfg.granularity == "module":
            key = self.cfg.attention_module if group.spec.kind is GroupKind.ATTENTION else self.cfg.mlp_module
        result = TLQImportanceProvider(self.scores, self.cfg.importance_config()).weights(
            ctx.index, key, ctx.token_types
        )
        ctx.log(group.name, **{f"tlq.{k}": v for k, v in result.diagnostics.items() if isinstance(v, (int, float))})
        ctx.artifacts.setdefault("token_weights", {})[group.name] = result.weights.detach().cpu()
        return result.weights
