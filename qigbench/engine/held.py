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

from collections.abc import Iterable
from typing import Any

import torch

#: the block stat the engine records (the peak over the block's work, this process's samples)
STAT = "activation_bytes"


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)
    elif hasattr(obj, "args") and hasattr(obj, "kwargs"):  # a recorded Call
        yield from _tensors(obj.args)
        yield from _tensors(obj.kwargs)


def held_bytes(*objs: Any) -> int:
    """Bytes of the distinct storages of every tensor inside ``objs`` (nested lists, dicts, Calls)."""
    seen: dict[tuple[str, int], int] = {}
    for t in _tensors(objs):
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        seen[key] = max(seen.get(key, 0), storage.nbytes())
    return sum(seen.values())
