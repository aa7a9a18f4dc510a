"""``Method[ConfigT]``: a plugin's config is typed as its own class (mypy) and built from it (runtime)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod
from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig
from qigbench.engine.method import Method, MethodConfig, get_method

ROOT = Path(__file__).resolve().parents[2]


def test_config_class_comes_from_the_type_argument() -> None:
    from methods.awq import AWQ, AWQConfig
    from methods.qig import QIG, QIGMethodConfig
    from methods.rtn import RTN
    from methods.tlq import TLQ, TLQConfig

    assert (AWQ.config_class, QIG.config_class, TLQ.config_class) == (AWQConfig, QIGMethodConfig, TLQConfig)
    assert RTN.config_class is MethodConfig
    # a generic base takes its type variable's bound
    assert EqualizationMethod.config_class is EqualizationConfig and GPTQMethod.config_class is GPTQMethodConfig
    assert isinstance(get_method("qig", {"qig.steps": "4"}).config, QIGMethodConfig)
    with pytest.raises(TypeError, match="expects a QIGMethodConfig"):
        QIG(AWQConfig())  # type: ignore[arg-type]


@pytest.mark.slow  # one mypy run over the package (cached: seconds; cold: about a minute)
def test_mypy_sees_each_plugins_own_config(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    good = textwrap.dedent("""
        from methods.qig import QIG
        from methods.tlq import TLQ
        from qigbench.bases.equalization import EqualizationMethod
        from qigbench.bases.equalization import EqualizationConfig

        steps: int = QIG().config.qig.steps
        solver: str = TLQ().config.solver

        def grid(method: EqualizationMethod[EqualizationConfig]) -> int:
            return method.config.n_grid
    """)
    bad = "from methods.qig import QIG\nwrong: str = QIG().config.qig.steps\nmissing = QIG().config.no_such_field\n"
    (tmp_path / "good.py").write_text(good)
    (tmp_path / "bad.py").write_text(bad)
    # one run over both files, with the project's incremental cache (a cold run takes about a minute)
    flags = ["--follow-imports=silent", "--ignore-missing-imports", "--cache-dir", str(ROOT / ".mypy_cache")]
    out, err, status = api.run([*flags, str(tmp_path / "good.py"), str(tmp_path / "bad.py")])
    assert status == 1, out + err
    assert "good.py" not in out, out
    assert 'bad.py:2: error: Incompatible types in assignment (expression has type "int", variable has type' in out, out
    assert 'bad.py:3: error: "QIGMethodConfig" has no attribute "no_such_field"' in out, out


def test_every_plugin_names_its_config_in_the_type_argument() -> None:
    """No plugin falls back to the base config through a missing type argument."""
    from qigbench.engine.method import available_methods

    for name, cls in available_methods().items():
        if name == "rtn":
            continue
        assert cls.config_class is not MethodConfig, name
        assert issubclass(cls, Method)
