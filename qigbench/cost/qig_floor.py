"""QIG's cost floor: what m-point integrated gradients cannot be cheaper than, on the same inputs.

For one scaling group, QIG's work is ``m`` path points, each a forward of the compared module
with fp weights (``f``), a forward of its RTN twin (``f_q``) and one backward of
``G = sum_t mean_h |f - f_q|``, then the scale search with the resulting token weights. The
*floor* times each piece alone on the group's real attribution target, with all calibration
samples in one call (no memory-budget chunking, no completeness check, no target building):

    floor = n_points x (t_forward_f + t_forward_fq + t_backward) + t_search

where ``n_points`` counts the path points the provider really evaluated (its diagnostics): the exact
shortcuts stay in the floor, so a linear compared module from the zero baseline counts one point, a
single linear layer's forward-only path counts no backward, a degenerate input none, and the fast
preset's fallback both rules' points. A floor that counted ``m`` points where one is exact would sit
above what the method spends.

and the same with the point timed on the sample chunks the provider really uses under the memory
budget (``floor_chunked``: on a CPU several small calls can be faster than one large one, so the
whole-batch floor is not always the lower of the two), and sets both beside what the method really
spent on the same group in the same run (``measured = t_target + t_attribution + t_search``:
building the target (``f_q``'s RTN copy, the recorded input, the quantized-path input ``x^q``), the
provider call as the engine makes it, the search). ``measured / floor`` is the overhead that
chunking, the completeness check, recomputed copies and Python add. Times are process CPU seconds
(``time.process_time``, steadier than wall time on a shared machine); each piece of the floor is the
median of ``repeats`` runs.

:func:`probe_qig_floor` runs a whole calibration with the method (``qig``, or any method built on
the scale search whose weights come from a sensitivity provider) and probes every group it is
asked to; the calibration itself is unchanged (the probe only reads and times). The Table 6
benchmark uses it for its floor arithmetic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from qigbench.bases.token_weighting import ProviderWeighted, group_target, record_weights
from qigbench.engine.context import BlockContext
from qigbench.engine.contracts import CalibBatch
from qigbench.engine.method import get_method
from qigbench.engine.run import CalibrationReport, EngineConfig, calibrate
from qigbench.errors import QigbenchError
from qigbench.models.family import ModelFamily
from qigbench.models.groups import ResolvedGroup
from qigbench.quant import QuantFormat
from qigbench.sensitivity.base import AttributionTarget
from qigbench.sensitivity.ig import quadrature_nodes
from qigbench.sensitivity.qig_provider import QIGProvider


@dataclass(frozen=True)
class PointTiming:
    """Process-CPU seconds of one path point on all samples: each piece the median of the repeats."""

    forward_fp: float
    forward_q: float
    backward: float

    @property
    def total(self) -> float:
        return self.forward_fp + self.forward_q + self.backward


@dataclass(frozen=True)
class GroupFloor:
    """One group's floor next to what the method spent on it (process-CPU seconds)."""

    block: int
    group: str
    samples: int
    #: path points the quadrature evaluates (m for midpoint / Gauss, m + 1 for trapezoid)
    points: int
    point: PointTiming
    search: float
    #: one point timed span by span over the provider's sample chunks (the sum over the spans)
    point_chunked: PointTiming | None
    target: float
    attribution: float
    #: the provider's own diagnostics for this group (steps used, chunks, shortcuts taken)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> int:
        """Path points the provider evaluated (its diagnostics; ``points`` where it did not say): one for
        the exact linear shortcut, none for a degenerate input, the cheap rule's plus the paper's
        where the fast preset fell back."""
        d = self.diagnostics
        said = d.get("points_evaluated")
        n = self.points if said is None else int(said)
        if d.get("fast_fallback") and d.get("fast_points_evaluated") is not None:
            n += int(d["fast_points_evaluated"])
        return n

    @property
    def backward(self) -> bool:
        """Whether each evaluated point takes a backward (not on the forward-only linear-layer path)."""
        return not self.diagnostics.get("shortcut_no_backward")

    def path(self, point: PointTiming) -> float:
        """The evaluated points' cost at ``point``'s timings: two forwards each, and a backward where taken."""
        return self.evaluated * (point.forward_fp + point.forward_q + (point.backward if self.backward else 0.0))

    @property
    def floor(self) -> float:
        return self.path(self.point) + self.search

    @property
    def floor_chunked(self) -> float:
        """The floor with the point timed on the provider's sample chunks (the whole-batch floor if
        the provider did not chunk)."""
        return self.path(self.point_chunked or self.point) + self.search

    @property
    def lowest(self) -> float:
        """The lower of the two floors (one call on every sample, or the provider's chunks): on a CPU
        either can be the faster way to run a point."""
        return min(self.floor, self.floor_chunked)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupFloor:
        """Back from :meth:`as_dict` (a stored floor record's ``groups``)."""
        chunked = d.get("point_chunked")
        return cls(block=int(d["block"]), group=str(d["group"]), samples=int(d["samples"]), points=int(d["points"]),
                   point=PointTiming(**d["point"]), search=float(d["search"]),
                   point_chunked=PointTiming(**chunked) if chunked else None, target=float(d["target"]),
                   attribution=float(d["attribution"]), diagnostics=dict(d.get("diagnostics") or {}))  # fmt: skip

    @property
    def measured(self) -> float:
        return self.target + self.attribution + self.search

    @property
    def ratio(self) -> float:
        return self.measured / self.floor if self.floor > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(floor=self.floor, floor_chunked=self.floor_chunked, measured=self.measured, ratio=self.ratio,
                   ratio_chunked=self.measured / self.floor_chunked if self.floor_chunked > 0 else float("inf"),
                   point_total=self.point.total, evaluated=self.evaluated, backward_taken=self.backward,
                   path=self.path(self.point), lowest=self.lowest)  # fmt: skip
        return out


