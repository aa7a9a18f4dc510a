"""MBQ (modality-balanced quantization, Li et al. CVPR 2025): the CWE search with the per-token
error reweighted by modality — answer tokens 1, vision tokens r — where r = g_vision / g_text
comes from one forward/backward of the caption loss (attention ratio for qkv/o, MLP ratio for
gate-up/down). MAE loss, as in MBQ (methods.md: ``sum |delta|`` per modality). The released code
also floors each layer's ratio at the median over layers; that is ``-o ratio_floor=median``, not the
default (docs/method_defaults.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.output_gradients import modality_gradients
from qigbench.engine.context import BlockContext
from qigbench.engine.contracts import RunContext
from qigbench.models.family import GroupKind
from qigbench.models.groups import ResolvedGroup
from qigbench.sensitivity.modality import mbq_ratios, modality_weights
from qigbench.solvers.scale_search import LossName


@dataclass(frozen=True)
class MBQConfig(EqualizationConfig):
    loss: LossName = "mae"
    #: the paper's ratio is g_vision / g_text as measured ("none"); the released code floors each
    #: layer's ratio at the median over layers ("median", a named variant: mbq[ratio_floor=median])
    ratio_floor: Literal["median", "none"] = "none"
    #: block paths whose output gradients give the attention / MLP ratios; "" = the family's
    #: attention output and MLP down projection (last linear of its last attention / MLP group)
    attention_module: str = ""
    mlp_module: str = ""


class MBQ(EqualizationMethod[MBQConfig]):
    name = "mbq"

    def __init__(self, config: MBQConfig | None = None) -> None:
        super().__init__(config)
        self.ratios: dict[str, torch.Tensor] = {}

    def prepare(self, run: RunContext) -> None:
        cfg = self.config
        attention = cfg.attention_module or run.family.output_linear(GroupKind.ATTENTION)
        mlp = cfg.mlp_module or run.family.output_linear(GroupKind.MLP)
        modules = (attention, mlp)
        grads = modality_gradients(
            run.model,
            run.blocks,
            run.model.get_submodule(run.family.embed_tokens),
            run.batches,
            modules,
            run.config.device,
        )
        floor = None if cfg.ratio_floor == "none" else cfg.ratio_floor
        self.ratios = {
            "attention": mbq_ratios(grads.vision[attention], grads.text[attention], floor),
            "mlp": mbq_ratios(grads.vision[mlp], grads.text[mlp], floor),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.ratios)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.ratios = dict(state)

    def token_weights(self, ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor | None:
        if ctx.answer_mask is None:
            raise RuntimeError("MBQ needs the calibration set's answer (caption) mask")
        kind = "attention" if group.spec.kind is GroupKind.ATTENTION else "mlp"  # only scalable groups come here
        ratio = float(self.ratios[kind][ctx.index])
        ctx.log(group.name, mbq_ratio=ratio)
        return modality_weights(ctx.token_types, ctx.answer_mask, ratio)
