"""Sharing out sample-independent work (GPTQ's per-linear solves) over the ranks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qigbench.bases.gptq_family import solve_cost
from qigbench.parallel import share_out


def test_one_rank_owns_everything() -> None:
    assert share_out([3.0, 1.0, 2.0], 1) == [0, 0, 0]
    assert share_out([], 2) == []


def test_longest_first_to_the_least_loaded() -> None:
    # q (the widest output) and k, v of a GQA attention: q alone, k and v together
    assert share_out([3.0, 2.1, 2.1], 2) == [0, 1, 1]
    # gate and up (the same shape) go to different ranks; ties go to the lower rank
    assert share_out([5.0, 5.0], 2) == [0, 1]
    assert share_out([1.0], 2) == [0]


@given(st.lists(st.floats(0.0, 1e6), max_size=12), st.integers(1, 5))
def test_the_plan_is_a_deterministic_partition_no_worse_than_longest_item_plus_mean(
    costs: list[float], ranks: int
) -> None:
    plan = share_out(costs, ranks)
    assert plan == share_out(list(costs), ranks)  # every rank computes the same plan
    assert len(plan) == len(costs) and all(0 <= r < ranks for r in plan)
    load = [sum(c for c, r in zip(costs, plan, strict=True) if r == k) for k in range(ranks)]
    # the greedy bound: the busiest rank carries at most the mean load plus one item
    assert max(load, default=0.0) <= sum(costs) / ranks + max(costs, default=0.0) + 1e-6


def test_solve_cost_grows_with_the_input_width() -> None:
    import torch

    wide_in, wide_out = torch.nn.Linear(4736, 896), torch.nn.Linear(896, 4736)
    assert solve_cost(wide_in) > solve_cost(wide_out)  # down_proj's 4736-column Hessian dominates
