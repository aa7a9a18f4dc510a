"""QIG: Quantization-aware Integrated Gradients (paper Sec. 3.3, App. A and B).

For the compared module f with fp weights w and RTN weights w^q, per token
``E_{b,t}(x) = mean_h |f(x, w) - f(x, w^q)|_{b,t,h}`` and ``G = sum_t E`` (per sample).
The attribution integrates ``dG/dx`` along ``x(a) = x^q + a (x - x^q)``; a token's score is
``mean_h |(x - x^q) * avg_grad|``. Scores become lambda by per-sample normalisation, Tukey
clipping and renormalisation (``finalize_weights``).

Every ablation of the paper's Tables 4 and A1 is a config value: ``baseline``, ``objective``,
``clipping``, ``steps``. ``reference=True`` switches on the released code's departures from the
paper (methods.md, "Where the released code differs", items 3-6), each also a separate flag:

==========================  ==========  ===================================================
flag                        reference   effect
==========================  ==========  ===================================================
``quantized_no_grad``       True        W-A: f_q runs under no_grad, so only the fp branch
                                        carries gradients (item 3)
``error_scale``             1000        W-A: the difference is multiplied before attribution
                                        (item 3); lambda is scale-invariant, so this only
                                        changes float rounding and the raw scores
``clip_in_wa``              False       W-A: the IQR fences are computed but not applied (item 4)
``warmup_searches``         5           the first N calls (counted by a ``SearchCounter``
                                        object) return uniform weights over vision + answer
                                        tokens (item 5)
``mask_padding``            False       padding takes part in normalisation and clipping (item
                                        6: a bug, kept only to compare with the released code);
                                        its share is dropped at the end, since no solver here
                                        puts padding into the loss (stated departure)
==========================  ==========  ===================================================

Item 2 (the quantized branch is an RTN copy without scaling) is what the engine's ``f_q``
already is; item 7 (``x == x^q`` in W4A8 block 0) is always handled by the uniform fallback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from qigbench import parallel
from qigbench.config import exact_option, omit_default
from qigbench.sensitivity.base import (
    AttributionTarget,
    SensitivityError,
    TokenWeights,
    finalize_weights,
    register_provider,
)
from qigbench.sensitivity.clipping import CLIPPING_NAMES, ClippingName
from qigbench.sensitivity.ig import (
    QUADRATURES,
    GFn,
    IGResult,
    Quadrature,
    integrate,
    integrate_adaptive,
    quadrature_nodes,
)
from qigbench.tokens import TokenType, valid_mask

Baseline = Literal["auto", "zero", "quantized"]
Preset = Literal["paper", "fast"]
#: the fast preset's rule where the integrand is smooth (weight-only formats): 8-node Gauss-Legendre.
#: Alone it agrees with m = 32 on tiny-qwen2vl and the massive-activation case, not on the 7B shape's
#: gate_up at width 1/4 (min Spearman 0.87, |d-lambda| <= 9e-6): README, "QIG: the paper's m = 32..."
FAST_STEPS = 8
FAST_QUADRATURE: Quadrature = "gauss"
#: ... and falls back to the paper's rule on a group where some sample's token scores are flatter than
#: this (coefficient of variation over its real tokens): there the ranking rests on differences below
#: the 8 nodes' distance from m = 32 (the 7B shape's gate_up at width 1/4: per-sample CV 0.2-2.2%,
#: min Spearman 0.87 with 8 nodes, while the samples above 1% agreed at >= 0.993)
FAST_FLAT_CV = 0.05
Objective = Literal["fx", "fx_minus_f0", "fx_minus_fxq"]
OBJECTIVES = ("fx", "fx_minus_f0", "fx_minus_fxq")


@dataclass
class SearchCounter:
    """Counts attribution calls, explicitly owned (the released code kept this on a function attribute)."""

    count: int = 0

    def tick(self) -> int:
        """Return the index of this call and advance."""
        n = self.count
        self.count += 1
        return n


@dataclass(frozen=True)
class QIGConfig:
    #: path points m: the paper's "32-step integrated gradients" (App. B). Fewer points are a named
    #: variant (``qig[steps=4]``); docs/method_defaults.md has what they agree to and cost
    steps: int = 32
    #: midpoint (methods.md: "a proper quadrature"; the paper cites IG's Riemann sum, ``right``);
    #: ``linspace`` is the released code's (both end points, weights 1/m)
    quadrature: Quadrature = "midpoint"
    #: "auto": the quantized input x^q when the target has one (W-A formats), else zero (paper)
    baseline: Baseline = "auto"
    #: "fx": plain IG of f(x, w); "fx_minus_f0": of f(x, w) - f(0, w); "fx_minus_fxq": QIG, f(x, w) - f(x, w^q)
    objective: Objective = "fx_minus_fxq"
    clipping: ClippingName = "iqr"
    #: path points per batched forward/backward; None: as many as the memory budget allows
    #: (samples are streamed in chunks as well, see AttributionTarget.chunking). How the work is
    #: cut cannot change the result beyond float rounding, so neither enters a variant label
    chunk_size: int | None = exact_option(None, omit=False)
    batched: bool = exact_option(True, omit=False)
    #: ``paper``: ``steps`` / ``quadrature`` everywhere. ``fast``: 8-node Gauss-Legendre in weight-only
    #: formats, and the paper's rule again on a group whose scores are flat in some sample
    #: (:data:`FAST_FLAT_CV`; agreement with m = 32 in the README), and ``steps`` / ``quadrature``
    #: (the paper's 32) in weight-activation
    #: formats, whose straight-through activation rounding makes the integrand a step function that no
    #: cheaper rule followed. A variant: stored as ``qig[preset=fast]``
    preset: Literal["paper", "fast"] = omit_default("paper")
    #: take the shortcuts that cannot change the result (each has a property test in
    #: tests/sensitivity/test_exact_shortcuts.py and is logged in the block stats when taken):
    #: one path point where the compared module is linear in x and the baseline is zero (the
    #: integrand is constant along the path), no path at all where x == baseline (uniform fallback)
    shortcuts: bool = exact_option(True)
    adaptive: bool = False
    tolerance: float = 1e-2
    max_steps: int = 256
    #: what the completeness residual (diagnostics, adaptive stopping rule) compares with:
    #: "surrogate" = G with the straight-through quantizers as the identity, the function whose
    #: gradient is integrated; "forward" = G with rounded activations (never reachable in W-A)
    completeness: Literal["surrogate", "forward"] = "surrogate"
    #: turn on every released-code behaviour below whose value is left as None
    reference: bool = False
    quantized_no_grad: bool | None = None
    error_scale: float | None = None
    clip_in_wa: bool | None = None
    warmup_searches: int | None = None
    mask_padding: bool | None = None

    def __post_init__(self) -> None:
        if self.quadrature not in QUADRATURES:
            raise SensitivityError(f"quadrature={self.quadrature!r}; choose one of {', '.join(QUADRATURES)}")
        if self.objective not in OBJECTIVES:
            raise SensitivityError(f"objective={self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.baseline not in ("auto", "zero", "quantized"):
            raise SensitivityError(f"baseline={self.baseline!r}; choose auto, zero or quantized")
        if self.clipping not in CLIPPING_NAMES:
            raise SensitivityError(f"clipping={self.clipping!r}; choose one of {', '.join(CLIPPING_NAMES)}")
        if self.steps < 1 or (self.chunk_size is not None and self.chunk_size < 1):
            raise SensitivityError("steps and chunk_size must be >= 1 (chunk_size None: from the memory budget); "
                                   "the paper uses steps=32")
        if self.completeness not in ("surrogate", "forward"):
            raise SensitivityError(f"completeness={self.completeness!r}; choose surrogate or forward")

    def integration(self, weight_activation: bool) -> tuple[int, Quadrature]:
        """The (steps, rule) this config integrates with on a target of that kind (see ``preset``)."""
        if self.preset == "fast" and not weight_activation:
            return FAST_STEPS, FAST_QUADRATURE
        return self.steps, self.quadrature

    # resolved reference flags -------------------------------------------------------------
    def use_quantized_no_grad(self) -> bool:
        return self.reference if self.quantized_no_grad is None else self.quantized_no_grad

    def scale(self, weight_activation: bool) -> float:
        if self.error_scale is not None:
            return self.error_scale
        return 1000.0 if (self.reference and weight_activation) else 1.0

    def use_clip_in_wa(self) -> bool:
        return (not self.reference) if self.clip_in_wa is None else self.clip_in_wa

    def n_warmup(self) -> int:
        return (5 if self.reference else 0) if self.warmup_searches is None else self.warmup_searches

    def use_mask_padding(self) -> bool:
        return (not self.reference) if self.mask_padding is None else self.mask_padding


def qig_objective(target: AttributionTarget, config: QIGConfig) -> GFn:
    """``G(x)[n] = scale * sum_t mean_h |g(x)|`` with g chosen by ``config.objective``: the sum over
    tokens of :func:`qig_token_objective`."""
    terms = qig_token_objective(target, config)

    def G(x: Tensor) -> Tensor:
        return terms(x).sum(dim=-1)

    return G


def qig_token_objective(target: AttributionTarget, config: QIGConfig) -> GFn:
    """``e(x)[n, t] = scale * mean_h |g(x)[n, t]|``: the per-token terms ``G`` sums."""
    wa = bool(target.weight_activation)
    scale = config.scale(wa)
    no_grad_q = config.use_quantized_no_grad() and wa
    f_fp, f_q = target.f_fp, target.f_q
    y0: Tensor | None = None
    if config.objective == "fx_minus_f0":
        with torch.no_grad():
            y0 = f_fp(torch.zeros_like(target.x)).detach()

    def G(x: Tensor) -> Tensor:
        y = f_fp(x)
        if config.objective == "fx_minus_fxq":
            if no_grad_q:
                with torch.no_grad():
                    yq = f_q(x)
                y = y - yq.detach()
            else:
                y = y - f_q(x)
        elif config.objective == "fx_minus_f0":
            assert y0 is not None
            y = y - y0.repeat(x.shape[0] // y0.shape[0], 1, 1)
        return y.abs().mean(dim=-1) * scale

    return G


class QIGProvider:
    """Token weights from QIG (see module docstring). Owns a :class:`SearchCounter` unless given one."""

    name = "qig"

    def __init__(self, config: QIGConfig | None = None, counter: SearchCounter | None = None) -> None:
        self.config = config or QIGConfig()
        self.counter = counter or SearchCounter()

    def baseline_for(self, target: AttributionTarget) -> Tensor:
        mode = self.config.baseline
        if mode == "auto":
            mode = "quantized" if target.weight_activation and target.x_q is not None else "zero"
        if mode == "zero":
            return torch.zeros_like(target.x)
        if target.x_q is None:
            raise SensitivityError(
                "baseline='quantized' needs AttributionTarget.x_q (the input along the quantized path); the "
                "engine provides it in every format when the provider asks for it (QIGProvider.wants_quantized_input); "
                "a target built by hand without x_q can only use baseline='zero' (the paper's weight-only choice)"
            )
        return target.x_q

    @property
    def wants_quantized_input(self) -> bool:
        """Whether the engine must provide ``x_q`` even for weight-only formats."""
        return self.config.baseline == "quantized"

    def __call__(self, target: AttributionTarget) -> TokenWeights:
        cfg = self.config
        t0 = time.perf_counter()
        call = self.counter.tick()
        diag: dict[str, Any] = {"call_index": call, "objective": cfg.objective, "reference": cfg.reference}
        if call < cfg.n_warmup():
            return _warmup_weights(target, diag)
        baseline = self.baseline_for(target)
        diag["baseline"] = "zero" if baseline is not target.x_q else "quantized"
        raw, res = self.scores(target, baseline, diag)
        wa = bool(target.weight_activation)
        apply_clip = cfg.use_clip_in_wa() or not wa
        out = finalize_weights(
            raw,
            target.token_types,
            cfg.clipping,
            apply_clip=apply_clip,
            mask_padding=cfg.use_mask_padding(),
            diagnostics=diag,
            where=target.where,
        )
        if res is not None:
            r = res.residual()
            diag["completeness_residual"] = float(r.max()) if r.numel() else 0.0
            diag["g_x"] = res.g_x.tolist()
        diag["seconds"] = time.perf_counter() - t0
        return out

    def scores(
        self, target: AttributionTarget, baseline: Tensor, diag: dict[str, Any]
    ) -> tuple[Tensor, IGResult | None]:
        """Raw token scores ``mean_h |attr|`` ``[B, T]`` (see :meth:`_scores`). The fast preset checks
        its cheap rule's scores and, where some sample is flat (:data:`FAST_FLAT_CV`), integrates again
        with the paper's rule: that group's weights are then exactly the paper's."""
        cfg = self.config
        raw, res = self._scores(target, baseline, diag)
        if cfg.preset != "fast" or cfg.integration(bool(target.weight_activation)) == (cfg.steps, cfg.quadrature):
            return raw, res
        if diag.get("shortcut_linear"):
            return raw, res  # one path point is exact whatever the rule (the same on every rank)
        # the flattest sample of the whole calibration set: data-parallel, every rank takes part (one
        # whose rows all equal the baseline brings inf) and all take the decision one process takes
        local = float("inf") if diag.get("shortcut_no_path") else flattest_sample(raw, target.token_types)
        cv = float(parallel.all_reduce_min(torch.tensor([local], dtype=torch.float64))[0])
        diag["fast_flattest_cv"] = cv
        if cv >= FAST_FLAT_CV:
            return raw, res
        diag["fast_fallback"] = True
        diag["fast_points_evaluated"] = diag.get("points_evaluated")
        paper = QIGProvider(replace(cfg, preset="paper"), self.counter)
        return paper._scores(target, baseline, diag)

    def _scores(
        self, target: AttributionTarget, baseline: Tensor, diag: dict[str, Any]
    ) -> tuple[Tensor, IGResult | None]:
        """Raw token scores ``mean_h |attr|`` ``[B, T]``; rows with ``x == baseline`` are skipped (score 0).

        Streams: samples in spans and path points in chunks sized by the target's memory budget
        (rows never interact, so each span's attributions are those of the one-shot integral).
        The returned :class:`IGResult` carries per-row sums only (``attributions [B, 1, 1]``), enough
        for the completeness residual, not the ``[B, T, H]`` tensor.
        """
        cfg = self.config
        x = target.x
        live = (x != baseline).flatten(1).any(dim=1)
        diag["steps_used"] = 0
        if not live.any() and cfg.shortcuts:
            # exact shortcut: nothing differs from the baseline, every score is 0 and the weights fall
            # back to uniform whatever the path; no forward or backward is run
            diag["degenerate_input"] = True
            diag["shortcut_no_path"] = True
            diag["points_evaluated"] = 0
            return torch.zeros(x.shape[:2], device=x.device), None
        if cfg.shortcuts and self.linear_exact(target, baseline):
            return self._linear_scores(target, diag)
        if cfg.shortcuts and self.forward_only(target):
            return self._forward_only_scores(target, baseline, diag)
        # all rows go through f even if some are degenerate: the engine's closures expect whole
        # multiples of B rows; a degenerate row simply gets zero attributions and falls back later
        m, rule = cfg.integration(bool(target.weight_activation))
        diag["quadrature"] = rule
        spans, per_call = target.chunking(m if cfg.batched else 1, cfg.chunk_size)
        diag["sample_chunks"], diag["points_per_call"] = len(spans), per_call
        raw, sums, g_x, g_b, steps, history = [], [], [], [], 0, []
        for a, b in spans:
            sub = target.rows(a, b)
            res, hist = self._integrate(sub, baseline[a:b], per_call)
            raw.append(res.attributions.abs().mean(dim=-1))
            sums.append(res.attributions.flatten(1).sum(dim=1))
            g_x.append(res.g_x)
            g_b.append(res.g_baseline)
            steps = max(steps, res.steps)
            history.extend(hist)
        if cfg.adaptive:
            diag["adaptive_history"] = history
        diag["steps_used"] = steps
        diag["points_evaluated"] = len(quadrature_nodes(steps, rule)[0]) if not cfg.adaptive else None
        total = IGResult(torch.cat(sums).view(-1, 1, 1), torch.cat(g_x), torch.cat(g_b), steps)
        return torch.cat(raw, dim=0), total

    def linear_exact(self, target: AttributionTarget, baseline: Tensor) -> bool:
        """Whether one path point gives exactly the ``steps``-point result on ``target``: the
        compared module is linear (:attr:`AttributionTarget.linear`), the baseline is zero and the
        objective's difference is linear too (``f - f_q`` or ``f - f(0)``; plain ``f`` keeps its bias)."""
        cfg = self.config
        return (
            target.linear
            and not target.weight_activation
            and cfg.objective in ("fx_minus_fxq", "fx_minus_f0")
            and baseline is not target.x_q
            and not bool(baseline.any())
        )

    def forward_only(self, target: AttributionTarget) -> bool:
        """Whether the path needs no backward pass: the compared module is one linear layer
        (:attr:`AttributionTarget.linear_weights`) and the rule is a fixed one (not adaptive)."""
        return target.linear_weights is not None and not self.config.adaptive

    def _forward_only_scores(
        self, target: AttributionTarget, baseline: Tensor, diag: dict[str, Any]
    ) -> tuple[Tensor, IGResult]:
        """The exact shortcut for a linear compared module: no backward pass.

        With ``f(x) = x W^T + b`` and ``f_q(x) = Q_X(x) W_q^T + b`` (``Q_X`` straight-through, the
        identity in weight-only formats), QIG's objective ``G = s sum_t mean_h |e|`` has the gradient
        ``s / H sign(e) A`` at every point, ``A = W - W_q`` (``W`` when ``f_q`` carries no gradient or
        the objective does not subtract it). Autograd computes exactly that, point by point; here the
        signs of the forwards are summed with the quadrature weights and multiplied by ``A`` once, so
        each path point costs the two forwards and no backward.
        """
        cfg = self.config
        wa = bool(target.weight_activation)
        m, rule = cfg.integration(wa)
        alphas, weights = quadrature_nodes(m, rule)
        assert target.linear_weights is not None
        w, w_q = (t.float() for t in target.linear_weights)
        no_grad_q = cfg.use_quantized_no_grad() and wa
        a_matrix = w - w_q if cfg.objective == "fx_minus_fxq" and not no_grad_q else w
        scale = cfg.scale(wa)
        spans, per_call = target.chunking(m if cfg.batched else 1, cfg.chunk_size)
        raw, sums, g_x, g_b = [], [], [], []
        for a, b in spans:
            sub = target.rows(a, b)
            x, base = sub.x.detach(), baseline[a:b].detach().to(sub.x.dtype)
            delta = x - base
            y0 = None
            if cfg.objective == "fx_minus_f0":
                with torch.no_grad():
                    y0 = sub.f_fp(torch.zeros_like(x)).float()
            signs: Tensor | None = None
            n = x.shape[0]
            for start in range(0, len(alphas), max(1, per_call)):
                alpha = torch.tensor(alphas[start : start + per_call], dtype=x.dtype, device=x.device)
                weight = torch.tensor(weights[start : start + per_call], dtype=torch.float32, device=x.device)
                k = alpha.numel()
                pts = (base.unsqueeze(0) + alpha.view(k, 1, 1, 1) * delta.unsqueeze(0)).reshape(k * n, *x.shape[1:])
                with torch.no_grad():
                    e = sub.f_fp(pts).float()
                    if cfg.objective == "fx_minus_fxq":
                        e = e - sub.f_q(pts).float()
                    elif y0 is not None:
                        e = e - y0.repeat(k, 1, 1)
                part = (torch.sign(e).view(k, n, *e.shape[1:]) * weight.view(k, 1, 1, 1)).sum(dim=0)
                signs = part if signs is None else signs + part
            assert signs is not None
            avg_grad = (signs @ a_matrix) * (scale / a_matrix.shape[0])
            attributions = delta.float() * avg_grad
            raw.append(attributions.abs().mean(dim=-1))
            sums.append(attributions.flatten(1).sum(dim=1))
            check = completeness_function(qig_objective(sub, cfg), sub, cfg) or qig_objective(sub, cfg)
            with torch.no_grad():
                g_x.append(check(x).detach().float())
                g_b.append(check(base).detach().float())
        diag.update(sample_chunks=len(spans), points_per_call=per_call, steps_used=m, quadrature=rule,
                    points_evaluated=len(alphas), shortcut_no_backward=True)  # fmt: skip
        total = IGResult(torch.cat(sums).view(-1, 1, 1), torch.cat(g_x), torch.cat(g_b), m)
        return torch.cat(raw, dim=0), total

    def _linear_scores(self, target: AttributionTarget, diag: dict[str, Any]) -> tuple[Tensor, IGResult]:
        """The exact shortcut for a linear compared module from the zero baseline.

        ``G(a x) = a G(x)`` for ``a >= 0`` (the difference is linear, ``|.|``, the mean and the sum are
        positively homogeneous), so ``dG/dx`` at ``a x`` is ``dG/dx`` at ``x`` for every ``a > 0`` (and
        0 at ``a = 0``, where autograd's ``|.|'(0) = 0``). The quadrature's sum is therefore the one
        gradient at ``x`` times the weight of its nodes with ``a > 0`` (all of them but trapezoid's and
        the left / linspace rules' first). Completeness holds exactly (Euler: ``sum x dG/dx = G(x)``)
        and ``G(0) = 0``, so the check needs no extra evaluation.
        """
        cfg = self.config
        m, rule = cfg.integration(bool(target.weight_activation))
        alphas, weights = quadrature_nodes(m, rule)
        weight = float(sum(w for a, w in zip(alphas, weights, strict=True) if a > 0))
        spans, _ = target.chunking(1, 1)
        raw, sums, g_x = [], [], []
        for a, b in spans:
            sub = target.rows(a, b)
            G = qig_objective(sub, cfg)
            x = sub.x.detach().requires_grad_(True)
            with torch.enable_grad():
                g = G(x)
                (grad,) = torch.autograd.grad(g.sum(), x)
            attributions = x.detach().float() * (grad.float() * weight)
            raw.append(attributions.abs().mean(dim=-1))
            sums.append(attributions.flatten(1).sum(dim=1))
            g_x.append(g.detach().float())
        diag.update(sample_chunks=len(spans), points_per_call=1, steps_used=m, points_evaluated=1, quadrature=rule,
                    shortcut_linear=True)  # fmt: skip
        gx = torch.cat(g_x)
        return torch.cat(raw, dim=0), IGResult(torch.cat(sums).view(-1, 1, 1), gx, torch.zeros_like(gx), m)

    def _integrate(
        self, target: AttributionTarget, baseline: Tensor, per_call: int
    ) -> tuple[IGResult, list[tuple[int, float]]]:
        cfg = self.config
        G = qig_objective(target, cfg)
        check = completeness_function(G, target, cfg)

        m, rule = cfg.integration(bool(target.weight_activation))
        if cfg.adaptive:
            return integrate_adaptive(
                G, target.x, baseline, m, rule, per_call,
                tolerance=cfg.tolerance, max_steps=cfg.max_steps, batched=cfg.batched, G_check=check,
            )  # fmt: skip
        res = integrate(G, target.x, baseline, m, rule, per_call, batched=cfg.batched, G_check=check)
        return res, []


