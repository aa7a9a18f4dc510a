"""pytest plugin for the benchmark suites in ``suites/`` (registered as the ``pytest11`` entry point).

``pytest suites/ --model qwen2vl --methods rtn,awq,mbq,qig --formats w3a16,w4a8`` runs the
paper's tables; each suite test is marked ``@pytest.mark.matrix(TABLE)``, and the builder
``qigbench.matrix.cases.TABLES[TABLE]`` turns the options into ``[(case, tasks)]``; this plugin
parametrizes the test over ``(case, task)`` pairs. Tests without that marker (everything in
``tests/``) are untouched: the options exist everywhere, but nothing loads until a suite asks for
the ``qig_suite`` fixture. After collection, every model and every task's data is looked up once
(:mod:`qigbench.matrix.preflight`, no network): items that cannot run here are skipped with a
one-line reason, and the fixes are printed once in the header and the summary.

Options (lists may be repeated or comma-separated): ``--model``, ``--methods``, ``--formats``,
``--tasks``, ``--lm-model``, ``--lm-tasks``, ``--limit``, ``--samples``, ``--seeds``, ``--db``,
``--device``, ``--on-conflict replace|skip`` (default skip: a re-run skips what is in the db),
``--cache-dir``.

``pytest suites/ -n N`` (pytest-xdist) runs the matrix on N workers, each pinned to its own GPU
(``CUDA_VISIBLE_DEVICES``) or to its share of the CPU threads; all items of one configuration go
to one worker (our scheduler, ``pytest_xdist_make_scheduler``), and configurations claimed in the store are never
calibrated twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from qigbench.errors import QigbenchError
from qigbench.matrix.cases import TABLES, Case, check_method_options, is_slow, item_id, items
from qigbench.matrix.options import SuiteOptions, build_options, pin_threads

_OPTIONS = pytest.StashKey[SuiteOptions]()
_SESSION = pytest.StashKey[Any]()
_EXPECTED = pytest.StashKey[list[tuple[Case, tuple[str, ...]]]]()
_PREFLIGHT = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qigbench", "qigbench benchmark suites (suites/)")
    group.addoption(
        "--model",
        action="append",
        dest="qig_models",
        metavar="ALIAS_OR_PATH",
        help="model alias or checkpoint folder (repeatable or comma list; default tiny-qwen2vl)",
    )
    group.addoption("--methods", dest="qig_methods", help="Table 2 methods, e.g. rtn,awq,mbq,qig (default)")
    group.addoption("--formats", dest="qig_formats", help="formats, e.g. w3a16,w4a8 (default)")
    group.addoption(
        "--tasks",
        dest="qig_tasks",
        help="VLM tasks: paper aliases or qig_* pack tasks; 'fidelity' = KL/flip rate only "
        "(default: the paper's on real models, the offline pack on tiny ones)",
    )
    group.addoption(
        "--lm-model",
        action="append",
        dest="qig_lm_models",
        help="language models for the LLaMA extension (default: LMs among --model, else "
        "tiny-llama for tiny runs, llama2 otherwise)",
    )
    group.addoption("--lm-tasks", dest="qig_lm_tasks", help="LLaMA extension tasks (default by tier)")
    group.addoption("--limit", dest="qig_limit", type=int, help="examples per task (default: all)")
    group.addoption(
        "--samples",
        dest="qig_samples",
        type=int,
        help="calibration samples (default 128, 16 on tiny models; Table A3 also runs twice this)",
    )
    group.addoption("--seeds", dest="qig_seeds", help="calibration seeds, e.g. 0,1,2 (default 0)")
    group.addoption("--db", dest="qig_db", default="results.db", help="results database (default results.db)")
    group.addoption("--device", dest="qig_device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    group.addoption(
        "--on-conflict",
        dest="qig_on_conflict",
        choices=("replace", "skip"),
        default="skip",
        help="a configuration/task already in the db: skip it (default) or re-run and replace it",
    )
    group.addoption("--cache-dir", dest="qig_cache_dir", help="qigbench cache (models, calibration sets, task pack)")
    group.addoption("--memory-budget", dest="qig_memory_budget",
                    help="bytes a streamed calibration chunk may take, e.g. 8GiB (default: half the free memory)")
    group.addoption("--method-option", action="append", dest="qig_method_options", metavar="[METHOD:]KEY=VALUE",
                    help="method option added to every configuration it applies to (repeatable), e.g. "
                    "qig.steps=8; stored labels show it (qig[steps=8])")


def pytest_configure(config: pytest.Config) -> None:
    _pin_xdist_worker(config)
    config.addinivalue_line("markers", "matrix(table): parametrize a suite test over (case, task) from the options")
    config.addinivalue_line("markers", "table(name): the paper table a suite reproduces")
    config.addinivalue_line("markers", "slow: takes a minute or more on 2 CPU cores")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker which GPUs there are, so it can take its own."""
    node.workerinput["qig_gpus"] = ",".join(_visible_gpus())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` (default ``--dist load``): keep every item of one configuration on one worker.

    Suite items are grouped by model when the run has at least as many models as workers (a worker
    then loads each model once), else by configuration (the tasks of a configuration share one
    calibration); other tests are spread one by one. (xdist's own ``loadgroup`` marks do not reach
    the node ids under pytest 9, so the scheduler is given the groups directly.)"""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    groups = _xdist_groups(config)

    class ConfigurationScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            param = nodeid.rpartition("[")[2].rstrip("]")
            return groups.get(param, nodeid)

    return ConfigurationScheduling(config, log)


def _xdist_groups(config: pytest.Config) -> dict[str, str]:
    """Parameter id of each suite item -> its group (see :func:`pytest_xdist_make_scheduler`)."""
    options = suite_options(config)
    pairs = [pair for build in TABLES.values() for pair in items(build(options))]
    workers = int(getattr(config.option, "numprocesses", 0) or 0)
    by_model = len({case.model for case, _ in pairs}) >= max(1, workers)
    return {item_id(c, t): f"qig:{c.model if by_model else c.config_hash()}" for c, t in pairs}


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _pin_xdist_worker(config: pytest.Config) -> None:
    """An xdist worker takes GPU ``n mod #GPUs`` (before torch initialises CUDA) or, without GPUs,
    its share of the CPU threads (tiny CPU runs are pinned to one thread anyway, see pin_threads)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    n = int(str(workerinput.get("workerid", "gw0")).lstrip("gw") or 0)
    gpus = [g for g in str(workerinput.get("qig_gpus", "")).split(",") if g]
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[n % len(gpus)]
    else:
        count = int(workerinput.get("workercount", 1))
        threads = max(1, (os.cpu_count() or 1) // max(1, count))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import torch

        torch.set_num_threads(threads)


def suite_options(config: pytest.Config) -> SuiteOptions:
    if _OPTIONS not in config.stash:
        import torch

        get = config.getoption
        device = get("qig_device") or ("cuda" if torch.cuda.is_available() else "cpu")
        config.stash[_OPTIONS] = build_options(
            models=get("qig_models"),
            methods=get("qig_methods"),
            formats=get("qig_formats"),
            tasks=get("qig_tasks"),
            lm_models=get("qig_lm_models"),
            lm_tasks=get("qig_lm_tasks"),
            seeds=get("qig_seeds"),
            limit=get("qig_limit"),
            samples=get("qig_samples"),
            db=get("qig_db"),
            device=device,
            on_conflict=get("qig_on_conflict"),
            cache_dir=get("qig_cache_dir"),
            memory_budget=get("qig_memory_budget"),
            method_options=get("qig_method_options"),
        )
        pin_threads(config.stash[_OPTIONS])
    return config.stash[_OPTIONS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("matrix")
    if marker is None:
        return
    name = marker.args[0]
    if name not in TABLES:
        raise pytest.UsageError(f"@pytest.mark.matrix({name!r}): unknown table; use one of {', '.join(TABLES)}")
    matrix = TABLES[name](suite_options(metafunc.config))
    pairs = items(matrix)
    params = [pytest.param(c, t, id=item_id(c, t), marks=[pytest.mark.slow] if is_slow(c) else []) for c, t in pairs]
    metafunc.parametrize(("case", "task"), params)
    expected = metafunc.config.stash.setdefault(_EXPECTED, [])
    expected.extend(matrix)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run suite items table by table (Table 2 first), and every item of one configuration right
    after its first appearance, so a configuration shared by two tables is calibrated once."""
    suite = [i for i in items if isinstance(getattr(getattr(i, "callspec", None), "params", {}).get("case"), Case)]
    if not suite:
        return
    try:
        check_method_options([config.stash.get(_EXPECTED, [])], suite_options(config))
    except QigbenchError as err:
        raise pytest.UsageError(str(err)) from None
    rank = {name: n for n, name in enumerate(TABLES)}
    ordered = sorted(suite, key=lambda i: rank.get(i.callspec.params["case"].table, len(rank)))  # type: ignore[attr-defined]
    buckets: dict[str, list[pytest.Item]] = {}
    for item in ordered:
        buckets.setdefault(item.callspec.params["case"].config_hash(), []).append(item)  # type: ignore[attr-defined]
    chosen = set(map(id, suite))
    items[:] = [i for i in items if id(i) not in chosen] + [i for bucket in buckets.values() for i in bucket]
    _skip_unrunnable(config, suite)


def _skip_unrunnable(config: pytest.Config, suite: list[pytest.Item]) -> None:
    """Models not on this machine and tasks without data are found here, once, before anything is
    calibrated: their items are skipped with one message each (naming the fix)."""
    from qigbench.matrix.preflight import preflight

    pairs = [(i.callspec.params["case"], i.callspec.params["task"]) for i in suite]  # type: ignore[attr-defined]
    found = preflight(pairs, suite_options(config))
    config.stash[_PREFLIGHT] = found
    for item, (case, task) in zip(suite, pairs, strict=True):
        reason = found.blocked(case, task)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    found = config.stash.get(_PREFLIGHT, None)
    if found is None or found.ok:
        return []
    return ["qigbench: these suite items are skipped:", *(f"  - {line}" for line in found.lines())]


@pytest.fixture(scope="session")
def qig_options(pytestconfig: pytest.Config) -> SuiteOptions:
    return suite_options(pytestconfig)


@pytest.fixture(scope="session")
def qig_suite(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The session's :class:`~qigbench.matrix.session.SuiteSession` (store, model cache, recorder)."""
    from qigbench.matrix.session import SuiteSession

    session = SuiteSession(suite_options(pytestconfig), note="pytest " + " ".join(pytestconfig.invocation_params.args))
    for case, tasks in pytestconfig.stash.get(_EXPECTED, []):
        session.expect(case, tasks)
    pytestconfig.stash[_SESSION] = session
    yield session
    session.close()


@pytest.fixture
def qig_measure(qig_suite: Any, case: Case, task: str) -> Any:
    """Skip when ``(case, task)`` is already in the db (``--on-conflict skip``); else a callable that
    measures it: ``qig_measure()`` or ``qig_measure(timer=benchmark)``."""
    from qigbench.models.availability import availability

    found = availability(case.model, cache_dir=qig_suite.options.cache_dir)
    if not found.available:  # e.g. an earlier item's download failed: not retried for every item
        pytest.skip(found.reason)
    if not qig_suite.is_cached(case) and qig_suite.is_done(case, task):
        qig_suite.counters.skipped += 1
        pytest.skip(f"already in {qig_suite.options.db} (pass --on-conflict replace to re-run)")
    held = None if qig_suite.is_cached(case) else qig_suite.claimed_elsewhere(case)
    if held is not None:
        qig_suite.counters.skipped += 1
        pytest.skip(f"claimed in {qig_suite.options.db} by {held}: another process measures this configuration")
    return lambda timer=None: qig_suite.measure(case, task, timer)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    found = config.stash.get(_PREFLIGHT, None)
    if found is not None and not found.ok:
        terminalreporter.write_line("qigbench: skipped because")
        for line in found.lines():
            terminalreporter.write_line(f"  - {line}")
    session = config.stash.get(_SESSION, None)
    if session is not None:
        terminalreporter.write_line(session.summary())
