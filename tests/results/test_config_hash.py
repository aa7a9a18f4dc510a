"""config_hash: stable, order-independent, type-independent, and sensitive to every value."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qigbench.results import ResultsError, config_hash


class Objective(StrEnum):
    ERROR = "f(x)-f(xq)"


@dataclass(frozen=True)
class QigConfig:
    steps: int = 16
    alpha: float = 0.5
    objective: Objective = Objective.ERROR
    groups: tuple[str, ...] = ("qkv", "o")


scalars = st.one_of(st.integers(-5, 5), st.text(max_size=4), st.booleans(), st.floats(-2, 2, allow_nan=False))
configs = st.dictionaries(st.text(min_size=1, max_size=5), scalars, max_size=6)


@settings(max_examples=60)
@given(configs, st.randoms())
def test_key_order_does_not_matter(cfg: dict[str, object], rnd: object) -> None:
    items = list(cfg.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert config_hash(cfg, {"n": 128}) == config_hash(dict(items), {"n": 128})


@settings(max_examples=60)
@given(configs, st.text(min_size=1, max_size=5), scalars)
def test_changing_a_value_changes_the_hash(cfg: dict[str, object], key: str, value: object) -> None:
    assume(key not in cfg or cfg[key] != value)
    assert config_hash(cfg) != config_hash({**cfg, key: value})


def test_dataclass_equals_its_dict_and_calibration_counts() -> None:
    as_dict = {"steps": 16, "alpha": 0.5, "objective": "f(x)-f(xq)", "groups": ["qkv", "o"]}
    assert config_hash(QigConfig()) == config_hash(as_dict)
    assert config_hash(QigConfig(), {"samples": 128}) != config_hash(QigConfig(), {"samples": 256})
    assert config_hash({"a": 1.0}) == config_hash({"a": 1})
    assert len(config_hash(QigConfig())) == 16


def test_hash_is_stable_across_processes() -> None:
    code = "from qigbench.results import config_hash; print(config_hash({'b': [1, 2], 'a': 'x'}, {'n': 3}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == config_hash({"a": "x", "b": [1, 2]}, {"n": 3})


def test_unhashable_value_names_the_fix() -> None:
    with pytest.raises(ResultsError, match="dataclasses, dicts"):
        config_hash({"fn": object()})
