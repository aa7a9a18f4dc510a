"""GPTQ: column-wise optimal-brain quantization with lazy batch updates (Frantar et al., 2022).

Columns are quantized one at a time; each column's rounding error is spread over the columns not
yet quantized through the inverse Hessian, so that ``||W X - Q(W) X||`` (X: calibration inputs,
summarised by ``H = 2 X^T diag(lambda) X``, see :mod:`qigbench.solvers.hessian`) stays small.
Updates inside a block of ``block_size`` columns are applied eagerly; the rest of the matrix is
updated once per block (the "lazy batch" trick: one matmul instead of ``block_size`` rank-1 updates).

Design choices (all tested in tests/solvers/test_gptq.py):

* **Quantizer.** Every rounding goes through :func:`qigbench.quant.fake_quantize_with` with
  parameters from :func:`qigbench.quant.compute_qparams`; nothing here re-implements the grid.
  With ``H = I`` no error propagates and the result equals RTN (``fake_quantize``) bit for bit.
* **Group parameters follow the original column groups**, with or without act-order, so the
  result is stored like any group-wise quantized tensor (no ``g_idx``). Per-channel / per-tensor
  parameters (and ``static_groups=True``) come from the original weight before any update. With
  dynamic groups, a group's parameters are computed from the group's *current* (error-updated)
  values the first time one of its columns is quantized: at that moment none of its columns is
  quantized yet, and columns outside the current block get their pending lazy updates applied
  exactly. (The reference implementation reads stale values when a group starts mid-block; we do
  not.) Under act-order that moment is when the group's most salient column comes up.
* **Dead inputs** (zero Hessian diagonal: the input channel was always 0 on the calibration set)
  get ``H_jj = 1``. Their rounding error then propagates nowhere and they are plain RTN; unlike the
  reference code we do not zero their weights, since the channel may be live on other data.
* **Dampening** adds ``damp * mean(diag H)`` to the diagonal. A Hessian that is still not positive
  definite is retried with ten times the dampening (logged as a warning) up to
  ``max_damp_retries`` times, then a :class:`SolverError` names the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from qigbench.config import omit_default, project
from qigbench.quant import (
    Granularity,
    QuantizedTensor,
    QuantSpec,
    check_tensor,
    compute_qparams,
    fake_quantize_with,
    group_view,
    quantize_codes,
)
from qigbench.solvers.weights import SolverError

log = logging.getLogger(__name__)

#: each retry multiplies the relative dampening by this
DAMP_GROWTH = 10.0


@dataclass(frozen=True)
class GPTQConfig:
    """Knobs of :func:`gptq_quantize`; defaults follow the GPTQ paper and methods.md."""

    block_size: int = 128
    #: relative dampening: ``damp * mean(diag H)`` is added to the diagonal
    damp: float = 0.01
    #: quantize columns in order of decreasing ``diag(H)`` (most-used inputs first)
    act_order: bool = False
    #: compute every group's parameters from the original weight up front (the two knobs below are
    #: left out of stored configs while at their defaults: they were added after results were stored)
    static_groups: bool = omit_default(False)
    #: how many times a non-positive-definite Hessian is retried with 10x the dampening
    max_damp_retries: int = omit_default(4)

    @classmethod
    def of(cls, config: GPTQConfig) -> GPTQConfig:
        """The solver's part of ``config`` (a method config embedding it)."""
        return cls(**project(config, GPTQConfig))

    def __post_init__(self) -> None:
        if self.block_size <= 0:
            raise SolverError(f"GPTQ block_size must be positive, got {self.block_size}; the default is 128")
        if not self.damp >= 0:
            raise SolverError(f"GPTQ damp must be >= 0, got {self.damp}; the default is 0.01 (1% of mean diag)")
        if self.max_damp_retries < 0:
            raise SolverError(f"max_damp_retries must be >= 0, got {self.max_damp_retries}")


