"""K-fold cross-validation by exact refits: folds of observations or of whole groups.

PSIS approximates leaving data out; K-fold does it: each run is refitted K times, each time
without one fold, and the held-out rows are scored under the refitted posterior. Folds of
observations (``--kfold K``) estimate the density of new rows of known groups, folds of whole
groups (``--kfold K --by-group``) the density of new groups: the number to trust when Pareto k
is high, and the check on leave-one-group-out.

Every run uses the same folds (drawn once from the seed), so the differences between runs are
paired. A refit reads the run's ``config.yaml`` (its priors and sampler settings) and its rows
from ``idata.nc`` (`constant_data`), never the data file. A held-out row is scored with the
refitted draws of its group's coefficients; a held-out group (absent from the refit, so its
coefficients come from the population) with its group marginal likelihood, the group
coefficients integrated out exactly (Gaussian models). Refits run where simulate's replicates
run (`hbreg.executors`): in-process, on a local process pool, or on a Dask cluster.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hbreg.compare.select import ComparisonError, LoadedRun
from hbreg.executors import connect, dask_map, local_map

__all__ = ["KFoldResult", "assign_folds", "kfold"]


@dataclass
class KFoldResult:
    """Per-run ELPDData (kind ``loo_kfold``), the fold of every row, and one row per refit."""

    elpds: dict
    folds: pd.DataFrame
    fits: pd.DataFrame
    by_group: bool
    k: int


def assign_folds(n_units: int, k: int, seed: int) -> np.ndarray:
    """Fold of each unit: a seeded permutation dealt round-robin into `k` near-equal folds."""
    if not 2 <= k <= n_units:
        raise ComparisonError(f"--kfold {k}: need 2 <= K <= {n_units} (the units to split)")
    folds = np.empty(n_units, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n_units)] = np.arange(n_units) % k
    return folds


def kfold(
    loaded: Sequence[LoadedRun],
    *,
    k: int,
    by_group: bool,
    grouping: tuple[np.ndarray, list[str], str] | None,
    seed: int,
    workers: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    on_fit=None,
) -> KFoldResult:
    """Refit every run K times and score the held-out rows (or groups).

    `grouping` is (group index per row, group labels, group dimension), shared by the runs;
    needed with `by_group`. Refits run on `executor` (``local``: `workers` at once, in-process
    when 1; ``dask``: the cluster at `scheduler`), see `hbreg.executors`.
    """
    from hbreg.compare.integrated import rows_of, why_not_integrated
    from hbreg.config import parse_config, read_yaml_mapping
    from hbreg.errors import ConfigError

    configs = {}
    for item in loaded:
        why = why_not_integrated(item.tree, item.pooling)
        if why is not None:
            raise ComparisonError(
                f"--kfold: cannot refit {item.label} from its run directory: {why}"
            )
        path = item.run.path / "config.yaml"
        try:
            raw = read_yaml_mapping(path)
            chains = parse_config(raw, source=str(path)).sampler.chains
        except ConfigError as exc:
            raise ComparisonError(f"--kfold: cannot refit {item.label}: {exc}") from None
        configs[item.label] = (raw, str(path), chains)
    n = len(np.asarray(loaded[0].tree["observed_data"][loaded[0].outcome].values).ravel())
    if by_group:
        if grouping is None:
            raise ComparisonError("--by-group needs at least one unpooled or hierarchical run")
        group_idx, labels, group_dim = grouping
        group_folds = assign_folds(len(labels), k, seed)
        row_folds = group_folds[group_idx]
        folds = pd.DataFrame({"row": np.arange(n), group_dim: np.asarray(labels)[group_idx]})
    else:
        row_folds = assign_folds(n, k, seed)
        folds = pd.DataFrame({"row": np.arange(n)})
    folds["fold"] = row_folds
    tasks = []
    for item in loaded:
        rows = rows_of(item.tree, item.outcome)
        raw, path, _ = configs[item.label]
        for fold in range(k):
            tasks.append(
                {
                    "label": item.label,
                    "pooling": item.pooling,
                    "config": raw,
                    "config_path": path,
                    "rows": rows,
                    "held_out": row_folds == fold,
                    "fold": fold,
                    "seed": seed + 1 + fold,
                    "grouping": grouping if by_group else None,
                }
            )
    chains = max(c for _, _, c in configs.values())
    workers = workers or max(1, (os.cpu_count() or 1) // chains)
    client = connect(executor, scheduler)
    try:
        outcomes = list(_run(tasks, workers=workers, client=client, on_fit=on_fit))
    finally:
        if client is not None:
            client.close()
    return _assemble(loaded, outcomes, folds, by_group=by_group, grouping=grouping, k=k, n=n)


def _run(tasks, *, workers: int, client, on_fit):
    if client is None:
        results = local_map(refit_fold, tasks, workers=workers)
    else:
        keys = [f"hbreg-refit-{t['label']}-{t['fold']}-{t['seed']}-{os.getpid()}" for t in tasks]
        results = dask_map(client, refit_fold, tasks, keys=keys)
    for outcome in results:
        if on_fit:
            on_fit(outcome)
        yield outcome


def refit_fold(task: dict) -> dict:
    """Fit one run without one fold and score the fold: runs in a worker process."""
    from hbreg.config import parse_config
    from hbreg.data import with_formula_roles
    from hbreg.inference import sample
    from hbreg.models import build_model, complete_posterior
    from hbreg.models.standardize import standardize, to_user_scale

    start = time.perf_counter()
    rows, held = task["rows"], task["held_out"]
    config = parse_config(task["config"], source=task["config_path"])
    config.sampler.seed = task["seed"]
    full = _model_data(rows, task["pooling"], config)
    config = with_formula_roles(config, full)
    train = dataclasses.replace(
        full,
        y=full.y[~held],
        X=full.X[~held],
        group_idx=None if full.group_idx is None else full.group_idx[~held],
        notes=[],
    )
    # the steps of `hbreg fit` between data and posterior, standardization included
    sampled_data, scaling = standardize(config, train)
    built = build_model(config, sampled_data)
    sampled = sample(built.model, config.sampler, seed=task["seed"])
    posterior = complete_posterior(
        built, config, sampled_data, sampled.posterior, seed=task["seed"] + 1
    )
    if scaling is not None:
        posterior = to_user_scale(posterior, scaling, train)
    divergences = int(np.asarray(sampled.sample_stats.get("diverging", 0)).sum())
    if task["grouping"] is None:
        elpd = _held_out_rows(posterior, full, held)
        units = np.flatnonzero(held)
    else:
        elpd, units = _held_out_groups(posterior, rows, task, held)
    return {
        "label": task["label"],
        "fold": task["fold"],
        "seed": task["seed"],
        "n_train": int((~held).sum()),
        "n_held_out": int(held.sum()),
        "units": units,
        "elpd_i": elpd,
        "divergences": divergences,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _model_data(rows, pooling: str, config):
    from hbreg.data import ModelData

    grouped = pooling != "pooled"
    return ModelData(
        y=rows.y,
        X=rows.X,
        coef_names=rows.coef_names,
        varying=[rows.coef_names[i] for i in rows.varying],
        outcome=rows.outcome,
        group_idx=rows.group_idx if grouped else None,
        group_labels=rows.group_labels if grouped else [],
        group_dim=rows.group_dim if grouped else None,
        group_X=rows.group_X if grouped else None,
        group_predictor_names=rows.group_predictors if grouped else [],
        correlated=rows.correlated,
    )


def _held_out_rows(posterior, data, held: np.ndarray) -> np.ndarray:
    """Log E_post p(y_i | theta, b_g) for each held-out row (its group's refitted draws)."""
    from hbreg.models.pointwise import linear_predictor, log_mean_exp

    n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    test = dataclasses.replace(
        data,
        y=data.y[held],
        X=data.X[held],
        group_idx=None if data.group_idx is None else data.group_idx[held],
    )
    mu = linear_predictor(posterior, test, np.arange(n_samples))
    sigma = posterior["sigma"].values.reshape(-1)[:, None]
    loglik = -0.5 * ((test.y - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    return log_mean_exp(loglik)


def _held_out_groups(posterior, rows, task, held: np.ndarray):
    """Log E_post p(y_g | theta) for each held-out group, its coefficients integrated out."""
    import xarray as xr

    from hbreg.compare.integrated import gaussian_draws
    from hbreg.models.loo import group_loglik
    from hbreg.models.pointwise import log_mean_exp

    group_idx, labels, _ = task["grouping"]
    tree = xr.DataTree.from_dict({"posterior": posterior})
    draws = gaussian_draws(tree, task["pooling"], rows, len(labels))
    groups = np.unique(group_idx[held])
    local = np.searchsorted(groups, group_idx[held])
    sub = dataclasses.replace(draws, coef_means=lambda sel: draws.coef_means(sel)[:, groups])
    loglik = group_loglik(rows.X[held], rows.y[held], local, len(groups), sub)
    return log_mean_exp(loglik), groups


def _assemble(loaded, outcomes, folds, *, by_group, grouping, k, n) -> KFoldResult:
    import xarray as xr
    from arviz_stats import ELPDDataLOOKFold

    fits = pd.DataFrame(
        [
            {
                key: o[key]
                for key in (
                    "label",
                    "fold",
                    "seed",
                    "n_train",
                    "n_held_out",
                    "divergences",
                    "seconds",
                )
            }
            | {"elpd": float(o["elpd_i"].sum())}
            for o in outcomes
        ]
    ).sort_values(["label", "fold"], ignore_index=True)
    if by_group:
        _, labels, group_dim = grouping
        n_units, dim, coords = len(labels), group_dim, list(labels)
    else:
        n_units, dim, coords = n, "obs", np.arange(n)
    elpds = {}
    for item in loaded:
        values = np.full(n_units, np.nan)
        for o in outcomes:
            if o["label"] == item.label:
                values[o["units"]] = o["elpd_i"]
        if np.isnan(values).any():
            raise ComparisonError(f"--kfold: {item.label} left units unscored")
        elpd_i = xr.DataArray(values, dims=[dim], coords={dim: coords})
        elpds[item.label] = ELPDDataLOOKFold(
            elpd=float(values.sum()),
            se=float(np.sqrt(n_units * values.var())),
            p=float("nan"),
            n_samples=int(
                item.tree["posterior"].sizes["chain"] * item.tree["posterior"].sizes["draw"]
            ),
            n_data_points=n_units,
            scale="log",
            warning=False,
            good_k=None,
            elpd_i=elpd_i,
            pareto_k=None,
            n_folds=k,
        )
    return KFoldResult(elpds=elpds, folds=folds, fits=fits, by_group=by_group, k=k)
