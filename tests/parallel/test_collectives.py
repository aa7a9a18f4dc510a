"""qigbench.parallel on its own: no-ops in one process, shards, order-free sums, and the
collectives on 2 real gloo processes (spawned here, no torchrun)."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qigbench import parallel
from qigbench.parallel import ParallelError, World, batch_spans, float64_total, shard_batches


def test_collectives_return_their_input_in_one_process() -> None:
    t = torch.randn(5)
    assert parallel.world().size == 1 and not parallel.active()
    assert parallel.all_reduce_sum(t) is t and parallel.all_reduce_max(t) is t and parallel.all_reduce_min(t) is t
    assert parallel.all_gather_rows(t) is t
    assert parallel.sum_floats(1.5, 2.0) == (1.5, 2.0) and parallel.total(7) == 7
    assert parallel.gather_objects("x") == ["x"] and parallel.gather_to_main("x") == ["x"]
    rows = torch.randn(6, 3)
    assert torch.equal(parallel.column_mean(rows), rows.mean(dim=0))
    parallel.check_same([t], "anything")  # nothing to compare with
    parallel.barrier()
    with parallel.main_first():
        pass


def test_shards_are_contiguous_whole_batches_covering_every_sample() -> None:
    sizes = [2, 2, 1, 3, 2]
    shards = [shard_batches(sizes, World(rank=r, size=3)) for r in range(3)]
    assert [(s.first_batch, s.last_batch) for s in shards] == [(0, 1), (1, 3), (3, 5)]
    assert [(s.start, s.stop) for s in shards] == [(0, 2), (2, 5), (5, 10)]
    assert all(s.total == 10 for s in shards)
    whole = shard_batches(sizes)
    assert whole.whole and (whole.start, whole.stop, whole.last_batch) == (0, 10, 5)
    t = torch.arange(10)
    assert whole.rows(t) is t and torch.equal(shards[1].rows(t), torch.arange(2, 5))
    with pytest.raises(ParallelError, match="lower --batch-size"):
        shard_batches([4, 4], World(rank=0, size=3))


def test_batch_spans_cut_a_row_range_at_the_recorded_batches() -> None:
    assert list(batch_spans([2, 3, 1], 0, 6)) == [(0, 2), (2, 5), (5, 6)]
    assert list(batch_spans([2, 3, 1], 1, 4)) == [(1, 2), (2, 4)]
    assert list(batch_spans(None, 3, 7)) == [(3, 7)]


@given(st.lists(st.tuples(st.floats(1e-3, 1e3), st.booleans()), min_size=1, max_size=64), st.randoms())
def test_float64_sums_of_float32_terms_do_not_depend_on_the_order(terms: list, rng: random.Random) -> None:
    """The property the data-parallel equality rests on: float32 terms within 2^29 of each other
    add exactly in float64, so any order (of batches, of ranks) gives the same bits."""
    values = [torch.tensor(v if positive else -v, dtype=torch.float32) for v, positive in terms]
    shuffled = values[:]
    rng.shuffle(shuffled)
    split = rng.randrange(len(values) + 1)  # two "ranks", each summing its part, then one addition
    two_ranks = float64_total(shuffled[:split]) + float64_total(shuffled[split:])
    assert float64_total(values).item() == float64_total(shuffled).item() == two_ranks.item()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_rank_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), QIGBENCH_COLLECTIVE_TIMEOUT="60")
    torch.set_num_threads(1)
    from qigbench import parallel

    world = parallel.init_from_env("cpu")
    found: dict[str, object] = {"rank": world.rank, "backend": world.backend}
    found["sum"] = parallel.all_reduce_sum(torch.tensor([1.0, 2.0]) * (rank + 1)).tolist()
    found["max"] = parallel.all_reduce_max(torch.tensor([float(rank), -1.0])).tolist()
    found["rows"] = parallel.all_gather_rows(torch.full((rank + 1, 2), float(rank))).tolist()  # uneven
    found["total"] = parallel.total(rank + 3)
    found["mean"] = parallel.column_mean(torch.full((rank + 1, 1), float(rank))).tolist()
    with parallel.replicated():
        found["replicated"] = parallel.all_reduce_sum(torch.tensor([5.0])).tolist()  # not reduced
    found["main"] = parallel.gather_to_main(rank * 10)
    parallel.check_same([torch.ones(3)], "the same tensor")
    try:
        parallel.check_same([torch.ones(3) * rank], "block 0's weights")
    except parallel.CollectiveError as err:
        found["differ"] = str(err)
    parallel.shutdown()
    torch.save(found, Path(out) / f"rank{rank}.pt")


def test_collectives_on_two_gloo_processes(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.start_processes(_two_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for found in (r0, r1):
        assert found["backend"] == "gloo"
        assert found["sum"] == [3.0, 6.0] and found["max"] == [1.0, -1.0] and found["total"] == 7
        assert found["rows"] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
        assert found["mean"] == [pytest.approx(2 / 3)]
        assert found["replicated"] == [5.0]
        assert "ranks [1] differ from rank 0" in found["differ"] and "block 0's weights" in found["differ"]
    assert r0["main"] == [0, 10] and r1["main"] is None
