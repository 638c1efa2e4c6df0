"""Predictive draws for new rows from a fit's posterior, in bounded chunks of rows.

For every posterior draw s, a row's coefficients are its group's own draws (known
groups), fresh draws from that draw's population distribution (groups the fit never
saw: N(mu_s + gamma_s . u, diag(sigma_s) R_s diag(sigma_s)) over the varying
coefficients, R_s the identity unless the model is correlated; one draw per new group
shared by all of its rows), or the population means (`population` rows). With several
grouping factors (formula runs) a row's coefficients are the population values plus each
factor's effects of its level: the fit's draws for a known level, fresh draws from
N(0, diag(sigma_f) R_f diag(sigma_f)) for a level the fit never saw; `population` rows
leave every factor's effects out. The linear predictor plus the offset, through the
inverse link, is the expected value (a probability, a rate, a mean); the predictive draws
the outcome from the family with each draw's own parameters (`hbreg.families`).

Memory: the work arrays are (draws x rows-in-chunk), about `chunk_values` numbers, so
100k rows from 4,000 draws never hold the 400M-value matrix; only per-row quantiles and
an evenly thinned subset of draws (at most `keep_values` numbers) are kept. Rows that
share a design share a predictive distribution, so the draws are made once per design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hbreg.config import Config, family_parameters, varying_names
from hbreg.families import family_of, inverse_link
from hbreg.models.pointwise import flat_draws, log_mean_exp
from hbreg.names import (
    correlation_pairs,
    factor_correlation,
    factor_effect,
    factor_sd,
    group_predictor_effect,
    group_sd,
    population_mean,
)
from hbreg.predict.design import NewRows

__all__ = ["PredictiveDraws", "QUANTILES", "predictive_draws"]

QUANTILES = (0.05, 0.5, 0.95)


@dataclass
class PredictiveDraws:
    """Per-row summaries of the expected value and of the predictive, plus thinned draws."""

    expected: dict[str, np.ndarray]  # "mean", "q5", "q50", "q95": (n,)
    predicted: dict[str, np.ndarray]
    kept_draws: np.ndarray  # flat posterior draw indices kept in `expected_draws`
    expected_draws: np.ndarray | None  # (len(kept_draws), n) float32, or None when too many
    predicted_draws: np.ndarray | None
    log_density: np.ndarray | None  # (n,) log predictive density of the outcome (NaN: blank)


def predictive_draws(
    posterior,
    rows: NewRows,
    config: Config,
    *,
    seed: int,
    chunk_values: int = 4_000_000,
    keep_values: int = 10_000_000,
) -> PredictiveDraws:
    """Expected values and predictive draws for `rows` from a completed posterior (Dataset).

    Rows with the same design (same group, predictors and group-level predictors) have the
    same predictive distribution, so its draws and quantiles are computed once per
    distinct row; 100k rows of radon are 170 distinct rows. Only the log density of an
    observed outcome and the stored draws are per row.
    """
    rng = np.random.default_rng(seed)
    flat = {name: flat_draws(posterior[name]) for name in posterior.data_vars}
    family, link = family_of(config.model.family), config.model.link
    own = {n: flat[n] for n in family_parameters(config)}  # each (S,)
    n_samples = next(iter(flat.values())).shape[0]
    n_rows = rows.X.shape[0]
    coefs = _coefficients(flat, rows, config, rng)
    effects = _factor_effects(flat, rows, rng)
    _, first, inverse = np.unique(_design_key(rows), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()  # first: one representative row per distinct design
    summaries = {key: np.empty((4, len(first))) for key in ("expected", "predicted")}
    kept = _kept_draws(n_samples, n_rows, keep_values // 2)
    stored = {key: np.empty((len(kept), n_rows), np.float32) for key in ("expected", "predicted")}
    log_density = np.empty(n_rows) if rows.y is not None else None
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(first) + 1))
    step = max(1, chunk_values // n_samples)
    for start in range(0, len(first), step):
        stop = min(start + step, len(first))
        designs = first[start:stop]
        eta = _linear_predictor(coefs, effects, rows, designs, n_samples).T  # (designs, S)
        if rows.offset is not None:
            eta += rows.offset[designs][:, None]
        mu = inverse_link(link, eta)  # the expected value on the outcome's scale
        trials = None if rows.trials is None else rows.trials[designs][:, None]
        y_rep = family.draw(mu, own, trials, rng)
        for key, values in (("expected", mu), ("predicted", y_rep)):
            summaries[key][:, start:stop] = _mean_and_quantiles(values)
        members = order[bounds[start] : bounds[stop]]
        for sub in range(0, len(members), step):
            these = members[sub : sub + step]
            local = inverse[these] - start
            n_these = None if rows.trials is None else rows.trials[these][:, None]
            if len(kept):
                kept_mean = mu[local][:, kept]
                kept_own = {n: v[kept] for n, v in own.items()}
                stored["expected"][:, these] = kept_mean.T
                stored["predicted"][:, these] = family.draw(kept_mean, kept_own, n_these, rng).T
            if log_density is not None:
                pointwise = family.loglik(rows.y[these][:, None], mu[local], own, n_these)
                log_density[these] = log_mean_exp(pointwise, axis=1)
    names = ("mean", "q5", "q50", "q95")
    return PredictiveDraws(
        expected=dict(zip(names, summaries["expected"][:, inverse], strict=True)),
        predicted=dict(zip(names, summaries["predicted"][:, inverse], strict=True)),
        kept_draws=kept,
        expected_draws=stored["expected"] if len(kept) else None,
        predicted_draws=stored["predicted"] if len(kept) else None,
        log_density=log_density,
    )


def _design_key(rows: NewRows) -> np.ndarray:
    """(n, ...) everything that decides a row's predictive distribution."""
    parts = [rows.X, *(c[:, None] for c in (rows.trials, rows.offset) if c is not None)]
    if rows.group_idx is not None:
        parts.append(rows.group_idx[:, None].astype(float))
    if rows.row_group_X is not None:
        parts.append(rows.row_group_X)
    parts += [f.idx[:, None].astype(float) for f in rows.factors if f.idx is not None]
    return np.column_stack(parts)


