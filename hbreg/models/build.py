"""One model spec, three pooling strategies, three parameterizations.

Every model is the same linear Gaussian regression; what differs is how the
coefficients in a *block* are given their prior:

- pooled: all coefficients form one block with fixed Normal priors;
- unpooled: the varying coefficients get one block per group with fixed priors;
- hierarchical: the varying coefficients get one block per group with prior
  N(mu_<coef> (+ gamma * group predictors), sigma_<coef>).

Coefficients outside the blocks (non-varying ones) are sampled directly. The block
coefficients are then either integrated out (`marginal`, see `marginal.py`) or
sampled as `centered` / `noncentered` random variables. Whatever the choice, the
completed posterior has the names of README, "Names in the posterior" (`hbreg.names`).

In the marginal model a group scale with a half-symmetric prior (HalfNormal,
HalfCauchy, HalfStudentT) is sampled *signed*: z with the symmetric prior and
sigma = |z|. The marginal likelihood depends on sigma^2 only, so the posterior of z
is smooth through zero, and NUTS no longer has to follow log(sigma) down the long
tail where the data allow a small scale (about three times the bulk ESS of
`sigma_floor` on radon).
"""

from __future__ import annotations

import numpy as np

from hbreg.config import Config, correlation_prior, parameter_names, prior_for
from hbreg.config.priors import to_pymc
from hbreg.data import ModelData
from hbreg.errors import ConfigError
from hbreg.families import pymc_likelihood
from hbreg.models.built import BuiltModel
from hbreg.models.marginal import (
    SufficientStats,
    draw_group_coefficients,
    marginal_loglik,
    outcome_shift,
    sufficient_stats,
)
from hbreg.names import (
    CORRELATION_CHOLESKY,
    RESIDUAL_SD,
    correlation_pairs,
    group_predictor_effect,
    group_sd,
    offset,
    population_mean,
    signed,
)

__all__ = ["BuiltModel", "build_model", "complete_posterior", "resolve_parameterization"]


def resolve_parameterization(config: Config) -> str:
    """`auto` -> `marginal` for Gaussian models whose integrated priors are Normal."""
    wanted = config.model.parameterization
    fixed_priors = [] if config.model.pooling == "hierarchical" else _block_coef_names(config)
    non_normal = [c for c in fixed_priors if prior_for(config, c)["dist"] != "Normal"]
    if wanted == "marginal" and non_normal:
        raise ConfigError(
            f"model.parameterization: 'marginal' integrates {non_normal} out, which needs Normal "
            "priors on them; use 'noncentered' or give them Normal priors"
        )
    if wanted == "centered" and config.model.correlated:
        raise ConfigError(
            "model.parameterization: correlated group effects are sampled 'marginal' or "
            "'noncentered' (Cholesky factor), not 'centered'"
        )
    if wanted != "auto":
        return wanted
    if integrable(config) and not non_normal:
        return "marginal"
    return "noncentered" if config.model.pooling == "hierarchical" else "centered"


def integrable(config: Config) -> bool:
    """Only a Gaussian likelihood without weights lets the group coefficients be integrated."""
    return config.model.family == "gaussian" and config.data.weights is None


def parameterization_note(config: Config, parameterization: str) -> str | None:
    """Why `auto` did not integrate the group coefficients out, for the manifest and terminal."""
    if config.model.parameterization != "auto" or integrable(config):
        return None
    why = (
        f"family '{config.model.family}'"
        if config.model.family != "gaussian"
        else "likelihood weights (data.weights)"
    )
    return (
        f"parameterization auto -> {parameterization}: with {why} the group coefficients have "
        "no closed-form marginal, so NUTS samples them"
    )


def _block_coef_names(config: Config) -> list[str]:
    from hbreg.config import coefficient_names, varying_names

    return coefficient_names(config) if config.model.pooling == "pooled" else varying_names(config)


