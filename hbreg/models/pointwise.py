"""Per-observation log-likelihood and posterior predictive draws from a completed posterior.

Every parameterization ends with the same coefficient variables, so the linear
predictor is computed here once, in chunks of draws, instead of by each model.
When draws x observations exceeds the configured limit the log-likelihood is not
stored (the reason is returned so the manifest can say so). The posterior
predictive keeps at most `PPC_DRAWS` evenly thinned draws, within the same limit:
enough for every check and plot, without a file that grows with draws x rows.
"""

from __future__ import annotations

import numpy as np

from hbreg.data import ModelData
from hbreg.families import family_of, inverse_link
from hbreg.names import RESIDUAL_SD

__all__ = ["flat_draws", "linear_predictor", "log_mean_exp", "pointwise_groups"]

PPC_DRAWS = 500


def linear_predictor(posterior, data: ModelData, draws: np.ndarray) -> np.ndarray:
    """The linear predictor (offset included) for the selected flat draw indices: (draws, n)."""
    if data.factors:
        return _several_factors(posterior, data, draws)
    mu = np.zeros((len(draws), len(data.y)))
    if data.offset is not None:
        mu += data.offset
    for j, coef in enumerate(data.coef_names):
        values = flat_draws(posterior[coef])[draws]
        if values.ndim == 2:  # (draws, groups): one value per group
            values = values[:, data.group_idx]
        else:
            values = values[:, None]
        mu += values * data.X[:, j]
    return mu


def _several_factors(posterior, data: ModelData, draws: np.ndarray) -> np.ndarray:
    """Population part plus each factor's effects at each row's level."""
    from hbreg.names import factor_effect, population_mean

    mu = np.zeros((len(draws), len(data.y)))
    if data.offset is not None:
        mu += data.offset
    for j, coef in enumerate(data.coef_names):
        name = population_mean(coef) if population_mean(coef) in posterior else coef
        mu += flat_draws(posterior[name])[draws][:, None] * data.X[:, j]
    for factor in data.factors:
        for coef in factor.varying:
            effect = flat_draws(posterior[factor_effect(coef, factor.name)])[draws]
            mu += effect[:, factor.idx] * data.X[:, data.coef_names.index(coef)]
    return mu


def flat_draws(var) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...), as float64: draws in one flat axis."""
    values = np.asarray(var.values, dtype=float)
    return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])


def log_mean_exp(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Log of the mean of exp(values) along `axis`, computed stably (an elpd over draws)."""
    top = values.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(values - top).mean(axis=axis, keepdims=True))).squeeze(axis)


def pointwise_groups(
    posterior,
    data: ModelData,
    *,
    limit: int,
    seed: int,
    family: str = "gaussian",
    link: str = "identity",
    chunk_values: int = 2_000_000,
):
    """Return (log_likelihood, posterior_predictive, note) as xarray Datasets or None.

    The log-likelihood and draws are the family's (`hbreg.families`); with likelihood
    weights each row's log-likelihood is multiplied by its weight, as in the model. Work
    goes in chunks of about `chunk_values` draws x rows, so memory stays flat whatever the
    size of the data.
    """
    import xarray as xr

    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples, n_obs = n_chains * n_draws, len(data.y)
    outcome_family = family_of(family)
    own = [*([RESIDUAL_SD] if outcome_family.has_sigma else []), *outcome_family.parameters]
    params_flat = {name: flat_draws(posterior[name]) for name in own}
    rng = np.random.default_rng(seed)
    dims = ("chain", "draw", "obs")
    coords = {"chain": posterior["chain"].values, "obs": np.arange(n_obs)}
    keep_loglik = n_samples * n_obs <= limit
    ppc_total = min(PPC_DRAWS, limit // max(1, n_obs))
    ppc_draws_per_chain = max(1, min(n_draws, ppc_total // n_chains))
    thin = np.arange(0, n_draws, max(1, n_draws // ppc_draws_per_chain))[:ppc_draws_per_chain]
    chosen = (np.arange(n_chains)[:, None] * n_draws + thin[None, :]).ravel()
    loglik = np.empty((n_samples, n_obs)) if keep_loglik else None
    ppc = np.empty((len(chosen), n_obs))
    ppc_row = {flat: i for i, flat in enumerate(chosen)}
    needed = np.arange(n_samples) if keep_loglik else chosen
    step = max(1, chunk_values // n_obs)
    for start in range(0, len(needed), step):
        draws = needed[start : start + step]
        mean = inverse_link(link, linear_predictor(posterior, data, draws))
        params = {name: values[draws][:, None] for name, values in params_flat.items()}
        if keep_loglik:
            loglik[draws] = outcome_family.loglik(data.y, mean, params, data.trials)
            if data.weights is not None:
                loglik[draws] *= data.weights
        for row, d in enumerate(draws):
            if d in ppc_row:
                own_row = {name: values[row] for name, values in params.items()}
                ppc[ppc_row[d]] = outcome_family.draw(mean[row], own_row, data.trials, rng)
    note = None
    if not keep_loglik and limit == 0:
        note = "log_likelihood not stored (output.pointwise_limit: 0)"
    elif not keep_loglik:
        note = (
            f"log_likelihood not stored: {n_samples:,} draws x {n_obs:,} observations exceeds "
            f"output.pointwise_limit {limit:,} (raise it to keep the log-likelihood for LOO)"
        )
    ppc_ds = xr.Dataset(
        {data.outcome: (dims, ppc.reshape(n_chains, len(thin), n_obs))},
        coords={**coords, "draw": posterior["draw"].values[thin]},
    )
    loglik_ds = None
    if keep_loglik:
        loglik_ds = xr.Dataset(
            {data.outcome: (dims, loglik.reshape(n_chains, n_draws, n_obs))},
            coords={**coords, "draw": posterior["draw"].values},
        )
    return loglik_ds, ppc_ds, note
