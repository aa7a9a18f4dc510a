"""Render :class:`~qigbench.report.tables.Table` as Markdown, HTML, CSV and LaTeX.

Every string that came from the database (model names are user input: paths, aliases) is
escaped for the target format, so a model called ``<script>`` or ``a_b%`` renders as text.
"""

from __future__ import annotations

import csv
import html
import io

from qigbench.report.tables import Cell, Table

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def markdown_escape(text: str) -> str:
    """Escape for a Markdown table cell: HTML (Markdown passes it through), pipes, emphasis."""
    out = html.escape(text, quote=False).replace("|", r"\|")
    for ch in "*_`[]":
        out = out.replace(ch, "\\" + ch)
    return out


def _flat_header(table: Table) -> list[str]:
    return [*table.row_header, *(f"{g} {c}" if g else c for g, c in table.columns)]


def to_markdown(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = markdown_escape(c.text)
        return f"**{text}**" if c.rank == 1 else f"<u>{text}</u>" if c.rank == 2 else text

    head = [markdown_escape(h) for h in _flat_header(table)]
    lines = [f"### {markdown_escape(table.title)}", "", markdown_escape(table.caption), ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join([":--"] * len(table.row_header) + ["--:"] * len(table.columns)) + "|")
    for head_cells, cells in table.rows:
        lines.append("| " + " | ".join([*(markdown_escape(h) for h in head_cells), *(cell(c) for c in cells)]) + " |")
    if not table.rows:
        lines.append("")
        lines.append("_no rows_")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Machine-readable: raw values (not rounded display text), one header row ``group column``.

    A column that has intervals is followed by ``... ci95 low`` and ``... ci95 high`` columns
    (empty where a value has no interval).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = _flat_header(table)
    n_head = len(table.row_header)
    spread = [any(cells[j].low is not None for _, cells in table.rows) for j in range(len(table.columns))]
    out_header = list(header[:n_head])
    for j, name in enumerate(header[n_head:]):
        out_header += [name, f"{name} ci95 low", f"{name} ci95 high"] if spread[j] else [name]
    writer.writerow(out_header)

    def num(x: float | None) -> str:
        return "" if x is None else repr(x)

    for head_cells, cells in table.rows:
        values: list[str] = []
        for j, c in enumerate(cells):
            values += [num(c.value), num(c.low), num(c.high)] if spread[j] else [num(c.value)]
        writer.writerow([*head_cells, *values])
    return buf.getvalue()


def _breakable(text: str) -> str:
    """Escaped ``text`` that may wrap after ``_`` (task names such as ``qig_vqa_colour`` are the
    widest words of a column: without a break opportunity they set its minimum width)."""
    return html.escape(text).replace("_", "_<wbr>")


def to_html(table: Table) -> str:
    esc = html.escape
    n_head = len(table.row_header)
    top = [f'<th rowspan="2">{esc(h)}</th>' for h in table.row_header]
    top += [f'<th colspan="{len(cols)}" class="group">{esc(g)}</th>' for g, cols in table.groups]
    sub = [f"<th>{_breakable(c)}</th>" for _, c in table.columns]
    body = []
    for head_cells, cells in table.rows:
        tds = [f'<th scope="row">{esc(h)}</th>' for h in head_cells]
        for c in cells:
            cls = {1: ' class="best"', 2: ' class="second"'}.get(c.rank or 0, "")
            tds.append(f"<td{cls}>{esc(c.text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{n_head + len(table.columns)}">no rows</td></tr>')
    return (
        f'<section id="{esc(table.name)}"><h2>{esc(table.title)}</h2><p class="caption">{esc(table.caption)}</p>'
        f"<table><thead><tr>{''.join(top)}</tr><tr>{''.join(sub)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def to_latex(table: Table) -> str:
    esc = latex_escape
    n_head = len(table.row_header)
    spec = "l" * n_head + "".join("|" + "r" * len(cols) for _, cols in table.groups)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{esc(table.title)}. {esc(table.caption)}}}",
        rf"\label{{tab:{esc(table.name)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    if any(g for g, _ in table.groups):
        groups = [rf"\multicolumn{{{len(cols)}}}{{c}}{{{esc(g)}}}" for g, cols in table.groups]
        lines.append(" & ".join([""] * n_head + groups) + r" \\")
        start = n_head + 1
        rules = []
        for _, cols in table.groups:
            rules.append(rf"\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
            start += len(cols)
        lines.append(" ".join(rules))
    lines.append(" & ".join([*(esc(h) for h in table.row_header), *(esc(c) for _, c in table.columns)]) + r" \\")
    lines.append(r"\midrule")
    previous_model = None
    for head_cells, cells in table.rows:
        if previous_model is not None and head_cells[0] != previous_model:
            lines.append(r"\midrule")
        previous_model = head_cells[0]
        texts = []
        for c in cells:
            t = esc(c.text)
            texts.append(rf"\textbf{{{t}}}" if c.rank == 1 else rf"\underline{{{t}}}" if c.rank == 2 else t)
        lines.append(" & ".join([*(esc(h) for h in head_cells), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
