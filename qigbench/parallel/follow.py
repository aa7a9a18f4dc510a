"""Leader and followers: one command driven by rank 0, with the other ranks joining its calibrations.

Under ``torchrun`` a command such as ``qigbench quantize`` or ``qigbench run`` runs on rank 0 only
(the *leader*: it loads, evaluates, writes the record, the db and the saved model). The other
ranks are *followers*: they wait for requests, and each request is one calibration they take
part in (``("quantize", QuantizeRequest)``). The leader announces a calibration just before it
starts it, so every rank enters the engine with the same request and calibrates its own share
of the samples. At the end the leader releases the followers (they exit 0).

The requests travel on a gloo group of their own whose timeout is days, not minutes: a follower
may wait while the leader evaluates for hours. If the leader dies, its connection closes and the
followers fail at once.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping
from typing import Any

from qigbench.parallel.collectives import CollectiveError, broadcast_object
from qigbench.parallel.state import control_group, world

log = logging.getLogger(__name__)

STOP = "stop"
_leading = {"on": False}


def leading() -> bool:
    """Whether this process is a leader whose followers wait for its announcements."""
    return _leading["on"] and world().size > 1 and world().is_main


def lead() -> None:
    """Rank 0 of a torchrun command: from now on :func:`announce` reaches the followers."""
    if world().size > 1 and world().is_main:
        _leading["on"] = True


def announce(kind: str, payload: Any) -> None:
    """Tell the followers to run ``kind`` with ``payload`` now (nothing unless :func:`leading`)."""
    if leading():
        broadcast_object((kind, payload), src=0, group=control_group())


def release() -> None:
    """The leader is done: the followers return from :func:`follow` (never raises)."""
    if not leading():
        return
    _leading["on"] = False
    try:
        broadcast_object((STOP, None), src=0, group=control_group())
    except CollectiveError as err:  # a follower already died; torchrun reports it
        log.warning("could not release the other ranks: %s", err)


def follow(handlers: Mapping[str, Callable[[Any], Any]]) -> int:
    """A follower's loop: run each announced request with its handler until the leader releases
    us. A handler that raises is logged and the loop goes on (the leader got the same error and
    decides what happens next), except for a failed collective: the group is gone, so we stop."""
    w = world()
    while True:
        kind, payload = broadcast_object(("", None), src=0, group=control_group())
        if kind == STOP:
            return 0
        handler = handlers.get(str(kind))
        if handler is None:
            raise CollectiveError(f"rank {w.rank}: the leader asked for {kind!r}, which this rank cannot run")
        try:
            handler(payload)
        except CollectiveError:
            raise
        except Exception as err:  # the leader's own copy of this request raised too
            log.warning("rank %d: %s request failed: %s", w.rank, kind, err)
        gc.collect()
