"""Cross-validation of the compared runs and the verdict: the CV kind, the ranking, warnings.

Every run in a comparison is scored by the same kind of cross-validation (`CV_KINDS`):

- ``loo_integrated`` (the default for Gaussian runs): PSIS-LOO whose pointwise likelihood is
  each observation's density given the other rows of its group and the hyperparameters, the
  group coefficients integrated out (`hbreg.models.loo`). Radon hierarchical: no Pareto k above
  0.7, where the conditional likelihood has 2 (4,000 draws).
- ``loo``: PSIS-LOO from the stored pointwise likelihood given each draw's group coefficients
  (``--cv conditional``, and the fallback when a run cannot integrate its coefficients out).
- ``logo`` (``--cv group``): PSIS over groups of each group's marginal likelihood given the
  hyperparameters: the expected log density of a *new* group.
- ``kfold`` / ``kfold_group`` (``--kfold K [--by-group]``): exact refits, see `kfold`.

`azs.compare` ranks the runs and gives stacking weights. The table keeps full precision
(`COMPARE_COLUMNS`); rounding is for the terminal and the markdown.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hbreg.compare.select import ComparisonError, LoadedRun

__all__ = [
    "COMPARE_COLUMNS",
    "CV_KINDS",
    "PARETO_K_THRESHOLD",
    "compare_table",
    "cv_description",
    "cv_title",
    "cv_warnings",
    "grouping",
    "psis",
    "verdict",
]

PARETO_K_THRESHOLD = 0.7
CV_KINDS = {
    "loo_integrated": (
        "PSIS-LOO, integrated: each observation given the other rows of its group and the "
        "hyperparameters, the group coefficients integrated out (new rows of known groups)"
    ),
    "loo": (
        "PSIS-LOO, conditional: each observation given each draw's coefficients of its group "
        "(new rows of known groups)"
    ),
    "logo": (
        "PSIS-LOGO: each group's rows given the hyperparameters, its coefficients integrated "
        "out (a new group)"
    ),
    "kfold": "K-fold by observation: exact refits without each fold (new rows of known groups)",
    "kfold_group": "grouped K-fold: exact refits without each fold of whole groups (a new group)",
}
CV_TITLES = {
    "loo_integrated": "integrated PSIS-LOO",
    "loo": "PSIS-LOO",
    "logo": "PSIS-LOGO (leave one group out)",
    "kfold": "K-fold",
    "kfold_group": "grouped K-fold",
}


def cv_title(kind: str, k: int | None = None) -> str:
    """`integrated PSIS-LOO`, `PSIS-LOGO (...)`, `10-fold`, `grouped 10-fold`."""
    title = CV_TITLES[kind]
    return title.replace("K-fold", f"{k}-fold") if k else title


def cv_description(kind: str, k: int | None = None) -> str:
    """What the numbers of this kind of CV estimate, with the number of folds filled in."""
    text = CV_KINDS[kind]
    return text.replace("K-fold", f"{k}-fold") if k else text


COMPARE_COLUMNS = [
    "rank",
    "run",
    "pooling",
    "cv",
    "elpd",
    "se",
    "p",
    "elpd_diff",
    "dse",
    "p_worse",
    "weight",
    "pareto_k_high",
    "pareto_k_max",
    "pareto_k_high_units",
    "good_k",
    "n_samples",
    "n_units",
    "n_obs",
    "name",
    "path",
]
_MAX_LISTED = 20


def grouping(loaded: Sequence[LoadedRun]) -> tuple[np.ndarray, list[str], str] | None:
    """The grouping shared by the grouped runs: (group index per row, labels, group dimension).

    None without a grouped run (or one stored without constant_data). Pooled runs borrow it
    for leave-one-group-out and grouped K-fold.

    Raises
    ------
    ComparisonError
        Grouped runs that group the rows differently.
    """
    from hbreg.compare.integrated import rows_of

    found = None
    for item in loaded:
        if item.pooling == "pooled" or "constant_data" not in item.tree.children:
            continue
        rows = rows_of(item.tree, item.outcome)
        if rows.group_idx is None:
            continue
        key = (rows.group_idx, rows.group_labels, rows.group_dim)
        if found is None:
            found, first = key, item.label
        elif not (np.array_equal(found[0], key[0]) and found[1] == key[1] and found[2] == key[2]):
            raise ComparisonError(
                f"{first} and {item.label} group the rows differently; leave-one-group-out "
                "and grouped K-fold need one grouping"
            )
    return found


def psis(loaded: Sequence[LoadedRun], cv: str) -> tuple[str, dict[str, Any], list[str]]:
    """PSIS cross-validation of every run: (the kind used, ELPDData per run label, notes).

    `cv` is ``loo`` (integrated when every run allows it, else conditional for all, with a
    note saying why), ``conditional`` or ``group``.

    Raises
    ------
    ComparisonError
        ``group`` for a run whose coefficients cannot be integrated out (named, with the
        grouped K-fold command to use instead), or a failed PSIS.
    """
    from hbreg.compare.integrated import why_not_integrated

    notes: list[str] = []
    if cv == "conditional":
        kind = "loo"
    else:
        blocked = {item.label: why_not_integrated(item.tree, item.pooling) for item in loaded}
        blocked = {label: why for label, why in blocked.items() if why}
        if cv == "group":
            if blocked:
                label, why = next(iter(blocked.items()))
                raise ComparisonError(
                    f"--cv group: no closed-form group likelihood for {label}: {why}; use "
                    "grouped K-fold instead (--kfold 10 --by-group)"
                )
            kind = "logo"
        elif blocked:
            kind = "loo"
            notes.append(
                "conditional PSIS-LOO for every run (runs are compared under one kind of CV): "
                + "; ".join(
                    f"{label} cannot use integrated LOO: {why}" for label, why in blocked.items()
                )
            )
        else:
            kind = "loo_integrated"
    groups = grouping(loaded) if kind == "logo" else None
    if kind == "logo" and groups is None:
        raise ComparisonError(
            "--cv group needs at least one unpooled or hierarchical run: it defines the groups"
        )
    return kind, {item.label: _psis_one(item, kind, groups) for item in loaded}, notes


def _psis_one(item: LoadedRun, kind: str, groups):
    import arviz_stats as azs

    tree = item.tree
    if kind != "loo":
        tree = _with_loglik(item, kind, groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings are reported per run, by name
        try:
            return azs.loo(tree, pointwise=True, var_name=item.outcome)
        except Exception as exc:  # ArviZ raises several types for unusable log-likelihoods
            raise ComparisonError(
                f"run {item.label} ('{item.run.path}'): {CV_TITLES[kind]} failed: {exc}"
            ) from None


def _with_loglik(item: LoadedRun, kind: str, groups):
    """The run's posterior with the integrated (per row) or group (per group) log-likelihood."""
    import xarray as xr

    from hbreg.compare.integrated import gaussian_draws, rows_of
    from hbreg.models.loo import group_loglik, integrated_loo_loglik

    post = item.tree["posterior"].to_dataset()
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    rows = rows_of(item.tree, item.outcome)
    if kind == "logo":
        group_idx, labels, dim = groups
        draws = gaussian_draws(item.tree, item.pooling, rows, len(labels))
        values = group_loglik(rows.X, rows.y, group_idx, len(labels), draws)
        unit_dim, coords = dim, labels
    else:
        n_groups = max(1, len(rows.group_labels)) if item.pooling != "pooled" else 1
        group_idx = rows.group_idx if item.pooling != "pooled" else np.zeros(len(rows.y), int)
        draws = gaussian_draws(item.tree, item.pooling, rows, n_groups)
        values = integrated_loo_loglik(rows.X, rows.y, group_idx, n_groups, draws)
        unit_dim, coords = "obs", np.arange(len(rows.y))
    loglik = xr.Dataset(
        {item.outcome: (("chain", "draw", unit_dim), values.reshape(n_chains, n_draws, -1))},
        coords={"chain": post["chain"].values, "draw": post["draw"].values, unit_dim: coords},
    )
    return xr.DataTree.from_dict({"posterior": post, "log_likelihood": loglik})


