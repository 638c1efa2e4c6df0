"""The compare figures: the LOO ranking (`loo.png`) and the shrinkage picture (`shrinkage.png`).

Figures come from `hbreg.plots.common` (Agg canvas, shared resolution, one way to save).
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hbreg.compare.shrinkage import Shrinkage
from hbreg.errors import OutputError
from hbreg.names import population_mean
from hbreg.plots.common import new_figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_loo", "plot_shrinkage", "save_figure"]

_SERIES_COLORS = {"unpooled": "#d95f02", "hierarchical": "#1b62a5"}
_EXTRA_COLORS = ("#7570b3", "#1b9e77", "#e7298a", "#66a61e")


def save_figure(fig: Figure, path: Path) -> Path:
    """Save with the shared helper; an unwritable path is an OutputError naming it."""
    try:
        return save(fig, path)
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': {exc.strerror}") from None
    finally:
        _close(fig)


def plot_loo(table: pd.DataFrame, *, title: str = "PSIS-LOO") -> Figure:
    """Elpd difference to the best run with its dse, titled with the kind of CV (`title`).

    The arviz-plots compare plot where it draws; the same picture in plain matplotlib if not.
    """
    frame = table.set_index("run")[["elpd", "se", "elpd_diff", "dse", "weight"]]
    try:
        import arviz_plots as azp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc = azp.plot_compare(frame, backend="matplotlib")
        fig = pc.viz["figure"].item()
        fig.axes[0].set_title(f"{title}: elpd difference to the best run (bars: dse)")
        fig.axes[0].set_xlabel(f"elpd difference by {title} (higher is better)")
        fig.set_size_inches(9, 1.6 + 0.55 * len(frame))
        fig.set_layout_engine("constrained")
        return fig
    except Exception:  # any arviz-plots failure: draw the same thing directly
        return _loo_figure_matplotlib(frame, title)


def _loo_figure_matplotlib(frame: pd.DataFrame, title: str) -> Figure:
    fig = new_figure(7.5, 1.6 + 0.6 * len(frame))
    ax = fig.subplots()
    y = np.arange(len(frame))[::-1]
    ax.errorbar(frame["elpd_diff"], y, xerr=frame["dse"], fmt="o", color="#1b62a5", capsize=3)
    ax.axvline(0, color="0.4", ls="--", lw=1)
    ax.set_yticks(y, frame.index)
    ax.set_xlabel(f"elpd difference to the best run by {title} (bars: dse)")
    ax.set_title(f"{title} comparison")
    return fig


def _close(fig) -> None:
    """Drop a figure from pyplot's registry if arviz-plots put it there."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


