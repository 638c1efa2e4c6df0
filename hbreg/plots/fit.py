"""Every figure of a fit run, each a function of the InferenceData returning a Figure.

The input is an ArviZ 1 `xarray.DataTree` with the groups ``posterior``, ``sample_stats``,
``posterior_predictive`` and ``observed_data``; posterior variables have the dims
``(chain, draw[, group_dim])``. Variables are addressed by name (``"sigma_floor"``) or, for a
variable with the group dimension, at one group with ``"floor[AITKIN]"``.

The figures are drawn with plain matplotlib and numpy rather than arviz-plots: a run must write
all of them in well under three seconds (arviz-plots needs about four for the radon fit, its
forest plot alone 1.6 s), and the layouts asked for here (one forest column per coefficient
with 85 readable rows, per-chain rank histograms, E-BFMI in the energy legend, the
``name[label]`` pair selection) are simpler to draw directly. Figures are created with the Agg
canvas and never registered with pyplot, so no display is needed and nothing has to be closed.
Only numpy is imported with this module; matplotlib is imported when a figure is drawn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hbreg._gc import gc_paused
from hbreg.config.schema import PLOT_KINDS
from hbreg.plots import common as _common
from hbreg.plots.common import as_prior, figure, group, kde, rank_histogram, save, suptitle
from hbreg.plots.proportions import plot_ppc_proportions
from hbreg.stats.diagnostics import bfmi

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_KINDS",
    "save_plots",
    "plot_posterior",
    "plot_trace",
    "plot_forest",
    "plot_ppc",
    "plot_energy",
    "plot_pair",
]

_MAX_PER_VAR = 4  # entries of a non-scalar variable shown in the posterior and trace plots
_MAX_FOREST_GROUPS = 100  # more rows than this are unreadable: show an evenly spaced subset
_PPC_DRAWS = 50
_PPC_MAX_OBS = 100_000
_SELECTION = re.compile(r"^\s*(?P<name>[^\[\]]+?)\s*\[\s*(?P<label>[^\[\]]+?)\s*\]\s*$")
_INTERVAL_COLOR = "#1f4e79"


# ----------------------------------------------------------------------------- entry point


def save_plots(
    idata: Any,
    out_dir: Path,
    *,
    kinds: Sequence[str],
    population_vars: list[str],
    group_vars: list[str],
    group_dim: str | None,
    pair_vars: list[str],
    outcome: str,
    correlation_vars: Sequence[str] = (),
    family: str = "gaussian",
    prior_only: bool = False,
) -> list[Path]:
    """Write ``<out_dir>/<kind>.png`` for each requested kind and return the paths written.

    With `prior_only` the ``posterior`` and ``posterior_predictive`` groups hold prior draws
    (a prior-only run) and every title says "prior" instead of "posterior".

    A kind whose data is absent is skipped, not an error: ``ppc`` without a
    ``posterior_predictive`` group (it is not drawn for huge data sets), ``forest`` without
    group variables, ``energy`` without ``sample_stats.energy``, ``pair`` without pair
    variables, ``posterior`` and ``trace`` without population variables.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's InferenceData.
    out_dir : Path
        Directory receiving the PNGs (the run's ``plots/``); created if missing.
    kinds : sequence of str
        Figures to draw, each one of `PLOT_KINDS`.
    population_vars : list of str
        Population-level parameters (``mu_floor``, ``sigma``, ...) for the posterior and trace.
    group_vars : list of str
        Variables with the group dimension, one forest column each; empty for pooled models.
    group_dim : str or None
        Name of the group dimension (``county``).
    pair_vars : list of str
        Variables of the pair plot, ``name`` or ``name[label]``.
    outcome : str
        Name of the observed variable for the posterior predictive check.
    correlation_vars : sequence of str
        Correlations of the group coefficients (``corr_<a>_<b>``), drawn under the forest.

    Returns
    -------
    list of Path
        The files written, in the order of `kinds`.

    Raises
    ------
    ValueError
        An unknown kind, or a variable or group label that is not in the posterior.
    """
    unknown = [kind for kind in kinds if kind not in PLOT_KINDS]
    if unknown:
        raise ValueError(
            f"unknown plot kind(s) {', '.join(map(repr, unknown))}; "
            f"must be in {{{', '.join(PLOT_KINDS)}}}"
        )
    out_dir = Path(out_dir)
    posterior = group(idata, "posterior")
    sample_stats = group(idata, "sample_stats")
    makers = {
        "posterior": lambda: plot_posterior(idata, var_names=population_vars),
        "trace": lambda: plot_trace(idata, var_names=population_vars, group_dim=group_dim),
        "forest": lambda: plot_forest(
            idata, var_names=group_vars, group_dim=group_dim, correlations=correlation_vars
        ),
        "ppc": lambda: (
            plot_ppc_proportions(idata, outcome=outcome)
            if family in ("bernoulli", "binomial")
            else plot_ppc(idata, outcome=outcome)
        ),
        "energy": lambda: plot_energy(idata),
        "pair": lambda: plot_pair(idata, var_names=pair_vars, group_dim=group_dim),
    }
    available = {
        "posterior": posterior is not None and bool(population_vars),
        "trace": posterior is not None and bool(population_vars),
        "forest": posterior is not None and bool(group_vars),
        "ppc": _has_ppc(idata, outcome),
        "energy": sample_stats is not None and "energy" in sample_stats.data_vars,
        "pair": posterior is not None and bool(pair_vars),
    }
    written = []
    with gc_paused():
        for kind in dict.fromkeys(kinds):  # drop repeats, keep order
            if not available[kind]:
                continue
            fig = makers[kind]()
            if prior_only:
                as_prior(fig)
            written.append(save(fig, out_dir / f"{kind}.png"))
    return written


# ----------------------------------------------------------------------------- figures


def plot_posterior(idata: Any, *, var_names: Sequence[str], group_dim: str | None = None) -> Figure:
    """Marginal posterior of each population-level parameter, with its 50% and 90% intervals.

    A variable with extra dimensions contributes at most its first four entries, so the figure
    stays a few panels whatever the model.
    """
    plain = _common.plain
    items = _expand(_posterior(idata), var_names, group_dim, _MAX_PER_VAR)
    ncols = min(3, len(items))
    nrows = -(-len(items) // ncols)
    fig = figure(
        max(3.4 * ncols, 5.6),
        0.5 + 2.4 * nrows,
        left=0.2,
        right=0.2,
        top=0.85,
        bottom=0.65,
        wspace=0.08,
        hspace=0.55,
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (label, draws) in zip(axes.flat, items, strict=False):
        x = draws.ravel()
        grid, dens = kde(x)
        ax.fill_between(grid, dens, color="C0", alpha=0.25, lw=0)
        ax.plot(grid, dens, color="C0", lw=1.5)
        (q05, q25, q75, q95), mean = np.quantile(x, [0.05, 0.25, 0.75, 0.95]), x.mean()
        y0 = -0.06 * dens.max()
        ax.plot([q05, q95], [y0, y0], color=_INTERVAL_COLOR, lw=1.2, solid_capstyle="butt")
        ax.plot([q25, q75], [y0, y0], color=_INTERVAL_COLOR, lw=4, solid_capstyle="butt")
        ax.plot([mean], [y0], "o", color="white", mec=_INTERVAL_COLOR, ms=5)
        ax.set_title(f"{label}\nmean {plain(mean)}, 90% [{plain(q05)}, {plain(q95)}]", fontsize=9)
        ax.set_yticks([])
        ax.spines[["left", "right", "top"]].set_visible(False)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(items) :]:
        ax.set_axis_off()
    suptitle(fig, "Posterior distributions of the population-level parameters")
    fig.supxlabel("parameter value (dot: posterior mean; bars: 50% and 90% intervals)", fontsize=9)
    return fig


def plot_trace(idata: Any, *, var_names: Sequence[str], group_dim: str | None = None) -> Figure:
    """Trace per chain and per-chain rank histograms of each variable.

    Chains that mix well overlap in the trace and have flat rank histograms. Divergent draws
    are marked red under the trace. A variable with the group dimension shows only its first
    few groups.
    """
    items = _expand(_posterior(idata), var_names, group_dim, _MAX_PER_VAR)
    diverging = _diverging(idata, items[0][1].shape)
    nrows = len(items)
    fig = figure(
        11, 1.1 + 1.6 * nrows, left=0.85, right=0.2, top=0.65, bottom=0.5, wspace=0.17, hspace=0.12
    )
    axes = fig.subplots(nrows, 2, squeeze=False, width_ratios=[2.2, 1], sharex="col")
    for (label, draws), (ax_trace, ax_rank) in zip(items, axes, strict=True):
        n_chains, n_draws = draws.shape
        steps = np.arange(n_draws)
        for chain in range(n_chains):
            ax_trace.plot(steps, draws[chain], lw=0.5, alpha=0.75, color=f"C{chain % 10}")
        if diverging is not None and diverging.any():
            _, where = np.nonzero(diverging)
            low = draws.min() - 0.04 * np.ptp(draws)
            ax_trace.plot(where, np.full(where.size, low), "|", color="red", ms=7, mew=1)
        ax_trace.set_ylabel(label, fontsize=9)
        ax_trace.set_xlim(0, max(n_draws - 1, 1))
        ax_trace.tick_params(labelsize=8)
        rank_histogram(ax_rank, draws)
    axes[-1, 0].set_xlabel("draw (after tuning)", fontsize=9)
    axes[-1, 1].set_xlabel("rank of draw among all chains", fontsize=9)
    axes[0, 0].set_title("Trace per chain (divergent draws marked red below)", fontsize=10)
    axes[0, 1].set_title("Rank histogram per chain (flat = well mixed)", fontsize=10)
    suptitle(fig, "Traces and rank plots")
    return fig


def plot_forest(
    idata: Any,
    *,
    var_names: Sequence[str],
    group_dim: str | None,
    correlations: Sequence[str] = (),
) -> Figure:
    """Group coefficients: one column per variable, one row per group, 50% and 90% intervals.

    Rows keep the order of the group labels so that the columns line up; the dashed line is the
    population mean ``mu_<var>`` where the model has one. `correlations` (scalar variables,
    ``corr_<a>_<b>``) get a panel of their own below, on [-1, 1].
    """
    post = _posterior(idata)
    if not var_names:
        raise ValueError("the forest plot needs at least one group variable")
    for name in (*var_names, *correlations):
        _check_var(post, name)
    if group_dim is None:
        group_dim = _infer_group_dim(post, var_names)
    columns = []  # (title, draws with shape (samples, groups), population mean or None)
    labels = None
    for name in var_names:
        da = post[name]
        if group_dim not in da.dims:
            raise ValueError(f"variable {name!r} has no dimension {group_dim!r} (dims {da.dims})")
        rest = [d for d in da.dims if d not in ("chain", "draw", group_dim)]
        da = da.transpose("chain", "draw", group_dim, *rest)
        values = da.values.reshape(-1, *da.shape[2:])
        if labels is None:
            labels = [str(v) for v in da[group_dim].values]
        mu = _scalar_mean(post, f"mu_{name}") if not rest else None
        for index in np.ndindex(*values.shape[2:]):
            suffix = (
                "["
                + ", ".join(str(da[d].values[i]) for d, i in zip(rest, index, strict=True))
                + "]"
            )
            title = name + (suffix if rest else "")
            columns.append((title, values[(slice(None), slice(None), *index)], mu))
    subset = ""
    if len(labels) > _MAX_FOREST_GROUPS:
        # Evenly spaced by the first column's median, so the whole spread stays visible.
        order = np.argsort(np.median(columns[0][1], axis=0), kind="stable")
        keep = np.sort(order[np.linspace(0, len(order) - 1, _MAX_FOREST_GROUPS).astype(int)])
        subset = f"; {_MAX_FOREST_GROUPS} of {len(labels)} groups, evenly spaced by median"
        labels = [labels[i] for i in keep]
        columns = [(title, values[:, keep], mu) for title, values, mu in columns]
    n_groups = len(labels)
    fontsize = 9 if n_groups <= 30 else 7 if n_groups <= 60 else 6
    height = max(3.0, 1.3 + 0.135 * n_groups)
    label_width = 0.55 + max(map(len, [*labels, *correlations])) * fontsize * 0.62 / 72
    corr_height = 0.35 + 0.3 * len(correlations) if correlations else 0.0
    gap = 0.75
    heading = f"Group coefficients by {group_dim} (50% and 90% intervals{subset})"
    fig = figure(
        max(label_width + 0.3 + 2.9 * len(columns), _common.text_width((heading, 11))),
        height + (corr_height + gap if correlations else 0.0),
        left=label_width,
        right=0.25,
        top=0.85,
        bottom=0.6,
        wspace=0.06,
        hspace=gap / ((height - 1.45 + corr_height) / 2) if correlations else 0.2,
    )
    if correlations:
        grid = fig.add_gridspec(2, len(columns), height_ratios=[height - 1.45, corr_height])
        first = fig.add_subplot(grid[0, 0])
        axes = [first] + [fig.add_subplot(grid[0, i]) for i in range(1, len(columns))]
        _correlation_panel(fig.add_subplot(grid[1, :]), post, correlations, fontsize)
    else:
        axes = fig.subplots(1, len(columns), squeeze=False)[0]
    y = np.arange(n_groups)
    for ax, (title, values, mu) in zip(axes, columns, strict=True):
        q05, q25, q75, q95 = np.quantile(values, [0.05, 0.25, 0.75, 0.95], axis=0)
        ax.hlines(y, q05, q95, color=_INTERVAL_COLOR, lw=0.9)
        ax.hlines(y, q25, q75, color=_INTERVAL_COLOR, lw=3)
        ax.plot(values.mean(axis=0), y, "o", color="white", mec=_INTERVAL_COLOR, ms=3.2, mew=0.9)
        if mu is not None:
            ax.axvline(mu, color="0.4", ls="--", lw=0.9)
            title += f"\n(dashed: mean of mu_{title})"
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_axisbelow(True)
    for ax in axes[1:]:  # rows line up by their limits; ticks only where labelled
        ax.set(yticks=[], ylim=(n_groups - 0.5, -0.5))
    axes[0].set_yticks(y, labels, fontsize=fontsize)
    axes[0].set_ylim(n_groups - 0.5, -0.5)
    axes[0].set_ylabel(group_dim, fontsize=9)
    suptitle(fig, heading)
    fig.supxlabel("coefficient value (dot: posterior mean)", fontsize=9)
    return fig


def _correlation_panel(ax: Axes, post: Any, names: Sequence[str], fontsize: int) -> None:
    """One row per correlation: 50% and 90% intervals and the mean (as the coefficients above)."""
    y = np.arange(len(names))
    for row, name in enumerate(names):
        values = post[name].values.ravel()
        q05, q25, q75, q95 = np.quantile(values, [0.05, 0.25, 0.75, 0.95])
        ax.hlines([row, row], [q05, q25], [q95, q75], color=_INTERVAL_COLOR, lw=[0.9, 3])
        ax.plot(values.mean(), row, "o", color="white", mec=_INTERVAL_COLOR, ms=3.2, mew=0.9)
    ax.axvline(0, color="0.4", ls="--", lw=0.9)
    ax.set_xlim(-1, 1)
    ax.set_yticks(y, list(names), fontsize=fontsize)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_title("Correlations of the group coefficients (50% and 90% intervals)", fontsize=9)
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_axisbelow(True)


def plot_ppc(idata: Any, *, outcome: str) -> Figure:
    """Posterior predictive check: density of the observed outcome against replicated data.

    Draws fifty replicated data sets spread over all chains; a discrete (integer) outcome is
    compared by the frequency of each value instead of a kernel density.
    """
    if not _has_ppc(idata, outcome):
        raise ValueError(
            f"no posterior predictive and observed data for {outcome!r} in this InferenceData"
        )
    observed = np.asarray(group(idata, "observed_data")[outcome].values, dtype=float).ravel()
    observed = observed[np.isfinite(observed)]
    predictive = group(idata, "posterior_predictive")[outcome]
    predictive = predictive.transpose("chain", "draw", ...)
    n_samples = predictive.shape[0] * predictive.shape[1]
    flat = predictive.values.reshape(n_samples, -1)
    pick = np.unique(np.linspace(0, n_samples - 1, min(_PPC_DRAWS, n_samples)).astype(int))
    # Each replicated density needs only its shape: 100k observations are plenty.
    columns = np.linspace(0, flat.shape[1] - 1, min(flat.shape[1], _PPC_MAX_OBS)).astype(int)
    replicated = flat[np.ix_(pick, columns)].astype(float)
    fig = figure(7.5, 4.3, left=0.75, right=0.2, top=0.4, bottom=0.55)
    ax = fig.subplots()
    discrete = _is_discrete(observed)
    if discrete:
        finite = replicated[np.isfinite(replicated)]
        lo = min(observed.min(), np.floor(np.quantile(finite, 0.001)))
        hi = max(observed.max(), np.ceil(np.quantile(finite, 0.999)))
        values = np.arange(lo, hi + 1)
        for row in replicated:
            row = row[np.isfinite(row)]
            freq = (
                np.bincount(
                    (row - values[0]).clip(0, values.size - 1).astype(int), minlength=values.size
                )
                / row.size
            )
            ax.plot(values, freq, "-", color="C0", alpha=0.15, lw=0.8)
        obs_freq = np.bincount((observed - values[0]).astype(int), minlength=values.size)
        ax.plot(values, obs_freq / observed.size, "o-", color="black", lw=1.8, ms=4)
        ax.set_ylabel("relative frequency", fontsize=9)
    else:
        finite = replicated[np.isfinite(replicated)]
        lo = min(observed.min(), np.quantile(finite, 0.001))
        hi = max(observed.max(), np.quantile(finite, 0.999))
        grid, obs_dens, bw = kde(observed, lo=lo, hi=hi, return_bw=True)
        dens = np.stack([kde(row[np.isfinite(row)], lo=lo, hi=hi, bw=bw)[1] for row in replicated])
        ax.plot(grid, dens.T, color="C0", alpha=0.15, lw=0.8)
        ax.plot(grid, obs_dens, color="black", lw=1.8)
        ax.set_ylabel("density", fontsize=9)
    from matplotlib.lines import Line2D

    ax.legend(
        [Line2D([], [], color="black", lw=1.8), Line2D([], [], color="C0", alpha=0.6, lw=1)],
        ["observed", f"replicated ({len(pick)} posterior predictive draws)"],
        fontsize=8,
        frameon=False,
    )
    ax.set_xlabel(outcome, fontsize=9)
    ax.spines[["right", "top"]].set_visible(False)
    ax.set_title(f"Posterior predictive check: {outcome}", fontsize=11)
    return fig


def plot_energy(idata: Any) -> Figure:
    """Marginal energy against energy transitions, with E-BFMI per chain in the legend.

    When the transition distribution is much narrower than the marginal one (E-BFMI below 0.3)
    the sampler explores the tails poorly, typically because of a funnel.
    """
    sample_stats = group(idata, "sample_stats")
    if sample_stats is None or "energy" not in sample_stats.data_vars:
        raise ValueError("this InferenceData has no sample_stats.energy")
    energy = np.asarray(sample_stats["energy"].transpose("chain", "draw").values, dtype=float)
    per_chain = bfmi(energy)
    marginal = (energy - energy.mean(axis=1, keepdims=True)).ravel()
    transition = np.diff(energy, axis=1).ravel()
    lo = min(marginal.min(), transition.min())
    hi = max(marginal.max(), transition.max())
    fig = figure(7.5, 4.3, left=0.3, right=0.2, top=0.4, bottom=0.55)
    ax = fig.subplots()
    handles = []
    for values, color, name in (
        (marginal, "C0", "marginal energy (centred per chain)"),
        (transition, "C1", "energy transition (draw to draw)"),
    ):
        grid, dens = kde(values, lo=lo, hi=hi)
        ax.fill_between(grid, dens, color=color, alpha=0.3, lw=0)
        (line,) = ax.plot(grid, dens, color=color, lw=1.5, label=name)
        handles.append(line)
    from matplotlib.patches import Patch

    for chain, value in enumerate(per_chain):
        flag = "  (low: < 0.3)" if value < 0.3 else ""
        handles.append(Patch(color="none", label=f"E-BFMI chain {chain}: {value:.2f}{flag}"))
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper right")
    ax.set_yticks([])
    ax.spines[["left", "right", "top"]].set_visible(False)
    ax.set_xlabel("energy", fontsize=9)
    ax.set_title("Energy: marginal vs transition distribution (they should match)", fontsize=11)
    return fig


def plot_pair(idata: Any, *, var_names: Sequence[str], group_dim: str | None = None) -> Figure:
    """Pairwise scatter of the divergence-prone parameters, divergent draws in red.

    Divergences that pile up where a scale parameter is small are the signature of a funnel.
    Positive ``sigma*`` parameters are drawn as their logarithm, where the funnel is plainest.
    Variables are ``name`` or ``name[label]`` (one group of a group variable); a variable with
    extra dimensions and no label contributes its first few entries.
    """
    items = _expand(_posterior(idata), var_names, group_dim, _MAX_PER_VAR)
    diverging = _diverging(idata, items[0][1].shape)
    mask = diverging.ravel() if diverging is not None else np.zeros(items[0][1].size, bool)
    n_div = int(mask.sum())
    n = len(items)
    size = max(min(2.4, 9.0 / n) * n + 0.8, 3.6)
    fig = figure(size, size, left=0.85, right=0.15, top=0.45, bottom=0.6, wspace=0.08, hspace=0.08)
    grid = fig.add_gridspec(n, n)
    axes = np.empty((n, n), dtype=object)  # lower triangle only: empty axes cost time too
    for j in range(n):
        for i in range(n - 1, j - 1, -1):  # a column shares x with its bottom panel
            share_x = axes[n - 1, j] if i < n - 1 else None
            share_y = axes[i, 0] if 0 < j < i else None  # scatters of a row share y
            axes[i, j] = fig.add_subplot(grid[i, j], sharex=share_x, sharey=share_y)
    labels, flat = [], []
    for label, draws in items:  # a funnel is plain to see against the log of its scale
        x = draws.ravel()
        if label.startswith("sigma") and bool(np.all(x > 0)):
            label, x = f"log({label})", np.log(x)
        labels.append(label)
        flat.append(x)
    for i in range(n):
        for j in range(i + 1):
            ax = axes[i, j]
            x = flat[j]
            if i == j:
                ax.hist(x, bins=40, histtype="stepfilled", color="C0", alpha=0.5)
                if n_div:
                    ax.plot(x[mask], np.zeros(n_div), "|", color="red", ms=8, mew=1)
                ax.set_yticks([])
            else:
                y = flat[i]
                ax.plot(x[~mask], y[~mask], ".", color="C0", ms=2.5, alpha=0.3, mew=0)
                if n_div:
                    ax.plot(x[mask], y[mask], ".", color="red", ms=5, mew=0)
                if j > 0:
                    ax.tick_params(labelleft=False)
            ax.tick_params(labelsize=7, labelbottom=i == n - 1)
            if i == n - 1:
                ax.set_xlabel(labels[j], fontsize=9)
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i], fontsize=9)
    title = f"Pair plot ({n_div} divergent draws in red)" if n_div else "Pair plot (no divergences)"
    suptitle(fig, title)
    return fig


# ----------------------------------------------------------------------------- helpers


def _posterior(idata: Any) -> Any:
    posterior = group(idata, "posterior")
    if posterior is None:
        raise ValueError("this InferenceData has no posterior group")
    return posterior


def _has_ppc(idata: Any, outcome: str) -> bool:
    predictive = group(idata, "posterior_predictive")
    observed = group(idata, "observed_data")
    return (
        predictive is not None
        and observed is not None
        and outcome in predictive.data_vars
        and outcome in observed.data_vars
    )


def _check_var(post: Any, name: str) -> None:
    if name not in post.data_vars:
        raise ValueError(
            f"variable {name!r} is not in the posterior; must be in {{{', '.join(post.data_vars)}}}"
        )


def _infer_group_dim(post: Any, var_names: Sequence[str]) -> str:
    dims = {d for name in var_names for d in post[name].dims if d not in ("chain", "draw")}
    if len(dims) != 1:
        raise ValueError(f"cannot tell the group dimension of {list(var_names)}: pass group_dim")
    return dims.pop()


def _expand(
    post: Any, specs: Sequence[str], group_dim: str | None, max_per_var: int
) -> list[tuple[str, np.ndarray]]:
    """Resolve ``name`` / ``name[label]`` specs into ``(label, draws[chain, draw])`` items.

    A variable with extra dimensions and no label contributes its first `max_per_var` entries.
    """
    if not specs:
        raise ValueError("no variables to plot")
    items = []
    for spec in specs:
        match = _SELECTION.match(spec)
        name, label = (match["name"], match["label"]) if match else (spec.strip(), None)
        _check_var(post, name)
        da = post[name].transpose("chain", "draw", ...)
        extra = list(da.dims[2:])
        if label is not None:
            dim = group_dim if group_dim in extra else extra[0] if len(extra) == 1 else None
            if dim is None:
                raise ValueError(
                    f"cannot select {spec!r}: {name!r} has dims {tuple(extra)}, "
                    f"not one group dimension {group_dim!r}"
                )
            coords = [str(v) for v in da[dim].values]
            if label not in coords:
                shown = ", ".join(coords[:10]) + (", ..." if len(coords) > 10 else "")
                raise ValueError(f"{label!r} is not a {dim} of {name!r}; must be in {{{shown}}}")
            da = da.isel({dim: coords.index(label)})
            extra.remove(dim)
            name = f"{name}[{label}]"
        values = np.asarray(da.values, dtype=float)
        if not extra:
            items.append((name, values))
            continue
        for count, index in enumerate(np.ndindex(*values.shape[2:])):
            if count >= max_per_var:
                break
            labels = ", ".join(str(da[d].values[i]) for d, i in zip(extra, index, strict=True))
            items.append((f"{name}[{labels}]", values[(slice(None), slice(None), *index)]))
    return items


def _diverging(idata: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Boolean (chain, draw) mask of divergent draws, or None when unknown or misaligned."""
    sample_stats = group(idata, "sample_stats")
    if sample_stats is None or "diverging" not in sample_stats.data_vars:
        return None
    mask = np.asarray(sample_stats["diverging"].transpose("chain", "draw").values, dtype=bool)
    return mask if mask.shape == tuple(shape) else None


def _scalar_mean(post: Any, name: str) -> float | None:
    if name not in post.data_vars or set(post[name].dims) - {"chain", "draw"}:
        return None
    return float(post[name].mean())


def _is_discrete(x: np.ndarray) -> bool:
    return x.size > 0 and bool(np.all(x == np.round(x))) and np.ptp(x) <= 60
