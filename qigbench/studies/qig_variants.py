"""What QIG's cheaper variants agree to and cost, against the paper's m = 32, on the same inputs.

A variant of QIG that can change its result (fewer path points, another quadrature) is offered
only with its measured agreement (issue 19): per calibration sample, the Spearman rank correlation
of its token weights with m = 32's over the sample's real tokens, and the largest |d-lambda| of
any token, on every group of every case measured; then what it changes downstream (the mean block
error and the KL of the quantized model to the fp model) and what it costs (process CPU seconds).

Cases:

* a model (``tiny-qwen2vl``, ``shape:qwen2vl-7b@1+width=4`` at 448 px): the paper's m = 32 runs
  the calibration; on every group it attributes, each variant is run on the very same
  :class:`~qigbench.sensitivity.base.AttributionTarget` ("shadows": they never change the run),
  so their weights are compared on identical inputs and their provider times are comparable;
  then each variant calibrates a fresh copy end to end, for its block error, its KL and its
  calibration time next to m = 32's and MBQ's;
* ``massive``: random causal attention with one token at 8x the norm of the others (the massive
  activation real LLMs carry at the first token), where a one-point estimate ranks tokens worst;
  a group's block error is the attention output's relative error after the scale search with
  each variant's weights.

``python -m qigbench.studies.qig_variants --case massive --format W3A16`` prints the table; the
README's "QIG's fast variant" section was made with the commands listed there.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from qigbench.bases.token_weighting import ProviderWeighted, group_target, record_weights
from qigbench.config import build, derive
from qigbench.engine.context import BlockContext
from qigbench.engine.method import get_method
from qigbench.engine.run import EngineConfig, calibrate
from qigbench.models.groups import ResolvedGroup
from qigbench.quant import QuantFormat, QuantLinear, fake_quantize, parse_format
from qigbench.sensitivity.agreement import Agreement, agreement, combine
from qigbench.sensitivity.base import AttributionTarget
from qigbench.sensitivity.qig_provider import QIGConfig, QIGProvider
from qigbench.solvers.scale_search import ScaleSearchConfig, search_scales
from qigbench.tokens import TokenType, valid_mask

#: the thresholds a fast variant must meet on every group (issue 19)
MIN_SPEARMAN = 0.99
MAX_DLAMBDA = 1e-3


def _cpu() -> float:
    return time.process_time()


@dataclass(frozen=True)
class Variant:
    """A QIG setting by its ``qig.*`` options (``steps=8``), named by its stored label."""

    options: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``"steps=8,quadrature=gauss"`` (the ``qig.`` prefix is optional)."""
        pairs = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"variant {text!r}: expected KEY=VALUE[,KEY=VALUE], e.g. steps=8")
            pairs.append((key.removeprefix("qig."), value))
        return cls(tuple(pairs))

    def config(self, base: QIGConfig | None = None) -> QIGConfig:
        return build(QIGConfig, dict(self.options), "qig") if base is None else derive(base, dict(self.options), "qig")

    @property
    def method_options(self) -> tuple[tuple[str, str], ...]:
        return tuple((f"qig.{k}", v) for k, v in self.options)

    @property
    def label(self) -> str:
        return get_method("qig", dict(self.method_options)).label()


@dataclass
class GroupResult:
    """One group: each variant's agreement with m = 32 and its provider time on the same target."""

    case: str
    format: str
    block: int
    group: str
    samples: int
    reference_seconds: float
    agreement: dict[str, Agreement] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: block (module) error after the scale search with each variant's weights (``massive`` only)
    block_error: dict[str, float] = field(default_factory=dict)


@dataclass
class EndToEnd:
    """One calibration of a fresh copy: its label, process CPU seconds, mean block error and KL."""

    label: str
    seconds: float
    block_error: float
    kl: float | None


def compare(target: AttributionTarget, reference: QIGProvider, variants: Mapping[str, QIGProvider]) -> tuple[
    torch.Tensor, float, dict[str, tuple[Agreement, float, torch.Tensor]]
]:  # fmt: skip
    """Run the reference and every variant on ``target``: (reference weights, reference seconds,
    per variant (agreement, seconds, weights))."""
    t0 = _cpu()
    ref = reference(target).weights
    ref_seconds = _cpu() - t0
    out = {}
    for name, provider in variants.items():
        t0 = _cpu()
        weights = provider(target).weights
        out[name] = (agreement(ref, weights, target.token_types), _cpu() - t0, weights)
    return ref, ref_seconds, out