@dataclass
class FloorReport:
    groups: list[GroupFloor]
    report: CalibrationReport

    @property
    def floor(self) -> float:
        return sum(g.floor for g in self.groups)

    @property
    def floor_chunked(self) -> float:
        """Every group's floor with the point timed on the provider's sample chunks."""
        return sum(g.floor_chunked for g in self.groups)

    @property
    def measured(self) -> float:
        return sum(g.measured for g in self.groups)

    @property
    def ratio(self) -> float:
        return self.measured / self.floor if self.floor > 0 else float("inf")


def _cpu() -> float:
    return time.process_time()


def time_chunked_point(target: AttributionTarget, baseline: torch.Tensor, spans: Sequence[tuple[int, int]],
                       repeats: int = 3) -> PointTiming:  # fmt: skip
    """:func:`time_point` span by span over sample ``spans``, summed."""
    parts = [time_point(target.rows(a, b), baseline[a:b], repeats=repeats) for a, b in spans]
    return PointTiming(
        sum(p.forward_fp for p in parts), sum(p.forward_q for p in parts), sum(p.backward for p in parts)
    )


def time_point(target: AttributionTarget, baseline: torch.Tensor, alpha: float = 0.5, repeats: int = 3) -> PointTiming:
    """Time one path point alone: ``f`` forward, ``f_q`` forward, one backward of QIG's objective,
    on every sample of ``target`` in one call (the floor's unit of work)."""
    if repeats < 1:
        raise QigbenchError(f"repeats must be >= 1, got {repeats}")
    x = target.x.detach()
    point = (baseline.detach() + alpha * (x - baseline.detach())).detach()
    fp, fq, bw = [], [], []
    for _ in range(repeats):
        pts = point.clone().requires_grad_(True)
        with torch.enable_grad():
            t0 = _cpu()
            y = target.f_fp(pts)
            t1 = _cpu()
            yq = target.f_q(pts)
            t2 = _cpu()
            g = (y - yq).abs().mean(dim=-1).sum()
            torch.autograd.grad(g, pts)
            t3 = _cpu()
        fp.append(t1 - t0)
        fq.append(t2 - t1)
        bw.append(t3 - t2)
        del y, yq, g, pts
    return PointTiming(statistics.median(fp), statistics.median(fq), statistics.median(bw))


