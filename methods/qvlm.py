"""Q-VLM (Wang et al., NeurIPS 2024, arXiv 2410.08119): per-input-channel static activation
ranges chosen with an entropy-guided, cross-layer schedule (what is paper, released code or
assumption: ``docs/seed_methods.md``).

``mode=reference`` (default) is the released code (ChangyuanWang17/QVLM @191bdc9), every departure
an option: NF4 weights (block 64, at 4 bits; the run's integer format otherwise), A{a} asymmetric
per-input-channel static ranges from a sample-major pass over ``calibrate_prompts`` batches with the
entropy gate (L2-normalised entropy / conditional entropy, running-mean threshold, forced update
every 3rd block), one more "first search" batch, an optional clip search on the next batch, and
at inference a dynamic per-channel range for the o and down groups. Decode-step range widening is
not reproduced (the harness scores prefill), nor the hard-coded 4096 test (``dynamic_all=true``
gives its effect on other widths: every layer dynamic, as the release does for 13B).

``mode=paper`` is a *reconstruction* (the paper's equations were not retrieved; A1-A4): inside the
block engine, ranges are set group-sequentially on the quantized path, every linear is scored
(L1 entropy by default), the linear sequence is cut into blocks where the dependency is weak
(the score list and the open block cross decoder-block boundaries through the engine's carried
state), and within each block one clip ratio per linear is chosen jointly by coordinate descent on
the error at the block's last linear against the fp model. The partition is decided during the
loop (from the quantized inputs of each block), so it is not the engine's unit of work: paper mode
keeps one-block units and searches a segment that crosses a block boundary in two parts
(docs/seed_methods.md, "Partition and the engine's unit of work"). Weight-only formats search the weight
clip ratio instead. The visual-encoder optimisation (P4) is not implemented: the tower stays fp,
as in the release.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from qigbench.engine.context import BlockContext
from qigbench.engine.contracts import RunContext
from qigbench.engine.method import Method, MethodConfig
from qigbench.engine.replay import run_calls
from qigbench.engine.sample_major import sample_major_pass
from qigbench.errors import QigbenchError
from qigbench.models.groups import block_linear_names
from qigbench.quant import ChannelActQuantLinear, QuantFormat, QuantLinear, fake_quantize
from qigbench.quant.nf4 import nf4_fake_quantize
from qigbench.quant.static import channel_range, dead_channels
from qigbench.sensitivity.entropy import EntropyNorm
from qigbench.solvers.activation_ranges import CLIP_GRID, EntropyGatedRanges, layer_score, partition_linears
from qigbench.tokens import valid_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QVLMConfig(MethodConfig):
    mode: Literal["reference", "paper"] = "reference"  # the released code | the reconstruction
    weights: Literal["auto", "nf4", "format"] = "auto"  # auto: reference nf4 at 4 bits, paper the format
    entropy_norm: Literal["auto", "l1", "l2"] = "auto"  # auto: reference l2, paper l1
    threshold: float = 0.0  # 0 = running mean of the scores (HEAD); e.g. 37 = the first release
    force_every: int = 3  # forced range update / forced cut every N decoder blocks (0 = never)
    # reference mode
    calibrate_prompts: int = 8
    first_search: bool = True
    double_append: bool = True  # the release appends each score twice on the first-search prompt
    clip_search: bool = True  # step 4 (the author: unused in the final version; the script runs it)
    clip_grid: tuple[float, ...] = CLIP_GRID
    #: groups with a dynamic range at inference: "auto" (reference: o,down; paper: none) | "none" | "o,down"
    dynamic: str = "auto"
    dynamic_all: bool = False  # every layer dynamic (the release on hidden sizes other than 4096)
    # paper mode
    max_segment: int = 7  # linears per searched block (7 = one LLaMA layer)
    sweeps: int = 2

    only_with: ClassVar[Mapping[str, tuple[str, Any]]] = {
        **{name: ("mode", "reference")
           for name in ("calibrate_prompts", "first_search", "double_append", "clip_search")},
        **{name: ("mode", "paper") for name in ("max_segment", "sweeps")},
    }

    def __post_init__(self) -> None:
        super().__post_init__()  # the Literal choices (mode, weights, entropy_norm) and only_with
        if not self.clip_grid or any(not 0 < r <= 1 for r in self.clip_grid):
            raise QigbenchError(f"qvlm clip_grid must hold ratios in (0, 1], got {self.clip_grid}")

    @property
    def reference(self) -> bool:
        return self.mode == "reference"

    def norm(self) -> EntropyNorm:
        if self.entropy_norm == "auto":
            return "l2" if self.reference else "l1"
        return self.entropy_norm

    def dynamic_groups(self) -> tuple[str, ...]:
        if self.dynamic == "auto":
            return ("o", "down") if self.reference else ()
        return () if self.dynamic == "none" else tuple(g for g in self.dynamic.split(",") if g)

    def use_nf4(self, fmt: QuantFormat) -> bool:
        if self.weights == "nf4" and fmt.w_bits != 4:
            raise QigbenchError(f"qvlm weights=nf4 is a 4-bit format; the run is {fmt.name} (use weights=format)")
        return self.weights == "nf4" or (self.weights == "auto" and self.reference and fmt.w_bits == 4)


def _block_linears(groups: Sequence[object]) -> list[str]:
    names: list[str] = []
    for spec in groups:
        names.extend(n for n in spec.linears if n not in names)  # type: ignore[attr-defined]
    return names


class QVLM(Method[QVLMConfig]):
    name = "qvlm"

    def __init__(self, config: QVLMConfig | None = None) -> None:
        super().__init__(config)
        self.ranges: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def cfg(self) -> QVLMConfig:
        return self.config

    # ------------------------------------------------------------------ weights
    def weights_on_format_grid(self, fmt: QuantFormat) -> bool:
        return not self.cfg.use_nf4(fmt)

    def _quantized_weight(self, weight: torch.Tensor, fmt: QuantFormat, clip: float = 1.0) -> torch.Tensor:
        if self.cfg.use_nf4(fmt):
            return nf4_fake_quantize(weight.detach(), clip_ratio=clip)
        return fake_quantize(weight.detach(), fmt.weight, clip)

    def _entropy_roles(self, family_groups: Sequence[object]) -> set[str]:
        """q (the block's first linear) and down take the entropy; the others the dependency."""
        names = _block_linears(family_groups)
        down = [n for g in family_groups if g.name == "down" for n in g.linears]  # type: ignore[attr-defined]
        return {names[0], *down}

    # ------------------------------------------------------------------ reference mode
    def prepare(self, run: RunContext) -> None:
        if not self.cfg.reference or run.fmt.weight_only:
            return
        cfg, fmt = self.cfg, run.fmt
        names = block_linear_names(run.blocks[0], run.family)  # every quantized linear, block order
        roles = self._entropy_roles(run.family.groups)
        state = EntropyGatedRanges(fmt.a_bits, cfg.norm(), cfg.threshold or None, cfg.force_every)
        originals = {}
        for i, block in enumerate(run.blocks):  # upstream linears compute with quantized weights
            for name in names:
                lin = _as_module(block.get_submodule(name))
                originals[(i, name)] = lin.weight.data
                lin.weight.data = self._quantized_weight(lin.weight.data, fmt)
        batches = list(run.batches)
        n_acc = min(cfg.calibrate_prompts, len(batches))
        schedule = [("accumulate", b, 1) for b in batches[:n_acc]]
        extra = iter(batches[n_acc:] or batches[-1:])
        if cfg.first_search:
            schedule.append(("accumulate", next(extra, batches[-1]), 2 if cfg.double_append else 1))
        if cfg.clip_search:
            schedule.append(("clip", next(extra, batches[-1]), 1))
        phase: dict[str, Any] = {"name": "accumulate", "appends": 1}

        def hook(i: int, name: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if phase["name"] == "clip":
                return state.search_clip(i, name, x, mask, cfg.clip_grid)
            return state.observe(i, name, x, mask, first_linear=(i == 0 and name == names[0]),
                                 entropy_role=name in roles, appends=int(phase["appends"]))

        try:
            for kind, batch, appends in schedule:
                phase.update(name=kind, appends=appends)
                sample_major_pass(run.model, run.blocks, names, [batch], hook, run.config.device)
        finally:
            for (i, name), w in originals.items():
                run.blocks[i].get_submodule(name).weight.data = w
        self.ranges = {k: (lo.cpu(), hi.cpu()) for k, (lo, hi) in state.ranges.items()}
        self.updates = dict(state.updates)
        self.clip = dict(state.clip)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for (i, name), (lo, hi) in self.ranges.items():
            out[f"{i}|{name}|lo"], out[f"{i}|{name}|hi"] = lo, hi
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.ranges = {}
        for key in state:
            i, name, part = key.split("|")
            if part == "lo":
                self.ranges[(int(i), name)] = (state[key], state[f"{i}|{name}|hi"])

    # ------------------------------------------------------------------ installing
    def _module(
        self, ctx: BlockContext, name: str, act_range: tuple[torch.Tensor, torch.Tensor] | None, dynamic: bool
    ) -> nn.Module:
        lin = ctx.linear(name)
        weight = self._quantized_weight(lin.weight.data, ctx.fmt)
        if ctx.fmt.weight_only:
            return QuantLinear(weight, lin.bias, ctx.fmt, weight_is_quantized=True)
        full = f"block {ctx.index} {name}"
        rng = None if dynamic else act_range
        return ChannelActQuantLinear(
            weight, lin.bias, ctx.fmt, ctx.fmt.a_bits, rng, weight_is_quantized=True, name=full
        )

    def _dynamic(self, ctx: BlockContext, name: str) -> bool:
        if self.cfg.dynamic_all:
            return True
        return any(name in g.linear_names for g in ctx.groups() if g.name in self.cfg.dynamic_groups())

    def quantize_block(self, ctx: BlockContext) -> None:
        if not self.cfg.reference:
            self._quantize_paper(ctx)
            return
        dead = 0
        for name in ctx.linear_names():
            rng = self.ranges.get((ctx.index, name))
            dynamic = rng is None or self._dynamic(ctx, name)
            if rng is not None and not dynamic:
                dead += dead_channels(*rng)
            ctx.replace_linear_(name, self._module(ctx, name, rng, dynamic))
            ctx.log(name, dynamic=dynamic, updates=getattr(self, "updates", {}).get((ctx.index, name), 0),
                    clip=getattr(self, "clip", {}).get((ctx.index, name), 1.0))
        ctx.stats["dead_channels"] = dead
        ctx.rtn_()

    # ------------------------------------------------------------------ paper mode (reconstruction)
    def _quantize_paper(self, ctx: BlockContext) -> None:
        cfg = self.cfg
        fp_block = copy.deepcopy(ctx.block)
        mask = valid_mask(ctx.token_types).to(ctx.device)
        names = ctx.linear_names()
        # 1. group-sequential ranges on the quantized path
        grouped = [g.linear_names for g in ctx.groups()]
        units = grouped + [[n] for n in names if not any(n in g for g in grouped)]  # linears outside groups
        for unit in units:
            todo = [n for n in unit if not isinstance(ctx.block.get_submodule(n), QuantLinear)]
            inputs = {n: ctx.linear_input(n).to(ctx.device) for n in todo}
            for n in todo:
                rng = channel_range(inputs[n], mask)
                ctx.replace_linear_(n, self._module(ctx, n, rng, self._dynamic(ctx, n)))
        # 2. scores on the quantized inputs; 3. the partition (crossing blocks via ctx.carried)
        carried = ctx.carried.setdefault("qvlm", {"scores": [], "open_len": 0, "last_score": None, "segments": []})
        roles = self._entropy_roles(ctx.family.groups)
        scores, prev_xq = [], None
        for n in names:
            module = ctx.block.get_submodule(n)
            assert isinstance(module, QuantLinear)
            xq = module.quantize_input(ctx.linear_input(n).to(ctx.device))
            scores.append(layer_score(xq, prev_xq if n != names[0] else None, n in roles, mask, cfg.norm()))
            prev_xq = xq
        history = carried["scores"] + scores
        tau = cfg.threshold or sum(history) / len(history)
        forced = [j == 0 and cfg.force_every > 0 and ctx.index % cfg.force_every == 0 for j in range(len(names))]
        ids, open_len, continues = partition_linears(
            scores, forced, tau, cfg.max_segment, carried["open_len"], carried["last_score"]
        )
        segments = [[n for n, s in zip(names, ids, strict=True) if s == k] for k in sorted(set(ids))]
        carried.update(scores=history, last_score=scores[-1], open_len=open_len)
        carried["segments"].extend([[ctx.index, *seg] for seg in segments])
        ctx.stats["qvlm"] = {"scores": scores, "threshold": tau, "segments": segments, "continues": continues}
        # 4. joint search per segment: coordinate descent over one clip ratio per linear
        for seg in segments:
            self._search_segment(ctx, fp_block, seg, mask)
        ctx.rtn_()

    def _search_segment(self, ctx: BlockContext, fp_block: nn.Module, seg: list[str], mask: torch.Tensor) -> None:
        cfg = self.cfg
        last = seg[-1]
        reference = _output_of(fp_block, last, ctx, "fp")
        ratios = dict.fromkeys(seg, 1.0)

        def loss() -> float:
            out = _output_of(ctx.block, last, ctx, "calib")
            pairs = zip(out, reference, _split(mask, out), strict=True)
            return float(sum(((o.float() - r.float()) ** 2)[m].sum() for o, r, m in pairs))

        def set_ratio(name: str, r: float) -> None:
            module = ctx.block.get_submodule(name)
            if isinstance(module, ChannelActQuantLinear) and module.static:
                module.set_clip_ratio(r)
            elif ctx.fmt.weight_only and isinstance(module, QuantLinear):
                fp_weight = _as_module(fp_block.get_submodule(name)).weight.data
                module.weight.data.copy_(self._quantized_weight(fp_weight, ctx.fmt, r))

        best = loss()
        for _ in range(cfg.sweeps):
            changed = False
            for name in seg:
                for r in cfg.clip_grid:
                    if r == ratios[name]:
                        continue
                    set_ratio(name, r)
                    value = loss()
                    if value < best:
                        best, ratios[name], changed = value, r, True
                    set_ratio(name, ratios[name])
            if not changed:
                break
        for name, r in ratios.items():
            ctx.log(name, clip=r)
        ctx.invalidate()


def _as_module(module: nn.Module) -> nn.Linear:
    assert isinstance(module, (nn.Linear, QuantLinear))
    return module  # type: ignore[return-value]


def _split(mask: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for o in outputs:
        out.append(mask[start : start + o.shape[0]].to(o.device))
        start += o.shape[0]
    return out


@torch.no_grad()
def _output_of(block: nn.Module, name: str, ctx: BlockContext, stream: str) -> list[torch.Tensor]:
    """Per batch, the output of ``block``'s module ``name`` with the block run on ``stream``."""
    captured: list[torch.Tensor] = []
    handle = block.get_submodule(name).register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    try:
        run_calls(block, ctx.calls, ctx.inputs(stream), ctx.device)  # type: ignore[arg-type]
    finally:
        handle.remove()
    return captured