# -- models ------------------------------------------------------------------------------------
def shadow_study(
    model: nn.Module, family: Any, batches: Sequence[Any], fmt: QuantFormat, variants: Sequence[Variant],
    *, case: str, reference: Sequence[tuple[str, str]] = (), device: str = "cpu",
) -> tuple[list[GroupResult], float, Any]:  # fmt: skip
    """Calibrate ``model`` in place with the paper's QIG (``reference`` options on top) and compare
    every variant on every group's target. Returns the groups, the seconds the shadows took and the
    calibration report (of m = 32: the shadows never change the run)."""
    plugin: Any = get_method("qig", dict(reference))
    if not isinstance(plugin, ProviderWeighted) or not isinstance(plugin.provider, QIGProvider):
        raise ValueError("the reference must be QIG with sensitivity=qig")
    ref_provider: QIGProvider = plugin.provider
    shadows = {v.label: QIGProvider(v.config(ref_provider.config)) for v in variants}
    results: list[GroupResult] = []
    spent = [0.0]

    def token_weights(ctx: BlockContext, group: ResolvedGroup) -> torch.Tensor:
        target = group_target(ref_provider, ctx, group)
        t0 = _cpu()
        result = ref_provider(target)
        ref_seconds = _cpu() - t0
        row = GroupResult(case, fmt.name, ctx.index, group.name, target.batch, ref_seconds)
        t1 = _cpu()
        for name, provider in shadows.items():
            t2 = _cpu()
            weights = provider(target).weights
            row.seconds[name] = _cpu() - t2
            row.agreement[name] = agreement(result.weights, weights, target.token_types)
        spent[0] += _cpu() - t1
        results.append(row)
        return record_weights(ctx, group, result)

    hooked: Any = plugin  # the shadows ride on the method's token-weight step
    hooked.token_weights = token_weights
    report = calibrate(model, family, batches, hooked, fmt, EngineConfig(device=device, progress=False))
    return results, spent[0], report


def end_to_end(
    loaded: Any, batches: Sequence[Any], fmt: QuantFormat, method: str, options: Sequence[tuple[str, str]],
    heldout: Sequence[Any], *, device: str = "cpu", fresh: Any = None,
) -> EndToEnd:  # fmt: skip
    """Calibrate a fresh copy of ``loaded.model`` (``fresh()`` builds one, e.g. by loading it again:
    cheaper in memory than a deep copy); KL to the fp ``loaded.model`` on ``heldout`` batches."""
    import gc

    plugin = get_method(method, dict(options))
    model = fresh() if fresh is not None else copy.deepcopy(loaded.model)
    t0 = _cpu()
    report = calibrate(model, loaded.family, batches, plugin, fmt, EngineConfig(device=device, progress=False))
    seconds = _cpu() - t0
    kl = kl_to_fp(loaded.model, model, heldout, device)
    del model
    gc.collect()
    return EndToEnd(plugin.label(), seconds, report.mean_block_error, kl)


def kl_to_fp(fp: nn.Module, quantized: nn.Module, heldout: Sequence[Any], device: str = "cpu") -> float | None:
    """Mean per-token KL(fp || quantized) over the ``heldout`` calibration batches (None without any)."""
    if not heldout:
        return None
    from qigbench.eval.fidelity import fidelity

    return fidelity(fp.eval(), quantized.eval(), [dict(b.inputs) for b in heldout], device).kl


