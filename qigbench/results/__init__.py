"""Results store: the one SQLite file that suites write and reports / regression checks read.

Schema (v3; full table in ``qigbench/results/SCHEMA.md``, SQL in :mod:`qigbench.results.schema`):

* ``results`` -- one row per measured number: ``run_id, model, method, format, config_hash,
  seed, task, metric, value, calib_seconds, peak_memory_bytes, device, git_commit,
  versions_json, config_json, timestamp, examples_json`` (per-example scores, v2); unique on
  ``(model, method, format, config_hash, seed, task, metric)``.
* ``configs_done`` -- finished configurations ``(model, method, format, config_hash, seed)``
  with the ``(task, metric)`` rows they had when marked (v3), so an interrupted suite skips what it
  already did while those rows are all there.
* ``runs`` -- one row per suite invocation: ``run_id, started_at, git_commit, versions_json,
  device, note``.
* ``meta`` -- ``schema_version``.

Typical use from a suite::

    store = ResultsStore("results.db")
    run = store.start_run(device="cuda:0")
    key = ConfigKey("qwen2vl", "qig", "W3A16", config_hash(method_cfg, calib_cfg), seed=0)
    if not store.has_config(key):
        rows = [run.row(**vars(key), task=t, metric="accuracy", value=v, calib_seconds=s) for t, v in ...]
        store.record(rows, done=key)
"""

from __future__ import annotations

from qigbench.results.environment import environment_info
from qigbench.results.errors import ResultsError
from qigbench.results.metrics import MetricInfo, MetricKind, is_known_metric, metric_info, register_metric
from qigbench.results.row import ConfigKey, ResultRow, config_hash
from qigbench.results.store import ResultsStore, Run

__all__ = [
    "ConfigKey",
    "MetricInfo",
    "MetricKind",
    "ResultRow",
    "ResultsError",
    "ResultsStore",
    "Run",
    "config_hash",
    "environment_info",
    "is_known_metric",
    "metric_info",
    "register_metric",
]
