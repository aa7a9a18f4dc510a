"""A fake-quantized drop-in replacement for ``nn.Linear``.

Weights are quantized once, when the module is built (or handed in already quantized by a
solver such as GPTQ); activations are quantized per call, per token, when the format asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from qigbench.quant.formats import QuantFormat, parse_format
from qigbench.quant.quantizer import check_tensor, fake_quantize, fake_quantize_ste
from qigbench.quant.static import dead_channels, fake_quantize_channel_dynamic, fake_quantize_static

log = logging.getLogger(__name__)


class QuantLinear(nn.Module):
    """``y = Q_X(x) @ Q_W(W)^T + b`` with ``Q_X`` the identity for weight-only formats."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        fmt: QuantFormat | str,
        *,
        weight_is_quantized: bool = False,
        straight_through: bool = False,
    ) -> None:
        super().__init__()
        self.format = parse_format(fmt)
        check_tensor(weight, "weight")
        w = weight.detach() if weight_is_quantized else fake_quantize(weight.detach(), self.format.weight)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        #: let gradients pass the activation quantizer unchanged (needed for attribution through it)
        self.straight_through = straight_through
        #: straight-through surrogate forward: activations pass unquantized (see ``straight_through_surrogate``)
        self.surrogate = False

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        fmt: QuantFormat | str,
        *,
        quantized_weight: torch.Tensor | None = None,
        straight_through: bool = False,
    ) -> QuantLinear:
        weight = linear.weight if quantized_weight is None else quantized_weight
        return cls(
            weight,
            linear.bias,
            fmt,
            weight_is_quantized=quantized_weight is not None,
            straight_through=straight_through,
        )

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.format.activation
        if spec is None or (self.surrogate and self.straight_through):
            return x
        return fake_quantize_ste(x, spec) if self.straight_through else fake_quantize(x, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantize_input(x), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format={self.format.name}"


class ChannelActQuantLinear(QuantLinear):
    """A QuantLinear whose input quantizer is per *input channel* and asymmetric (Q-VLM).

    With ``act_range=(lo, hi)`` the range is static (fixed at calibration, shrunk by
    ``clip_ratio``); without it the range is taken from each call's own tokens (the released
    code's o_proj/down_proj rule at inference). The quantizer's state lives in buffers
    (``act_bits``, ``act_clip`` and, if static, ``act_lo``/``act_hi``) so it is saved with the block
    and :func:`quant_linear_from_state` rebuilds the module from it.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        fmt: QuantFormat | str,
        act_bits: int,
        act_range: tuple[torch.Tensor, torch.Tensor] | None = None,
        clip_ratio: float = 1.0,
        *,
        weight_is_quantized: bool = False,
        name: str = "",
    ) -> None:
        super().__init__(weight, bias, fmt, weight_is_quantized=weight_is_quantized)
        self.register_buffer("act_bits", torch.tensor(int(act_bits)))
        self.register_buffer("act_clip", torch.tensor(float(clip_ratio)))
        lo = hi = None
        if act_range is not None:
            lo, hi = (t.detach().float().reshape(-1).clone() for t in act_range)
            if lo.numel() != self.in_features or hi.numel() != self.in_features:
                raise ValueError(f"activation range has {lo.numel()} channels, the linear takes {self.in_features}")
        self.act_bits: torch.Tensor
        self.act_clip: torch.Tensor
        self.act_lo: torch.Tensor | None
        self.act_hi: torch.Tensor | None
        self.register_buffer("act_lo", lo)
        self.register_buffer("act_hi", hi)
        if lo is not None and hi is not None:
            dead = dead_channels(lo, hi)
            if dead:
                log.warning(
                    "%s: %d of %d input channels have an empty calibration range (all values equal); "
                    "their scale is floored so the output stays finite", name or "linear", dead, lo.numel()
                )

    @property
    def static(self) -> bool:
        return self.act_lo is not None

    def set_clip_ratio(self, ratio: float) -> None:
        self.act_clip.fill_(float(ratio))

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        bits = int(self.act_bits)
        if self.act_lo is None or self.act_hi is None:
            return fake_quantize_channel_dynamic(x, bits)
        return fake_quantize_static(x, self.act_lo, self.act_hi, bits, float(self.act_clip))

    def extra_repr(self) -> str:
        kind = "static" if self.static else "dynamic"
        return f"{super().extra_repr()}, act=A{int(self.act_bits)} per-channel {kind}"


def quant_linear_from_state(
    state: dict[str, torch.Tensor], prefix: str, fmt: QuantFormat | str
) -> QuantLinear:
    """Rebuild the quantized linear saved under ``prefix`` (its weight is already on the grid)."""
    weight, bias = state[f"{prefix}.weight"], state.get(f"{prefix}.bias")
    if f"{prefix}.act_bits" not in state:
        return QuantLinear(weight, bias, fmt, weight_is_quantized=True)
    lo, hi = state.get(f"{prefix}.act_lo"), state.get(f"{prefix}.act_hi")
    return ChannelActQuantLinear(
        weight, bias, fmt, int(state[f"{prefix}.act_bits"]),
        None if lo is None or hi is None else (lo, hi), float(state[f"{prefix}.act_clip"]),
        weight_is_quantized=True, name=prefix,
    )


def quantizer_state(module: QuantLinear, prefix: str) -> dict[str, torch.Tensor]:
    """The activation-quantizer buffers of ``module`` (empty for the plain per-token QuantLinear)."""
    if not isinstance(module, ChannelActQuantLinear):
        return {}
    return {f"{prefix}.{k}": v.detach().cpu() for k, v in module.named_buffers() if k.startswith("act_")}


@contextmanager
def straight_through_surrogate(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s straight-through QuantLinears as the function their gradient belongs to.

    A straight-through activation quantizer rounds in the forward pass but passes gradients as
    the identity, so the gradient autograd returns is that of the *surrogate* with the quantizer
    replaced by the identity (weights stay quantized). Integrated-gradients completeness holds
    for that surrogate, not for the rounded (step) function.
    """
    layers = [m for m in module.modules() if isinstance(m, QuantLinear) and m.straight_through]
    for layer in layers:
        layer.surrogate = True
    try:
        yield
    finally:
        for layer in layers:
            layer.surrogate = False


def quantize_linears_(
    module: nn.Module,
    fmt: QuantFormat | str,
    include: Callable[[str, nn.Linear], bool] = lambda name, lin: True,
) -> list[str]:
    """Replace every ``nn.Linear`` under ``module`` accepted by ``include`` with a QuantLinear.

    Returns the qualified names replaced. Plain round-to-nearest: solvers that choose their own
    weights build QuantLinear with ``quantized_weight`` instead.
    """
    fmt = parse_format(fmt)
    targets = [
        (name, child)
        for name, child in module.named_modules()
        if isinstance(child, nn.Linear) and include(name, child)
    ]
    for name, child in targets:
        set_submodule(module, name, QuantLinear.from_linear(child, fmt))
    return [name for name, _ in targets]


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)