# -- the massive-activation attention case ------------------------------------------------------
class CausalAttention(nn.Module):
    """Plain multi-head causal self-attention with q/k/v/o projections (biases as in Qwen2)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(hidden, hidden) for _ in range(3))
        self.o_proj = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                           is_causal=True)  # fmt: skip
        return self.o_proj(y.transpose(1, 2).reshape(b, t, h))  # type: ignore[no-any-return]


def rtn_twin(module: nn.Module, fmt: QuantFormat) -> nn.Module:
    """``module`` with every linear RTN-quantized, activation quantizers straight-through (as the
    engine builds ``f_q``)."""
    twin = copy.deepcopy(module)
    for name, child in list(twin.named_modules()):
        if isinstance(child, nn.Linear):
            parent = twin.get_submodule(name.rsplit(".", 1)[0]) if "." in name else twin
            setattr(parent, name.rsplit(".", 1)[-1], QuantLinear.from_linear(child, fmt, straight_through=True))
    return twin


def massive_attention(
    fmt: QuantFormat, seed: int = 0, *, batch: int = 16, tokens: int = 64, hidden: int = 128, heads: int = 4,
    massive: float = 8.0,
) -> tuple[AttributionTarget, CausalAttention]:  # fmt: skip
    """Random causal attention whose first token has ``massive`` times the others' norm; the target
    has the format's reference input (``x^q = Q_X(x)`` for W-A formats, the zero baseline else)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    f = CausalAttention(hidden, heads)
    x = torch.randn(batch, tokens, hidden, generator=gen)
    x[:, 0] *= massive
    x_q = fake_quantize(x, fmt.activation) if fmt.activation is not None else None
    types = torch.full((batch, tokens), int(TokenType.TEXT))
    types[:, 0] = int(TokenType.SPECIAL)
    target = AttributionTarget(f_fp=f, f_q=rtn_twin(f, fmt), x=x, x_q=x_q, token_types=types,
                               weight_activation=not fmt.weight_only)  # fmt: skip
    return target, f


@torch.no_grad()
def attention_block_error(f: CausalAttention, x: torch.Tensor, types: torch.Tensor, fmt: QuantFormat,
                          weights: torch.Tensor) -> float:  # fmt: skip
    """Relative output error of ``f`` after QIG's scale search of q/k/v with ``weights`` (the input
    absorbs ``1/s``, as a norm would) and RTN of every linear."""
    linears = [f.q_proj, f.k_proj, f.v_proj]
    found = search_scales(x, linears, f, fmt, token_weights=weights, token_types=types, cfg=ScaleSearchConfig())
    scaled = copy.deepcopy(f)
    for lin in (scaled.q_proj, scaled.k_proj, scaled.v_proj):
        lin.weight.data = lin.weight.data * found.scales
    q = rtn_twin(scaled, fmt)
    y, yq = f(x), q(x / found.scales)
    keep = valid_mask(types)
    return float((yq - y)[keep].pow(2).sum() / y[keep].pow(2).sum())


def massive_study(fmt: QuantFormat, variants: Sequence[Variant], seeds: Sequence[int] = (0, 1, 2)) -> list[GroupResult]:
    reference = QIGProvider(QIGConfig())
    out = []
    for seed in seeds:
        target, f = massive_attention(fmt, seed)
        shadows = {v.label: QIGProvider(v.config()) for v in variants}
        ref, ref_seconds, found = compare(target, reference, shadows)
        row = GroupResult("massive attention", fmt.name, seed, "attention", target.batch, ref_seconds)
        row.block_error["qig"] = attention_block_error(f, target.x, target.token_types, fmt, ref)
        for name, (agree, seconds, weights) in found.items():
            row.agreement[name], row.seconds[name] = agree, seconds
            row.block_error[name] = attention_block_error(f, target.x, target.token_types, fmt, weights)
        out.append(row)
    return out