def block_priors(config: Config, data: ModelData, params: dict) -> dict[str, tuple]:
    """Prior mean and sd of each block coefficient, from sampled params (tensors or arrays).

    Arrays in `params` must broadcast against (G,) group-level predictor columns.
    """
    result = {}
    for coef in _block_coef_names(config):
        if config.model.pooling != "hierarchical":
            spec = prior_for(config, coef)
            result[coef] = (spec["mu"], spec["sigma"])
            continue
        mean = params[population_mean(coef)]
        if coef in config.model.group_predictors_for:
            for q, gp in enumerate(data.group_predictor_names):
                mean = mean + params[group_predictor_effect(coef, gp)] * data.group_X[:, q]
        result[coef] = (mean, params[group_sd(coef)])
    return result


def build_model(config: Config, data: ModelData) -> BuiltModel:
    """Build the PyMC model of `config` on `data` with the resolved parameterization."""
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    parameterization = resolve_parameterization(config)
    if data.factors:
        from hbreg.models.several import build_several

        return build_several(config, data, parameterization)
    pooled = config.model.pooling == "pooled"
    block_coefs = _block_coef_names(config)
    coords = {} if pooled else {data.group_dim: data.group_labels}
    dims = None if pooled else data.group_dim
    sampled = [n for n in parameter_names(config) if n not in block_coefs]
    stats = shift = None
    with pm.Model(coords=coords) as model:
        params = {
            name: _sampled_parameter(name, prior_for(config, name), parameterization, role)
            for name, role in parameter_names(config).items()
            if name in sampled
        }
        _start_intercept_at_the_mean(model, params, config, data)
        priors = block_priors(config, data, params)
        corr_chol = _correlation(config, block_coefs) if config.model.correlated else None
        if parameterization == "marginal":
            block_idx = np.zeros(len(data.y), dtype=np.int64) if pooled else data.group_idx
            n_blocks = 1 if pooled else data.n_groups
            y = data.y if data.offset is None else data.y - data.offset
            shift = outcome_shift(data.X, y, block_idx, n_blocks, _intercept_column(data))
            y = y if shift is None else y - shift[block_idx]
            stats = sufficient_stats(data.X, y, block_idx, n_blocks)
            const = _data_inputs(stats)
            means = [priors[c][0] if c in priors else params[c] for c in data.coef_names]
            if shift is not None:  # an input like the statistics: the compiled code is reused
                shift_input = pytensor.shared(shift, name="hbreg_data_outcome_shift")
                means[_intercept_column(data)] = means[_intercept_column(data)] - shift_input
            tau = [priors[c][1] for c in block_coefs]
            varying = [data.coef_names.index(c) for c in block_coefs]
            pm.Potential(
                "marginal_loglik",
                marginal_loglik(
                    const, means, tau, params[RESIDUAL_SD], varying, pt, corr_chol=corr_chol
                ),
            )
        else:
            values = dict(params)
            if corr_chol is not None:
                values.update(_correlated_block(block_coefs, priors, corr_chol, dims))
            else:
                for coef in block_coefs:
                    values[coef] = _block_variable(
                        coef, *priors[coef], config, parameterization, dims
                    )
            mu = 0 if data.offset is None else data.offset
            for j, coef in enumerate(data.coef_names):
                value = values[coef]
                if coef in block_coefs and not pooled:
                    value = value[data.group_idx]
                mu = mu + value * data.X[:, j]
            pymc_likelihood(
                config.model.family,
                config.model.link,
                mu,
                params,
                name=data.outcome,
                observed=data.y,
                trials=data.trials,
                weights=data.weights,
            )
    return BuiltModel(
        model=model,
        parameterization=parameterization,
        block_coefs=block_coefs,
        population_vars=list(parameter_names(config))
        if pooled
        else list(sampled) + _correlation_names(config, block_coefs),
        group_vars=[] if pooled else block_coefs,
        pair_vars=_pair_vars(config, data, block_coefs),
        stats=stats,
        shift=shift if parameterization == "marginal" else None,
        sampled_vars=sampled,
        internal_vars=[
            v.name
            for v in model.free_RVs
            if v.name not in parameter_names(config) and v.name not in block_coefs
        ],
        correlated=corr_chol is not None,
        correlation_vars=_correlation_names(config, block_coefs),
    )


