"""A family's scaling groups bound to the modules of one decoder block: the one resolver.

The engine, every method and the scaling tests ask :func:`resolve_groups`; its rules are the
ones the baseline was measured with:

- every linear of the block is quantized, except the family's ``keep_fp`` list; a linear that no
  group covers becomes a group of its own (kind ``LINEAR``: quantized, never scaled);
- a group whose previous op emits a different width than its linears take is kept (its linears
  are still quantized) but not scalable — the "o" group under grouped-query attention, where
  ``v_proj`` emits fewer channels than ``o_proj`` takes. Only a group the family marks
  ``requires_matching_shapes`` may be absent that way; any other mismatch is a wrong description;
- a previous op that cannot absorb ``1/s`` at all (a Gemma-style norm) is an error, before any
  search runs (:func:`qigbench.models.scaling.absorbs_inverse_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qigbench.models.errors import ScalingGroupError
from qigbench.models.family import GroupKind, ModelFamily, ScalingGroup
from qigbench.models.registry import module_at
from qigbench.models.scaling import check_absorbs_inverse_scale, prev_out_features, scale_
from qigbench.quant import QuantLinear


@dataclass(frozen=True)
class ResolvedGroup:
    """A scaling group bound to the modules of one block."""

    spec: ScalingGroup
    prev_op: nn.Module
    linears: list[nn.Linear]
    linear_names: list[str]
    inspect: nn.Module
    #: False when the previous op cannot absorb a scale (GQA's o group, a lone linear): quantized, not scaled
    scalable: bool = True

    @property
    def name(self) -> str:
        return self.spec.name


def block_linear_names(block: nn.Module, family: ModelFamily) -> list[str]:
    """Every linear of ``block`` that is quantized, in block order: all of its ``nn.Linear`` (and
    already quantized) modules except the family's explicit ``keep_fp`` list."""
    linears = [name for name, m in block.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
    kept = {k.path for k in family.keep_fp}
    unknown = sorted(kept - set(linears))
    if unknown:
        raise ScalingGroupError(
            f"family {family.name!r} keeps {unknown} in full precision, but the block has no such linear; "
            "fix keep_fp in the family description"
        )
    return [name for name in linears if name not in kept]


def resolve_groups(block: nn.Module, family: ModelFamily) -> list[ResolvedGroup]:
    """Bind the family's groups to ``block``'s current modules (quantized linears included), in
    block order, plus one ``LINEAR`` group per linear no group covers (see the module docstring)."""
    order = {name: i for i, name in enumerate(block_linear_names(block, family))}
    covered = {name for spec in family.groups for name in spec.linears}
    lone = [
        ScalingGroup(name=name, prev_op="", linears=(name,), inspect=name, kind=GroupKind.LINEAR)
        for name in order
        if name not in covered
    ]
    groups = []
    for spec in (*family.groups, *lone):
        kept = [name for name in spec.linears if name not in order]
        if kept:
            raise ScalingGroupError(
                f"family {family.name!r}: group {spec.name!r} scales {kept}, which keep_fp keeps in full precision; "
                "a kept linear cannot be part of a scaling group"
            )
        prev, linears = _bind(block, spec)
        matching = all(prev_out_features(prev) == lin.in_features for lin in linears)
        if spec.kind is not GroupKind.LINEAR and not matching and not spec.requires_matching_shapes:
            raise ScalingGroupError(
                f"group {spec.name!r}: previous op emits {prev_out_features(prev)} channels but the linears take "
                f"{sorted({lin.in_features for lin in linears})}; the family description is wrong for this block "
                "(mark the group requires_matching_shapes if it only exists when the shapes agree)"
            )
        scalable = spec.kind is not GroupKind.LINEAR and matching
        if scalable:
            check_absorbs_inverse_scale(prev, spec.name)
        inspect = module_at(block, spec.inspect, what=f"group {spec.name!r} inspected module")
        groups.append(ResolvedGroup(spec, prev, linears, list(spec.linears), inspect, scalable))
    return sorted(groups, key=lambda g: min(order[name] for name in g.linear_names))


@torch.no_grad()
def apply_scales_(block: nn.Module, group: ScalingGroup, scales: torch.Tensor) -> None:
    """Scale ``group`` of ``block`` in place, on the block's *current* modules: previous op output
    * 1/s, linears' input columns * s (see :func:`qigbench.models.scaling.scale_`)."""
    prev, linears = _bind(block, group)
    quantized = [path for path, lin in zip(group.linears, linears, strict=True) if isinstance(lin, QuantLinear)]
    if quantized:
        raise ScalingGroupError(
            f"group {group.name!r}: {quantized} are already quantized, and scaling their input columns would move "
            "them off the grid; apply a group's scales before quantizing its linears"
        )
    scale_(prev, linears, scales, group=group.name)


def _bind(block: nn.Module, spec: ScalingGroup) -> tuple[nn.Module, list[nn.Linear]]:
    prev = module_at(block, spec.prev_op, what=f"group {spec.name!r} previous op")
    linears: list[nn.Module] = []
    for path in spec.linears:
        module = module_at(block, path, what=f"group {spec.name!r} linear")
        if not isinstance(module, (nn.Linear, QuantLinear)):
            raise ScalingGroupError(
                f"group {spec.name!r}: {path!r} is a {type(module).__name__}, expected nn.Linear (or QuantLinear)"
            )
        linears.append(module)
    return prev, linears  # type: ignore[return-value]  # QuantLinear offers the nn.Linear interface used here