def compare_table(
    loaded: Sequence[LoadedRun], elpds: Mapping[str, Any], *, kind: str
) -> pd.DataFrame:
    """Rank the runs (`azs.compare`, stacking weights) into `COMPARE_COLUMNS`, best first."""
    import arviz_stats as azs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = azs.compare(dict(elpds), method="stacking", round_to="none")
    by_label = {item.label: item for item in loaded}
    rows = []
    for label, row in ranked.iterrows():
        item, elpd = by_label[label], elpds[label]
        if elpd.pareto_k is not None:
            k = np.asarray(elpd.pareto_k.values, dtype=float).ravel()
            dim = elpd.pareto_k.dims[0]
            units = np.asarray(elpd.pareto_k[dim].values).ravel()
            high = units[k > PARETO_K_THRESHOLD]
            if dim == "obs":  # rows as a person counts them: from 1
                high = high.astype(int) + 1
            k_max, good_k = float(np.nanmax(k)), float(elpd.good_k)
        else:  # K-fold: no importance sampling, nothing to diagnose
            high, k_max, good_k = np.array([]), float("nan"), float("nan")
        rows.append(
            {
                "rank": int(row["rank"]) + 1,
                "run": label,
                "pooling": item.pooling,
                "cv": kind,
                "elpd": float(row["elpd"]),
                "se": float(row["se"]),
                "p": float(row["p"]),
                "elpd_diff": float(row["elpd_diff"]),
                "dse": float(row["dse"]),
                "p_worse": float(row["p_worse"]),
                "weight": float(row["weight"]),
                "pareto_k_high": int(high.size),
                "pareto_k_max": k_max,
                "pareto_k_high_units": "; ".join(str(o) for o in high),
                "good_k": good_k,
                "n_samples": int(elpd.n_samples),
                "n_units": int(elpd.n_data_points),
                "n_obs": int(np.asarray(item.tree["observed_data"][item.outcome]).size),
                "name": item.run.name,
                "path": str(item.run.path),
            }
        )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def kfold_command(paths: Sequence[str], *, by_group: bool) -> str:
    """The exact command that scores these runs by grouped (or plain) 10-fold refits."""
    import shlex

    return shlex.join(
        ["hbreg", "compare", *paths, "--kfold", "10", *(["--by-group"] if by_group else [])]
    )


