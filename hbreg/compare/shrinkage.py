"""Shrinkage statistics: each group's estimate of each varying coefficient under every run.

Rows per group and which coefficients vary come from the run's ``constant_data`` (stored by
`hbreg fit`), never from its config or data file, so the picture survives a moved csv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hbreg.compare.select import ComparisonError, run_labels
from hbreg.families import inverse_link
from hbreg.names import (
    COEF_DIM,
    GROUP_PREDICTOR_DIM,
    GROUP_PREDICTORS,
    GROUP_SIZE,
    INTERCEPT,
    SAMPLE_DIMS,
    VARYING,
    group_predictor_effect,
    population_mean,
)
from hbreg.runs import RunInfo

__all__ = ["SHRINKAGE_PROB", "Shrinkage", "shrinkage_table"]

SHRINKAGE_PROB = 0.9


@dataclass
class Shrinkage:
    """Group estimates of the varying coefficients under each unpooled/hierarchical run.

    `table` has one row per group, ordered by the number of rows in the group (fewest first,
    ties by label), a ``size`` column, and ``<coef>:<run>:mean|low|high`` columns (posterior
    mean and the equal-tailed `prob` interval).
    """

    group_dim: str
    coefs: list[str]
    series: list[tuple[str, str]]  # (run label, pooling) of each unpooled/hierarchical run
    table: pd.DataFrame
    pooled: dict[str, dict[str, float]]  # run label -> coef -> posterior mean
    population: dict[str, dict[str, float]]  # run label -> coef -> posterior mean of mu_<coef>
    prob: float = SHRINKAGE_PROB
    notes: list[str] = field(default_factory=list)
    scales: dict[str, str] = field(default_factory=dict)  # coef -> scale of its axis, if not link


def shrinkage_table(
    runs: Sequence[RunInfo],
    *,
    trees: Mapping[Path, Any] | None = None,
    prob: float = SHRINKAGE_PROB,
) -> Shrinkage:
    """Each group's estimate of each varying coefficient under every unpooled/hierarchical run.

    Parameters
    ----------
    runs : sequence of RunInfo
        The compared runs; pooled ones give the horizontal reference lines.
    trees : mapping of Path to xarray.DataTree, optional
        Already loaded idata (posterior and constant_data) by run path; others are read
        from ``idata.nc``.
    prob : float
        Mass of the equal-tailed interval.

    Raises
    ------
    ComparisonError
        When no shrinkage picture can be drawn (no grouped run, different group variables or
        groupings, a run stored without ``constant_data``); the message says why.
    """
    trees = dict(trees or {})
    labels = dict(zip((r.path for r in runs), run_labels(runs), strict=True))
    grouped = [r for r in runs if r.manifest.get("pooling") in ("unpooled", "hierarchical")]
    if not grouped:
        raise ComparisonError("no unpooled or hierarchical run among those compared")
    group_vars = {r.manifest.get("data", {}).get("group") for r in grouped}
    if len(group_vars) != 1 or None in group_vars:
        raise ComparisonError(
            "the unpooled/hierarchical runs do not share one group variable: "
            + ", ".join(
                f"{labels[r.path]} by {r.manifest.get('data', {}).get('group')}" for r in grouped
            )
        )
    group_dim = group_vars.pop()
    sizes, varying, group_predictors = None, {}, {}
    for run in grouped:
        const = _group(run, trees, "constant_data", labels[run.path])
        run_sizes, varying[run.path], group_predictors[run.path] = _group_layout(
            const, group_dim, labels[run.path]
        )
        if sizes is None:
            sizes = run_sizes
        elif not sizes.sort_index().equals(run_sizes.sort_index()):
            raise ComparisonError(
                f"{labels[grouped[0].path]} and {labels[run.path]} group the rows differently"
            )
    order = sorted(sizes.index, key=lambda g: (sizes[g], str(g)))
    link, scale = _response_link(runs)
    table = pd.DataFrame({"size": sizes.loc[order].astype(int)})
    table.index.name = group_dim
    coefs: list[str] = []
    series, population, notes = [], {}, []
    low_q, high_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    for run in grouped:
        label = labels[run.path]
        post = _group(run, trees, "posterior", label)
        series.append((label, run.manifest["pooling"]))
        for coef in varying[run.path]:
            if coef not in post.data_vars or group_dim not in post[coef].dims:
                continue
            if coef not in coefs:
                coefs.append(coef)
            da = post[coef]
            if set(da.dims) != {*SAMPLE_DIMS, group_dim}:
                raise ComparisonError(
                    f"{label}: '{coef}' has dims {da.dims}, expected (chain, draw, {group_dim})"
                )
            values = da.transpose(*SAMPLE_DIMS, group_dim).values.reshape(-1, da.sizes[group_dim])
            values = _on_scale(values, coef, link)
            est = pd.DataFrame(
                {
                    "mean": values.mean(axis=0),
                    "low": np.quantile(values, low_q, axis=0),
                    "high": np.quantile(values, high_q, axis=0),
                },
                index=[str(g) for g in da[group_dim].values],
            ).reindex(order)
            for stat in ("mean", "low", "high"):
                table[f"{coef}:{label}:{stat}"] = est[stat].to_numpy()
            mu = population_mean(coef)
            if run.manifest["pooling"] == "hierarchical" and mu in post.data_vars:
                effects = [group_predictor_effect(coef, p) for p in group_predictors[run.path]]
                if any(e in post.data_vars for e in effects):
                    notes.append(
                        f"{label}: the population mean of {coef} depends on group "
                        "predictors, so no single population line is drawn for it"
                    )
                else:
                    mean = _on_scale(post[mu].values, coef, link).mean()
                    population.setdefault(label, {})[coef] = float(mean)
    if not coefs:
        raise ComparisonError(f"no coefficient varies by {group_dim} in the grouped runs")
    pooled = {}
    for run in runs:
        if run.manifest.get("pooling") != "pooled":
            continue
        post = _group(run, trees, "posterior", labels[run.path])
        means = {
            c: float(_on_scale(post[c].values, c, link).mean())
            for c in coefs
            if c in post.data_vars and set(post[c].dims) <= set(SAMPLE_DIMS)
        }
        if means:
            pooled[labels[run.path]] = means
    return Shrinkage(
        group_dim=group_dim,
        coefs=coefs,
        series=series,
        table=table,
        pooled=pooled,
        population=population,
        prob=prob,
        notes=notes,
        scales={INTERCEPT: scale} if scale and INTERCEPT in coefs else {},
    )


_SCALES = {"logit": "probability", "probit": "probability", "log": "rate"}


def _response_link(runs: Sequence[RunInfo]) -> tuple[str, str | None]:
    """The link shared by the runs and the scale its inverse reads on (None: identity).

    The intercept of a logit or log model is shown as the probability or rate of a row
    with every predictor at 0, which is what a reader compares across groups; slopes stay
    on the link scale (log-odds, log-rate differences). Runs with different links are
    all shown on the link scale.
    """
    links = {r.manifest.get("link", "identity") for r in runs}
    link = links.pop() if len(links) == 1 else "identity"
    return link, _SCALES.get(link)


def _on_scale(values: np.ndarray, coef: str, link: str) -> np.ndarray:
    return inverse_link(link, values) if coef == INTERCEPT and link in _SCALES else values


def _group(run: RunInfo, trees: dict[Path, Any], name: str, label: str):
    """One idata group of `run` as a Dataset, read from idata.nc unless already loaded."""
    tree = trees.get(run.path)
    if tree is None or name not in tree.children:
        import xarray as xr

        try:
            with xr.open_datatree(run.path / "idata.nc", engine="h5netcdf") as stored:
                present = set(stored.children)
                tree = xr.DataTree.from_dict(
                    {
                        g: stored[g].to_dataset().load()
                        for g in ("posterior", "constant_data")
                        if g in present
                    }
                )
        except (OSError, ValueError) as exc:
            path = run.path / "idata.nc"
            raise ComparisonError(f"{label}: cannot read '{path}': {exc}") from None
        trees[run.path] = tree
    if name not in tree.children:
        why = (
            ": it was fitted before hbreg stored the rows per group in idata.nc; refit it"
            if name == "constant_data"
            else ""
        )
        raise ComparisonError(f"{label} ('{run.path}') has no {name} group{why}")
    return tree[name].to_dataset()


def _group_layout(const, group_dim: str, label: str) -> tuple[pd.Series, list[str], list[str]]:
    """Rows per group label, the varying coefficients and the group-level predictors."""
    if GROUP_SIZE not in const.data_vars or group_dim not in const[GROUP_SIZE].dims:
        raise ComparisonError(f"{label}: its constant_data has no rows per {group_dim}")
    sizes = pd.Series(
        np.asarray(const[GROUP_SIZE].values, dtype=int),
        index=[str(g) for g in const[group_dim].values],
    )
    varying = [
        str(c)
        for c, flag in zip(const[COEF_DIM].values, const[VARYING].values, strict=True)
        if flag
    ]
    predictors = (
        [str(p) for p in const[GROUP_PREDICTOR_DIM].values]
        if GROUP_PREDICTORS in const.data_vars
        else []
    )
    return sizes, varying, predictors
