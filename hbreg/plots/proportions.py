"""Posterior predictive check for binary and binomial outcomes: proportions per group.

A density of 0/1 values says nothing; what a binary model must get right is how often
the outcome happens, and for a hierarchical model how often in each group. Each group's
observed proportion (successes over trials) is drawn against the 90% interval of the
same proportion in the replicated data, groups sorted by the observed proportion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hbreg.names import GROUP_INDEX, GROUP_SIZE
from hbreg.plots.common import figure, group, suptitle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_ppc_proportions"]

_MAX_GROUPS = 60  # more rows are unreadable: show an evenly spaced subset by proportion


def plot_ppc_proportions(idata: Any, *, outcome: str) -> Figure:
    """Observed proportion per group (or overall) against its posterior predictive interval."""
    observed = np.asarray(group(idata, "observed_data")[outcome].values, dtype=float)
    predictive = group(idata, "posterior_predictive")[outcome].transpose("chain", "draw", ...)
    replicated = predictive.values.reshape(-1, observed.size).astype(float)
    constant = group(idata, "constant_data")
    trials = np.ones_like(observed)
    labels, index, dim = ["all rows"], np.zeros(observed.size, dtype=np.int64), None
    if constant is not None:
        if "trials" in constant.data_vars:
            trials = np.asarray(constant["trials"].values, dtype=float)
        if GROUP_INDEX in constant.data_vars and GROUP_SIZE in constant.data_vars:
            index = np.asarray(constant[GROUP_INDEX].values, dtype=np.int64)
            dim = constant[GROUP_SIZE].dims[0]
            labels = [str(v) for v in constant[dim].values]
    n_groups = len(labels)
    totals = np.bincount(index, weights=trials, minlength=n_groups)
    observed_p = np.bincount(index, weights=observed, minlength=n_groups) / totals
    n_draws = replicated.shape[0]
    flat_index = (np.arange(n_draws)[:, None] * n_groups + index[None, :]).ravel()
    replicated_p = (
        np.bincount(flat_index, weights=replicated.ravel(), minlength=n_draws * n_groups).reshape(
            n_draws, n_groups
        )
        / totals
    )
    low, high = np.quantile(replicated_p, [0.05, 0.95], axis=0)
    order = np.argsort(observed_p, kind="stable")
    subset = ""
    if n_groups > _MAX_GROUPS:
        order = order[np.linspace(0, n_groups - 1, _MAX_GROUPS).round().astype(int)]
        subset = f"; {_MAX_GROUPS} of {n_groups} groups, evenly spaced"
    shown = len(order)
    fig = figure(7.5, 1.5 + 0.2 * shown, left=1.6, right=0.3, top=0.75, bottom=0.6)
    ax = fig.subplots()
    pos = np.arange(shown)
    ax.hlines(
        pos,
        low[order],
        high[order],
        color="C0",
        lw=2.5,
        alpha=0.6,
        label=f"replicated, 90% interval ({n_draws} draws)",
    )
    ax.plot(observed_p[order], pos, "o", color="black", ms=4, label="observed")
    inside = (observed_p >= low) & (observed_p <= high)
    ax.set_yticks(pos, [labels[i] for i in order], fontsize=7)
    ax.set_xlabel(f"proportion of {outcome} (successes / trials)", fontsize=9)
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    where = f"per {dim}" if dim else "over all rows"
    suptitle(
        fig,
        f"Posterior predictive check: proportion {where} "
        f"({int(inside.sum())} of {n_groups} observed inside{subset})",
    )
    return fig
