"""`hbreg compare`: rank fit runs by PSIS-LOO and draw the shrinkage of group estimates.

Runs are chosen explicitly (run directories) or as the newest complete run of each experiment
under an output root. They must model the same observations: LOO estimates the expected log
predictive density of *those* rows, so runs are refused unless they share the outcome, the row
count and the observed values. (The manifest's ``data.fingerprint`` is not the test: it also
covers the design matrix and the group index, which differ between a pooled and a
hierarchical fit of the same rows, the very comparison this command exists for.)

The result is written atomically to ``<root>/<stamp>_compare/``: ``compare.csv`` (full
precision), ``compare.md`` (for a person), ``loo.png`` and, when unpooled or hierarchical runs
share a group variable, ``shrinkage.png`` and ``shrinkage.csv``.
"""

from __future__ import annotations

import math
import shlex
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hbreg.errors import HbregError, OutputError
from hbreg.runs import RunDirectory, RunInfo, list_runs, load_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console

__all__ = [
    "COMPARE_COLUMNS",
    "ComparisonError",
    "ComparisonResult",
    "Shrinkage",
    "compare_runs",
    "plot_shrinkage",
    "render_comparison",
    "select_runs",
    "shrinkage_table",
]

PARETO_K_THRESHOLD = 0.7
SHRINKAGE_PROB = 0.9
COMPARE_COLUMNS = [
    "rank",
    "run",
    "pooling",
    "elpd_loo",
    "se",
    "p_loo",
    "elpd_diff",
    "dse",
    "p_worse",
    "weight",
    "pareto_k_high",
    "pareto_k_max",
    "pareto_k_high_obs",
    "good_k",
    "n_samples",
    "n_obs",
    "name",
    "path",
]
_SAMPLE_DIMS = ("chain", "draw")
_MAX_LISTED_OBS = 20
_DPI = 100
_SERIES_COLORS = {"unpooled": "#d95f02", "hierarchical": "#1b62a5"}
_EXTRA_COLORS = ("#7570b3", "#1b9e77", "#e7298a", "#66a61e")


class ComparisonError(HbregError):
    """The runs cannot be compared: missing, incomplete, on different data, or without LOO."""


# ----------------------------------------------------------------------------- selection


def select_runs(
    paths: Sequence[str | Path], *, latest: bool, names: Sequence[str]
) -> tuple[list[RunInfo], Path]:
    """Choose the runs to compare and the root the compare directory goes to.

    Parameters
    ----------
    paths : sequence of path
        Run directories; with `latest`, at most one output root (default ``outputs``).
    latest : bool
        Take the newest complete run of every experiment name under the root.
    names : sequence of str
        Keep only runs with these experiment names (each must match a run).

    Returns
    -------
    runs : list of RunInfo
        At least two complete fit runs.
    root : Path
        The output root (with `latest`) or the parent directory of the first run.

    Raises
    ------
    ComparisonError
        A missing or incomplete run (named by its path), an unknown name, or fewer than two runs.
    """
    paths = [Path(p) for p in paths]
    names = list(dict.fromkeys(names))
    if latest:
        if len(paths) > 1:
            raise ComparisonError(
                f"--latest takes at most one output root, got {len(paths)} paths: "
                f"{', '.join(map(str, paths))}; leave out --latest to compare run directories"
            )
        root = paths[0] if paths else Path("outputs")
        runs = _latest_runs(root, names)
    else:
        if not paths:
            raise ComparisonError(
                "give the run directories to compare, or --latest [ROOT] for the newest "
                "complete run of each experiment under an output root (default 'outputs')"
            )
        runs = [_explicit_run(p) for p in paths]
        _refuse_repeats(runs)
        if names:
            unmatched = [n for n in names if not any(r.name == n for r in runs)]
            if unmatched:
                raise ComparisonError(
                    f"--name {', '.join(unmatched)}: no given run has that name; their names "
                    f"are {', '.join(sorted({r.name for r in runs}))}"
                )
            runs = [r for r in runs if r.name in names]
        root = runs[0].path.parent
    if len(runs) < 2:
        found = ", ".join(f"{r.name} ({r.path})" for r in runs) or "none"
        where = f" under '{root}'" if latest else ""
        raise ComparisonError(
            f"need at least 2 runs to compare, found {len(runs)}{where}: {found}"
            + (
                ". --latest takes one run per experiment name: fit another experiment on the "
                "same data first"
                if latest
                else ""
            )
        )
    return runs, root


