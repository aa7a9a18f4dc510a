from __future__ import annotations

import pytest

from qigbench.errors import FormatError
from qigbench.quant import Granularity, QuantSpec, parse_format


def test_weight_only_default_is_asymmetric_group128() -> None:
    fmt = parse_format("W3A16")
    assert fmt.weight == QuantSpec(3, False, Granularity.PER_GROUP, 128)
    assert fmt.activation is None and fmt.weight_only and fmt.a_bits == 16


def test_weight_activation_default_is_symmetric_per_channel_and_per_token() -> None:
    fmt = parse_format("w4a8")
    assert fmt.weight == QuantSpec(4, True, Granularity.PER_CHANNEL)
    assert fmt.activation == QuantSpec(8, True, Granularity.PER_TOKEN)


@pytest.mark.parametrize(
    ("text", "granularity", "group", "symmetric"),
    [
        ("W4A16g64", Granularity.PER_GROUP, 64, False),
        ("W4A8g128", Granularity.PER_GROUP, 128, True),
        ("W4A16gc", Granularity.PER_CHANNEL, None, False),
        ("W4A16-sym", Granularity.PER_GROUP, 128, True),
        ("W8A8-asym", Granularity.PER_CHANNEL, None, False),
    ],
)
def test_suffixes(text: str, granularity: Granularity, group: int | None, symmetric: bool) -> None:
    w = parse_format(text).weight
    assert (w.granularity, w.group_size, w.symmetric) == (granularity, group, symmetric)


@pytest.mark.parametrize("text", ["W3A16", "W4A8", "W4A16g64", "W8A8", "W4A8g128", "W4A16gc", "W2A16-sym"])
def test_name_round_trips(text: str) -> None:
    fmt = parse_format(text)
    assert parse_format(fmt.name) == fmt
    assert fmt.name == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("W9A16", "weight"),
        ("W1A16", "2..8"),
        ("W4A12", "activation"),
        ("W4A16g0", "positive"),
        ("4bit", "W<bits>A<bits>"),
        ("", "W<bits>A<bits>"),
    ],
)
def test_bad_formats_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_format(text)


def test_spec_rejects_nonsense() -> None:
    with pytest.raises(FormatError, match="positive"):
        QuantSpec(4, False, Granularity.PER_GROUP, -1)
    with pytest.raises(FormatError, match="only applies"):
        QuantSpec(4, False, Granularity.PER_CHANNEL, 64)
    with pytest.raises(FormatError, match="bits"):
        QuantSpec(16, False, Granularity.PER_CHANNEL)