def _correlation_names(config: Config, block_coefs: list[str]) -> list[str]:
    if not config.model.correlated:
        return []
    return [name for _, _, name in correlation_pairs(block_coefs)]


def _correlation(config: Config, block_coefs: list[str]):
    """LKJ prior on the correlations of the block coefficients; returns its Cholesky factor.

    The same variable in every parameterization, so the posterior of `corr_<a>_<b>` means
    the same thing whichever sampled it.
    """
    import pymc as pm

    eta = correlation_prior(config, config.data.group)["eta"]
    low = pm.LKJCorr(CORRELATION_CHOLESKY, n=len(block_coefs), eta=eta)
    for a, b, name in correlation_pairs(block_coefs):
        pm.Deterministic(name, (low[a] * low[b]).sum())
    return low


def _correlated_block(block_coefs, priors, corr_chol, dims) -> dict:
    """Non-centered correlated coefficients: b = m + diag(tau) L z, z standard normal."""
    import pymc as pm

    z = [pm.Normal(offset(coef), 0, 1, dims=dims) for coef in block_coefs]
    values = {}
    for a, coef in enumerate(block_coefs):
        mean, sd = priors[coef]
        shift = sum(corr_chol[a, m] * z[m] for m in range(a + 1))
        values[coef] = pm.Deterministic(coef, mean + sd * shift, dims=dims)
    return values


def _data_inputs(stats: SufficientStats) -> SufficientStats:
    """The sufficient statistics as inputs of the compiled model, not constants in its code.

    The compiled logp then depends on the model's structure only: every data set of that
    structure (simulate's replicates, refits) loads it from the compile cache instead of
    compiling it again (see hbreg/compile_cache.py).
    """
    import pytensor

    return SufficientStats(
        *(pytensor.shared(value, name=f"hbreg_data_{name}") for name, value in vars(stats).items())
    )


def _start_intercept_at_the_mean(model, params: dict, config: Config, data: ModelData) -> None:
    """Start NUTS with the intercept's location at the outcome's mean instead of 0.

    The posterior is unchanged; only the starting point moves (identity links only: other
    intercepts live on the link scale). With radon's outcome + 1e6 and a Normal(0, 1e7)
    intercept prior, 200 tuning steps from 0 never reached the data (sigma 51,469 instead
    of 0.75, r_hat 2.5, 74 divergences); started at the mean, the same run has 0
    divergences and r_hat 1.016 (draws 200, tune 200, 4 chains, seed 1).
    """
    import pytensor

    from hbreg.config.priors import DISTRIBUTIONS

    if config.model.link != "identity":
        return  # the intercept lives on the link scale (log-odds, log rate), not y's
    start = float(np.mean(data.y if data.offset is None else data.y - data.offset))
    for name in (population_mean("intercept"), "intercept"):
        var = params.get(name)
        if var is None or var not in model.free_RVs or "intercept" not in data.coef_names:
            continue
        if start > 0 or not DISTRIBUTIONS[prior_for(config, name)["dist"]].positive_support:
            # an input of the initial point, like the data: a model compiled for one data
            # set starts another at its own mean (hbreg/compile_cache.py)
            model.set_initval(var, pytensor.shared(np.float64(start), name=f"hbreg_start_{name}"))
        return


def _intercept_column(data: ModelData) -> int | None:
    return data.coef_names.index("intercept") if "intercept" in data.coef_names else None


_SIGNED = {"HalfNormal": "Normal", "HalfCauchy": "Cauchy", "HalfStudentT": "StudentT"}


def _sampled_parameter(name: str, spec: dict, parameterization: str, role: str):
    import pymc as pm
    import pytensor.tensor as pt

    sign = _SIGNED.get(spec["dist"])
    if parameterization != "marginal" or role != "scale" or name == RESIDUAL_SD or sign is None:
        return to_pymc(name, spec)
    location = {"Cauchy": {"alpha": 0}}.get(sign, {"mu": 0})
    z = to_pymc(signed(name), {**spec, "dist": sign, **location})
    return pm.Deterministic(name, pt.abs(z))