def _latest_runs(root: Path, names: list[str]) -> list[RunInfo]:
    if not root.is_dir():
        raise ComparisonError(f"output root '{root}' does not exist or is not a directory")
    chosen: dict[str, RunInfo] = {}
    for run in list_runs(root, kind="fit"):  # newest first
        if run.complete and run.name not in chosen:
            chosen[run.name] = run
    if names:
        missing = [n for n in names if n not in chosen]
        if missing:
            present = ", ".join(sorted(chosen)) or "none"
            raise ComparisonError(
                f"--name {', '.join(missing)}: no complete run of that name under '{root}'; "
                f"experiments with a complete run there: {present}"
            )
        return [chosen[n] for n in names]
    return [chosen[n] for n in sorted(chosen)]


def _explicit_run(path: Path) -> RunInfo:
    try:
        run = load_run(path)
    except OutputError as exc:
        hint = ""
        if path.is_dir() and any((child / "manifest.json").is_file() for child in path.iterdir()):
            hint = f"; it holds runs: use --latest {path} to compare the newest of each"
        raise ComparisonError(f"cannot compare: {exc}{hint}") from None
    kind = run.manifest.get("kind", "fit")
    if kind != "fit":
        raise ComparisonError(f"'{path}' is a {kind} directory, not a fit run")
    if not run.complete:
        error = run.manifest.get("error")
        raise ComparisonError(
            f"run '{path}' is {run.status}, not complete"
            + (f" ({error})" if error else "")
            + "; only complete runs can be compared"
        )
    return run


def _refuse_repeats(runs: list[RunInfo]) -> None:
    seen: dict[Path, Path] = {}
    for run in runs:
        key = run.path.resolve()
        if key in seen:
            raise ComparisonError(f"run '{run.path}' is given twice")
        seen[key] = run.path


# ----------------------------------------------------------------------------- comparison


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


@dataclass
class ComparisonResult:
    """What `render_comparison` shows and what was written."""

    path: Path
    table: pd.DataFrame  # COMPARE_COLUMNS, best first
    outcome: str
    n_obs: int
    best: str
    verdict: str
    warnings: list[str]
    notes: list[str]
    files: list[Path]
    shrinkage: Shrinkage | None = None


@dataclass
class _Loaded:
    run: RunInfo
    label: str
    tree: Any  # xarray.DataTree with posterior, log_likelihood, observed_data
    outcome: str

    @property
    def pooling(self) -> str:
        return self.run.manifest.get("pooling", "?")