@dataclass
class GPTQResult:
    """A GPTQ-quantized weight: dequantized values plus the integer representation.

    ``scale`` / ``zero`` have the grouped shape of :func:`qigbench.quant.compute_qparams`
    (``[out, n_groups, 1]``; ``[1, 1, 1]`` per-tensor); ``codes`` is ``[out, in]`` int32 and
    ``weight == dequantize(codes)`` exactly. ``loss`` is GPTQ's own objective
    ``sum (w - q)^2 / (2 [H^-1]_jj^2)``; ``damp_used`` the relative dampening that succeeded.
    """

    weight: Tensor
    scale: Tensor
    zero: Tensor | None
    codes: Tensor
    loss: float
    damp_used: float
    spec: QuantSpec
    perm: Tensor | None = None

    def to_quantized_tensor(self) -> QuantizedTensor:
        grouped = group_view(self.codes, self.spec)
        return QuantizedTensor(
            codes=grouped,
            scale=self.scale,
            zero=self.zero,
            spec=self.spec,
            shape=self.weight.shape,
            dtype=self.weight.dtype,
        )


def gptq_quantize(weight: Tensor, hessian: Tensor, spec: QuantSpec, cfg: GPTQConfig | None = None) -> GPTQResult:
    """Quantize ``weight [out, in]`` given the input Hessian ``[in, in]``; runs on ``weight.device``."""
    cfg = cfg if cfg is not None else GPTQConfig()
    _check(weight, hessian, spec)
    group_view(weight, spec)  # a group size that does not divide `in` fails here, with the quantizer's message
    w_orig = weight.detach().float()
    out_features, n = w_orig.shape
    W = w_orig.clone()
    H = hessian.detach().to(device=W.device, dtype=torch.float32).clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0

    perm: Tensor | None = None
    if cfg.act_order:
        perm = torch.argsort(torch.diagonal(H), descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
    hinv, damp_used = _inverse_hessian_cholesky(H, cfg)

    groups = _GroupParams(w_orig, spec, perm, static=cfg.static_groups)
    Q = torch.zeros_like(W)
    losses = torch.zeros_like(W)
    for i1 in range(0, n, cfg.block_size):
        i2 = min(i1 + cfg.block_size, n)
        W1 = W[:, i1:i2].clone()
        err1 = torch.zeros_like(W1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            gid = groups.group_of(i1 + i)
            if not groups.ready(gid):
                groups.compute(gid, _current_group_values(groups.positions(gid), W, W1, err1, hinv, i1, i2, i))
            scale, zero = groups.column_params(gid)
            w = W1[:, i]
            d = hinv1[i, i]
            q = fake_quantize_with(w.unsqueeze(1), scale, zero, spec).squeeze(1)
            Q[:, i1 + i] = q
            losses[:, i1 + i] = (w - q) ** 2 / d**2
            e = (w - q) / d
            W1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        W[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    scale_all, zero_all = groups.stacked()
    codes = quantize_codes(group_view(Q, spec), scale_all, zero_all, spec).reshape(out_features, n)
    return GPTQResult(
        weight=Q.to(weight.dtype),
        scale=scale_all,
        zero=zero_all,
        codes=codes,
        loss=float(losses.sum() / 2),
        damp_used=damp_used,
        spec=spec,
        perm=perm,
    )


def _check(weight: Tensor, hessian: Tensor, spec: QuantSpec) -> None:
    check_tensor(weight, "weight")
    if weight.dim() != 2:
        raise SolverError(f"GPTQ quantizes a 2-D [out, in] weight, got shape {tuple(weight.shape)}")
    n = weight.shape[1]
    if tuple(hessian.shape) != (n, n):
        raise SolverError(
            f"Hessian has shape {tuple(hessian.shape)} but the weight has {n} input columns; build it with "
            "HessianAccumulator(in_features) from this linear's inputs"
        )
    check_tensor(hessian, "hessian")
    if spec.granularity is Granularity.PER_TOKEN:
        raise SolverError("per-token granularity is for activations; give GPTQ the format's weight spec (fmt.weight)")


def _inverse_hessian_cholesky(H: Tensor, cfg: GPTQConfig) -> tuple[Tensor, float]:
    """Upper Cholesky factor of ``(H + damp * mean(diag H) I)^-1``, retrying with more dampening."""
    mean_diag = float(torch.diagonal(H).mean())
    if not mean_diag > 0:
        raise SolverError(
            f"the Hessian's mean diagonal is {mean_diag}, not positive; it must be X^T diag(lambda) X of real "
            "calibration inputs (check that the inputs are not all zero and the token weights not all 0)"
        )
    damp = cfg.damp
    for attempt in range(cfg.max_damp_retries + 1):
        damped = H.clone()
        damped.diagonal().add_(damp * mean_diag)
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(factor), upper=True)
            if int(info) == 0 and bool(torch.isfinite(upper).all()):
                return upper, damp
        if attempt == cfg.max_damp_retries:
            break
        new_damp = damp * DAMP_GROWTH if damp > 0 else 0.01
        log.warning(
            "GPTQ: Hessian is not positive definite with damp=%g (x mean diag %.4g); retrying with damp=%g",
            damp,
            mean_diag,
            new_damp,
        )
        damp = new_damp
    raise SolverError(
        f"GPTQ: the Hessian is not positive definite even with damp={damp:g} after {cfg.max_damp_retries} "
        "retries; use more calibration samples, raise GPTQConfig.damp, or check the inputs for NaN/duplicates"
    )


def _current_group_values(
    positions: Tensor, W: Tensor, W1: Tensor, err1: Tensor, hinv: Tensor, i1: int, i2: int, i: int
) -> Tensor:
    """The group's columns as they are *now*: in-block from ``W1``, later blocks with pending updates."""
    values = torch.empty(W.shape[0], positions.numel(), dtype=W.dtype, device=W.device)
    in_block = positions < i2
    values[:, in_block] = W1[:, positions[in_block] - i1]
    later = positions[~in_block]
    if later.numel():
        values[:, ~in_block] = W[:, later] - err1[:, :i] @ hinv[i1 : i1 + i, later]
    return values


class _GroupParams:
    """Which original group each (permuted) column belongs to, and that group's scale / zero."""

    def __init__(self, w_orig: Tensor, spec: QuantSpec, perm: Tensor | None, *, static: bool) -> None:
        self.spec = spec
        n = int(w_orig.shape[1])
        grouped = spec.granularity is Granularity.PER_GROUP
        size = spec.group_size if grouped and spec.group_size is not None else n
        self.n_groups = n // size
        original_cols = perm if perm is not None else torch.arange(n, device=w_orig.device)
        self._group_of = (original_cols // size).tolist()
        inverse = torch.argsort(original_cols)
        self._positions = inverse.reshape(self.n_groups, size)  # permuted positions of each group's columns
        self._scale: list[Tensor | None] = [None] * self.n_groups
        self._zero: list[Tensor | None] = [None] * self.n_groups
        self._per_tensor = spec.granularity is Granularity.PER_TENSOR
        if static or not grouped:
            scale, zero = compute_qparams(w_orig, spec)
            if self._per_tensor:
                self._whole = (scale, zero)
            for g in range(self.n_groups):
                self._scale[g] = scale.reshape(-1, self.n_groups)[:, g : g + 1]
                self._zero[g] = None if zero is None else zero.reshape(-1, self.n_groups)[:, g : g + 1]

    def group_of(self, position: int) -> int:
        return int(self._group_of[position])

    def positions(self, gid: int) -> Tensor:
        return self._positions[gid]

    def ready(self, gid: int) -> bool:
        return self._scale[gid] is not None

    def compute(self, gid: int, values: Tensor) -> None:
        scale, zero = compute_qparams(values, self.spec)  # values [out, group_size] -> [out, 1, 1]
        self._scale[gid] = scale.reshape(-1, 1)
        self._zero[gid] = None if zero is None else zero.reshape(-1, 1)

    def column_params(self, gid: int) -> tuple[Tensor, Tensor | None]:
        scale = self._scale[gid]
        assert scale is not None
        return scale, self._zero[gid]

    def stacked(self) -> tuple[Tensor, Tensor | None]:
        """All groups' parameters in :func:`compute_qparams`'s grouped shape."""
        if self._per_tensor:
            return self._whole
        scale = torch.cat([s for s in self._scale if s is not None], dim=1).unsqueeze(-1)
        if self._zero[0] is None:
            return scale, None
        zero = torch.cat([z for z in self._zero if z is not None], dim=1).unsqueeze(-1)
        return scale, zero
