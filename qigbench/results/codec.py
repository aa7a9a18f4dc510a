"""How a result row is written to and read from the store's SQL columns, and how per-example scores
are serialised (shared by the SQLite store and the distributed job records)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from qigbench.results.errors import ResultsError
from qigbench.results.row import CONFIG_KEY, ROW_KEY, ConfigKey, ResultRow
from qigbench.results.schema import ROW_COLUMNS
from qigbench.stats.paired import ExampleScores

#: the columns ``ResultsStore.rows(**filters)`` can filter by
FILTERABLE = (*ROW_KEY, "run_id", "device", "git_commit")


def config_values(key: ConfigKey) -> tuple[Any, ...]:
    if not isinstance(key, ConfigKey):
        raise ResultsError(f"expected a ConfigKey (see ResultRow.config_key), got {type(key).__name__}")
    return tuple(getattr(key, c) for c in CONFIG_KEY)


def row_values(row: ResultRow) -> tuple[Any, ...]:
    extra = {
        "versions_json": json.dumps(dict(row.versions), sort_keys=True),
        "config_json": json.dumps(dict(row.config), sort_keys=True, default=str),
        "value": float(row.value),
        "examples_json": examples_to_json(row.examples),
    }
    return tuple(extra[c] if c in extra else getattr(row, c) for c in ROW_COLUMNS)


def row_from(values: tuple[Any, ...]) -> ResultRow:
    data = dict(zip(ROW_COLUMNS, values, strict=True))
    data["versions"] = json.loads(data.pop("versions_json"))
    data["config"] = json.loads(data.pop("config_json"))
    data["examples"] = examples_from_json(data.pop("examples_json"))
    return ResultRow(**data)


def examples_to_json(ex: ExampleScores | None) -> str:
    if ex is None:
        return ""
    data: dict[str, Any] = {"ids": list(ex.ids), "values": list(ex.values)}
    if ex.weights is not None:
        data["weights"] = list(ex.weights)
    return json.dumps(data, separators=(",", ":"))


def examples_from_json(text: str) -> ExampleScores | None:
    if not text:
        return None
    data = json.loads(text)
    weights = data.get("weights")
    return ExampleScores(tuple(data["ids"]), tuple(data["values"]), None if weights is None else tuple(weights))


def where_clause(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for name, want in filters.items():
        if name not in FILTERABLE:
            raise ResultsError(f"cannot filter rows by {name!r}; filter by one of {', '.join(FILTERABLE)}")
        if want is None:
            continue
        if isinstance(want, (list, tuple, set, frozenset)):
            items = list(want)
            if not items:
                return " WHERE 0", []
            clauses.append(f"{name} IN ({', '.join('?' for _ in items)})")
            params.extend(items)
        else:
            clauses.append(f"{name} = ?")
            params.append(want)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
