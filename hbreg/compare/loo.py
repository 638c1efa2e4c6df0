"""Cross-validation of the compared runs and the verdict: PSIS-LOO, the ranking table, warnings.

Each run's expected log pointwise predictive density is estimated with PSIS-LOO from the stored
pointwise log-likelihood; `azs.compare` ranks the runs and gives stacking weights. The table
keeps full precision (`COMPARE_COLUMNS`); rounding is for the terminal and the markdown.
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
    "PARETO_K_THRESHOLD",
    "compare_table",
    "loo",
    "loo_warnings",
    "verdict",
]

PARETO_K_THRESHOLD = 0.7
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
_MAX_LISTED_OBS = 20


def loo(item: LoadedRun):
    """PSIS-LOO of one run from its stored pointwise log-likelihood."""
    import arviz_stats as azs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings are reported per run, by name
        try:
            return azs.loo(item.tree, pointwise=True, var_name=item.outcome)
        except Exception as exc:  # ArviZ raises several types for unusable log-likelihoods
            raise ComparisonError(
                f"run {item.label} ('{item.run.path}'): PSIS-LOO failed: {exc}"
            ) from None


def compare_table(loaded: Sequence[LoadedRun], elpds: Mapping[str, Any]) -> pd.DataFrame:
    """Rank the runs (`azs.compare`, stacking weights) into `COMPARE_COLUMNS`, best first."""
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


def loo_warnings(
    table: pd.DataFrame, loaded: Sequence[LoadedRun], elpds: Mapping[str, Any]
) -> list[str]:
    """High Pareto k (with the observations), too few draws for k, failed sampling diagnostics."""
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


def verdict(table: pd.DataFrame) -> str:
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
