"""The (token-weighted) GPTQ Hessian, accumulated over streamed calibration batches.

GPTQ minimises ``||W X - Q(W) X||^2`` whose Hessian in ``W``'s rows is ``2 X^T X``. QIG+GPTQ
(paper, Sec. 4.3 / Table 5) weights each token's outer product by its sensitivity:
``H' = X^T diag(lambda) X``. We accumulate

    H' = (2 / N) * sum_b sum_t lambda[b, t] * x[b, t] x[b, t]^T

where ``N`` is the number of samples (rows of lambda) seen over all :meth:`HessianAccumulator.add`
calls. Why this normalisation: lambda sums to 1 per sample, so the inner sum is a per-sample
weighted mean of outer products and ``H'`` is their average over samples — independent of how
the calibration set is cut into batches, and on the same scale as the scale search's loss
(``sum_bt lambda_bt loss_bt / B``). GPTQ itself is invariant to a global rescaling of ``H`` (the
dampening is relative to its mean diagonal), so only the *relative* token weights matter.

With uniform lambda (``None``) every sample counts equally and, within a sample, every
non-padding token counts equally: for equal-length samples this is plain GPTQ's
``2 X^T X / n_tokens``.

Each batch's Gram matrix is computed in ``dtype`` and added into a float64 sum, so the sum is
exact whatever the order of the batches (:mod:`qigbench.parallel.sums`): a data-parallel run,
which all-reduces the ranks' sums, gets the Hessian of one process bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qigbench import parallel
from qigbench.solvers.weights import SolverError, check_inputs, resolve_token_weights


class HessianAccumulator:
    """Streams ``[B, T, H]`` linear inputs into ``H' [H, H]`` on ``device`` in ``dtype``."""

    def __init__(
        self, in_features: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        if in_features <= 0:
            raise SolverError(f"in_features must be positive, got {in_features}")
        self.in_features = in_features
        self.device = torch.device(device)
        self.dtype = dtype
        #: float64: the batches' Gram matrices add exactly, in any order (ranks, batches)
        self._sum = torch.zeros(in_features, in_features, device=self.device, dtype=torch.float64)
        self.n_samples = 0
        self.n_tokens = 0

    def add(self, x: Tensor, token_weights: Tensor | None = None, token_types: Tensor | None = None) -> None:
        """Add one calibration batch ``x [B, T, H]`` with its lambda ``[B, T]`` (``None`` = uniform)."""
        check_inputs(x)
        if x.shape[-1] != self.in_features:
            raise SolverError(
                f"x has {x.shape[-1]} features but the accumulator was built for {self.in_features}; "
                "use one HessianAccumulator per linear (its in_features)"
            )
        batch, tokens = int(x.shape[0]), int(x.shape[1])
        w = resolve_token_weights(token_weights, token_types, (batch, tokens)).to(self.device)
        flat_w = w.reshape(-1)
        keep = flat_w > 0  # padding (and zero-weight tokens) never touch H, even if x is garbage there
        rows = x.detach().reshape(-1, self.in_features).to(device=self.device)[keep].to(self.dtype)
        # sqrt-weighted rows make the update an exact Gram matrix: symmetric and PSD by construction
        rows = rows * flat_w[keep].to(self.dtype).sqrt().unsqueeze(1)
        self._sum += rows.T @ rows
        self.n_samples += batch
        self.n_tokens += int(keep.sum())

    @property
    def hessian(self) -> Tensor:
        """``H' = 2 * sum / N`` (a fresh tensor; the accumulator can keep streaming).

        Symmetrised explicitly: a BLAS Gram product is symmetric only up to rounding.
        Data-parallel: the sum and ``N`` are all-reduced over the ranks (every rank calls this).
        """
        n_samples = parallel.total(self.n_samples)
        if n_samples == 0:
            raise SolverError("the Hessian has no data; call add() with at least one calibration batch")
        total = parallel.all_reduce_sum(self._sum).to(self.dtype)
        return (total + total.T) * (1.0 / n_samples)


def weighted_hessian(x: Tensor, token_weights: Tensor | None = None, token_types: Tensor | None = None) -> Tensor:
    """One-shot ``H'`` of a single batch (same code path as the streaming accumulator)."""
    check_inputs(x)
    acc = HessianAccumulator(int(x.shape[-1]), device=x.device)
    acc.add(x, token_weights, token_types)
    return acc.hessian
