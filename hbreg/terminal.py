"""Tables and sizes as the terminal shows them: whole, whatever the width.

Rich shortens a cell that does not fit with `…`, which in a CI log or a pipe (80
columns) cut `mu_intercept` to `mu_interc…` and `1000001.417` to `1000001.4…`. Every
table hbreg prints goes through `print_table`: on a terminal wide enough, a Rich table;
otherwise (a pipe, a file, a terminal narrower than the table) plain rows as wide as
their content, which a terminal wraps and `grep`/`cut` read. Nothing is ever cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["format_bytes", "print_table"]

Justify = Literal["left", "right"]


def format_bytes(n: float) -> str:
    """A byte count as a person reads it (decimal units): `350 B`, `1.2 GB`."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} PB"


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    *,
    title: str | None = None,
    justify: Sequence[Justify] | None = None,
) -> None:
    """Print `rows` under `columns` without shortening any cell.

    Parameters
    ----------
    console : rich.console.Console
        Where to print; its `is_terminal` and `width` choose the layout.
    columns : sequence of str
        Column headers.
    rows : sequence of sequences of str or rich.text.Text
        Cells, already formatted; strings are printed literally (no Rich markup), a
        `Text` keeps its style on a terminal.
    title : str, optional
        A line above the table.
    justify : sequence of {"left", "right"}, optional
        Per column; by default the first column is left-justified and the rest right.
    """
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    justify = list(justify or ["left"] + ["right"] * (len(columns) - 1))
    cells = [[c if isinstance(c, Text) else Text(str(c)) for c in row] for row in rows]
    if console.is_terminal:
        table = Table(title=title)
        for header, side in zip(columns, justify, strict=True):
            table.add_column(header, justify=side, no_wrap=True)
        for row in cells:
            table.add_row(*row)
        # measured without the console's width, which would squeeze the table to fit
        natural = Measurement.get(console, console.options.update_width(10**6), table)
        if natural.maximum <= console.width:
            console.print(table)
            return
    for line in _plain_lines(columns, cells, justify, title):
        console.print(line, soft_wrap=True, highlight=False, markup=False, emoji=False)


def _plain_lines(columns, cells, justify, title) -> list[str]:
    """Header and rows padded to each column's widest cell, two spaces apart."""
    from rich.cells import cell_len

    text = [list(columns)] + [[c.plain for c in row] for row in cells]
    widths = [max(cell_len(row[j]) for row in text) for j in range(len(columns))]
    lines = [title] if title else []
    for row in text:
        padded = []
        for value, width, side in zip(row, widths, justify, strict=True):
            pad = " " * (width - cell_len(value))
            padded.append(value + pad if side == "left" else pad + value)
        lines.append("  ".join(padded).rstrip())
    return lines
