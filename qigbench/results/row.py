"""One measured number (:class:`ResultRow`), the configuration it belongs to (:class:`ConfigKey`),
and the stable hash that tells two configurations apart (:func:`config_hash`).

A *configuration* is everything that changes the quantized model: model, method, format, the
method's config and the calibration settings (hashed together), and the seed. Tasks and metrics
are measured *on* a configuration, so one configuration owns many rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

from qigbench.results.errors import ResultsError
from qigbench.stats.paired import ExampleScores

#: Columns of the unique key: re-recording a row with the same key replaces or skips it.
ROW_KEY: tuple[str, ...] = ("model", "method", "format", "config_hash", "seed", "task", "metric")
CONFIG_KEY: tuple[str, ...] = ("model", "method", "format", "config_hash", "seed")


def _canonical(obj: Any) -> Any:
    """Turn configs into plain JSON values so equal configs hash equally whatever their type."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return _canonical(obj.value)
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_canonical(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return repr(obj)  # JSON has no inf/nan; keep them distinct and stable
        return int(obj) if obj.is_integer() else obj  # 1.0 and 1 configure the same thing
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "model_dump"):  # pydantic models
        return _canonical(obj.model_dump())
    raise ResultsError(
        f"cannot hash a config value of type {type(obj).__name__} ({obj!r}); "
        "use dataclasses, dicts, lists and plain scalars in method/calibration configs"
    )


def config_hash(method_config: Any, calibration: Any = None, length: int = 16) -> str:
    """Stable hex hash of a method config plus calibration settings.

    Stable across processes, Python versions and key order (unlike ``hash()``), so an interrupted
    suite re-run on another machine recognises the configurations it already finished.
    """
    payload = {"method": _canonical(method_config), "calibration": _canonical(calibration)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ConfigKey:
    """One quantized configuration; the unit the suites skip when it is already done."""

    model: str
    method: str
    format: str
    config_hash: str
    seed: int = 0


@dataclass(frozen=True)
class ResultRow:
    """One metric value measured on one task for one configuration (see ``SCHEMA.md``)."""

    model: str
    method: str
    format: str
    config_hash: str
    task: str
    metric: str
    value: float
    seed: int = 0
    calib_seconds: float | None = None
    peak_memory_bytes: int | None = None
    device: str = ""
    run_id: str = ""
    git_commit: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=utc_now)
    #: per-example scores behind ``value`` (same seed), for intervals and paired tests; None if unknown
    examples: ExampleScores | None = None

    def __post_init__(self) -> None:
        for name in ROW_KEY:
            val = getattr(self, name)
            if name == "seed":
                if not isinstance(val, int) or isinstance(val, bool):
                    raise ResultsError(f"seed must be an int, got {val!r}")
            elif not isinstance(val, str) or not val:
                raise ResultsError(f"result row field {name!r} must be a non-empty string, got {val!r}")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) or math.isnan(self.value):
            raise ResultsError(
                f"value of {self.task}/{self.metric} must be a number, got {self.value!r}; "
                "do not record a metric that failed to compute"
            )
        if self.examples is not None and not isinstance(self.examples, ExampleScores):
            raise ResultsError(
                f"examples of {self.task}/{self.metric} must be qigbench.stats.ExampleScores, "
                f"got {type(self.examples).__name__}"
            )

    @property
    def config_key(self) -> ConfigKey:
        return ConfigKey(self.model, self.method, self.format, self.config_hash, self.seed)

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in ROW_KEY)
