"""The one interface every token-sensitivity provider implements, and the shared post-processing.

A provider answers one question for one search group of one block: *how much does each token
matter for this group's quantization error?* It gets an :class:`AttributionTarget` (the compared
module with fp and quantized weights, its cached input, the reference input and the token types)
and returns :class:`TokenWeights` — lambda ``[B, T]`` in the shape every solver consumes
(``>= 0``, rows summing to 1 over non-padding tokens, exactly 0 on padding; see
``docs/architecture.md``).

Every provider turns its raw per-token scores into lambda with :func:`finalize_weights`, so the
padding rule, the clipping variants and the degenerate-input fallback are written once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from qigbench.memory import batch_sizes_of, row_spans, rows_of, rows_per_chunk
from qigbench.sensitivity.clipping import ClippingName, apply_clipping
from qigbench.sensitivity.errors import SensitivityError
from qigbench.tokens import uniform_token_weights, valid_mask

log = logging.getLogger(__name__)

__all__ = ["AttributionTarget", "SensitivityError", "SensitivityProvider", "TokenWeights", "register_provider"]


@dataclass
class AttributionTarget:
    """What a provider attributes: one compared module, its fp and quantized versions, its input.

    ``f_fp`` / ``f_q`` map ``x[N, T, H] -> y[N, T, H']``. Providers that batch several inputs
    (QIG path points, leave-one-out perturbations) call them with ``N = k * B``: the ``k`` copies
    are stacked *copy-major* (rows ``j*B:(j+1)*B`` are copy ``j``), so a closure over per-sample
    tensors (attention masks, rotary embeddings) must accept any multiple of ``B`` — e.g. with
    ``mask.repeat(N // B, ...)``. Rows must not interact (true for decoder blocks).

    Streaming (``memory_budget``, ``row_bytes``): providers cut their ``samples x copies`` rows
    into chunks of at most ``memory_budget // row_bytes`` rows (:meth:`chunking`) and run each
    chunk on :meth:`rows` — the target restricted to a sample subset, with ``f_fp`` / ``f_q``
    restricted too when they are replays (``.rows(start, stop)``). ``None`` runs everything at once.
    """

    f_fp: Callable[[Tensor], Tensor]
    f_q: Callable[[Tensor], Tensor]
    x: Tensor
    x_q: Tensor | None
    token_types: Tensor
    block_index: int = 0
    group: str = ""
    #: [B, T] bool, the supervised answer (caption) tokens; MBQ weights and the reference warm-up use it
    answer_mask: Tensor | None = None
    #: [B, heads, T, T] attention probabilities of the block, for the ``attention`` provider
    attention_probs: Tensor | None = None
    #: whether activations are quantized too (W-A format); None = "``x_q`` is given", the engine's
    #: rule for the default reference. A weight-only target may still carry ``x_q`` when a provider
    #: asked for a quantized-path baseline (``qig.baseline=quantized``).
    weight_activation: bool | None = None

    @property
    def where(self) -> str:
        """``block 3, group attn``: how logs and errors name this target."""
        return f"block {self.block_index}, group {self.group}" if self.group else f"block {self.block_index}"

    #: attention probabilities of sample rows ``start:stop`` on demand (streamed ``attention_probs``)
    attention_rows: Callable[[int, int], Tensor] | None = None
    #: bytes one forward/backward chunk may take (None: no limit, everything in one call)
    memory_budget: int | None = None
    #: estimated bytes of one row (one sample at one copy) through f_fp and f_q with autograd
    row_bytes: int | None = None
    #: context under which f_q computes the straight-through *surrogate* it is differentiated as
    #: (activation quantizers as the identity): what QIG's completeness is checked against
    surrogate: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    #: ``f_fp`` and ``f_q`` are linear in ``x`` up to one shared constant (``x A^T + c`` and
    #: ``x A_q^T + c``: a linear layer and its weight-only RTN twin, the ``o`` and ``down`` groups of
    #: W{b}A16). Their difference is then linear, so a QIG objective of it is positively homogeneous
    #: and, from the zero baseline, its gradient is the same at every path point: one point is exact
    linear: bool = False
    #: ``(W, W_q)``, the weights of ``f_fp`` and ``f_q`` when the compared module is one linear layer
    #: (any format): QIG's gradient is then ``sign(e) (W - W_q) / H`` at every path point, so the
    #: path needs forwards only and one matmul at the end (``QIGProvider``'s no-backward shortcut)
    linear_weights: tuple[Tensor, Tensor] | None = None
    #: ``f_fp`` and ``f_q`` compute each token's output from that token's input alone (an MLP or a
    #: linear, with activations quantized per token or not at all): replacing input token t changes
    #: only output token t, so a per-token objective's leave-one-out change is that token's term alone
    token_wise: bool = False

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def sliceable(self) -> bool:
        """Whether f_fp / f_q can run a sample subset (replays can; closures over masks may not)."""
        return all(callable(getattr(f, "rows", None)) for f in (self.f_fp, self.f_q))

    def rows(self, start: int, stop: int) -> AttributionTarget:
        """This target restricted to samples ``start:stop`` (the whole target when that is all of it)."""
        B = self.batch
        if start == 0 and stop == B:
            return self
        if not self.sliceable:
            raise SensitivityError("this target's f_fp / f_q cannot run a sample subset (no .rows()); "
                                   "pass replays, or leave memory_budget=None")

        def cut(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[start:stop]

        shifted = None
        if self.attention_rows is not None:
            outer = self.attention_rows

            def shifted(a: int, b: int) -> Tensor:
                return outer(start + a, start + b)

        return dataclasses.replace(
            self, f_fp=rows_of(self.f_fp, start, stop, B), f_q=rows_of(self.f_q, start, stop, B),
            x=self.x[start:stop], x_q=cut(self.x_q), token_types=self.token_types[start:stop],
            answer_mask=cut(self.answer_mask), attention_probs=cut(self.attention_probs), attention_rows=shifted,
        )  # fmt: skip

    def chunking(self, copies: int, copies_per_call: int | None = None) -> tuple[list[tuple[int, int]], int]:
        """Sample spans and copies per call so that ``span x copies_per_call`` rows fit the budget.

        Samples are split first only when even one copy of all samples does not fit; otherwise
        all samples go together and copies (path points, perturbations) are batched as extra rows.
        """
        B = self.batch
        whole = [(0, B)]
        if self.memory_budget is None or self.row_bytes is None:
            return whole, copies_per_call or copies
        rows = rows_per_chunk(self.memory_budget, self.row_bytes, B * copies)
        if copies_per_call is not None:
            rows = max(1, rows // copies_per_call)
        spans = row_spans(batch_sizes_of(self.f_fp, B), rows) if self.sliceable else whole
        widest = max(b - a for a, b in spans)
        k = copies_per_call or max(1, min(copies, rows // widest))
        return spans, k

    def __post_init__(self) -> None:
        if self.weight_activation is None:
            self.weight_activation = self.x_q is not None
        if self.x.dim() != 3:
            raise SensitivityError(
                f"AttributionTarget.x must be [B, T, H], got shape {tuple(self.x.shape)}; "
                "pass the cached block/module input with its batch dimension"
            )
        if tuple(self.token_types.shape) != tuple(self.x.shape[:2]):
            raise SensitivityError(
                f"token_types has shape {tuple(self.token_types.shape)} but x is {tuple(self.x.shape)}; "
                "token_types must be [B, T] matching x's first two dimensions"
            )
        if self.x_q is not None and self.x_q.shape != self.x.shape:
            raise SensitivityError(
                f"x_q has shape {tuple(self.x_q.shape)} but x is {tuple(self.x.shape)}; "
                "the reference input must have the same shape as x (or be None for the zero baseline)"
            )


@dataclass
class TokenWeights:
    """lambda ``[B, T]`` plus the raw scores it came from and what happened on the way."""

    weights: Tensor
    raw: Tensor
    diagnostics: dict[str, Any] = field(default_factory=dict)


class SensitivityProvider(Protocol):
    name: str

    def __call__(self, target: AttributionTarget) -> TokenWeights: ...


def finalize_weights(
    raw: Tensor,
    token_types: Tensor,
    clipping: ClippingName = "none",
    *,
    apply_clip: bool = True,
    mask_padding: bool = True,
    diagnostics: dict[str, Any] | None = None,
    where: str = "",
) -> TokenWeights:
    """Raw per-token scores -> lambda: normalise, clip, renormalise, mask padding, fall back.

    The order follows the paper (Sec. 3.3): per-sample normalisation to sum 1, clipping over the
    sample's non-padding tokens, renormalisation. Normalising first makes the clipping thresholds
    comparable across samples and layers; it does not change which tokens are outliers.

    ``apply_clip=False`` computes the clipping (for the diagnostics) without applying it — the
    released code's W4A8 behaviour. ``mask_padding=False`` lets padding positions take part in the
    normalisation and clipping — the released code's bug, available only for paper-vs-code
    comparisons. The solver contract (0 on padding) still holds at the end: padding's share is
    dropped and each row renormalised over its real tokens (``diagnostics["padding_share"]``); the
    released code also adds the padded positions' own errors to the loss, which no solver here does.

    A row whose scores are all zero (``x == x_q``: nothing to attribute) or not finite gets
    uniform weights; the rows are listed in ``diagnostics["fallback_rows"]`` and logged, naming
    ``where`` (the target's block and group, :attr:`AttributionTarget.where`).
    """
    diag: dict[str, Any] = {} if diagnostics is None else diagnostics
    raw = raw.detach()
    scores = raw.float().clamp_min(0.0)
    mask = valid_mask(token_types) if mask_padding else torch.ones_like(token_types, dtype=torch.bool)
    scores = torch.where(mask, scores, torch.zeros_like(scores))
    normed = _normalise_rows(scores)
    clipped = apply_clipping(clipping, normed, mask)
    if apply_clip:
        normed = _normalise_rows(clipped)
    elif clipping != "none":
        diag["clipping_computed_not_applied"] = True
    weights, bad = _uniform_fallback(normed, mask)
    if not mask_padding:
        real = valid_mask(token_types)
        diag["padding_share"] = float(torch.where(real, 0.0, weights).sum(dim=-1).mean()) if weights.numel() else 0.0
        weights, _ = _uniform_fallback(_normalise_rows(torch.where(real, weights, torch.zeros_like(weights))), real)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        log.warning(
            "token weights%s: %s of %d rows have no usable scores (x == x_q or all-zero), using uniform: rows %s",
            f" ({where})" if where else "",
            len(rows),
            bad.numel(),
            row_ranges(rows),
        )
        diag["fallback_rows"] = rows
    diag["degenerate_fallback"] = bool(bad.any())
    return TokenWeights(weights=weights, raw=raw, diagnostics=diag)


def row_ranges(rows: list[int]) -> str:
    """``[0, 1, 2, 3, 7, 9, 10]`` -> ``"0-3, 7, 9-10"`` (a log line, not a list of 128 numbers)."""
    parts: list[str] = []
    start = prev = None
    for r in [*sorted(rows), None]:
        if r is not None and prev is not None and r == prev + 1:
            prev = r
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = r
    return ", ".join(parts)


def _normalise_rows(scores: Tensor) -> Tensor:
    total = scores.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, scores / total.clamp_min(torch.finfo(scores.dtype).tiny), scores)


def _uniform_fallback(weights: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    total = weights.sum(dim=-1)
    bad = ~torch.isfinite(weights).all(dim=-1) | (total <= 0)
    if not bad.any():
        return weights, bad
    uniform = mask.float() / mask.float().sum(dim=-1, keepdim=True).clamp_min(1.0)
    return torch.where(bad[:, None], uniform, weights), bad


def uniform_weights(token_types: Tensor) -> TokenWeights:
    """lambda for the unweighted methods: exactly ``qigbench.tokens.uniform_token_weights``."""
    w = uniform_token_weights(token_types)
    return TokenWeights(weights=w, raw=w.clone(), diagnostics={"degenerate_fallback": False})


# ------------------------------------------------------------------------------------------- registry

ProviderFactory = Callable[..., SensitivityProvider]
_REGISTRY: dict[str, ProviderFactory] = {}


def register_provider(name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Decorator: make a provider class (constructed from keyword config) available by name."""

    def deco(factory: ProviderFactory) -> ProviderFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise SensitivityError(f"sensitivity provider {name!r} is registered twice; rename one of them")
        _REGISTRY[name] = factory
        return factory

    return deco
