"""A family's scaling groups bound to the modules of one decoder block: the one resolver.

The engine, every method and the scaling tests ask :func:`resolve_groups`; its rules are the
ones the baseline was measured with:

- every linear of the block is quantized, except the family's ``keep_fp`` list; a linear that no
  group covers becomes a group of its own (kind ``LINEAR``: quantized, never scaled);
- a group whose previous op emits a different width than its linears take is kept (its linears
  are still quantized) but not scalable — the "o" group under grouped-query attention, where
  ``v_proj`` (or the v rows of a fused ``qkv_proj``) emits fewer channels than ``o_proj`` takes.
  Only a group the family marks ``requires_matching_shapes`` may be absent that way; any other
  mismatch is a wrong description;
- a previous op that cannot absorb ``1/s`` at all (a Gemma-style norm) is an error, before any
  search runs (:func:`qigbench.models.scaling.absorbs_inverse_scale`);
- the groups come in **data-flow order**: the family lists its groups in the order the block
  computes them (checked for every family against a recorded forward pass), and a linear no group
  covers takes its place by module-definition order among them. Module-definition order alone is
  not data flow: Phi-3 defines ``o_proj`` before ``qkv_proj``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from qigbench.models.errors import ScalingGroupError
from qigbench.models.family import GroupKind, ModelFamily, ScalingGroup
from qigbench.models.registry import module_at
from qigbench.models.scaling import Rows, check_absorbs_inverse_scale, prev_out_features, rows_width, scale_
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
    #: the previous op's output rows that absorb ``1/s`` when it is a slice of a fused linear; None: all
    prev_rows: Rows | None = None
    #: per linear of the group: output rows AWQ's clip search leaves alone (the family's ``unclipped``)
    unclipped: Mapping[str, Rows] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def prev_width(self) -> int | None:
        """Channels the previous op (or its slice) emits."""
        return prev_out_features(self.prev_op) if self.prev_rows is None else rows_width(self.prev_rows)


def _defined_linears(block: nn.Module, family: ModelFamily) -> list[str]:
    """Every quantized linear of ``block`` in module-definition order (all of its ``nn.Linear`` and
    already quantized modules except the family's ``keep_fp`` list)."""
    linears = [name for name, m in block.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
    kept = {k.path for k in family.keep_fp}
    unknown = sorted(kept - set(linears))
    if unknown:
        raise ScalingGroupError(
            f"family {family.name!r} keeps {unknown} in full precision, but the block has no such linear; "
            "fix keep_fp in the family description"
        )
    return [name for name in linears if name not in kept]


def block_linear_names(block: nn.Module, family: ModelFamily) -> list[str]:
    """Every linear of ``block`` that is quantized, in data-flow order (the order of
    :func:`resolve_groups`): all of its ``nn.Linear`` (and already quantized) modules except the
    family's explicit ``keep_fp`` list. Nothing is checked for scaling here (RTN never scales)."""
    specs, order = _ordered_specs(block, family)
    return [name for spec in specs for name in spec.linears if name in order]


def resolve_groups(block: nn.Module, family: ModelFamily) -> list[ResolvedGroup]:
    """Bind the family's groups to ``block``'s current modules (quantized linears included), in
    data-flow order, plus one ``LINEAR`` group per linear no group covers (see the module docstring)."""
    specs, order = _ordered_specs(block, family)
    return [_resolve(block, family, spec, order) for spec in specs]


def _ordered_specs(block: nn.Module, family: ModelFamily) -> tuple[list[ScalingGroup], dict[str, int]]:
    """The family's groups in its (data-flow) table order, each linear no group covers as a ``LINEAR``
    group placed by definition order (before the first listed group defined after it), and every
    quantized linear's definition index."""
    order = {name: i for i, name in enumerate(_defined_linears(block, family))}
    named = {rule.path for rule in family.unclipped} | {layout.path for layout in family.fused}
    if named - set(order):
        raise ScalingGroupError(
            f"family {family.name!r} describes {sorted(named - set(order))} (unclipped / fused), but the block has no "
            "such quantized linear; fix the family description"
        )
    covered = {name for spec in family.groups for name in spec.linears}
    specs = list(family.groups)
    first = [min((order.get(n, len(order)) for n in spec.linears), default=len(order)) for spec in specs]
    for name in (n for n in order if n not in covered):
        at = next((i for i, f in enumerate(first) if f > order[name]), len(specs))
        specs.insert(at, ScalingGroup(name=name, prev_op="", linears=(name,), inspect=name, kind=GroupKind.LINEAR))
        first.insert(at, order[name])
    return specs, order


def _resolve(block: nn.Module, family: ModelFamily, spec: ScalingGroup, order: Mapping[str, int]) -> ResolvedGroup:
    kept = [name for name in spec.linears if name not in order]
    if kept:
        raise ScalingGroupError(
            f"family {family.name!r}: group {spec.name!r} scales {kept}, which keep_fp keeps in full precision; "
            "a kept linear cannot be part of a scaling group"
        )
    prev, linears = _bind(block, spec)
    rows = _prev_rows(family, spec, prev)
    width = prev_out_features(prev) if rows is None else rows_width(rows)
    matching = all(width == lin.in_features for lin in linears)
    if spec.kind is not GroupKind.LINEAR and not matching and not spec.requires_matching_shapes:
        raise ScalingGroupError(
            f"group {spec.name!r}: previous op emits {width} channels but the linears take "
            f"{sorted({lin.in_features for lin in linears})}; the family description is wrong for this block "
            "(mark the group requires_matching_shapes if it only exists when the shapes agree)"
        )
    scalable = spec.kind is not GroupKind.LINEAR and matching
    if scalable:
        check_absorbs_inverse_scale(prev, spec.name)
    inspect = module_at(block, spec.inspect, what=f"group {spec.name!r} inspected module")
    unclipped = {name: _unclipped_rows(family, name, lin) for name, lin in zip(spec.linears, linears, strict=True)}
    return ResolvedGroup(
        spec, prev, linears, list(spec.linears), inspect, scalable, rows,
        {name: rows for name, rows in unclipped.items() if rows},
    )  # fmt: skip


def _prev_rows(family: ModelFamily, spec: ScalingGroup, prev: nn.Module) -> Rows | None:
    if not spec.prev_part:
        return None
    out_features = getattr(prev, "out_features", None)
    if not isinstance(out_features, int):
        raise ScalingGroupError(
            f"group {spec.name!r}: previous op {spec.prev_op!r} is a {type(prev).__name__}; only a linear's output "
            f"rows can be split into parts (prev_part={spec.prev_part!r})"
        )
    return family.part_rows(spec.prev_op, spec.prev_part, out_features)


def _unclipped_rows(family: ModelFamily, name: str, linear: nn.Module) -> Rows:
    """The output rows of ``name`` the clip search must leave alone (empty: it may clip every row)."""
    out_features = int(linear.out_features)  # type: ignore[arg-type]
    rows: list[tuple[int, int]] = []
    for rule in family.unclipped:
        if rule.path != name:
            continue
        if not rule.parts:
            return ((0, out_features),)
        for part in rule.parts:
            rows.extend(family.part_rows(name, part, out_features))
    return tuple(sorted(rows))


@torch.no_grad()
def apply_scales_(
    block: nn.Module, group: ScalingGroup | ResolvedGroup, scales: torch.Tensor, family: ModelFamily | None = None
) -> None:
    """Scale ``group`` of ``block`` in place, on the block's *current* modules: previous op output
    (or its slice of a fused linear) * 1/s, linears' input columns * s (see
    :func:`qigbench.models.scaling.scale_`). A group whose previous op is a fused slice is passed
    resolved (or with the bound ``family``), so its rows are known."""
    if isinstance(group, ResolvedGroup):
        spec, rows = group.spec, group.prev_rows
        prev, linears = _bind(block, spec)
    else:
        spec = group
        prev, linears = _bind(block, spec)
        if spec.prev_part and family is None:
            raise ScalingGroupError(
                f"group {spec.name!r} scales part {spec.prev_part!r} of {spec.prev_op!r}: pass the resolved group "
                "(resolve_groups) or the model's family (family_for), so the part's rows are known"
            )
        rows = None if family is None else _prev_rows(family, spec, prev)
    quantized = [path for path, lin in zip(spec.linears, linears, strict=True) if isinstance(lin, QuantLinear)]
    if quantized:
        raise ScalingGroupError(
            f"group {spec.name!r}: {quantized} are already quantized, and scaling their input columns would move "
            "them off the grid; apply a group's scales before quantizing its linears"
        )
    scale_(prev, linears, scales, group=spec.name, rows=rows)


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