def cv_warnings(
    table: pd.DataFrame, loaded: Sequence[LoadedRun], elpds: Mapping[str, Any]
) -> list[str]:
    """High Pareto k (with the units and the K-fold command), too few draws, failed sampling."""
    out = []
    paths = [str(item.run.path) for item in loaded]
    for _, row in table.iterrows():
        if row["pareto_k_high"] == 0 and not np.isfinite(row["good_k"]):
            continue
        per_group = row["cv"] == "logo"
        unit = "groups" if per_group else "observations"
        k = np.asarray(elpds[row["run"]].pareto_k.values, dtype=float).ravel()
        good_k = row["good_k"]
        between = int(np.sum((k > good_k) & (k <= PARETO_K_THRESHOLD)))
        loose = (
            f" With {row['n_samples']} draws k is reliable only up to {good_k:.2f}: "
            f"{between} more {unit} are above that; more draws help."
            if good_k < PARETO_K_THRESHOLD and between
            else ""
        )
        if row["pareto_k_high"]:
            units = row["pareto_k_high_units"].split("; ")
            listed = ", ".join(units[:_MAX_LISTED]) + (", ..." if len(units) > _MAX_LISTED else "")
            advice = (
                "check them, or score the runs by exact refits: "
                f"`{kfold_command(paths, by_group=per_group)}`"
            )
            out.append(
                f"{row['run']}: {row['pareto_k_high']} of {row['n_units']} {unit} have "
                f"Pareto k > {PARETO_K_THRESHOLD} (max {row['pareto_k_max']:.2f}; "
                f"{'groups' if per_group else 'rows'} {listed}"
                f"{'' if per_group else ', counted from 1 among the rows the fit used'}), "
                f"so its {CV_TITLES[row['cv']]} "
                "elpd is unreliable and likely too optimistic. These "
                f"{unit} are highly influential (often small groups); {advice}." + loose
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
            + "; a cross-validation estimate is only as trustworthy as its posterior "
            "(see divergences.md)"
        )
    return out


def verdict(table: pd.DataFrame, *, k: int | None = None) -> str:
    """One sentence naming the best run and the CV kind, then how far behind each other run is."""
    best = table.iloc[0]
    parts = [
        f"{best['run']} ({best['pooling']}) predicts best by {cv_title(best['cv'], k)}: elpd "
        f"{best['elpd']:.1f} (se {best['se']:.1f}), stacking weight {best['weight']:.2f}."
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
