"""Q-VLM's range calibration: the gate decides which prompts widen a range, the clip search picks
the ratio that reconstructs best, and the paper-mode partition cuts where dependency is weak."""

from __future__ import annotations

import torch

from qigbench.solvers.activation_ranges import EntropyGatedRanges, clip_search_ratio, partition_linears


def test_closed_gate_freezes_the_range_and_forced_blocks_widen_it() -> None:
    state = EntropyGatedRanges(bits=4, norm="l1", threshold=1e9, force_every=3)  # gate never opens by score
    mask = torch.ones(1, 4, dtype=torch.bool)
    small, big = torch.ones(1, 4, 2), torch.full((1, 4, 2), 10.0)
    for x in (small, big):  # two prompts through blocks 0 and 1 (one linear each)
        state.observe(0, "q", x, mask, first_linear=True, entropy_role=True)
        state.observe(1, "q", x, mask, first_linear=False, entropy_role=True)
    assert state.ranges[(0, "q")][1].tolist() == [10.0, 10.0]  # block 0: forced (j mod 3 == 1)
    assert state.ranges[(1, "q")][1].tolist() == [1.0, 1.0]  # block 1: first call only
    assert state.updates == {(0, "q"): 2, (1, "q"): 1}


def test_clip_search_prefers_a_tighter_range_when_outliers_stretch_it() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 3, generator=g) * 0.1
    lo, hi = torch.full((3,), -10.0), torch.full((3,), 10.0)  # range 100x wider than the data
    assert clip_search_ratio(x, lo, hi, bits=4) == 0.4  # the tightest ratio of the grid
    u = torch.rand(1, 512, 3, generator=g) * 2 - 1  # data filling its range: little to clip
    assert clip_search_ratio(u, -torch.ones(3), torch.ones(3), bits=4) >= 0.8


def test_partition_cuts_below_threshold_at_max_length_and_when_forced() -> None:
    scores = [5.0, 5.0, 1.0, 5.0, 5.0, 5.0, 5.0]
    ids, open_len, continued = partition_linears(scores, [False] * 7, threshold=3.0, max_len=3)
    # first linear opens; 3rd joins (prev 5 >= 3); 4th cut (prev 1 < 3); 7th cut (length 3)
    assert ids == [0, 0, 0, 1, 1, 1, 2] and open_len == 1 and not continued
    ids, _, continued = partition_linears([5.0, 5.0], [False, False], 3.0, 7, open_len=2, previous_score=4.0)
    assert ids == [0, 0] and continued  # the previous block's open segment goes on
    ids, _, continued = partition_linears([5.0, 5.0], [True, False], 3.0, 7, open_len=2, previous_score=4.0)
    assert ids == [0, 0] and not continued  # a forced cut starts afresh
