"""Data-parallel calibration of one model: ranks, shards of the calibration set, collectives.

``torchrun --nproc-per-node N -m qigbench quantize ...`` runs one calibration on N processes
(one GPU each; gloo ranks on CPU). Each rank holds the whole model but only its contiguous share
of the calibration batches (:mod:`.shard`); it captures, propagates and searches on its own
samples, and the few statistics that sum over samples are reduced here (:mod:`.collectives`):
GPTQ's Hessian, the scale and clip searches' loss per candidate and their activation means, MBQ's
gradient sums, SmoothQuant's and Q-VLM's activation ranges, Q-VLM's entropies, TLQ's scores
(gathered: their selection ranks the whole pool), the engine's block error. Per-sample quantities
(every token-weight normalisation) stay local. Every rank then makes the same decision from the
same numbers, so the ranks' quantized blocks are identical (checked after every unit). Work that
depends on no sample (GPTQ's per-linear solves) is shared out instead (:mod:`.work`): one rank
computes each item and broadcasts it.

In one process (world size 1) every collective is a no-op returning its input. What makes N
ranks give the bits of one process is how the sums are taken (:mod:`.sums`): per recorded batch
in float32, across batches and ranks in float64, where adding float32 terms is exact and so does
not depend on the order. Rank 0 writes the record, the checkpoint and
the saved model (:mod:`.follow`: the other ranks follow its requests).
"""

from qigbench.parallel.collectives import (
    CollectiveError,
    all_gather_rows,
    all_ranks,
    all_reduce_max,
    all_reduce_min,
    all_reduce_sum,
    any_rank,
    barrier,
    broadcast_object,
    broadcast_tensor,
    check_same,
    column_mean,
    gather_objects,
    gather_to_main,
    main_first,
    sum_floats,
    tensor_digest,
    total,
)
from qigbench.parallel.follow import announce, follow, lead, leading, release
from qigbench.parallel.shard import Shard, shard_batches
from qigbench.parallel.state import (
    DEFAULT_TIMEOUT,
    TIMEOUT_ENV,
    ParallelError,
    World,
    active,
    init_from_env,
    launched_world_size,
    rank_device,
    replicated,
    shutdown,
    where,
    world,
)
from qigbench.parallel.sums import batch_spans, float64_total
from qigbench.parallel.work import share_out

__all__ = [
    "DEFAULT_TIMEOUT",
    "TIMEOUT_ENV",
    "CollectiveError",
    "ParallelError",
    "Shard",
    "World",
    "active",
    "all_gather_rows",
    "all_ranks",
    "all_reduce_max",
    "all_reduce_min",
    "all_reduce_sum",
    "announce",
    "any_rank",
    "barrier",
    "batch_spans",
    "broadcast_object",
    "broadcast_tensor",
    "check_same",
    "column_mean",
    "float64_total",
    "follow",
    "gather_objects",
    "gather_to_main",
    "init_from_env",
    "launched_world_size",
    "lead",
    "leading",
    "main_first",
    "rank_device",
    "release",
    "replicated",
    "shard_batches",
    "share_out",
    "shutdown",
    "sum_floats",
    "tensor_digest",
    "total",
    "where",
    "world",
]
