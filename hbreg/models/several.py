"""Gaussian models with several grouping factors, crossed `(1 | a) + (1 | b)` or nested `(1 | a/b)`.

y = X beta + sum over factors f and their varying coefficients c of x_c * b_fc[level] + e,
with each factor's effects b_f ~ N(0, diag(sigma_f) R_f diag(sigma_f)) (R_f = I unless
the term is correlated, then LKJ). Two ways to sample it:

- `marginal`: the factor with the most levels is integrated out exactly, conditional on the
  other factors' effects, which are sampled non-centered. Given those effects the model is
  the one-factor Gaussian model with a known offset o, so `marginal_loglik` applies to the
  sufficient statistics of y - o: W'(y - o) and (y - o)'(y - o) per group, two scatter-adds
  over the rows per gradient (W'W and n do not change). The integrated factor's effects are
  then drawn exactly for every posterior draw. The factor with the most levels is the one
  that would otherwise put the most parameters (and funnels) in front of NUTS.
- `noncentered`: every factor's effects sigma_f L_f z_f.

Measured (`bench/bench_crossed.py`: InstEval, 5,000 rows, 800 students x 300 lecturers,
4 x (1000 + 1000)): lowest bulk ESS 1705 with the students integrated out against 936
non-centered, same estimates; ESS per second of the whole process 1.4x-1.8x. The
scatter-add graph compiled faster than a sorted-cumsum one (8.5 s against 20.9 s) and
sampled in half the time.

Names are those of `hbreg.names` for several factors (`sigma_intercept|plate`,
`intercept|plate[a]`, `corr_intercept_x|g`), the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from hbreg.config import Config, correlation_prior
from hbreg.config.priors import to_pymc
from hbreg.data import ModelData
from hbreg.data.formula import parameter_roles, population_names, several_factor_problems
from hbreg.errors import ConfigError
from hbreg.families import family_of, pymc_likelihood
from hbreg.models.built import BuiltModel
from hbreg.models.marginal import SufficientStats, draw_group_coefficients, marginal_loglik
from hbreg.models.marginal import sufficient_stats as _sufficient_stats
from hbreg.names import (
    RESIDUAL_SD,
    correlation_pairs,
    factor_cholesky,
    factor_correlation,
    factor_effect,
    factor_sd,
    offset,
)

__all__ = ["SeveralFactors", "build_several", "complete_several"]


@dataclass
class SeveralFactors:
    """What completing a several-factor posterior needs."""

    integrated: str | None  # the factor integrated out (marginal), else None
    stats: SufficientStats | None


def _priors(config: Config, data: ModelData) -> dict[str, dict]:
    roles = parameter_roles(data, config.model.family)
    problems = several_factor_problems(config, data)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    default = {"coefficient": config.priors.coefficient, "scale": config.priors.group_sd}
    own = family_of(config.model.family).parameters
    priors = {
        name: config.priors.overrides.get(name, own[name] if role == "family" else default[role])
        for name, role in roles.items()
    }
    if RESIDUAL_SD in roles:
        priors[RESIDUAL_SD] = config.priors.overrides.get(RESIDUAL_SD, config.priors.sigma)
    return priors


def build_several(config: Config, data: ModelData, parameterization: str):
    """The PyMC model of a several-factor formula config (see the module docstring)."""
    import pymc as pm
    import pytensor.tensor as pt

    if parameterization not in ("marginal", "noncentered"):
        raise ConfigError(
            f"model.parameterization: '{parameterization}' is not available with several "
            "grouping factors; use 'marginal' (auto) or 'noncentered'"
        )
    priors = _priors(config, data)
    pop_names = population_names(data)
    integrated = data.group_dim if parameterization == "marginal" else None
    coords = {f.name: f.labels for f in data.factors}
    stats = None
    correlations = []
    with pm.Model(coords=coords) as model:
        beta = {c: to_pymc(name, priors[name]) for c, name in pop_names.items()}
        roles = parameter_roles(data, config.model.family)
        own = {n: to_pymc(n, priors[n]) for n, role in roles.items() if role == "family"}
        if RESIDUAL_SD in roles:
            own[RESIDUAL_SD] = to_pymc(RESIDUAL_SD, priors[RESIDUAL_SD])
        y = data.y if data.offset is None else data.y - data.offset
        sds, chols = {}, {}
        for f in data.factors:
            sds[f.name] = [
                to_pymc(factor_sd(c, f.name), priors[factor_sd(c, f.name)]) for c in f.varying
            ]
            chols[f.name] = None
            if f.correlated:
                low = pm.LKJCorr(
                    factor_cholesky(f.name),
                    n=len(f.varying),
                    eta=correlation_prior(config, f.name)["eta"],
                )
                for a, b, _ in correlation_pairs(f.varying):
                    name = factor_correlation(f.varying[b], f.varying[a], f.name)
                    pm.Deterministic(name, (low[a] * low[b]).sum())
                    correlations.append(name)
                chols[f.name] = low
        shift = 0
        for f in data.factors:
            if f.name == integrated:
                continue
            z = [pm.Normal(offset(factor_effect(c, f.name)), 0, 1, dims=f.name) for c in f.varying]
            for a, c in enumerate(f.varying):
                mix = (
                    z[a]
                    if chols[f.name] is None
                    else sum(chols[f.name][a, m] * z[m] for m in range(a + 1))
                )
                effect = pm.Deterministic(
                    factor_effect(c, f.name), sds[f.name][a] * mix, dims=f.name
                )
                shift = shift + effect[f.idx] * data.X[:, data.coef_names.index(c)]
        if integrated is None:
            mu = sum(beta[c] * data.X[:, j] for j, c in enumerate(data.coef_names)) + shift
            pymc_likelihood(
                config.model.family,
                config.model.link,
                mu if data.offset is None else mu + data.offset,
                own,
                name=data.outcome,
                observed=data.y,
                trials=data.trials,
                weights=data.weights,
            )
        else:
            main = _factor(data, integrated)
            stats = _sufficient_stats(data.X, y, main.idx, len(main.labels))
            const = _shifted_stats(stats, data, main, shift, pt, y=y)
            varying = [data.coef_names.index(c) for c in main.varying]
            pm.Potential(
                "marginal_loglik",
                marginal_loglik(
                    const,
                    [beta[c] for c in data.coef_names],
                    sds[main.name],
                    own[RESIDUAL_SD],
                    varying,
                    pt,
                    corr_chol=chols[main.name],
                ),
            )
    scalars = list(priors) + correlations
    main_name = data.group_dim
    group_vars = [factor_effect(c, main_name) for c in _factor(data, main_name).varying]
    return BuiltModel(
        model=model,
        parameterization=parameterization,
        block_coefs=[],
        population_vars=scalars,
        group_vars=group_vars,
        pair_vars=[n for n in scalars if n not in own][:4] + list(own)[:1],
        stats=stats,
        sampled_vars=list(priors),
        internal_vars=[v.name for v in model.free_RVs if v.name not in priors],
        correlated=bool(correlations),
        correlation_vars=correlations,
        several=SeveralFactors(integrated=integrated, stats=stats),
    )


def _factor(data: ModelData, name: str):
    return next(f for f in data.factors if f.name == name)


def _shifted_stats(
    stats: SufficientStats, data: ModelData, main, shift, pt, *, y=None
) -> SufficientStats:
    """Sufficient statistics of y - shift as tensors (W'W and n unchanged).

    `y` is the outcome the statistics were made of (the data's, less any offset).
    """
    y = data.y if y is None else y
    n, wtw = pt.as_tensor(stats.n), pt.as_tensor(stats.wtw)
    if isinstance(shift, int):
        return SufficientStats(n, wtw, pt.as_tensor(stats.wty), pt.as_tensor(stats.yty))
    groups = len(main.labels)

    def per_group(values):
        return pt.inc_subtensor(pt.zeros(groups)[main.idx], values)

    wty = pt.stack(
        [stats.wty[:, a] - per_group(data.X[:, a] * shift) for a in range(data.X.shape[1])], axis=1
    )
    yty = stats.yty - 2 * per_group(y * shift) + per_group(shift * shift)
    return SufficientStats(n, wtw, wty, yty)


def complete_several(built, data: ModelData, posterior, *, seed: int, chunk: int = 256):
    """Drop internal variables; add the integrated factor's effects, drawn exactly."""
    info = built.several
    corr = None
    main = _factor(data, data.group_dim)
    if info.integrated is not None and main.correlated:
        low = posterior[factor_cholesky(main.name)].values
        low = low.reshape(-1, *low.shape[2:])
        corr = low @ np.swapaxes(low, -1, -2)
    posterior = posterior.drop_vars([v for v in built.internal_vars if v in posterior])
    if info.integrated is None:
        return posterior
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    total = n_chains * n_draws
    pop = population_names(data)
    beta = np.column_stack([posterior[pop[c]].values.reshape(-1) for c in data.coef_names])
    tau = np.column_stack(
        [posterior[factor_sd(c, main.name)].values.reshape(-1) for c in main.varying]
    )
    sigma = posterior[RESIDUAL_SD].values.reshape(-1)
    others = [f for f in data.factors if f.name != main.name]
    effects = {
        (f.name, c): posterior[factor_effect(c, f.name)].values.reshape(total, -1)
        for f in others
        for c in f.varying
    }
    varying = [data.coef_names.index(c) for c in main.varying]
    groups = len(main.labels)
    rng = np.random.default_rng(seed)
    out = np.empty((total, groups, len(varying)))
    # per-group sums of a (draws, rows) array in one sparse product
    rows_to_groups = sparse.csr_matrix(
        (np.ones(len(main.idx)), (main.idx, np.arange(len(main.idx)))),
        shape=(groups, len(main.idx)),
    )
    for start in range(0, total, chunk):
        sl = slice(start, min(start + chunk, total))
        s = sl.stop - sl.start
        shift = np.zeros((s, len(data.y)))
        for f in others:
            for c in f.varying:
                shift += effects[(f.name, c)][sl][:, f.idx] * data.X[:, data.coef_names.index(c)]
        wty = np.empty((s, groups, data.X.shape[1]))
        for a in range(data.X.shape[1]):
            wty[:, :, a] = (
                info.stats.wty[None, :, a] - (rows_to_groups @ (data.X[:, a] * shift).T).T
            )
        means = np.broadcast_to(beta[sl][:, None, :], (s, groups, beta.shape[1]))
        draws = draw_group_coefficients(
            info.stats,
            means,
            tau[sl],
            sigma[sl],
            varying,
            rng,
            chunk=chunk,
            corr=None if corr is None else corr[sl],
            wty=wty,
        )
        out[sl] = draws - means[..., varying]
    new = {
        factor_effect(c, main.name): (
            ("chain", "draw", main.name),
            out[:, :, a].reshape(n_chains, n_draws, groups),
        )
        for a, c in enumerate(main.varying)
    }
    return posterior.assign(new).assign_coords({main.name: main.labels})
