"""Recovery figures: truth against estimate, and the ranks of the truth among the draws.

Built with the figure helpers every command shares (`hbreg.plots.common`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbreg.plots.common import figure, new_figure

__all__ = ["plot_ranks", "plot_recovery"]


def plot_recovery(recovery: pd.DataFrame, *, single: bool):
    """Truth (x) against posterior mean (y) with 90% intervals, one panel per experiment.

    One replicate: every parameter, misses in red. Several: the population parameters of
    every replicate, one colour per parameter.
    """
    experiments = list(dict.fromkeys(recovery["experiment"]))
    fig = new_figure(4.2 * len(experiments), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(experiments), squeeze=False)[0])
    for ax, exp in zip(axes, experiments, strict=True):
        part = recovery[recovery["experiment"] == exp]
        if not single:
            part = part[part["level"] == "population"]
        lo = min(part["truth"].min(), part["lower_90"].min())
        hi = max(part["truth"].max(), part["upper_90"].max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--", zorder=0)
        if single:
            for inside, color in ((True, "#1f4e79"), (False, "#c0392b")):
                label = "truth inside 90%" if inside else "outside"
                _intervals(ax, part[part["inside_90"] == inside], label, color=color, alpha=0.8)
        else:
            for name, sel in part.groupby("parameter", sort=False):
                _intervals(ax, sel, name, alpha=0.7)
        ax.set_title(f"{exp} ({part['pooling'].iloc[0]})" if len(part) else exp)
        ax.set_xlabel("truth")
        ax.set_ylabel("posterior mean, 90% interval")
        ax.legend(fontsize=7, loc="best")
    return fig


def _intervals(ax, rows: pd.DataFrame, label: str, **style) -> None:
    """Posterior mean (y) against truth (x) with its 90% interval, for recovery rows."""
    ax.errorbar(
        rows["truth"],
        rows["mean"],
        yerr=[rows["mean"] - rows["lower_90"], rows["upper_90"] - rows["mean"]],
        fmt="o",
        ms=3,
        lw=0.8,
        label=label,
        **style,
    )


def plot_ranks(recovery: pd.DataFrame):
    """Histogram of the truth's rank among the draws, per experiment and population parameter."""
    population = recovery[recovery["level"] == "population"]
    experiments = list(dict.fromkeys(population["experiment"]))
    params = {
        e: list(dict.fromkeys(population.loc[population["experiment"] == e, "parameter"]))
        for e in experiments
    }
    ncol = max((len(p) for p in params.values()), default=1)
    nrow = max(len(experiments), 1)
    # fixed margins, and axes only where there is a histogram: constrained layout and
    # empty axes were half of this figure's 0.45 s
    fig = figure(
        2.6 * ncol, 2.2 * nrow, left=0.35, right=0.1, top=0.55, bottom=0.3, wspace=0.3, hspace=0.5
    )
    grid = fig.add_gridspec(nrow, ncol)
    for i, exp in enumerate(experiments):
        for j, name in enumerate(params[exp]):
            sel = population[(population["experiment"] == exp) & (population["parameter"] == name)]
            fraction = (sel["rank"] / sel["n_draws"]).to_numpy()
            bins = int(np.clip(len(fraction) // 2, 2, 20))
            ax = fig.add_subplot(grid[i, j])
            ax.hist(fraction, bins=bins, range=(0, 1), color="#1f4e79", alpha=0.8)
            ax.axhline(len(fraction) / bins, color="0.4", ls="--", lw=1)
            ax.set_title(f"{exp}: {name}", fontsize=8)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
    fig.suptitle("Rank of the truth among the posterior draws (uniform under SBC)", fontsize=9)
    return fig
