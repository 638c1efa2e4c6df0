"""predictions.png: 90% intervals of the expected value and of the predictive.

Without `--x`, one interval per row (at most `MAX_ROWS_SHOWN` rows, evenly spaced when
there are more). With `--x`, vertical intervals against that column (at most
`_MAX_POINTS`, evenly thinned), which is what reads for thousands of rows. The observed
outcome, when the file has it, is marked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hbreg.plots.common import figure, new_figure, suptitle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MAX_ROWS_SHOWN", "plot_predictions"]

MAX_ROWS_SHOWN = 60
_MAX_POINTS = 2000  # intervals drawn against a predictor; more are evenly thinned
_EXPECTED = "#1f4e79"
_PREDICTED = "#9ecae1"


def plot_predictions(
    table: pd.DataFrame, *, outcome: str, group: str | None = None, x: str | None = None
) -> Figure:
    """Per-row intervals (no `x`) or vertical intervals against column `x`."""
    if x is None and len(table) > MAX_ROWS_SHOWN:
        shown = table.iloc[np.linspace(0, len(table) - 1, MAX_ROWS_SHOWN).round().astype(int)]
        note = f"{MAX_ROWS_SHOWN} of {len(table)} rows, evenly spaced"
        return _per_row(shown, outcome, group, note=note)
    if x is None:
        return _per_row(table, outcome, group, note=None)
    return _against(table, outcome, x)


def _per_row(table: pd.DataFrame, outcome: str, group: str | None, *, note: str | None) -> Figure:
    n = len(table)
    fig = figure(7.5, 1.7 + 0.22 * n, left=1.6, right=0.3, top=0.85, bottom=0.55)
    ax = fig.subplots()
    pos = np.arange(n)[::-1]
    ax.hlines(
        pos,
        table["predicted_q5"],
        table["predicted_q95"],
        color=_PREDICTED,
        lw=4,
        label="predictive 90%",
    )
    ax.hlines(
        pos,
        table["expected_q5"],
        table["expected_q95"],
        color=_EXPECTED,
        lw=1.6,
        label="expected value 90%",
    )
    ax.plot(table["expected_mean"], pos, "o", color=_EXPECTED, ms=3, label="expected value mean")
    if outcome in table.columns:
        ax.plot(table[outcome], pos, "x", color="#d95f02", ms=5, label=f"observed {outcome}")
    labels = [_row_label(table, i, group) for i in range(n)]
    ax.set_yticks(pos, labels, fontsize=7)
    ax.set_xlabel(outcome, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4)
    suptitle(fig, "Predictions" + (f" ({note})" if note else ""))
    return fig


def _row_label(table: pd.DataFrame, i: int, group: str | None) -> str:
    """`row 7: NEWTOWN (new)`: the 1-based row of the file, its group, whether it is new."""
    label = f"row {table.index[i] + 1}"
    if group is not None and group in table.columns:
        label += f": {table[group].iloc[i]}"
    if "new_group" in table.columns and bool(table["new_group"].iloc[i]):
        label += " (new)"
    return label


def _against(table: pd.DataFrame, outcome: str, x: str) -> Figure:
    shown = table
    if len(table) > _MAX_POINTS:
        shown = table.iloc[np.linspace(0, len(table) - 1, _MAX_POINTS).round().astype(int)]
    xs = pd.to_numeric(shown[x], errors="coerce").to_numpy(dtype=float)
    fig = new_figure(7.5, 4.5)
    ax = fig.subplots()
    ax.vlines(
        xs,
        shown["predicted_q5"],
        shown["predicted_q95"],
        color=_PREDICTED,
        lw=3,
        alpha=0.5,
        label="predictive 90%",
    )
    ax.vlines(
        xs,
        shown["expected_q5"],
        shown["expected_q95"],
        color=_EXPECTED,
        lw=1.2,
        alpha=0.8,
        label="expected value 90%",
    )
    ax.plot(xs, shown["expected_mean"], ".", color=_EXPECTED, ms=3, label="expected value mean")
    if outcome in shown.columns:
        ax.plot(xs, shown[outcome], "x", color="#d95f02", ms=4, label=f"observed {outcome}")
    ax.set_xlabel(x)
    ax.set_ylabel(outcome)
    ax.legend(fontsize=8, frameon=False)
    count = (
        f"{len(shown)} of {len(table)} rows" if len(shown) < len(table) else f"{len(table)} rows"
    )
    ax.set_title(f"Predictions against {x} ({count})", fontsize=11)
    return fig