def _mean_and_quantiles(values: np.ndarray) -> np.ndarray:
    """(4, rows): mean and the `QUANTILES` along the last axis, linear interpolation.

    One `np.partition` at the order statistics needed, about 2.5x faster than
    `np.quantile` for 4,000 draws per row.
    """
    n = values.shape[-1]
    positions = np.asarray(QUANTILES) * (n - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, n - 1)
    part = np.partition(values, np.unique(np.concatenate([low, high])), axis=-1)
    weight = positions - low
    quantiles = part[:, low] * (1 - weight) + part[:, high] * weight
    return np.vstack([values.mean(axis=-1), quantiles.T])


def _kept_draws(n_samples: int, n_rows: int, keep_values: int) -> np.ndarray:
    """Evenly spaced flat draw indices, as many as fit in `keep_values` numbers."""
    count = min(n_samples, keep_values // max(1, n_rows))
    if count <= 0:
        return np.arange(0)
    return np.unique(np.linspace(0, n_samples - 1, count).round().astype(np.int64))


def _coefficients(flat, rows: NewRows, config: Config, rng) -> list:
    """One entry per design column, by how its draws reach a row.

    ("fixed", (S,)) for a coefficient that does not vary; ("group", (S, known + new
    groups)) for a varying one; ("population", mean (S,), gammas (S, q) or None) for
    population rows.
    """
    if rows.factors:  # several factors: population values here, effects in `_factor_effects`
        varying = {c for f in rows.factors for c in f.varying}
        names = [population_mean(c) if c in varying else c for c in rows.coef_names]
        return [("fixed", flat[name]) for name in names]
    varying = varying_names(config)
    gps = list(config.data.group_predictors)
    fresh = None
    if rows.group_idx is not None and rows.new_labels:
        fresh = _new_group_draws(flat, rows, config, varying, gps, rng)
    result = []
    for coef in rows.coef_names:
        if coef not in varying:
            result.append(("fixed", flat[coef]))
        elif rows.group_idx is None:  # population rows of a hierarchical model
            gammas = _gammas(flat, coef, config, gps)
            result.append(("population", flat[population_mean(coef)], gammas))
        elif fresh is None:
            result.append(("group", flat[coef]))
        else:
            new = fresh[:, :, varying.index(coef)]
            result.append(("group", np.concatenate([flat[coef], new], axis=1)))
    return result


def _new_group_draws(flat, rows: NewRows, config: Config, varying, gps, rng) -> np.ndarray:
    """(S, new groups, k): each draw's population distribution, sampled once per new group.

    With `model.correlated` the k varying coefficients are drawn jointly from
    N(mean, diag(sigma) R diag(sigma)) with that draw's correlation matrix R.
    """
    n_samples, k = next(iter(flat.values())).shape[0], len(varying)
    mean = np.empty((n_samples, len(rows.new_labels), k))
    for a, coef in enumerate(varying):
        mean[:, :, a] = flat[population_mean(coef)][:, None]
        gammas = _gammas(flat, coef, config, gps)
        if gammas is not None:
            mean[:, :, a] += gammas @ rows.new_group_X.T
    sd = np.column_stack([flat[group_sd(coef)] for coef in varying])  # (S, k)
    pairs = correlation_pairs(varying) if config.model.correlated else []
    return mean + _correlated_normal(flat, sd, pairs, len(rows.new_labels), rng)


def _factor_effects(flat, rows: NewRows, rng) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(design column, effects (S, known + new levels), each row's column into them).

    One entry per factor and coefficient varying by it; a level the fit never saw gets,
    per draw, a fresh effect from N(0, diag(sigma_f) R_f diag(sigma_f)).
    """
    result = []
    for factor in rows.factors:
        if factor.idx is None:
            continue
        fresh = None
        if factor.new_labels:
            sd = np.column_stack([flat[factor_sd(c, factor.name)] for c in factor.varying])
            pairs = [
                (a, b, factor_correlation(factor.varying[b], factor.varying[a], factor.name))
                for a, b, _ in (correlation_pairs(factor.varying) if factor.correlated else [])
            ]
            fresh = _correlated_normal(flat, sd, pairs, len(factor.new_labels), rng)
        for a, coef in enumerate(factor.varying):
            known = flat[factor_effect(coef, factor.name)]
            values = known if fresh is None else np.concatenate([known, fresh[:, :, a]], axis=1)
            columns = np.where(factor.idx >= 0, factor.idx, known.shape[1] + (-1 - factor.idx))
            result.append((rows.coef_names.index(coef), values, columns))
    return result


def _correlated_normal(flat, sd: np.ndarray, pairs, n_groups: int, rng) -> np.ndarray:
    """(S, n_groups, k) draws from N(0, diag(sd_s) R_s diag(sd_s)) per draw s.

    R_s holds the named correlations `pairs` ((a, b, name)); the identity without them.
    """
    n_samples, k = sd.shape
    corr = np.broadcast_to(np.eye(k), (n_samples, k, k)).copy()
    for a, b, name in pairs:
        corr[:, a, b] = corr[:, b, a] = flat[name]
    cov = sd[:, :, None] * corr * sd[:, None, :]
    low = np.linalg.cholesky(cov + 1e-12 * np.eye(k))  # (S, k, k)
    z = rng.standard_normal((n_samples, n_groups, k))
    return np.einsum("sab,sgb->sga", low, z)


def _gammas(flat, coef: str, config: Config, gps: list[str]) -> np.ndarray | None:
    """(S, q) effects of the group-level predictors on `coef`'s population mean, if any."""
    if config.model.pooling != "hierarchical" or coef not in config.model.group_predictors_for:
        return None
    if not gps:
        return None
    return np.column_stack([flat[group_predictor_effect(coef, gp)] for gp in gps])


def _linear_predictor(coefs, effects, rows: NewRows, which: np.ndarray, n_samples) -> np.ndarray:
    """(S, len(which)): the sum over design columns of coefficient draws times values.

    Several-factor runs add each factor's effects (`_factor_effects`) times their columns.
    """
    X = rows.X[which]
    mu = np.zeros((n_samples, X.shape[0]))
    columns = None
    if rows.group_idx is not None:
        idx = rows.group_idx[which]
        n_known = next((c[1].shape[1] for c in coefs if c[0] == "group"), 0)
        n_known -= len(rows.new_labels)
        columns = np.where(idx >= 0, idx, n_known + (-1 - idx))
    for j, (kind, values, *rest) in enumerate(coefs):
        if kind == "fixed":
            mu += values[:, None] * X[:, j]
        elif kind == "group":
            mu += values[:, columns] * X[:, j]
        else:
            mean = np.broadcast_to(values[:, None], mu.shape)
            gammas = rest[0]
            if gammas is not None:
                mean = mean + gammas @ rows.row_group_X[which].T
            mu += mean * X[:, j]
    for j, values, level_columns in effects:
        mu += values[:, level_columns[which]] * X[:, j]
    return mu
