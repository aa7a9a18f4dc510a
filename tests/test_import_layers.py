"""The package's floors, read from its own imports: no import runs from a lower layer to a higher
one, and no two modules import each other (directly or round a longer circle).

The intended layers are written once, in ``docs/architecture.md`` (the fenced ``layers`` block,
lowest first, one layer a line); this test reads them from there. Every import counts: module
level, inside functions (lazy imports) and under ``TYPE_CHECKING`` (a circle in the types is a
circle in the design). A module must belong to a listed layer, so a new package cannot slip in
without a place on the map.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qigbench", "methods")
DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def read_layers(doc: Path = DOC) -> list[tuple[str, ...]]:
    """The ``layers`` block of the architecture doc: one layer a line, lowest first."""
    found = re.search(r"```layers\n(.*?)```", doc.read_text(), re.S)
    if found is None:
        raise AssertionError(f"{doc} has no ```layers block")
    layers = [tuple(line.split("#")[0].split()) for line in found.group(1).splitlines()]
    return [layer for layer in layers if layer]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported(node: ast.AST, package: str) -> Iterator[tuple[str, int]]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, node.lineno
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        yield target, node.lineno
        for alias in node.names:  # `from pkg import submodule` imports the submodule
            yield f"{target}.{alias.name}", node.lineno


def import_edges(known: dict[str, Path]) -> list[Edge]:
    """Every import between the project's own modules, resolved to the deepest known module."""

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[tuple[str, str, int], Edge] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target, line in _imported(node, package):
                resolved = resolve(target)
                if resolved is not None and resolved != name:
                    edges.setdefault((name, resolved, line), Edge(name, resolved, line))
    return list(edges.values())


def layer_of(module: str, layers: list[tuple[str, ...]]) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, layer in enumerate(layers):
        for prefix in layer:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def circles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(set(graph) | {e.target for e in edges}):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge], list[tuple[str, ...]]]:
    known = modules()
    return known, import_edges(known), read_layers()


def test_every_module_has_a_layer(graph: tuple[dict[str, Path], list[Edge], list[tuple[str, ...]]]) -> None:
    known, _, layers = graph
    homeless = [m for m in known if m != "qigbench" and layer_of(m, layers) is None]
    assert not homeless, f"add these to the layers block of docs/architecture.md: {homeless}"


def test_no_import_runs_up_a_layer(graph: tuple[dict[str, Path], list[Edge], list[tuple[str, ...]]]) -> None:
    _, edges, layers = graph
    upward = [
        f"{e}: layer {layer_of(e.source, layers)} imports layer {layer_of(e.target, layers)}"
        for e in edges
        if e.target != "qigbench" and (layer_of(e.source, layers) or 0) < (layer_of(e.target, layers) or 0)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_circles(graph: tuple[dict[str, Path], list[Edge], list[tuple[str, ...]]]) -> None:
    _, edges, _ = graph
    found = circles(edges)
    assert not found, "modules that import each other (directly or round a circle):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The graph readers on a hand-made package: an upward import and a circle are both seen."""
    layers = [("low",), ("high",)]
    edges = [Edge("low.a", "high.b", 1), Edge("high.b", "high.c", 2), Edge("high.c", "high.b", 3)]
    assert [e for e in edges if (layer_of(e.source, layers) or 0) < (layer_of(e.target, layers) or 0)] == [edges[0]]
    assert circles(edges) == [["high.b", "high.c"]]
    doc = tmp_path / "a.md"
    doc.write_text("x\n```layers\nlow  # the floor\nhigh other\n```\n")
    assert read_layers(doc) == [("low",), ("high", "other")]
    assert layer_of("high.deep.module", [("high",), ("high.deep",)]) == 1  # the longest prefix wins
