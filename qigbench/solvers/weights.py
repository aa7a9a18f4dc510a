"""Token weights as the solvers consume them, and the one place ``None`` becomes "uniform".

The contract (docs/architecture.md): lambda ``[B, T]`` is ``>= 0``, each row sums to 1 over the
non-padding positions and is exactly 0 on padding. ``None`` means
``qigbench.tokens.uniform_token_weights(token_types)``. Every solver calls
:func:`resolve_token_weights` first and then runs *one* code path, so the unweighted solver is the
weighted solver fed uniform weights — bit for bit, not just up to float error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qigbench.errors import QigbenchError
from qigbench.tokens import uniform_token_weights, valid_mask

#: how far a row sum of lambda may drift from 1 (providers renormalise in float32)
ROW_SUM_TOL = 1e-3


class SolverError(QigbenchError, ValueError):
    """A solver was called with inputs it cannot optimise (shapes, weights, Hessian)."""


def resolve_token_weights(
    token_weights: Tensor | None,
    token_types: Tensor | None,
    batch_shape: tuple[int, int],
) -> Tensor:
    """Return lambda ``[B, T]`` (float32) for inputs whose first two dims are ``batch_shape``.

    ``token_weights=None`` -> uniform over the non-padding positions of ``token_types`` (all
    positions when ``token_types`` is also ``None``). Explicit weights are validated against the
    contract; when ``token_types`` is given, weight on a padding position is an error (it would
    let padding garbage into the Hessian or the loss).
    """
    if token_types is not None and tuple(token_types.shape) != tuple(batch_shape):
        raise SolverError(
            f"token_types has shape {tuple(token_types.shape)} but the inputs are {tuple(batch_shape)} "
            "tokens; pass the [B, T] token types of the same calibration batch"
        )
    if token_weights is None:
        types = token_types if token_types is not None else torch.ones(batch_shape, dtype=torch.long)
        return uniform_token_weights(types)
    if tuple(token_weights.shape) != tuple(batch_shape):
        raise SolverError(
            f"token_weights has shape {tuple(token_weights.shape)} but the inputs are {tuple(batch_shape)} "
            "tokens; lambda must be [B, T] (one weight per token of the batch)"
        )
    w = token_weights.detach().float()
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise SolverError(
            "token_weights must be finite and >= 0; finalise raw sensitivity scores with "
            "qigbench.sensitivity.base.finalize_weights before handing them to a solver"
        )
    if token_types is not None:
        pad = ~valid_mask(token_types.to(w.device))
        if bool((w[pad] != 0).any()):
            raise SolverError(
                "token_weights put weight on padding positions; lambda must be exactly 0 where "
                "token_types == TokenType.PAD (mask them before calling the solver)"
            )
    sums = w.sum(dim=-1)
    bad = ((sums - 1).abs() > ROW_SUM_TOL) & (sums != 0)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise SolverError(
            f"token_weights rows {rows} sum to {sums[bad].tolist()}, not 1; normalise each sample's "
            "weights to sum 1 over its non-padding tokens (see docs/architecture.md, 'Token weights')"
        )
    return w


def check_inputs(x: Tensor, name: str = "x") -> None:
    """Cached linear inputs must be ``[B, T, H]`` floating-point tensors."""
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise SolverError(
            f"{name} must be a [B, T, H] tensor of cached linear inputs, got {shape}; "
            "add the batch dimension (x.unsqueeze(0)) for a single sequence"
        )
    if not x.is_floating_point():
        raise SolverError(f"{name} has dtype {x.dtype}; pass the floating-point activations")
