"""Per-test disk and memory footprint of a pytest run (a local measuring tool, not used by CI).

    FOOTPRINT_OUT=/tmp/footprint.jsonl PYTHONPATH=scripts:. python -m pytest tests -q -p test_footprint
    python scripts/test_footprint.py /tmp/footprint.jsonl        # the biggest offenders

After each test's teardown it records the test's wall and CPU seconds, the size of pytest's basetemp
and of ``$QIGBENCH_CACHE`` (and their growth), and the process's peak RSS (self and children), one
JSON line per test in ``$FOOTPRINT_OUT`` (default: ``footprint.jsonl`` here). This is
how issue 20's "7.4 GB left in pytest's temp folder" was traced to tests/models/test_shapes.py.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

_START: dict[str, tuple[float, float, float]] = {}
_PREVIOUS = {"tmp": 0, "cache": 0}
_CONFIG: Any = None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def du(path: str | os.PathLike[str] | None) -> int:
    """Allocated bytes under ``path`` (0 when missing); symlinks are not followed."""
    total, stack = 0, [str(path)] if path else []
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
        except OSError:
            pass
    return total


def pytest_configure(config: Any) -> None:
    global _CONFIG
    _CONFIG = config


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _START[nodeid] = (time.perf_counter(), time.process_time(), _children_cpu())


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    base = getattr(_CONFIG._tmp_path_factory, "_basetemp", None)  # None until a test asks for tmp_path
    tmp, cache = du(base), du(os.environ.get("QIGBENCH_CACHE"))
    wall, cpu, children = _START.pop(nodeid, (time.perf_counter(), time.process_time(), _children_cpu()))
    record = {
        "nodeid": nodeid,
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "children_cpu": _children_cpu() - children,
        "tmp": tmp, "dtmp": tmp - _PREVIOUS["tmp"], "cache": cache, "dcache": cache - _PREVIOUS["cache"],
        "maxrss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }
    _PREVIOUS.update(tmp=tmp, cache=cache)
    out = Path(os.environ.get("FOOTPRINT_OUT") or "footprint.jsonl")
    with out.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def summary(path: str, top: int = 15) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    gib = 2**30
    lines = [
        f"{len(rows)} tests; temp folder at the end {rows[-1]['tmp'] / gib:.2f} GiB, peak "
        f"{max(r['tmp'] for r in rows) / gib:.2f} GiB; peak RSS {max(r['maxrss_self'] for r in rows) / gib:.2f} GiB "
        f"(children {max(r['maxrss_children'] for r in rows) / gib:.2f} GiB)"
    ]
    for key, title, scale, unit in (("dtmp", "temp folder growth", 2**20, "MiB"), ("cpu", "CPU seconds", 1, "s"),
                                    ("children_cpu", "CPU seconds of subprocesses", 1, "s")):
        lines.append(f"largest {title}:")
        for r in sorted(rows, key=lambda r: -r.get(key, 0))[:top]:
            lines.append(f"  {r.get(key, 0) / scale:9.1f} {unit}  {r['nodeid']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
