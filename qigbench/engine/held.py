"""How many bytes of calibration activations a block's work holds: a measurement, not an estimate.

The engine keeps, per block, the streams entering it (fp and, when kept, quantized), the
streams it produces (the fp target and the quantized output), the recorded calls of the block
(attention masks, position embeddings per batch) and the recorded inputs of the groups and
linears a method asks for. Every one of them is ``[samples, T, .]`` over the samples this
process holds, so data parallelism divides them by the number of ranks; what it cannot divide
(weights, Hessians, a solver's temporaries, a chunk bounded by ``--memory-budget``) is not
counted here. :func:`held_bytes` adds the bytes of the distinct storages behind the tensors it
is given (a recorded input shared by q/k/v, or a view of a stream, counts once).
"""

from __future__ import annotations

from typing import Any

import torch

from qigbench.engine.replay import Call, map_tensors

#: the block stat the engine records (the peak over the block's work, this process's samples)
STAT = "activation_bytes"


def _unpack_calls(obj: Any) -> Any:
    """``obj`` with every recorded :class:`Call` replaced by its ``(args, kwargs)``."""
    if isinstance(obj, Call):
        return (obj.args, obj.kwargs)
    if isinstance(obj, (tuple, list)):
        return [_unpack_calls(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _unpack_calls(v) for k, v in obj.items()}
    return obj


def held_bytes(*objs: Any) -> int:
    """Bytes of the distinct storages of every tensor inside ``objs`` (nested lists, dicts, Calls)."""
    seen: dict[tuple[str, int], int] = {}

    def count(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        seen[key] = max(seen.get(key, 0), storage.nbytes())
        return t

    map_tensors(_unpack_calls(objs), count)
    return sum(seen.values())
