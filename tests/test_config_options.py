"""The option parser (qigbench.config): every supported type hint, its errors, the plain form and
the rules for options of a provider or solver that is not selected."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from methods.mbq import MBQConfig
from methods.qvlm import QVLMConfig
from methods.tlq import TLQConfig
from qigbench.config import OptionError, build, check_only_with, config_to_dict, omit_default, project
from qigbench.engine.method import get_method
from qigbench.errors import QigbenchError


@dataclass(frozen=True)
class Inner:
    steps: int = 1
    rule: Literal["midpoint", "gauss"] = "midpoint"
    chunk: int | None = None


@dataclass(frozen=True)
class Outer:
    loss: Literal["mse", "mae"] = "mse"
    flag: bool = False
    n: int = 20
    ratio: float = 0.5
    name: str = ""
    groups: tuple[str, ...] = ("qkv",)
    grid: tuple[float, ...] = (0.5, 1.0)
    pair: tuple[int, float] = (1, 2.0)
    maybe: bool | None = None
    scale: float | None = None
    inner: Inner = field(default_factory=Inner)
    later: bool = omit_default(False)


def test_every_type_converts() -> None:
    cfg = build(Outer, {"loss": "mae", "flag": "yes", "n": "7", "ratio": "0.25", "name": "x y", "groups": "o,down",
                        "grid": "0.8, 0.9,1", "pair": "3,4.5", "maybe": "false", "scale": "1e3",
                        "inner.steps": "32", "inner.rule": "gauss", "inner.chunk": "4"}, "m")
    assert cfg == Outer(loss="mae", flag=True, n=7, ratio=0.25, name="x y", groups=("o", "down"),
                        grid=(0.8, 0.9, 1.0), pair=(3, 4.5), maybe=False, scale=1000.0,
                        inner=Inner(steps=32, rule="gauss", chunk=4))
    assert type(cfg.grid[2]) is float and type(cfg.pair[0]) is int


def test_none_unsets_only_optional_fields_and_dashes_are_underscores() -> None:
    cfg = build(Outer, {"maybe": "None", "inner.chunk": "none", "name": "none"}, "m")
    assert cfg.maybe is None and cfg.inner.chunk is None and cfg.name == "none"
    assert build(Outer, {"inner.chunk": "8"}, "m").inner.chunk == 8
    assert build(Inner, {"steps": "2"}, "m").steps == 2
    assert build(Outer, {"flag": "on"}, "m") == build(Outer, {"flag": "true"}, "m")


def test_nested_options_keep_the_other_nested_defaults() -> None:
    base = Outer(inner=Inner(steps=5))
    assert build(Outer, {"inner.rule": "gauss"}, "m").inner == Inner(rule="gauss")
    assert dataclasses.replace(base, inner=build(Inner, {"rule": "gauss"}, "m")).inner.steps == 1


def test_non_strings_pass_as_given() -> None:
    assert build(Outer, {"n": 3, "groups": ("a",), "inner": Inner(steps=9)}, "m") == Outer(
        n=3, groups=("a",), inner=Inner(steps=9))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"loss": "l1"}, ("loss='l1'", "mse, mae")),
        ({"inner.rule": "simpson"}, ("midpoint, gauss",)),
        ({"flag": "maybe"}, ("true or false",)),
        ({"n": "2.5"}, ("an int",)),
        ({"ratio": "half"}, ("a number",)),
        ({"grid": "0.5,x"}, ("a number",)),
        ({"pair": "1,2,3"}, ("2 comma-separated",)),
        ({"nope": "1"}, ("no option 'nope'", "flag", "inner", "loss")),
        ({"n.x": "1"}, ("no sub-options",)),
        ({"inner": "3"}, ("structured", "inner.FIELD=VALUE")),
        ({"inner.nope": "3"}, ("no option 'nope'", "steps")),
        ({"maybe": "none-ish"}, ("true or false",)),
    ],
)
def test_bad_options_name_the_fix(options: dict[str, str], words: tuple[str, ...]) -> None:
    with pytest.raises(OptionError) as err:
        build(Outer, options, "m")
    assert all(w in str(err.value) for w in words), str(err.value)
    assert isinstance(err.value, QigbenchError)


@given(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
       st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5))
def test_printed_values_parse_back(n: int, x: float, flag: bool, grid: list[float]) -> None:
    options = {"n": str(n), "ratio": repr(x), "flag": str(flag), "grid": ",".join(map(repr, grid))}
    cfg = build(Outer, options, "m")
    assert (cfg.n, cfg.ratio, cfg.flag, cfg.grid) == (n, x, flag, tuple(grid))


def test_plain_form_omits_late_knobs_only_at_their_default() -> None:
    plain = config_to_dict(Outer())
    assert "later" not in plain and plain["inner"] == {"steps": 1, "rule": "midpoint", "chunk": None}
    assert plain["groups"] == ["qkv"]
    assert config_to_dict(Outer(later=True))["later"] is True


def test_project_takes_the_embedded_parts_fields() -> None:
    from qigbench.sensitivity.tlq_importance import TLQImportanceConfig

    cfg = TLQConfig(statistic="fisher", selection=0.5, floor=0.1, clipping="iqr", n_grid=7)
    assert project(cfg, TLQImportanceConfig) == {"statistic": "fisher", "selection": 0.5, "floor": 0.1,
                                                 "clipping": "iqr"}
    assert cfg.importance_config() == TLQImportanceConfig("fisher", 0.5, 0.1, "iqr")


@dataclass(frozen=True)
class Switched:
    solver: Literal["a", "b"] = "a"
    damp: float = 0.01
    sub: Inner = field(default_factory=Inner)
    only_with: ClassVar[dict[str, tuple[str, Any]]] = {"damp": ("solver", "b"), "sub": ("solver", "a")}


def test_only_with_rejects_a_field_set_for_the_other_selector() -> None:
    check_only_with(Switched(solver="b", damp=0.1))
    check_only_with(Switched(solver="b", damp=0.01))  # at its default: nothing was asked
    with pytest.raises(OptionError, match=r"damp applies only with solver=b .*pass -o solver=b"):
        check_only_with(Switched(damp=0.1))
    with pytest.raises(OptionError, match=r"sub\.\* options apply only with solver=a"):
        check_only_with(Switched(solver="b", sub=Inner(steps=2)))


def test_qig_options_without_the_qig_provider_are_an_error() -> None:
    with pytest.raises(QigbenchError, match=r"qig\.\* options apply only with sensitivity=qig.*-o sensitivity=qig"):
        get_method("qig", {"sensitivity": "gradient", "qig.steps": "4"})
    with pytest.raises(QigbenchError, match=r"qig\.\* options apply only with sensitivity=qig"):
        get_method("qig-gptq", {"sensitivity": "uniform", "qig.clipping": "none"})
    assert get_method("qig", {"sensitivity": "gradient"}).config.sensitivity == "gradient"
    with pytest.raises(QigbenchError, match="qig, uniform, gradient, attention, leave_one_out"):
        get_method("qig", {"sensitivity": "gradients"})


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [
        ("tlq", {"importance": "uniform", "selection": "0.5"}, ("selection", "importance=gradient")),
        ("tlq", {"mlp_module": "mlp.down_proj"}, ("mlp_module", "granularity=module")),
        ("qvlm", {"sweeps": "3"}, ("sweeps", "mode=paper")),
        ("qvlm", {"mode": "paper", "calibrate_prompts": "4"}, ("calibrate_prompts", "mode=reference")),
    ],
)
def test_other_mode_options_are_an_error(method: str, options: dict[str, str], words: tuple[str, ...]) -> None:
    with pytest.raises(QigbenchError) as err:
        get_method(method, options)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_solver_fields_once_unreachable_are_options_now() -> None:
    from qigbench.solvers.gptq_solver import GPTQConfig
    from qigbench.solvers.scale_search import ScaleSearchConfig

    gptq = get_method("gptq", {"static_groups": "true", "max_damp_retries": "2", "damp": "0.05"})
    assert GPTQConfig.of(gptq.config) == GPTQConfig(damp=0.05, static_groups=True, max_damp_retries=2)
    assert gptq.describe()["config"]["static_groups"] is True
    assert "static_groups" not in get_method("gptq").describe()["config"]  # stored configs keep their hash
    awq = get_method("awq", {"duo_scaling": "true", "n_grid": "10"})
    assert ScaleSearchConfig.of(awq.config, 4) == ScaleSearchConfig(n_grid=10, duo_scaling=True, batch_chunk=4)
    qvlm = get_method("qvlm", {"clip_grid": "0.9,1"})
    assert qvlm.config.clip_grid == (0.9, 1.0)  # floats (the old parser kept strings and failed)


def test_method_configs_are_frozen() -> None:
    from qigbench.engine.method import available_methods

    for cls in available_methods().values():
        params = getattr(cls.config_class, "__dataclass_params__", None)
        assert params is not None and params.frozen, cls.config_class
        for f in dataclasses.fields(cls.config_class):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                assert type(default).__dataclass_params__.frozen, (cls.config_class, f.name)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("build_it", "words"),
    [
        (lambda: TLQConfig(solver="adam"), ("cwe, gptq",)),
        (lambda: QVLMConfig(weights="int4"), ("auto, nf4, format",)),
        (lambda: MBQConfig(ratio_floor="mean"), ("median, none",)),
        (lambda: TLQConfig(solver="gptq", target="fp_path"), ("target applies only with solver=cwe",)),
    ],
)
def test_configs_built_in_python_are_checked_too(build_it: Any, words: tuple[str, ...]) -> None:
    with pytest.raises(OptionError) as err:
        build_it()
    assert all(w in str(err.value) for w in words), str(err.value)