# -- report ---------------------------------------------------------------------------------------
def summary_rows(groups: Sequence[GroupResult]) -> list[dict[str, Any]]:
    """Per variant over all ``groups``: min / mean Spearman, max |d-lambda|, provider time vs m = 32."""
    names = list(dict.fromkeys(n for g in groups for n in g.agreement))
    rows = []
    for name in names:
        agree = combine(g.agreement[name] for g in groups)
        ref = sum(g.reference_seconds for g in groups)
        rows.append({
            "variant": name, "spearman_min": agree.spearman_min, "spearman_mean": agree.spearman_mean,
            "max_dlambda": agree.max_abs_diff, "meets": agree.meets(MIN_SPEARMAN, MAX_DLAMBDA),
            "attribution_vs_m32": sum(g.seconds[name] for g in groups) / ref if ref > 0 else float("nan"),
            "worst_group": min(groups, key=lambda g: g.agreement[name].spearman_min).group,
        })  # fmt: skip
    return rows


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| variant | min Spearman | mean Spearman | max abs d-lambda | meets >= 0.99 / <= 1e-3 | "
             "attribution time vs m=32 |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['variant']} | {r['spearman_min']:.4f} | {r['spearman_mean']:.4f} | "
                     f"{r['max_dlambda']:.2e} | {'yes' if r['meets'] else 'no'} | {r['attribution_vs_m32']:.2f} |")
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Agreement):
        return {"spearman_min": obj.spearman_min, "spearman_mean": obj.spearman_mean, "max_dlambda": obj.max_abs_diff}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qigbench.studies.qig_variants", description=__doc__.split("\n")[0])
    parser.add_argument("--case", required=True,
                        help="massive, or a model alias (tiny-qwen2vl, shape:qwen2vl-7b@1+width=4)")
    parser.add_argument("--format", default="W3A16")
    parser.add_argument("--variant", action="append", default=[],
                        help="qig options of a variant, e.g. steps=8 (repeatable)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4, help="calibration batch size (memory only)")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--end-to-end", action="append", default=[],
                        help="variants to calibrate end to end too (block error, KL, time; 'mbq' for MBQ, "
                        "'qig' for m=32)")
    parser.add_argument("--heldout", type=int, default=8, help="held-out samples for the KL (0: no KL)")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-option", action="append", default=[],
                        help="method options of the m = 32 run the shadows follow (e.g. skip_groups=o,down)")
    parser.add_argument("--seeds", default="0,1,2", help="massive: the random modules and inputs (comma list)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    fmt = parse_format(args.format)
    variants = [Variant.parse(v) for v in args.variant]
    out: dict[str, Any] = {"case": args.case, "format": fmt.name, "variants": [v.label for v in variants]}
    groups: list[GroupResult]
    if args.case == "massive":
        groups = massive_study(fmt, variants, [int(s) for s in args.seeds.split(",")])
    else:
        from qigbench.data.defaults import default_calibration
        from qigbench.data.loader import load_calibration
        from qigbench.models.loading import load_model

        loaded = load_model(args.case, dtype=torch.float32)

        def fresh() -> nn.Module:
            return load_model(args.case, dtype=torch.float32).model

        source = default_calibration(loaded, None, n=args.samples, seed=0, image_size=args.image_size)
        batches = load_calibration(source, model=loaded, n_samples=args.samples, batch_size=args.batch_size).batches
        heldout: list[Any] = []
        if args.heldout:  # one sample a batch: the fidelity pass holds two vocabulary-wide logit tensors
            held = default_calibration(loaded, None, n=args.heldout, seed=1, image_size=args.image_size)
            heldout = list(load_calibration(held, model=loaded, n_samples=args.heldout, batch_size=1).batches)
        runs = []
        options: tuple[tuple[str, str], ...]
        for spec in args.end_to_end:
            if spec in ("mbq", "qig"):
                method, options = spec, ()
            else:
                method, options = "qig", Variant.parse(spec).method_options
            runs.append(end_to_end(loaded, batches, fmt, method, options, heldout, fresh=fresh))
            print(json.dumps(asdict(runs[-1])), flush=True)
        out["end_to_end"] = [asdict(r) for r in runs]
        groups = []
        if variants:  # the m = 32 calibration with its shadows (no variants: the end-to-end runs only)
            model = fresh()
            t0 = _cpu()
            reference = tuple(tuple(o.split("=", 1)) for o in args.reference_option)
            groups, shadow_seconds, report = shadow_study(model, loaded.family, batches, fmt, variants, case=args.case,
                                                          reference=reference)  # type: ignore[arg-type]
            seconds = _cpu() - t0 - shadow_seconds
            kl = kl_to_fp(loaded.model, model, heldout)
            out["reference"] = asdict(EndToEnd(get_method("qig", dict(reference)).label(), seconds,
                                               report.mean_block_error, kl))  # fmt: skip
            print(json.dumps(out["reference"]), flush=True)
        out["tokens_per_sample"] = int(batches[0].token_types.shape[1])
    rows = summary_rows(groups)
    out["summary"] = rows
    out["groups"] = [_jsonable(asdict(g)) for g in groups]
    print(markdown(rows))
    for g in groups:
        worst = {n: f"{a.spearman_min:.4f}/{a.max_abs_diff:.1e}" for n, a in g.agreement.items()}
        print(f"  block {g.block} {g.group}: {worst}" + (f" block error {g.block_error}" if g.block_error else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(_jsonable(out), fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