def plot_shrinkage(shrinkage: Shrinkage) -> Figure:
    """Group estimates side by side per run, groups ordered by size: the radon picture.

    One panel per varying coefficient below a strip of group sizes (log scale). Small groups
    are on the left: their unpooled estimates scatter widely with wide intervals, and the
    hierarchical ones are pulled toward the population mean (dashed); pooled estimates are
    solid horizontal lines.
    """
    from matplotlib.lines import Line2D

    table = shrinkage.table
    n_groups, n_coefs = len(table), len(shrinkage.coefs)
    width = float(np.clip(2.5 + 0.15 * n_groups, 9, 30))
    fig = new_figure(width, 1.8 + 1.6 + 3.3 * n_coefs)
    axes = fig.subplots(
        1 + n_coefs, 1, sharex=True, height_ratios=[1.0] + [2.6] * n_coefs, squeeze=False
    )[:, 0]
    x = np.arange(n_groups)
    size_ax = axes[0]
    size_ax.bar(x, table["size"].to_numpy(), color="0.6", width=0.8)
    size_ax.set_yscale("log")
    from matplotlib.ticker import LogLocator, ScalarFormatter

    size_ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    size_ax.yaxis.set_major_formatter(ScalarFormatter())
    size_ax.yaxis.set_minor_formatter(ScalarFormatter(useOffset=False))
    size_ax.tick_params(axis="y", which="minor", labelleft=False)
    size_ax.set_ylabel(f"rows per\n{shrinkage.group_dim} (log)", fontsize=9)
    size_ax.grid(axis="y", color="0.9", lw=0.6)
    size_ax.set_axisbelow(True)
    n_series = len(shrinkage.series)
    offsets = (np.arange(n_series) - (n_series - 1) / 2) * min(0.3, 0.7 / max(n_series, 1))
    colors = _series_colors(shrinkage.series)
    pct = f"{shrinkage.prob:.0%}"
    for ax, coef in zip(axes[1:], shrinkage.coefs, strict=True):
        handles = []
        for (label, pooling), offset, color in zip(shrinkage.series, offsets, colors, strict=True):
            key = f"{coef}:{label}"
            if f"{key}:mean" not in table:
                continue
            mean = table[f"{key}:mean"].to_numpy()
            ax.vlines(
                x + offset,
                table[f"{key}:low"],
                table[f"{key}:high"],
                color=color,
                lw=1.0,
                alpha=0.8,
            )
            ax.plot(x + offset, mean, "o", color=color, ms=3.2)
            handles.append(
                Line2D(
                    [],
                    [],
                    color=color,
                    marker="o",
                    ms=4,
                    lw=1,
                    label=f"{label} ({pooling}): mean, {pct} interval",
                )
            )
            if label in shrinkage.population and coef in shrinkage.population[label]:
                mu = shrinkage.population[label][coef]
                ax.axhline(mu, color=color, ls="--", lw=1.1)
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=color,
                        ls="--",
                        lw=1.1,
                        label=f"{label}: population mean {population_mean(coef)} = {mu:.2f}"
                        if coef not in shrinkage.scales
                        else f"{label}: population mean, as a {shrinkage.scales[coef]}: {mu:.2f}",
                    )
                )
        for label, means in shrinkage.pooled.items():
            if coef in means:
                ax.axhline(means[coef], color="0.15", lw=1.2)
                handles.append(
                    Line2D(
                        [], [], color="0.15", lw=1.2, label=f"{label} (pooled) = {means[coef]:.2f}"
                    )
                )
        scale = shrinkage.scales.get(coef)
        ax.set_ylabel(f"{coef}\n({scale})" if scale else coef, fontsize=10)
        ax.grid(axis="y", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
        ax.legend(
            handles=handles,
            fontsize=8,
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=min(len(handles), 3 if width >= 14 else 2),  # never wider than the figure
            frameon=False,
            borderaxespad=0.2,
        )
        if _clip_ylim(ax, table, coef):
            ax.text(
                0.995,
                0.02,
                "some intervals run off the panel (groups whose own data say "
                "little: prior-dominated)",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=7,
                color="0.35",
            )
    step = max(1, math.ceil(n_groups / 100))
    ticks = x[::step]
    axes[-1].set_xticks(ticks)
    axes[-1].set_xticklabels(
        [
            f"{g} ({n})"
            for g, n in zip(table.index[::step], table["size"].to_numpy()[::step], strict=True)
        ],
        rotation=90,
        fontsize=6 if n_groups > 40 else 8,
    )
    axes[-1].set_xlim(-0.7, n_groups - 0.3)
    axes[-1].set_xlabel(f"{shrinkage.group_dim} (rows), ordered by number of rows", fontsize=9)
    fig.suptitle(
        f"Shrinkage: each {shrinkage.group_dim}'s estimate under "
        + " and ".join(sorted({p for _, p in shrinkage.series}))
        + " pooling;\nsmall groups (left) are pulled toward the population mean",
        fontsize=11,
    )
    return fig


def _series_colors(series: list[tuple[str, str]]) -> list[str]:
    used: set[str] = set()
    extra = iter(_EXTRA_COLORS * 4)
    colors = []
    for _, pooling in series:
        color = _SERIES_COLORS.get(pooling)
        if color is None or color in used:
            color = next(extra)
        used.add(color)
        colors.append(color)
    return colors


def _clip_ylim(ax, table: pd.DataFrame, coef: str) -> bool:
    """Keep the estimates in view when a prior-only group has an enormous interval.

    Returns whether some interval was cut off.
    """
    means = table[[c for c in table if c.startswith(f"{coef}:") and c.endswith(":mean")]]
    bounds = table[
        [c for c in table if c.startswith(f"{coef}:") and c.endswith((":low", ":high"))]
    ].to_numpy()
    values = means.to_numpy().ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return False
    lo, hi = np.nanmin(bounds), np.nanmax(bounds)
    spread = max(np.ptp(values), 1e-9) if values.size > 1 else 1.0
    view_lo, view_hi = values.min() - 1.5 * spread, values.max() + 1.5 * spread
    if lo >= view_lo and hi <= view_hi:
        return False
    ax.set_ylim(max(lo, view_lo), min(hi, view_hi))
    return True