def flattest_sample(raw: Tensor, token_types: Tensor) -> float:
    """The smallest per-sample coefficient of variation (std / mean) of ``raw [B, T]`` over each
    sample's real (non-padding) tokens; samples with fewer than 2 real tokens or a zero mean are skipped
    (inf when none is left)."""
    mask = valid_mask(token_types).to(raw.device)
    best = float("inf")
    for row, keep in zip(raw.float(), mask, strict=True):
        vals = row[keep]
        if vals.numel() < 2 or float(vals.mean()) <= 0:
            continue
        best = min(best, float(vals.std(unbiased=False) / vals.mean()))
    return best


def completeness_function(G: GFn, target: AttributionTarget, cfg: QIGConfig) -> GFn | None:
    """What completeness is checked against: ``G`` under the straight-through surrogate (activation
    quantizers as the identity) when the config asks for it and the target has one, else None (``G``)."""
    if cfg.completeness != "surrogate" or target.surrogate is None:
        return None
    surrogate = target.surrogate

    def check(x: Tensor) -> Tensor:
        with surrogate():
            return G(x)

    return check


def _warmup_weights(target: AttributionTarget, diag: dict[str, Any]) -> TokenWeights:
    """Released-code warm-up: uniform over vision + answer tokens (answer = text if no answer mask)."""
    tt = target.token_types
    answer = target.answer_mask if target.answer_mask is not None else tt == TokenType.TEXT
    valid = valid_mask(tt)
    keep = ((tt == TokenType.VISION) | answer.bool()) & valid
    keep = torch.where(keep.any(dim=-1, keepdim=True), keep, valid)  # nothing to keep: plain uniform
    diag["warmup_uniform"] = True
    w = keep.float()
    w = w / w.sum(dim=-1, keepdim=True).clamp_min(1.0)
    return finalize_weights(w, torch.where(keep, tt, torch.zeros_like(tt)), "none", diagnostics=diag)


@register_provider("qig")
def make_qig(counter: SearchCounter | None = None, **config: Any) -> QIGProvider:
    return QIGProvider(QIGConfig(**config), counter=counter)
