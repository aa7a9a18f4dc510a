"""Integer codes back from fake-quantized weights, bit for bit.

A :class:`~qigbench.quant.QuantLinear` keeps only ``W_hat = s (q - z)`` (in float32, cast to the
weight dtype): solvers such as GPTQ and AWQ's clip search choose their own scales, so the
parameters are not stored. Exporting a packed checkpoint needs ``(q, s, z)`` back. Every value of
a group is ``fl(k * s)`` for an integer ``k = q - z``, so

* the scale is ``span / R`` for some integer ``R`` (asymmetric: ``R = k_max - k_min <= 2^b - 1``)
  or ``max|W_hat| / K`` (symmetric: ``K <= 2^(b-1)``); candidates are tried from the finest grid
  the format allows down to 1, refined to within a few ulps by ``W_hat_j / k_j``;
* a candidate is accepted only if ``fl(k * s)`` reproduces *every* value of the group exactly and
  the codes fit the format's range; an equivalent grid (``s / 2`` with even codes) is as good.

Our asymmetric zero point is unclamped (see :mod:`qigbench.quant.quantizer`), but packed layouts
store it in ``b`` bits. A group whose values straddle zero always has a representable zero point;
one lying entirely on one side of zero (a zero point outside ``[0, 2^b - 1]``) cannot be stored
and raises :class:`ExportError` naming the group — the weights are never changed to fit.
"""

from __future__ import annotations

import torch

from qigbench.errors import QigbenchError
from qigbench.quant.formats import QuantSpec
from qigbench.quant.quantizer import QuantizedTensor, check_tensor, dequantize, group_view

#: how many ulps either side of the estimated scale are tried
_ULP_SEARCH = 3


class ExportError(QigbenchError):
    """A quantized weight cannot be written in the requested packed layout without changing it."""


def recover_codes(w_hat: torch.Tensor, spec: QuantSpec, *, name: str = "weight") -> QuantizedTensor:
    """``(codes, scale, zero)`` with ``dequantize(result) == w_hat`` bit for bit.

    Codes lie in ``[spec.qmin, spec.qmax]``; the zero point (asymmetric) in ``[0, 2^b - 1]``.
    """
    check_tensor(w_hat, name)
    groups = group_view(w_hat, spec).float()
    flat = groups.reshape(-1, groups.shape[-1])
    scale = torch.zeros(flat.shape[0], 1)
    codes = torch.zeros_like(flat, dtype=torch.int32)
    kmin_all = torch.zeros(flat.shape[0], 1)
    todo = torch.ones(flat.shape[0], dtype=torch.bool)

    zero_rows = flat.abs().amax(dim=1) == 0
    scale[zero_rows] = 1.0
    todo &= ~zero_rows
    for denom in _candidates(spec):
        if not bool(todo.any()):
            break
        rows = todo.nonzero().squeeze(1)
        g = flat[rows]
        found, s, k = _try_candidate(g, denom, spec, w_hat.dtype)
        hit = rows[found]
        scale[hit] = s[found]
        codes[hit] = k[found].to(torch.int32)
        kmin_all[hit] = k[found].amin(dim=1, keepdim=True)
        todo[hit] = False
    if bool(todo.any()):
        first = int(todo.nonzero()[0])
        raise ExportError(_failure_message(name, spec, flat, first, groups.shape[-2]))

    zero: torch.Tensor | None = None
    if not spec.symmetric:
        zero = (-kmin_all).clamp_min(0)  # k_min + z >= 0 with the smallest z >= 0
        codes = codes + zero.to(torch.int32)
    shaped = QuantizedTensor(
        codes=codes.reshape(groups.shape),
        scale=scale.reshape(*groups.shape[:-1], 1),
        zero=None if zero is None else zero.reshape(*groups.shape[:-1], 1),
        spec=spec,
        shape=w_hat.shape,
        dtype=w_hat.dtype,
    )
    if not torch.equal(dequantize(shaped), w_hat):  # the search checks this per group; belt and braces
        raise ExportError(f"{name}: recovered codes do not reproduce the weight bit for bit (please report)")
    return shaped


def _candidates(spec: QuantSpec) -> list[int]:
    """Grid denominators, most likely first: RTN-like groups use the full range."""
    if spec.symmetric:
        top = -spec.qmin  # a code may sit at -2^(b-1)
        return [spec.qmax, top, *range(spec.qmax - 1, 0, -1)]
    return list(range(spec.qmax, 0, -1))


