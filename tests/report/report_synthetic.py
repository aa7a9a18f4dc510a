"""A small synthetic results database with the shape the suites write (deterministic numbers)."""

from __future__ import annotations

from pathlib import Path

from qigbench.results import ResultRow, ResultsStore, config_hash

TASKS = ("chartqa", "vizwiz", "mmmu")
METHODS = {"W3A16": ("rtn", "awq", "mbq", "qig"), "W4A8": ("rtn", "sq", "mbq", "qig")}
QUALITY = {"rtn": 0.0, "awq": 0.01, "sq": -0.01, "mbq": 0.02, "qig": 0.03}
SECONDS = {"rtn": 2.0, "awq": 20.0, "sq": 5.0, "mbq": 40.0, "qig": 42.0}
ENV = {"git_commit": "0123abcd", "device": "cpu", "versions": {"torch": "2.14.1", "qigbench": "0.1.0"}}


def synthetic_rows(models: tuple[str, ...], seeds: tuple[int, ...] = (0, 1), run_id: str = "") -> list[ResultRow]:
    rows = []
    for mi, model in enumerate(models):
        fp_hash = config_hash({})
        for seed in seeds:
            for ti, task in enumerate(TASKS):
                rows.append(
                    ResultRow(
                        model=model,
                        method="fp16",
                        format="FP16",
                        config_hash=fp_hash,
                        seed=seed,
                        task=task,
                        metric="accuracy",
                        value=0.70 + 0.01 * ti - 0.01 * mi,
                        run_id=run_id,
                    )
                )
        for fmt, methods in METHODS.items():
            drop = 0.08 if fmt == "W3A16" else 0.06
            for method in methods:
                chash = config_hash({"method": method, "fmt": fmt}, {"samples": 8})
                for seed in seeds:
                    common = dict(
                        model=model,
                        method=method,
                        format=fmt,
                        config_hash=chash,
                        seed=seed,
                        run_id=run_id,
                        calib_seconds=SECONDS[method] + seed,
                        peak_memory_bytes=(1 + mi) * 2**28,
                    )
                    for ti, task in enumerate(TASKS):
                        acc = 0.70 + 0.01 * ti - 0.01 * mi - drop + QUALITY[method] + 0.002 * seed
                        rows.append(ResultRow(**common, task=task, metric="accuracy", value=acc))  # type: ignore[arg-type]
                    kl = 0.05 - QUALITY[method]
                    rows.append(ResultRow(**common, task="calib", metric="kl", value=kl))  # type: ignore[arg-type]
                    rows.append(ResultRow(**common, task="calib", metric="flip_rate", value=kl * 2))  # type: ignore[arg-type]
    return rows


def make_db(path: Path, models: tuple[str, ...] = ("tiny-qwen2vl", "qwen2vl")) -> Path:
    store = ResultsStore(path)
    run = store.start_run(env=ENV, note="synthetic")
    store.record(synthetic_rows(models, run_id=run.run_id))
    store.close()
    return path