def _block_variable(coef, mean, sd, config, parameterization, dims):
    import pymc as pm

    if config.model.pooling != "hierarchical":
        return to_pymc(coef, prior_for(config, coef), dims=dims)
    if parameterization == "centered":
        return pm.Normal(coef, mu=mean, sigma=sd, dims=dims)
    z = pm.Normal(offset(coef), 0, 1, dims=dims)
    return pm.Deterministic(coef, mean + sd * z, dims=dims)


def _pair_vars(config, data, block_coefs) -> list[str]:
    """The parameters where funnels and divergences show: a group scale against a group value."""
    if config.model.pooling == "pooled" or not block_coefs:
        return list(parameter_names(config))[:4]
    smallest = data.group_labels[int(np.argmin(data.group_sizes))]
    coef = block_coefs[-1]
    family = [n for n, role in parameter_names(config).items() if role == "family"]
    residual = [RESIDUAL_SD] if RESIDUAL_SD in parameter_names(config) else family[:1]
    if config.model.pooling == "hierarchical":
        pair = [population_mean(coef), group_sd(coef), f"{coef}[{smallest}]", *residual]
        return pair + _correlation_names(config, block_coefs)[:1]
    return [f"{c}[{smallest}]" for c in block_coefs[:2]] + residual


def complete_posterior(built: BuiltModel, config: Config, data: ModelData, posterior, *, seed: int):
    """Add the integrated-out block coefficients to a marginal posterior (xarray Dataset).

    Draws are exact and seeded, so the same seed gives the same coefficients. Internal
    `*_offset` and `*_signed` variables are dropped.
    """
    if built.several is not None:
        from hbreg.models.several import complete_several

        return complete_several(built, data, posterior, seed=seed)
    corr = None
    if built.correlated and built.parameterization == "marginal":
        low = posterior[CORRELATION_CHOLESKY].values
        low = low.reshape(-1, *low.shape[2:])
        corr = low @ np.swapaxes(low, -1, -2)
    posterior = posterior.drop_vars([v for v in built.internal_vars if v in posterior])
    if built.parameterization != "marginal" or not built.block_coefs:
        return posterior
    stacked = {name: posterior[name].values.reshape(-1, 1) for name in built.sampled_vars}
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_draws
    n_blocks = built.stats.n.shape[0]
    priors = block_priors(config, data, stacked)
    means = np.empty((n_samples, n_blocks, len(data.coef_names)))
    for j, coef in enumerate(data.coef_names):
        means[:, :, j] = priors[coef][0] if coef in priors else stacked[coef]
    if built.shift is not None:  # the sufficient statistics are of y minus the shift
        means[:, :, _intercept_column(data)] -= built.shift
    tau = np.column_stack(
        [np.broadcast_to(priors[c][1], (n_samples, 1))[:, 0] for c in built.block_coefs]
    )
    varying = [data.coef_names.index(c) for c in built.block_coefs]
    draws = draw_group_coefficients(
        built.stats,
        means,
        tau,
        stacked[RESIDUAL_SD][:, 0],
        varying,
        np.random.default_rng(seed),
        corr=corr,
    )
    pooled = config.model.pooling == "pooled"
    new = {}
    for a, coef in enumerate(built.block_coefs):
        if built.shift is not None and coef == "intercept":
            draws[:, :, a] += built.shift
        values = draws[:, :, a].reshape(n_chains, n_draws, n_blocks)
        if pooled:
            new[coef] = (("chain", "draw"), values[:, :, 0])
        else:
            new[coef] = (("chain", "draw", data.group_dim), values)
    coords = {} if pooled else {data.group_dim: data.group_labels}
    return posterior.assign(new).assign_coords(coords) if coords else posterior.assign(new)