def compare_runs(runs: Sequence[RunInfo], *, root: str | Path) -> ComparisonResult:
    """Rank `runs` by PSIS-LOO and write the compare directory under `root`.

    Everything that can refuse the comparison (different data, no log-likelihood, a failed
    LOO) happens before the directory is created, so a refused comparison writes nothing.

    Raises
    ------
    ComparisonError
        Runs on different observations, or a run without a usable log-likelihood.
    """
    runs = list(runs)
    if len(runs) < 2:
        raise ComparisonError(f"need at least 2 runs to compare, got {len(runs)}")
    _check_same_rows(runs)
    labels = _labels(runs)
    loaded = [_load(run, label) for run, label in zip(runs, labels, strict=True)]
    _check_same_observations(loaded)
    elpds = {item.label: _loo(item) for item in loaded}
    table = _compare_table(loaded, elpds)
    warn = _warnings(table, loaded, elpds)
    notes: list[str] = []
    shrinkage = None
    try:
        shrinkage = shrinkage_table(
            runs, posteriors={i.run.path: i.tree["posterior"] for i in loaded}
        )
    except ComparisonError as exc:
        notes.append(f"no shrinkage plot: {exc}")
    else:
        notes.extend(shrinkage.notes)
    verdict = _verdict(table)
    outcome, n_obs = loaded[0].outcome, int(table["n_obs"].iloc[0])
    out = RunDirectory(root, "compare", kind="compare")
    try:
        files = _write(out, table, verdict, warn, notes, shrinkage, outcome, n_obs)
    except BaseException as exc:
        out.abandon(exc, runs=[str(r.path.resolve()) for r in runs])
        raise
    path = out.finish(
        command=shlex.join(sys.argv),
        runs=[str(r.path.resolve()) for r in runs],
        outcome=outcome,
        rows=n_obs,
        best=table["run"].iloc[0],
        ranking=[
            {
                k: _plain(row[k])
                for k in (
                    "run",
                    "name",
                    "pooling",
                    "elpd_loo",
                    "se",
                    "elpd_diff",
                    "dse",
                    "weight",
                    "pareto_k_high",
                )
            }
            for _, row in table.iterrows()
        ],
        warnings=warn,
        files=[f.name for f in files],
    )
    return ComparisonResult(
        path=path,
        table=table,
        outcome=outcome,
        n_obs=n_obs,
        best=table["run"].iloc[0],
        verdict=verdict,
        warnings=warn,
        notes=notes,
        files=[path / f.name for f in files],
        shrinkage=shrinkage,
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _labels(runs: Sequence[RunInfo]) -> list[str]:
    """Experiment names, or directory names where two runs share a name."""
    names = [r.name for r in runs]
    return [r.name if names.count(r.name) == 1 else r.path.name for r in runs]


def _describe_run(run: RunInfo) -> str:
    data = run.manifest.get("data", {})
    return f"{run.name} ('{data.get('outcome', '?')}', {data.get('rows', '?')} rows; {run.path})"


def _check_same_rows(runs: Sequence[RunInfo]) -> None:
    keys = {
        (r.manifest.get("data", {}).get("outcome"), r.manifest.get("data", {}).get("rows"))
        for r in runs
    }
    if len(keys) > 1:
        raise ComparisonError(
            "runs on different data: LOO is only comparable on the same observations, and "
            "these runs model different outcomes or rows: "
            + "; ".join(_describe_run(r) for r in runs)
            + ". Compare runs of one dataset and outcome (with --latest, choose them with --name)"
        )


def _load(run: RunInfo, label: str) -> _Loaded:
    import xarray as xr

    path = run.path / "idata.nc"
    if not path.is_file():
        raise ComparisonError(f"run {label} ('{run.path}') has no idata.nc")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf")
    except (OSError, ValueError) as exc:
        raise ComparisonError(f"run {label}: cannot read '{path}': {exc}") from None
    try:
        groups = set(tree.children)
        if "log_likelihood" not in groups:
            notes = [n for n in run.manifest.get("notes", []) if "log_likelihood" in n]
            why = f" ({notes[0]})" if notes else ""
            raise ComparisonError(
                f"run {label} ('{run.path}') has no log_likelihood group{why}, so its LOO "
                "cannot be computed; refit it with a larger output.pointwise_limit or fewer draws"
            )
        for needed in ("posterior", "observed_data"):
            if needed not in groups:
                raise ComparisonError(f"run {label} ('{run.path}'): idata.nc has no {needed} group")
        loaded = xr.DataTree.from_dict(
            {
                name: tree[name].to_dataset().load()
                for name in ("posterior", "log_likelihood", "observed_data")
            }
        )
    finally:
        tree.close()
    outcome = run.manifest.get("data", {}).get("outcome")
    loglik_vars = list(loaded["log_likelihood"].data_vars)
    if outcome not in loglik_vars:
        if len(loglik_vars) != 1:
            raise ComparisonError(
                f"run {label}: log_likelihood has variables {loglik_vars}, none named after the "
                f"outcome '{outcome}'"
            )
        outcome = loglik_vars[0]
    if outcome not in loaded["observed_data"].data_vars:
        raise ComparisonError(f"run {label}: observed_data has no variable '{outcome}'")
    return _Loaded(run=run, label=label, tree=loaded, outcome=outcome)


def _check_same_observations(loaded: Sequence[_Loaded]) -> None:
    first = loaded[0]
    y0 = np.asarray(first.tree["observed_data"][first.outcome].values, dtype=float).ravel()
    for item in loaded[1:]:
        y = np.asarray(item.tree["observed_data"][item.outcome].values, dtype=float).ravel()
        if item.outcome != first.outcome or y.shape != y0.shape or not np.array_equal(y, y0):
            differ = int(np.sum(y != y0)) if y.shape == y0.shape else None
            detail = f" ('{first.outcome}' differs in {differ} of {y0.size} rows)" if differ else ""
            raise ComparisonError(
                "runs on different data: LOO is only comparable on the same observations, but "
                f"{_describe_run(first.run)} and {_describe_run(item.run)} observed different "
                f"values{detail}"
            )


def _loo(item: _Loaded):
    import arviz_stats as azs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings are reported per run, by name
        try:
            return azs.loo(item.tree, pointwise=True, var_name=item.outcome)
        except Exception as exc:  # ArviZ raises several types for unusable log-likelihoods
            raise ComparisonError(
                f"run {item.label} ('{item.run.path}'): PSIS-LOO failed: {exc}"
            ) from None


def _compare_table(loaded: Sequence[_Loaded], elpds: Mapping[str, Any]) -> pd.DataFrame:
    import arviz_stats as azs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = azs.compare(dict(elpds), method="stacking", round_to="none")
    by_label = {item.label: item for item in loaded}
    rows = []
    for label, row in ranked.iterrows():
        item, elpd = by_label[label], elpds[label]
        k = np.asarray(elpd.pareto_k.values, dtype=float).ravel()
        obs = np.asarray(elpd.pareto_k[elpd.pareto_k.dims[0]].values).ravel()
        high = obs[k > PARETO_K_THRESHOLD]
        rows.append(
            {
                "rank": int(row["rank"]) + 1,
                "run": label,
                "pooling": item.pooling,
                "elpd_loo": float(row["elpd"]),
                "se": float(row["se"]),
                "p_loo": float(row["p"]),
                "elpd_diff": float(row["elpd_diff"]),
                "dse": float(row["dse"]),
                "p_worse": float(row["p_worse"]),
                "weight": float(row["weight"]),
                "pareto_k_high": int(high.size),
                "pareto_k_max": float(np.nanmax(k)),
                "pareto_k_high_obs": " ".join(str(o) for o in high),
                "good_k": float(elpd.good_k),
                "n_samples": int(elpd.n_samples),
                "n_obs": int(elpd.n_data_points),
                "name": item.run.name,
                "path": str(item.run.path),
            }
        )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _warnings(
    table: pd.DataFrame, loaded: Sequence[_Loaded], elpds: Mapping[str, Any]
) -> list[str]:
    out = []
    for _, row in table.iterrows():
        k = np.asarray(elpds[row["run"]].pareto_k.values, dtype=float).ravel()
        good_k = row["good_k"]
        between = int(np.sum((k > good_k) & (k <= PARETO_K_THRESHOLD)))
        loose = (
            f" With {row['n_samples']} draws k is reliable only up to {good_k:.2f}: "
            f"{between} more observations are above that; more draws help."
            if good_k < PARETO_K_THRESHOLD and between
            else ""
        )
        if row["pareto_k_high"]:
            obs = row["pareto_k_high_obs"].split()
            listed = ", ".join(obs[:_MAX_LISTED_OBS]) + (
                ", ..." if len(obs) > _MAX_LISTED_OBS else ""
            )
            out.append(
                f"{row['run']}: {row['pareto_k_high']} of {row['n_obs']} observations have "
                f"Pareto k > {PARETO_K_THRESHOLD} (max {row['pareto_k_max']:.2f}; obs {listed}), "
                "so its elpd_loo is unreliable and likely too optimistic. These observations are "
                "highly influential (often the rows of small groups); check them, or use K-fold "
                "cross-validation or moment matching for this run." + loose
            )
        elif loose:
            out.append(f"{row['run']}:{loose}")
    failed = [
        (item.label, item.run.manifest.get("diagnostics", {}))
        for item in loaded
        if item.run.manifest.get("diagnostics", {}).get("passed") is False
    ]
    if failed:
        out.append(
            "sampling diagnostics failed for "
            + ", ".join(
                f"{label} ({d.get('divergences', '?')} divergences, worst r_hat "
                f"{d.get('worst_r_hat', float('nan')):.3f})"
                for label, d in failed
            )
            + "; a LOO estimate is only as trustworthy as its posterior (see divergences.md)"
        )
    return out


def _verdict(table: pd.DataFrame) -> str:
    """One sentence naming the best run, then how far behind each other run is."""
    best = table.iloc[0]
    parts = [
        f"{best['run']} ({best['pooling']}) predicts best: elpd_loo {best['elpd_loo']:.1f} "
        f"(se {best['se']:.1f}), stacking weight {best['weight']:.2f}."
    ]
    for _, row in table.iloc[1:].iterrows():
        diff, dse = -row["elpd_diff"], row["dse"]
        ratio = diff / dse if dse > 0 else math.inf
        if diff < 4:
            size = "negligible (under 4): the two predict about equally well"
        elif ratio >= 2:
            size = "large relative to its standard error: a clear difference"
        else:
            size = "small relative to its standard error: not a clear difference"
        parts.append(
            f"{row['run']} ({row['pooling']}) is {diff:.1f} lower (dse {dse:.1f}, "
            f"{ratio:.1f} se), {size}."
        )
    return " ".join(parts)


# ----------------------------------------------------------------------------- shrinkage


def shrinkage_table(
    runs: Sequence[RunInfo],
    *,
    posteriors: Mapping[Path, Any] | None = None,
    prob: float = SHRINKAGE_PROB,
) -> Shrinkage:
    """Each group's estimate of each varying coefficient under every unpooled/hierarchical run.

    Group sizes come from re-loading each grouped run's resolved ``config.yaml``: the run
    directory stores only the outcome per row, not its group, while the resolved config
    reproduces the data exactly, and the manifest's data fingerprint proves that it did.

    Parameters
    ----------
    runs : sequence of RunInfo
        The compared runs; pooled ones give the horizontal reference lines.
    posteriors : mapping of Path to xarray.Dataset, optional
        Already loaded posteriors by run path; others are read from ``idata.nc``.
    prob : float
        Mass of the equal-tailed interval.

    Raises
    ------
    ComparisonError
        When no shrinkage picture can be drawn (no grouped run, different group variables, data
        that cannot be re-loaded or no longer matches the fit); the message says why.
    """
    posteriors = dict(posteriors or {})
    labels = dict(zip((r.path for r in runs), _labels(runs), strict=True))
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
    sizes, varying = None, {}
    for run in grouped:
        run_sizes, varying[run.path] = _group_sizes(run, labels[run.path])
        if sizes is None:
            sizes = run_sizes
        elif not sizes.sort_index().equals(run_sizes.sort_index()):
            raise ComparisonError(
                f"{labels[grouped[0].path]} and {labels[run.path]} group the rows differently"
            )
    order = sorted(sizes.index, key=lambda g: (sizes[g], str(g)))
    table = pd.DataFrame({"size": sizes.loc[order].astype(int)})
    table.index.name = group_dim
    coefs: list[str] = []
    series, population, notes = [], {}, []
    low_q, high_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    for run in grouped:
        label = labels[run.path]
        post = _posterior_of(run, posteriors)
        series.append((label, run.manifest["pooling"]))
        for coef in varying[run.path]:
            if coef not in post.data_vars or group_dim not in post[coef].dims:
                continue
            if coef not in coefs:
                coefs.append(coef)
            da = post[coef]
            if set(da.dims) != {*_SAMPLE_DIMS, group_dim}:
                raise ComparisonError(
                    f"{label}: '{coef}' has dims {da.dims}, expected (chain, draw, {group_dim})"
                )
            values = da.transpose(*_SAMPLE_DIMS, group_dim).values.reshape(-1, da.sizes[group_dim])
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
            if run.manifest["pooling"] == "hierarchical" and f"mu_{coef}" in post.data_vars:
                if any(v.startswith(f"gamma_{coef}_") for v in post.data_vars):
                    notes.append(
                        f"{label}: the population mean of {coef} depends on group "
                        "predictors, so no single population line is drawn for it"
                    )
                else:
                    population.setdefault(label, {})[coef] = float(post[f"mu_{coef}"].mean())
    if not coefs:
        raise ComparisonError(f"no coefficient varies by {group_dim} in the grouped runs")
    pooled = {}
    for run in runs:
        if run.manifest.get("pooling") != "pooled":
            continue
        post = _posterior_of(run, posteriors)
        means = {
            c: float(post[c].mean())
            for c in coefs
            if c in post.data_vars and set(post[c].dims) <= set(_SAMPLE_DIMS)
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
    )


def _posterior_of(run: RunInfo, posteriors: dict[Path, Any]):
    if run.path not in posteriors:
        import xarray as xr

        with xr.open_datatree(run.path / "idata.nc", engine="h5netcdf") as tree:
            posteriors[run.path] = tree["posterior"].to_dataset().load()
    post = posteriors[run.path]
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def _group_sizes(run: RunInfo, label: str) -> tuple[pd.Series, list[str]]:
    """Rows per group label and the varying coefficients, from the run's resolved config."""
    from hbreg.config import load_config, varying_names
    from hbreg.data import load_model_data

    try:
        config = load_config(run.path / "config.yaml")
        data = load_model_data(config)
    except (HbregError, OSError) as exc:
        raise ComparisonError(
            f"cannot re-load the data of {label} to count rows per group: {exc}"
        ) from None
    expected = run.manifest.get("data", {}).get("fingerprint")
    if expected and data.fingerprint != expected:
        raise ComparisonError(
            f"the data of {label} changed since it was fitted (fingerprint {data.fingerprint}, "
            f"fitted on {expected})"
        )
    if data.group_idx is None:
        raise ComparisonError(f"{label}: its data has no group index")
    return pd.Series(data.group_sizes, index=data.group_labels), varying_names(config)


def plot_shrinkage(shrinkage: Shrinkage) -> Figure:
    """Group estimates side by side per run, groups ordered by size: the radon picture.

    One panel per varying coefficient below a strip of group sizes (log scale). Small groups
    are on the left: their unpooled estimates scatter widely with wide intervals, and the
    hierarchical ones are pulled toward the population mean (dashed); pooled estimates are
    solid horizontal lines.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    table = shrinkage.table
    n_groups, n_coefs = len(table), len(shrinkage.coefs)
    width = float(np.clip(2.5 + 0.15 * n_groups, 9, 30))
    fig = Figure(figsize=(width, 1.8 + 1.6 + 3.3 * n_coefs), layout="constrained")
    axes = fig.subplots(
        1 + n_coefs, 1, sharex=True, height_ratios=[1.0] + [2.6] * n_coefs, squeeze=False
    )[:, 0]
    x = np.arange(n_groups)
    size_ax = axes[0]
    size_ax.bar(x, table["size"].to_numpy(), color="0.6", width=0.8)
    size_ax.set_yscale("log")
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
                        label=f"{label}: population mean mu_{coef} = {mu:.2f}",
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
        ax.set_ylabel(coef, fontsize=10)
        ax.grid(axis="y", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
        ax.legend(
            handles=handles,
            fontsize=8,
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=min(len(handles), 3),
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
        + " pooling; small groups (left) are pulled toward the population mean",
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


# ----------------------------------------------------------------------------- output


def _write(out: RunDirectory, table, verdict, warn, notes, shrinkage, outcome, n_obs) -> list[Path]:
    files = [out.write_text("compare.csv", table.to_csv(index=False, float_format="%.17g"))]
    if shrinkage is not None:
        files.append(out.write_text("shrinkage.csv", shrinkage.table.to_csv(float_format="%.17g")))
    figures = {"loo.png": _loo_figure(table)}
    if shrinkage is not None:
        figures["shrinkage.png"] = plot_shrinkage(shrinkage)
    for name, fig in figures.items():
        target = out.path / name
        try:
            fig.savefig(target, dpi=_DPI)
        except OSError as exc:
            raise OutputError(f"cannot write '{target}': {exc.strerror}") from None
        finally:
            _close(fig)
        files.append(target)
    md = _markdown(table, verdict, warn, notes, outcome, n_obs, [f.name for f in files])
    files.insert(1, out.write_text("compare.md", md))
    return files


def _loo_figure(table: pd.DataFrame):
    """The arviz-plots compare plot (elpd difference to the best, with dse); matplotlib if not."""
    frame = table.set_index("run")[["elpd_loo", "se", "elpd_diff", "dse", "weight"]]
    frame = frame.rename(columns={"elpd_loo": "elpd"})
    try:
        import arviz_plots as azp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc = azp.plot_compare(frame, backend="matplotlib")
        fig = pc.viz["figure"].item()
        fig.axes[0].set_title("PSIS-LOO: elpd difference to the best run (bars: dse)")
        fig.axes[0].set_xlabel("elpd_loo difference (higher is better)")
        fig.set_size_inches(9, 1.6 + 0.55 * len(frame))
        fig.set_layout_engine("constrained")
        return fig
    except Exception:  # any arviz-plots failure: draw the same thing directly
        return _loo_figure_matplotlib(frame)


def _loo_figure_matplotlib(frame: pd.DataFrame):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 1.6 + 0.6 * len(frame)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(frame))[::-1]
    ax.errorbar(frame["elpd_diff"], y, xerr=frame["dse"], fmt="o", color="#1b62a5", capsize=3)
    ax.axvline(0, color="0.4", ls="--", lw=1)
    ax.set_yticks(y, frame.index)
    ax.set_xlabel("ELPD difference to the best run (bars: dse)")
    ax.set_title("PSIS-LOO comparison")
    return fig


def _close(fig) -> None:
    """Drop a figure from pyplot's registry if arviz-plots put it there."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


_COLUMNS = (
    "rank",
    "run",
    "pooling",
    "elpd_loo",
    "se",
    "elpd_diff",
    "dse",
    "p_loo",
    "weight",
    f"k>{PARETO_K_THRESHOLD}",
)


def _cells(r) -> list[str]:
    """One row of the comparison table as text, in `_COLUMNS` order."""
    return [
        str(r["rank"]),
        r["run"],
        r["pooling"],
        f"{r['elpd_loo']:.1f}",
        f"{r['se']:.1f}",
        f"{r['elpd_diff']:.1f}",
        f"{r['dse']:.1f}",
        f"{r['p_loo']:.1f}",
        f"{r['weight']:.2f}",
        str(r["pareto_k_high"]),
    ]


def _markdown(table, verdict, warn, notes, outcome, n_obs, files) -> str:
    header = [*_COLUMNS[:-1], f"Pareto k > {PARETO_K_THRESHOLD}"]
    lines = [
        "# LOO comparison",
        "",
        f"{len(table)} runs of `{outcome}` on the same {n_obs} observations, ranked by the "
        "expected log pointwise predictive density estimated with PSIS-LOO (higher is better). "
        "`elpd_diff` is each run's difference to the best and `dse` its standard error; "
        "`weight` is the stacking weight.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if h not in ("run", "pooling") else "---" for h in header) + "|",
    ]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_cells(r)) + " |")
    lines += ["", verdict, ""]
    if warn:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warn] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Runs", ""] + [f"- {r['run']}: `{r['path']}`" for _, r in table.iterrows()]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files] + [""]
    return "\n".join(lines)


def render_comparison(console: Console, result: ComparisonResult) -> None:
    """The ranking table, the verdict, warnings and notes, and the compare directory last."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"PSIS-LOO comparison: '{result.outcome}', {result.n_obs} observations",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0),
        pad_edge=False,
    )
    for column in _COLUMNS:
        left = column in ("run", "pooling")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for _, r in result.table.iterrows():
        *cells, k_high = _cells(r)
        table.add_row(*cells, f"[yellow]{k_high}" if r["pareto_k_high"] else k_high)
    console.print(table)
    console.print(result.verdict, highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"compare directory: [bold]{result.path}[/]", highlight=False, soft_wrap=True)
