"""Can a model load *now*? Answered from the local disk alone, and at most once per model.

Without this check, a hub checkpoint that is not in the Hugging Face cache fails inside
``from_pretrained`` — offline at once, online only after the hub client's retries (~24 s) — and a
suite asks again for every one of its configurations. :func:`availability` looks at the local
folder or the HF cache (``huggingface_hub.try_to_load_from_cache``, no network) and, for a hub
checkpoint that is not cached while no offline variable is set, asks :mod:`qigbench.models.hub`
once per process whether the hub answers at all (an air-gapped node: offline from then on); it
returns a message naming the fixes; :func:`record_failure` remembers a load that failed for a reason the
disk could not predict (online, hub unreachable), so the next request fails at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qigbench.models.aliases import ALIASES, ResolvedSource, SourceKind, resolve_source
from qigbench.models.errors import ModelUnavailableError, UnknownModelError
from qigbench.models.hub import hub_offline, hub_status, unreachable_reason

__all__ = [
    "WEIGHT_FILES", "Availability", "availability", "fixes", "forget_failures", "hub_offline", "missing_weights",
    "record_failure", "require_available",
]

#: Weight files ``from_pretrained`` reads, in its order of preference (index files name shards).
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
_FAILED: dict[str, str] = {}  # location -> message of a load that failed in this process


@dataclass(frozen=True)
class Availability:
    model: str
    available: bool
    reason: str = ""  # why not, with the fixes; empty when available
    download: bool = False  # not on disk but the hub is allowed: from_pretrained will download it


def fixes(model: str, hub_id: str | None, family: str | None) -> str:
    """The three ways out, for the message of an unavailable model."""
    same = next((a.name for a in ALIASES if a.kind is SourceKind.TINY and a.family == family), None)
    tiny = f"tiny model of the same architecture: --model {same}" if same else "tiny model: --model tiny-qwen2vl"
    download = (
        f"(1) pre-download it into the Hugging Face cache: on a machine with internet run "
        f"`hf download {hub_id}` (or `huggingface-cli download {hub_id}`) and copy the cache (HF_HOME, "
        f"default ~/.cache/huggingface) here; "
        if hub_id
        else "(1) download the checkpoint on a machine with internet; "
    )
    return (
        f"Fix it one of three ways: {download}(2) pass a local checkpoint folder instead: --model /path/to/"
        f"{(hub_id or model).split('/')[-1]} (a folder with config.json and the weights); or (3) use an offline "
        f"{tiny} (see `qigbench models`)."
    )


def _cached_weights(hub_id: str, cache_dir: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(hub_id, "config.json", cache_dir=cache_dir)
    if not isinstance(config, str):
        return False
    snapshot = Path(config).parent
    return _has_weights(snapshot)


def _has_weights(folder: Path) -> bool:
    return missing_weights(folder) is None


def missing_weights(folder: Path) -> str | None:
    """What ``from_pretrained`` would not find in ``folder``: ``None`` when its weights are complete,
    else a phrase naming the missing file(s) (no weight file at all, or an index's missing shards)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return None
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (ValueError, KeyError, OSError, TypeError, AttributeError):
            return f"{name} is not a readable weight index (JSON with a weight_map)"
        absent = [shard for shard in shards if not (folder / shard).is_file()]
        if not absent:
            return None
        shown = ", ".join(absent[:4]) + (f" and {len(absent) - 4} more" if len(absent) > 4 else "")
        return f"{len(absent)} of the {len(shards)} shards that {name} lists are missing ({shown})"
    return f"no weight file ({', '.join(WEIGHT_FILES)})"


def _local_problem(folder: Path) -> str | None:
    """Why a local folder is not a loadable checkpoint, naming the folder, what is missing and the fix."""
    if not folder.is_dir():
        return None  # resolve_source only hands over existing folders
    if not (folder / "config.json").is_file():
        return (
            f"model folder {folder} has no config.json, so it is not a Hugging Face checkpoint; pass the folder "
            "that holds config.json and the weights, or an alias (see `qigbench models`)"
        )
    missing = missing_weights(folder)
    if missing is None:
        return None
    present = sorted(p.name for p in folder.iterdir())
    listing = ", ".join(present[:8]) + (f" and {len(present) - 8} more" if len(present) > 8 else "")
    return (
        f"model folder {folder} has config.json but not its weights: {missing}; it holds {listing}. Copy the "
        "checkpoint's *.safetensors files (and model.safetensors.index.json when it is sharded) next to config.json "
        "(an interrupted download or copy leaves them out; `hf download REPO --local-dir DIR` completes one), "
        "or pass another folder or an alias (see `qigbench models`)"
    )


def availability(
    model: str | Path, *, cache_dir: str | Path | None = None, hf_cache_dir: str | None = None
) -> Availability:
    """Whether ``model`` (alias, folder or hub id) can be loaded now, looking only at the disk."""
    name = str(model)
    try:
        resolved = resolve_source(name, cache_dir=cache_dir, build=False)
    except UnknownModelError as err:
        return Availability(name, False, str(err))
    return _check(name, resolved, hf_cache_dir)


def _check(name: str, resolved: ResolvedSource, hf_cache_dir: str | None) -> Availability:
    if resolved.location in _FAILED:
        return Availability(name, False, _FAILED[resolved.location])
    family = resolved.alias.family if resolved.alias else None
    if resolved.kind is SourceKind.LOCAL:
        problem = _local_problem(Path(resolved.location))
        return Availability(name, problem is None, problem or "")
    if resolved.kind is not SourceKind.HF:
        return Availability(name, True)  # tiny / package models are built offline on first use
    hub_id = resolved.location
    if _cached_weights(hub_id, hf_cache_dir):
        return Availability(name, True)
    status = hub_status()  # None: switched off already; else probed once per process (short timeout)
    if status is None or not status.reachable:
        why = unreachable_reason() or "the hub is offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set)"
        return Availability(
            name, False, f"model {name} ({hub_id}) is not in the Hugging Face cache and {why}. "
            + fixes(name, hub_id, family),
        )
    return Availability(name, True, download=True)


def require_available(resolved: ResolvedSource, name: str) -> None:
    """Raise :class:`ModelUnavailableError` now rather than from inside ``from_pretrained``."""
    found = _check(name, resolved, None)
    if not found.available:
        raise ModelUnavailableError(found.reason)


def record_failure(resolved: ResolvedSource, name: str, err: BaseException) -> ModelUnavailableError:
    """Remember that ``resolved`` failed to load (e.g. hub unreachable) and return the error to raise;
    later :func:`availability` / :func:`require_available` calls answer from memory."""
    family = resolved.alias.family if resolved.alias else None
    hub_id = resolved.location if resolved.kind is SourceKind.HF else None
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    message = f"model {name} ({resolved.location}) could not be loaded: {first[:300]}. " + fixes(name, hub_id, family)
    _FAILED[resolved.location] = message
    return ModelUnavailableError(message)


def forget_failures() -> None:
    """Clear the remembered failures (tests; a long-lived process after fixing the network)."""
    _FAILED.clear()