def _try_candidate(
    g: torch.Tensor, denom: int, spec: QuantSpec, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each row of ``g``: does a scale near ``extent / denom`` reproduce it exactly?

    With the codes ``k`` fixed by the rough scale, every value pins the scale to an interval: the
    reals that round to ``g_i`` in ``dtype``, divided by ``k_i``. Their intersection (computed in
    float64) holds every exact scale; its midpoint, rounded to float32, is tried first, then a few
    float32 ulps around it. Works for float32 and for bfloat16 / float16 weights (rounded after
    ``s * k``), whose rounding intervals are much wider than a float32 ulp.
    """
    if spec.symmetric:
        extent = g.abs().amax(dim=1, keepdim=True)
    else:
        extent = g.amax(dim=1, keepdim=True) - g.amin(dim=1, keepdim=True)
        # a constant non-zero group: one grid step of |value| represents it (k = +-1)
        extent = torch.where(extent == 0, g.abs().amax(dim=1, keepdim=True), extent)
    k = torch.round(g / (extent / denom))
    for _ in range(3):  # least-squares refinement: half-precision extents are off by up to 2^-9
        s_ls = (g * k).sum(dim=1, keepdim=True) / (k * k).sum(dim=1, keepdim=True).clamp_min(1)
        k = torch.where(s_ls > 0, torch.round(g / s_ls.clamp_min(torch.finfo(torch.float32).tiny)), k)
    g_typed = g.to(dtype)
    up = torch.nextafter(g_typed, torch.full_like(g_typed, float("inf"))).double()
    down = torch.nextafter(g_typed, torch.full_like(g_typed, float("-inf"))).double()
    g64, k64 = g.double(), k.double()
    lo_val, hi_val = (g64 + down) / 2, (g64 + up) / 2  # what rounds to g (ties aside)
    nonzero = k64 != 0
    safe_k = torch.where(nonzero, k64, torch.ones_like(k64))
    a, b = lo_val / safe_k, hi_val / safe_k
    s_lo = torch.where(nonzero, torch.minimum(a, b), torch.full_like(a, 0.0)).amax(dim=1, keepdim=True)
    s_hi = torch.where(nonzero, torch.maximum(a, b), torch.full_like(a, float("inf"))).amin(dim=1, keepdim=True)
    mid = ((s_lo + s_hi) / 2).float()
    found = torch.zeros(g.shape[0], dtype=torch.bool)
    best_s = torch.zeros_like(mid)
    best_k = torch.zeros_like(g)
    trials = [mid]
    up_s, down_s = mid.clone(), mid.clone()
    for _ in range(_ULP_SEARCH):
        up_s = torch.nextafter(up_s, torch.full_like(up_s, float("inf")))
        down_s = torch.nextafter(down_s, torch.zeros_like(down_s))
        trials += [up_s, down_s]
    # an empty intersection means some code is off by one (half-precision values near a rounding
    # boundary): the trials recompute the codes from each candidate scale, which repairs that
    for s in trials:
        s = torch.where(torch.isfinite(s) & (s > 0), s, extent / denom)
        k = torch.round(g / s)
        exact = ((k * s).to(dtype).float() == g).all(dim=1)  # the quantizer's own arithmetic
        ok = exact & _fits(k, spec) & ~found
        best_s[ok] = s[ok]
        best_k[ok] = k[ok]
        found |= ok
    return found, best_s, best_k


def _fits(k: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    kmin, kmax = k.amin(dim=1), k.amax(dim=1)
    if spec.symmetric:
        return (kmin >= spec.qmin) & (kmax <= spec.qmax)
    # a zero point z in [0, qmax] with k + z in [0, qmax] for all k of the group
    return (kmax - kmin <= spec.qmax) & (kmax <= spec.qmax) & (-kmin <= spec.qmax)


def _failure_message(name: str, spec: QuantSpec, flat: torch.Tensor, row: int, n_groups: int) -> str:
    values = flat[row]
    where = f"{name}, row {row // n_groups}, group {row % n_groups}"
    lo, hi = float(values.min()), float(values.max())
    if not spec.symmetric and (lo > 0 or hi < 0):
        return (
            f"{where} lies entirely on one side of zero ([{lo:.4g}, {hi:.4g}]): its zero point is outside "
            f"[0, {spec.qmax}], which a {spec.bits}-bit packed layout cannot store. Export it as a fake-quant "
            "checkpoint (--export fake-quant) or use a symmetric format (e.g. W4A16-sym)"
        )
    return (
        f"{where} is not on a {spec.bits}-bit grid of the format ({spec}); was the model quantized with "
        "this format? Export it as a fake-quant checkpoint (--export fake-quant) to keep the weights as they are"
    )
