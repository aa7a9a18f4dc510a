"""``SuiteSession``: quantize each configuration once, evaluate its tasks, write the results store.

Why one object per test session:

* quantized models are cached in process by configuration hash (a small LRU), so the tasks of one
  configuration share one calibration (the suites order items configuration-major);
* the fp model of each model is loaded once: it is the FP16 row and the fidelity reference;
* with ``on_conflict="skip"`` a (configuration, task) already in the store is skipped before
  anything is loaded, so an interrupted suite re-run only does what is missing; a configuration
  is marked done once every task the matrix asked of it has rows.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qigbench.cache import atomic_build, cache_root
from qigbench.errors import QigbenchError
from qigbench.matrix.cases import Case
from qigbench.matrix.evaluate import TaskMetrics, evaluate_task
from qigbench.matrix.options import FIDELITY_TASK, SuiteOptions
from qigbench.models.loading import LoadedModel, load_model
from qigbench.pipeline import QuantizeRequest, QuantizeResult, quantize
from qigbench.results import ResultRow, ResultsStore, Run
from qigbench.results.store import claim_owner

log = logging.getLogger(__name__)


@dataclass
class Counters:
    calibrations: int = 0
    evaluations: int = 0
    skipped: int = 0
    configs_done: int = 0


class ConfigClaimed(QigbenchError, RuntimeError):
    """Another process on the same db is calibrating (or has finished) this configuration."""

    def __init__(self, case: Case, owner: str) -> None:
        self.case, self.owner = case, owner
        what = "finished by another process" if owner == "done" else f"being calibrated by {owner}"
        super().__init__(f"{case.ident()} is {what}; its rows go to that run (nothing to do here)")


class SuiteSession:
    """Shared state of one suite run (see the module docstring)."""

    def __init__(self, options: SuiteOptions, note: str = "") -> None:
        self.options = options
        self.note = note
        self._store: ResultsStore | None = None
        self.counters = Counters()
        self._run: Run | None = None
        self.owner = claim_owner()
        self._claimed: set[str] = set()
        self._fp: dict[str, LoadedModel] = {}
        self._quantized: OrderedDict[str, QuantizeResult] = OrderedDict()
        self._expected: dict[tuple[Any, ...], set[str]] = {}
        self._pack: Path | None = None
        self._pack_dir: tempfile.TemporaryDirectory[str] | None = None
        self.heatmaps: list[Path] = []

    # -- bookkeeping --------------------------------------------------------------------------
    @property
    def store(self) -> ResultsStore:
        """Opened on first use: a job worker (:mod:`qigbench.distributed`) measures without a db."""
        if self._store is None:
            self._store = ResultsStore(self.options.db)
        return self._store

    @property
    def run(self) -> Run:
        if self._run is None:  # registered on first use: a fully skipped re-run adds no empty run
            self._run = self.store.start_run(device=self.options.device, note=self.note)
        return self._run

    def expect(self, case: Case, tasks: tuple[str, ...] | list[str]) -> None:
        """Declare the tasks the matrix measures on ``case`` (when all have rows it is marked done)."""
        self._expected.setdefault(tuple(vars(case.key()).values()), set()).update(tasks)

    def is_done(self, case: Case, task: str) -> bool:
        if self.options.on_conflict == "replace":
            return False
        key = case.key()
        if self.store.has_config(key):
            return True
        return bool(self.store.rows(**vars(key), task=task))

    def is_cached(self, case: Case) -> bool:
        return _cache_key(case) in self._quantized

    def claimed_elsewhere(self, case: Case) -> str | None:
        """Claim ``case`` in the store before calibrating it; the other owner when one holds it.

        Two suite processes on one db (two terminals, or pytest-xdist workers that were handed the
        same configuration) would otherwise both calibrate it and credit its rows to two run ids.
        ``"done"`` means another process finished it meanwhile."""
        key = _cache_key(case)
        if key in self._claimed:
            return None
        held = self.store.claim_config(
            case.key(), self.run.run_id, self.owner, ignore_done=self.options.on_conflict == "replace"
        )
        if held is None:
            self._claimed.add(key)
        return held

    def close(self) -> None:
        if self._store is not None:
            if self._claimed:
                self._store.release_claims(self.owner)
            self._store.close()
        self._claimed.clear()
        self._quantized.clear()
        self._fp.clear()
        if self._pack_dir is not None:
            self._pack_dir.cleanup()
            self._pack, self._pack_dir = None, None

    # -- models -------------------------------------------------------------------------------
    def fp_model(self, model: str) -> LoadedModel:
        if model not in self._fp:
            loaded = load_model(
                model, dtype=self._dtype(), device=self.options.device, cache_dir=self.options.cache_dir
            )
            loaded.model.eval()
            self._fp[model] = loaded
        return self._fp[model]

    def _dtype(self) -> torch.dtype:
        return torch.bfloat16 if torch.device(self.options.device).type == "cuda" else torch.float32

    def request(self, case: Case) -> QuantizeRequest:
        calib = self._ocr_set(case.samples, case.seed) if case.calib == "ocr" else None
        return QuantizeRequest(
            model=case.model,
            method=case.method,
            format=case.format,
            options=case.all_options,
            calib=calib,
            calib_name=case.calib,  # the identity names the set as the case does ("default", "ocr")
            samples=case.samples,
            seed=case.seed,
            batch_size=self.options.batch_size,
            device=self.options.device,
            cache_dir=self.options.cache_dir,
            progress=False,
            memory_budget=self.options.memory_budget,
        )

    def _ocr_set(self, n: int, seed: int) -> str:
        """The OCR calibration set (Table A3), built once per size into the cache."""
        from qigbench.data.synthetic import write_caption_set

        target = cache_root(self.options.cache_dir) / "calibration" / f"synthetic-ocr-n{n}-seed{seed}-64px"
        atomic_build(target, lambda tmp: write_caption_set(tmp, n, seed, kind="ocr"))
        return str(target / "ocr.json")

    def quantized(self, case: Case, timer: Any = None) -> QuantizeResult:
        """The quantized model of ``case`` (cached); ``timer`` is a pytest-benchmark fixture to time it."""
        key = _cache_key(case)
        if key in self._quantized:
            self._quantized.move_to_end(key)
            return self._quantized[key]
        while len(self._quantized) >= max(1, self.options.keep_models):
            self._quantized.popitem(last=False)  # free memory before calibrating the next one
        request = self.request(case)
        if timer is not None:
            result = timer.pedantic(quantize, args=(request,), rounds=1, iterations=1)
        else:
            result = quantize(request)
        self.counters.calibrations += 1
        result.loaded.model.to(self.options.device).eval()
        self._quantized[key] = result
        if self.options.heatmaps and result.report.token_weights:
            self._heatmap(case, result)
        return result

    def _heatmap(self, case: Case, result: QuantizeResult) -> None:
        from qigbench.pipeline import write_heatmap

        folder = self.options.heatmap_dir or Path(self.options.db).resolve().parent / "heatmaps"
        try:
            path = write_heatmap(
                result,
                folder / f"{case.ident()}.png",
                title=f"{case.model} {case.stored_method} {case.format}: token sensitivity",
            )
        except Exception as err:  # a figure must never fail a measurement
            log.warning("heatmap for %s not written: %s", case.ident(), err)
            return
        if path is not None:
            self.heatmaps.append(path)

    # -- measuring ----------------------------------------------------------------------------
    def task_pack(self) -> Path:
        if self._pack is None:
            from qigbench.eval.tasks import write_task_pack

            # per session: the task YAMLs hold absolute data paths, so the pack cannot be moved into place
            n = max(32, self.options.limit or 0)
            self._pack_dir = tempfile.TemporaryDirectory(prefix="qigbench-pack-")
            self._pack = write_task_pack(self._pack_dir.name, seed=0, n=n)
        return self._pack

    def measure(self, case: Case, task: str, timer: Any = None) -> TaskMetrics:
        """Quantize (or reuse) ``case``, evaluate ``task`` on it and record the numbers.

        Raises :class:`ConfigClaimed` when another process holds the configuration's claim."""
        if not self.is_cached(case):
            held = self.claimed_elsewhere(case)
            if held is not None:
                raise ConfigClaimed(case, held)
        metrics, result = self.evaluate(case, task, timer)
        self.record(case, task, metrics, result)
        return metrics

    def evaluate(self, case: Case, task: str, timer: Any = None) -> tuple[TaskMetrics, QuantizeResult | None]:
        """Quantize (or reuse) ``case`` and evaluate ``task`` on it, writing nothing."""
        fp = self.fp_model(case.model)
        result = None if case.is_fp else self.quantized(case, timer)
        model = fp if result is None else result.loaded
        metrics = evaluate_task(
            task, model, fp, result, self.options, self.task_pack, rng=random.Random(f"held-out:{case.seed}")
        )
        self.counters.evaluations += 1
        return metrics, result

    def rows(
        self, case: Case, task: str, metrics: TaskMetrics, result: QuantizeResult | None, run: Run | None = None
    ) -> list[ResultRow]:
        """The store rows of one measured task, stamped with ``run`` (default: this session's)."""
        stamp: dict[str, Any] = {
            "calib_seconds": None if result is None else result.report.seconds,
            "peak_memory_bytes": None if result is None else result.report.peak_memory_bytes,
            "config": {**case.fingerprint(), "seed": case.seed, "table": case.table, "calib": case.calib},
        }
        run = run or self.run
        return [
            run.row(
                **vars(case.key()), task=task, metric=metric, value=value, examples=metrics.examples.get(metric),
                **stamp,
            )
            for metric, value in metrics.values.items()
        ]

    def record(self, case: Case, task: str, metrics: TaskMetrics, result: QuantizeResult | None) -> int:
        key = case.key()
        rows = self.rows(case, task, metrics, result)
        written = self.store.record(rows, on_conflict=self.options.on_conflict)
        expected = self._expected.get(tuple(vars(key).values()), {task})
        have = {r.task for r in self.store.rows(**vars(key))}
        if expected <= have:
            self.store.mark_config_done(key, self.run.run_id)
            self.counters.configs_done += 1
        return written

    def summary(self) -> str:
        c = self.counters
        return (
            f"qigbench: {c.calibrations} calibrations, {c.evaluations} evaluations, {c.skipped} skipped "
            f"(already in {self.options.db}), {c.configs_done} configurations finished"
            + (f"; {len(self.heatmaps)} heatmaps in {self.heatmaps[0].parent}" if self.heatmaps else "")
        )


def _cache_key(case: Case) -> str:
    """Quantized models differ by configuration and calibration seed (the hash leaves the seed out)."""
    return f"{case.config_hash()}:s{case.seed}"


__all__ = ["FIDELITY_TASK", "ConfigClaimed", "Counters", "SuiteSession"]
