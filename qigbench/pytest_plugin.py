"""pytest plugin for the benchmark suites in ``suites/`` (registered as the ``pytest11`` entry point).

``pytest suites/ --model qwen2vl --methods rtn,awq,mbq,qig --formats w3a16,w4a8`` runs the
paper's tables; each suite test is marked ``@pytest.mark.matrix(TABLE)``, and the builder
``qigbench.suite.matrix.TABLES[TABLE]`` turns the options into ``[(case, tasks)]``; this plugin
parametrizes the test over ``(case, task)`` pairs. Tests without that marker (everything in
``tests/``) are untouched: the options exist everywhere, but nothing loads until a suite asks for
the ``qig_suite`` fixture.

Options (lists may be repeated or comma-separated): ``--model``, ``--methods``, ``--formats``,
``--tasks``, ``--lm-model``, ``--lm-tasks``, ``--limit``, ``--samples``, ``--seeds``, ``--db``,
``--device``, ``--on-conflict replace|skip`` (default skip: a re-run skips what is in the db),
``--cache-dir``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qigbench.suite.matrix import TABLES, Case, is_slow, item_id, items
from qigbench.suite.options import SuiteOptions, build_options, pin_threads

_OPTIONS = pytest.StashKey[SuiteOptions]()
_SESSION = pytest.StashKey[Any]()
_EXPECTED = pytest.StashKey[list[tuple[Case, tuple[str, ...]]]]()


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "matrix(table): parametrize a suite test over (case, task) from the options")
    config.addinivalue_line("markers", "table(name): the paper table a suite reproduces")
    config.addinivalue_line("markers", "slow: takes a minute or more on 2 CPU cores")


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
    rank = {name: n for n, name in enumerate(TABLES)}
    ordered = sorted(suite, key=lambda i: rank.get(i.callspec.params["case"].table, len(rank)))  # type: ignore[attr-defined]
    buckets: dict[str, list[pytest.Item]] = {}
    for item in ordered:
        buckets.setdefault(item.callspec.params["case"].config_hash(), []).append(item)  # type: ignore[attr-defined]
    chosen = set(map(id, suite))
    items[:] = [i for i in items if id(i) not in chosen] + [i for bucket in buckets.values() for i in bucket]


@pytest.fixture(scope="session")
def qig_options(pytestconfig: pytest.Config) -> SuiteOptions:
    return suite_options(pytestconfig)


@pytest.fixture(scope="session")
def qig_suite(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The session's :class:`~qigbench.suite.session.SuiteSession` (store, model cache, recorder)."""
    from qigbench.suite.session import SuiteSession

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
    if not qig_suite.is_cached(case) and qig_suite.is_done(case, task):
        qig_suite.counters.skipped += 1
        pytest.skip(f"already in {qig_suite.options.db} (pass --on-conflict replace to re-run)")
    return lambda timer=None: qig_suite.measure(case, task, timer)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        terminalreporter.write_line(session.summary())
