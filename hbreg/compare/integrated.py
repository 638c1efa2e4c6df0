"""A run's hyperparameter draws and rows, read from its idata, for the integrated densities.

Integrated LOO and leave-one-group-out need, per posterior draw, the prior mean and covariance
of the varying coefficients (population means, group-predictor shifts, group sds and
correlations of a hierarchical run; the fixed Normal priors of an unpooled one), the values of
the other coefficients and the residual sd, and the rows themselves (y, the design matrix and
the group of each row). All of it is in ``idata.nc``: the posterior and ``constant_data``
(see `hbreg.fit.constant_data`); the math is `hbreg.models.loo`.
"""

from __future__ import annotations

import numpy as np

from hbreg.models.loo import GaussianDraws
from hbreg.names import (
    COEF_DIM,
    DESIGN,
    GROUP_INDEX,
    GROUP_PREDICTOR_DIM,
    GROUP_PREDICTORS,
    PRIOR_MEAN,
    PRIOR_SD,
    RESIDUAL_SD,
    SAMPLE_DIMS,
    VARYING,
    correlation_pairs,
    group_predictor_effect,
    group_sd,
    population_mean,
)

__all__ = ["Rows", "gaussian_draws", "rows_of", "why_not_integrated"]


class Rows:
    """y, the design matrix and the grouping of a run's rows, from its idata."""

    def __init__(self, tree, outcome: str):
        const = tree["constant_data"].to_dataset()
        self.outcome = outcome
        self.y = np.asarray(tree["observed_data"][outcome].values, dtype=float).ravel()
        self.X = np.asarray(const[DESIGN].transpose("obs", COEF_DIM).values, dtype=float)
        self.coef_names = [str(c) for c in const[COEF_DIM].values]
        self.varying = [i for i, flag in enumerate(const[VARYING].values) if flag]
        self.group_idx = (
            np.asarray(const[GROUP_INDEX].values, dtype=np.int64)
            if GROUP_INDEX in const.data_vars
            else None
        )
        self.group_dim = next(
            (d for d in const.dims if d not in ("obs", COEF_DIM, GROUP_PREDICTOR_DIM)), None
        )
        self.group_labels = [str(g) for g in const[self.group_dim].values] if self.group_dim else []
        self.group_X = (
            np.asarray(const[GROUP_PREDICTORS].values, dtype=float)
            if GROUP_PREDICTORS in const.data_vars
            else None
        )
        self.group_predictors = (
            [str(p) for p in const[GROUP_PREDICTOR_DIM].values] if self.group_X is not None else []
        )
        self.prior_mean = const[PRIOR_MEAN].values if PRIOR_MEAN in const.data_vars else None
        self.prior_sd = const[PRIOR_SD].values if PRIOR_SD in const.data_vars else None
        self.family = const.attrs.get("family")
        self.correlated = bool(const.attrs.get("correlated", 0))


def rows_of(tree, outcome: str) -> Rows:
    """The rows of a run (its idata must have constant_data)."""
    return Rows(tree, outcome)


def why_not_integrated(tree, pooling: str) -> str | None:
    """Why this run has no integrated densities (None when it has them)."""
    if "constant_data" not in tree.children:
        return "it was fitted before hbreg stored constant_data in idata.nc (refit it)"
    const = tree["constant_data"].to_dataset()
    family = const.attrs.get("family", "gaussian")
    if family != "gaussian":
        return f"its family is {family}; the group coefficients integrate out only for gaussian"
    held = [name for name in ("offset", "weights") if name in const.data_vars]
    if held:
        return f"it has {' and '.join(held)} (data.{held[0]}), which the closed form leaves out"
    if int(const.attrs.get("grouping_factors", 1)) > 1:
        return "it has several grouping factors; the closed form covers one"
    if pooling == "unpooled" and PRIOR_SD not in const.data_vars and bool(const[VARYING].any()):
        if const.attrs.get("standardize"):
            return "its group priors are on the standardized scale (model.standardize)"
        return "its group coefficients have non-Normal priors"
    return None


def gaussian_draws(tree, pooling: str, rows: Rows, n_groups: int) -> GaussianDraws:
    """The draws of everything the integrated densities need, flattened over chain x draw.

    `n_groups` is the number of groups the densities are computed for (a pooled run borrows
    another run's grouping for leave-one-group-out; its coefficients are the same in every
    group).
    """
    post = tree["posterior"].to_dataset()
    names = rows.coef_names
    varying = rows.varying if pooling != "pooled" else []
    var_names = [names[i] for i in varying]
    sigma = _flat(post[RESIDUAL_SD])
    n_samples, k = sigma.shape[0], len(varying)
    fixed = {names[j]: _flat(post[names[j]]) for j in range(len(names)) if j not in varying}
    if pooling == "hierarchical":
        mean = np.column_stack([_flat(post[population_mean(c)]) for c in var_names])
        sd = np.column_stack([_flat(post[group_sd(c)]) for c in var_names])
        shifts = {
            (a, q): _flat(post[group_predictor_effect(c, p)])
            for a, c in enumerate(var_names)
            for q, p in enumerate(rows.group_predictors)
            if group_predictor_effect(c, p) in post.data_vars
        }
        corr = np.broadcast_to(np.eye(k), (n_samples, k, k)).copy()
        for a, b, name in correlation_pairs(var_names):
            if name in post.data_vars:
                corr[:, a, b] = corr[:, b, a] = _flat(post[name])
        tril = sd[:, :, None] * np.linalg.cholesky(corr)
    elif k:
        mean = np.broadcast_to(np.asarray(rows.prior_mean, dtype=float)[varying], (n_samples, k))
        sd = np.asarray(rows.prior_sd, dtype=float)[varying]
        tril = np.broadcast_to(np.diag(sd), (n_samples, k, k))
        shifts = {}
    else:
        mean, tril, shifts = np.zeros((n_samples, 0)), np.zeros((n_samples, 0, 0)), {}
    group_X = rows.group_X

    def coef_means(sel: np.ndarray) -> np.ndarray:
        out = np.empty((len(sel), n_groups, len(names)))
        for j, name in enumerate(names):
            if j not in varying:
                out[:, :, j] = fixed[name][sel][:, None]
        for a, j in enumerate(varying):
            out[:, :, j] = mean[sel, a][:, None]
            for (a2, q), effect in shifts.items():
                if a2 == a:
                    out[:, :, j] += effect[sel][:, None] * group_X[None, :, q]
        return out

    return GaussianDraws(coef_means=coef_means, scale_tril=tril, sigma=sigma, varying=varying)


def _flat(var) -> np.ndarray:
    values = var.transpose(*SAMPLE_DIMS, ...).values
    if values.ndim != 2:
        raise ValueError(f"'{var.name}' has dims {var.dims}; expected (chain, draw)")
    return values.reshape(-1).astype(float)
