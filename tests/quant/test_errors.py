from __future__ import annotations

import pytest
import torch

from qigbench.errors import FormatError, QuantInputError
from qigbench.quant import Granularity, QuantSpec, fake_quantize, quantize

SPEC = QuantSpec(4, False, Granularity.PER_GROUP, 4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused(bad: float) -> None:
    x = torch.ones(2, 8)
    x[1, 3] = bad
    with pytest.raises(QuantInputError, match="NaN/Inf"):
        quantize(x, SPEC)


def test_empty_tensor_is_refused() -> None:
    with pytest.raises(QuantInputError, match="empty"):
        fake_quantize(torch.empty(0, 8), SPEC)


def test_integer_tensor_is_refused() -> None:
    with pytest.raises(QuantInputError, match="dtype"):
        quantize(torch.ones(2, 8, dtype=torch.int64), SPEC)


def test_group_that_does_not_divide_names_a_divisor() -> None:
    with pytest.raises(FormatError, match=r"does not divide the input dimension 96.*g32"):
        quantize(torch.randn(2, 96), QuantSpec(4, False, Granularity.PER_GROUP, 64))
