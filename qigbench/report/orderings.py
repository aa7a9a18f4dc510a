"""Paired tests of every method against a baseline (RTN), read off the leaderboard and fidelity tables.

A leaderboard says which mean is higher; whether a method is *distinguishably* better than RTN
needs the paired test on the same seeds and examples (:func:`qigbench.stats.compare`: a bootstrap
over seeds x examples, or over the examples of one seed). This table gives that test for each
method, per model and format, on the two numbers the paper's orderings are about:

* the mean accuracy over the format's tasks (the leaderboard's Avg column), in points;
* each fidelity metric (KL to FP16 first), lower is better.

Each cell reads ``+12.2 [+1.8, +23.2] better (2 seeds)``: the difference method - baseline, its
95% interval and the verdict. FP16 is tested too (how much the baseline loses). A cell is empty
where either side is missing or has no shared seed.
"""

from __future__ import annotations

from qigbench.report.tables import FP_LABEL, Cell, Table, method_sort_key
from qigbench.results.metrics import known_metrics, metric_info
from qigbench.stats import Comparison, Measurement, Verdict, compare

#: the method every other is tested against
DEFAULT_BASELINE = "rtn"
#: the leaderboard's column whose paired differences are the accuracy ordering
AVG = "Avg"


def _samples(table: Table, column: str) -> dict[tuple[str, str, str], Measurement]:
    """(model, method, format) -> the sample behind ``column`` of each format group."""
    cols = table.columns
    out: dict[tuple[str, str, str], Measurement] = {}
    for (model, method), cells in table.rows:
        for (fmt, col), cell in zip(cols, cells, strict=True):
            if col == column and cell.sample is not None:
                out[(model, method, fmt)] = cell.sample
    return out


def _cell(c: Comparison, scale: float, digits: int) -> Cell:
    if not c.tested:  # no shared seed, or one seed without per-example scores (block error)
        return Cell(None, "no shared seed" if c.n == 0 else "n/a: 1 seed, no per-example scores")
    seeds = c.test.split(" over ")[1].split(" x ")[0] if " seeds" in c.test else "1 seed"
    text = (
        f"{scale * c.diff:+.{digits}f} [{scale * c.low:+.{digits}f}, {scale * c.high:+.{digits}f}] "
        f"{c.verdict.value} ({seeds})"
    )
    rank = 1 if c.verdict is Verdict.BETTER else None  # rendered bold (green in HTML)
    return Cell(scale * c.diff, text, rank=rank, low=scale * c.low, high=scale * c.high)


def _fidelity_columns(fidelity: Table) -> list[str]:
    order = [metric_info(m).label for m in known_metrics()]
    names = {c for _, c in fidelity.columns}
    return sorted(names, key=lambda c: (order.index(c) if c in order else len(order), c))


def _accuracy_scale(leaderboard: Table) -> float:
    """Points when the leaderboard shows percent of stored fractions."""
    return 100.0 if "x 100" in leaderboard.caption else 1.0


def orderings(leaderboard: Table, fidelity: Table, baseline: str = DEFAULT_BASELINE) -> Table:
    """Every method (and FP16) minus ``baseline``, per model and format, by the paired test."""
    acc = _samples(leaderboard, AVG)
    fid_cols = _fidelity_columns(fidelity)
    fid = {c: _samples(fidelity, c) for c in fid_cols}
    fmts: list[str] = []
    for fmt, _ in [*leaderboard.groups, *fidelity.groups]:
        if fmt not in fmts:
            fmts.append(fmt)
    groups = [(fmt, [f"Δ {AVG} accuracy", *(f"Δ {c}" for c in fid_cols if any(k[2] == fmt for k in fid[c]))])
              for fmt in fmts]
    table = Table(
        "orderings",
        f"Paired tests against {baseline.upper()}",
        f"Each method minus {baseline.upper()} on the same seeds and examples (the project's paired test: a "
        "bootstrap over seeds x examples, or over one seed's examples), with its 95% interval and verdict: "
        f"'better' = distinguishably better than {baseline.upper()} (higher accuracy, lower KL / flip rate / "
        f"block error; bold). Δ {AVG} accuracy is in the leaderboard's units (points of %), over the format's tasks.",
        ("Model", "Method"),
        groups,
    )
    models = sorted({k[0] for k in acc} | {k[0] for s in fid.values() for k in s})
    scale = _accuracy_scale(leaderboard)
    for model in models:
        methods = {k[1] for k in acc if k[0] == model} | {k[1] for s in fid.values() for k in s if k[0] == model}
        methods.discard(baseline)
        for method in sorted(methods, key=lambda m: (-1, "") if m == FP_LABEL else method_sort_key(m)):
            cells: list[Cell] = []
            for fmt, cols in groups:
                a, b = acc.get((model, method, fmt)), acc.get((model, baseline, fmt))
                cells.append(Cell() if a is None or b is None else _cell(compare(a, b, True), scale, 1))
                for col in cols[1:]:
                    name = col.removeprefix("Δ ")
                    a, b = fid[name].get((model, method, fmt)), fid[name].get((model, baseline, fmt))
                    cells.append(Cell() if a is None or b is None else _cell(compare(a, b, False), 1.0, 3))
            if any(c.value is not None for c in cells):
                table.rows.append(((model, method), cells))
    return table


__all__ = ["DEFAULT_BASELINE", "orderings"]
