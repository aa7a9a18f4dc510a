"""The call timers of qigbench.cost.probes: what they count, and that they leave no trace."""

from __future__ import annotations

import time

import pytest

from qigbench.cost.probes import TimingError, parameter_bytes, peak_rss_bytes, reset_peak_rss, time_calls


class Base:
    def work(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    def recurse(self, n: int) -> int:
        time.sleep(0.01)
        return 0 if n == 0 else 1 + self.recurse(n - 1)


class Child(Base):
    pass


def test_class_timer_counts_calls_and_restores_inherited_method() -> None:
    with time_calls(Child, "work") as timer:
        assert Child().work(0.02) == "done"
        Child().work(0.0)
        Base().work(0.02)  # other classes are not timed
    assert timer.calls == 2
    assert 0.02 <= timer.seconds < 0.5
    assert "work" not in Child.__dict__ and Child.work is Base.work


def test_recursive_calls_are_counted_once() -> None:
    with time_calls(Base, "recurse") as timer:
        start = time.perf_counter()
        assert Base().recurse(3) == 3
        wall = time.perf_counter() - start
    assert timer.calls == 1
    assert timer.seconds <= wall
    assert timer.fraction_of(wall) <= 1.0 and timer.fraction_of(0.0) == 0.0


def test_instance_timer_times_only_that_instance() -> None:
    a, b = Base(), Base()
    with time_calls(a, "work") as timer:
        a.work(0.0)
        b.work(0.0)
    assert timer.calls == 1
    assert "work" not in a.__dict__


def test_timer_restores_after_an_exception() -> None:
    with pytest.raises(ZeroDivisionError), time_calls(Base, "work"):
        raise ZeroDivisionError
    assert Base.__dict__["work"].__name__ == "work" and not hasattr(Base.__dict__["work"], "__wrapped__")


def test_not_callable_names_the_fix() -> None:
    with pytest.raises(TimingError, match="time_calls"), time_calls(Base, "missing"):
        pass


def test_parameter_bytes_counts_tied_storage_once() -> None:
    import torch

    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    assert parameter_bytes(model) == 10 * 4 * 4


def test_peak_rss_is_positive_and_resettable_on_linux() -> None:
    assert peak_rss_bytes() > 0
    if reset_peak_rss():
        assert peak_rss_bytes() > 0


def test_dunder_on_an_instance_names_the_fix() -> None:
    with pytest.raises(TimingError, match="on the class"), time_calls(Base(), "__repr__"):
        pass