def probe_qig_floor(
    model: torch.nn.Module,
    family: ModelFamily,
    batches: Sequence[CalibBatch],
    fmt: QuantFormat,
    *,
    method: str = "qig",
    options: Collection[tuple[str, str]] = (),
    groups: Collection[str] | None = None,
    blocks: Collection[int] | None = None,
    repeats: int = 3,
    device: str = "cpu",
    memory_budget: int | None = None,
    on_group: Callable[[GroupFloor], None] | None = None,
) -> FloorReport:
    """Calibrate ``model`` with ``method`` (default ``qig``; ``options`` as ``-o`` pairs) and time,
    for every probed group (``groups`` / ``blocks``: None = all), QIG's floor and what the run spent.

    The method must take its token weights from a QIG provider and search scales per group
    (``qig`` with ``sensitivity=qig``). The model is quantized in place, as ``calibrate`` does.
    ``on_group`` is called with each group's numbers as soon as they are in (long runs report as
    they go). Groups left out with ``-o skip_groups=...`` are neither attributed nor searched.
    """
    plugin: Any = get_method(method, dict(options))
    if not isinstance(plugin, ProviderWeighted) or not isinstance(plugin.provider, QIGProvider):
        raise QigbenchError(f"the QIG floor probe needs a method whose token weights come from QIG; {method!r} "
                            "with these options does not (use qig, with sensitivity=qig)")
    search_step: Callable[..., Any] | None = getattr(plugin, "_search", None)
    if search_step is None:
        raise QigbenchError(f"{method!r} has no per-group scale search to time; the probe supports qig")
    provider: QIGProvider = plugin.provider
    pending: dict[tuple[int, str], dict[str, Any]] = {}
    found: list[GroupFloor] = []

    def probed(ctx: BlockContext, group: ResolvedGroup) -> bool:
        return (groups is None or group.name in groups) and (blocks is None or ctx.index in blocks)

    def token_weights(ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor:
        t0 = _cpu()
        target = group_target(provider, ctx, group)
        t1 = _cpu()
        result = provider(target)
        t2 = _cpu()
        weights = record_weights(ctx, group, result)
        if probed(ctx, group):
            baseline = provider.baseline_for(target)
            m, _ = provider.config.integration(bool(target.weight_activation))
            spans, _ = target.chunking(m, provider.config.chunk_size)
            chunked = time_chunked_point(target, baseline, spans, repeats) if len(spans) > 1 else None
            pending[(ctx.index, group.name)] = {
                "target": t1 - t0, "attribution": t2 - t1, "point": time_point(target, baseline, repeats=repeats),
                "point_chunked": chunked, "samples": target.batch, "diagnostics": dict(result.diagnostics),
            }  # fmt: skip
        return weights

    def search(ctx: BlockContext, group: ResolvedGroup, lam: torch.Tensor | None) -> None:
        t0 = _cpu()
        search_step(ctx, group, lam)
        spent = _cpu() - t0
        got = pending.pop((ctx.index, group.name), None)
        if got is None:
            return
        steps = int(got["diagnostics"].get("steps_used") or provider.config.steps)
        rule = str(got["diagnostics"].get("quadrature") or provider.config.quadrature)
        points = len(quadrature_nodes(steps, rule)[0])
        found.append(GroupFloor(block=ctx.index, group=group.name, samples=got["samples"], points=points,
                                point=got["point"], search=spent, point_chunked=got["point_chunked"],
                                target=got["target"], attribution=got["attribution"],
                                diagnostics=got["diagnostics"]))  # fmt: skip
        if on_group is not None:
            on_group(found[-1])

    hooked: Any = plugin  # the probe's timers stand in for the method's two steps
    hooked.token_weights = token_weights
    hooked._search = search
    engine = EngineConfig(device=device, progress=False, memory_budget=memory_budget)
    report = calibrate(model, family, batches, hooked, fmt, engine)
    return FloorReport(found, report)


def format_floor_table(rows: Sequence[GroupFloor]) -> str:
    """A Markdown table of probed groups: the floor's pieces, the floor, what was spent, the ratio."""
    head = ("| block | group | samples | points (rule) | evaluated | f fwd | f_q fwd | backward | search | floor | "
            "target | attribution | measured | measured / floor |")
    lines = [head, "|" + "---|" * 14]
    for g in rows:
        p = g.point
        lines.append(
            f"| {g.block} | {g.group} | {g.samples} | {g.points} | {g.evaluated} | {p.forward_fp:.3f} | "
            f"{p.forward_q:.3f} | {p.backward:.3f}{'' if g.backward else ' (not taken)'} | {g.search:.2f} | "
            f"{g.floor:.2f} | {g.target:.2f} | {g.attribution:.2f} | {g.measured:.2f} | {g.ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qigbench.cost.qig_floor --model tiny-qwen2vl --format W3A16``: the floor table."""
    parser = argparse.ArgumentParser(prog="python -m qigbench.cost.qig_floor",
                                     description="QIG's m = 32 against its floor, group by group (process CPU s)")
    parser.add_argument("--model", required=True, help="a model alias (tiny-qwen2vl, shape:qwen2vl-7b@1+width=4)")
    parser.add_argument("--format", default="W3A16")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("-o", "--option", action="append", default=[], help="method option KEY=VALUE (repeatable)")
    parser.add_argument("--groups", help="comma list of groups to probe (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", help="model and calibration cache (default: $QIGBENCH_CACHE)")
    args = parser.parse_args(argv)
    from qigbench.data.defaults import default_calibration
    from qigbench.data.loader import load_calibration
    from qigbench.models.loading import load_model
    from qigbench.quant import parse_format

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, dtype=torch.float32, cache_dir=args.cache_dir)
    source = default_calibration(loaded, args.cache_dir, n=args.samples, seed=0, image_size=args.image_size)
    batches: Sequence[Any] = load_calibration(source, model=loaded, n_samples=args.samples,
                                              batch_size=args.batch_size).batches  # fmt: skip
    options = tuple(tuple(o.split("=", 1)) for o in args.option)
    groups = args.groups.split(",") if args.groups else None
    found = probe_qig_floor(loaded.model, loaded.family, batches, parse_format(args.format),
                            options=options, groups=groups, repeats=args.repeats,  # type: ignore[arg-type]
                            on_group=lambda g: print(json.dumps(g.as_dict(), default=str), flush=True))  # fmt: skip
    print(format_floor_table(found.groups))
    print(f"measured {found.measured:.2f} s, floor {found.floor:.2f} s (chunked {found.floor_chunked:.2f} s): "
          f"measured / floor {found.ratio:.3f} (goal <= 1.2)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
