"""Model builders, the completed posterior and the pointwise quantities, checked for correctness.

Statistical tests sample for real (nutpie, seeded) and compare against answers known
independently: the same posterior under another parameterization, closed-form
conjugate results, or the simulation's truth. Tolerances are stated in Monte Carlo
standard errors (MCSE, from `az.summary`) so they shrink with more draws; 5 combined
MCSE is about a 1-in-1.7-million miss per comparison when the two answers really agree.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hbreg.config import parse_config
from hbreg.data import to_model_data
from hbreg.errors import ConfigError
from hbreg.inference import sample
from hbreg.models import build_model, complete_posterior, resolve_parameterization
from hbreg.models.pointwise import PPC_DRAWS, pointwise_groups
from hbreg.stats.summary import summarize

# --------------------------------------------------------------------------- helpers


def make_config(
    *,
    pooling="hierarchical",
    parameterization="auto",
    predictors=("x",),
    varying=None,
    group_predictors=(),
    priors=None,
    sampler=None,
    **model,
):
    raw = {
        "name": "t",
        "data": {"path": "in-memory.csv", "outcome": "y", "predictors": list(predictors)},
        "model": {"pooling": pooling, "parameterization": parameterization, **model},
        "sampler": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 11, **(sampler or {})},
    }
    if pooling != "pooled":
        raw["data"]["group"] = "grp"
    if varying is not None:
        raw["model"]["varying"] = list(varying)
    if group_predictors:
        raw["data"]["group_predictors"] = list(group_predictors)
    if priors:
        raw["priors"] = priors
    return parse_config(raw)


def synthetic_frame(
    seed=0,
    *,
    sizes=(3, 5, 8, 10, 12, 15, 20, 25),
    mu=(1.0, -0.5),
    tau=(0.6, 0.4),
    sigma=0.8,
    gamma=0.0,
    extra=False,
):
    """Hierarchical data: per-group intercept and slope of x, optional shared z and
    group-level predictor u shifting the intercepts by gamma * u."""
    rng = np.random.default_rng(seed)
    G = len(sizes)
    u = rng.normal(size=G)
    a = mu[0] + gamma * u + tau[0] * rng.normal(size=G)
    b = mu[1] + tau[1] * rng.normal(size=G)
    g = np.repeat(np.arange(G), sizes)
    x = rng.normal(size=len(g))
    y = a[g] + b[g] * x + sigma * rng.normal(size=len(g))
    frame = pd.DataFrame({"y": y, "x": x, "grp": [f"g{i}" for i in g], "u": u[g]})
    if extra:
        frame["z"] = rng.normal(size=len(g))
        frame["y"] += 0.7 * frame["z"]
    return frame


def fit(frame, config):
    data = to_model_data(frame, config)
    built = build_model(config, data)
    result = sample(built.model, config.sampler, seed=config.sampler.seed)
    posterior = complete_posterior(
        built, config, data, result.posterior, seed=config.sampler.seed + 1
    )
    return SimpleNamespace(
        config=config,
        data=data,
        built=built,
        posterior=posterior,
        sample_stats=result.sample_stats,
        summary=summarize(posterior),
    )


def fake_posterior(built, *, chains=2, draws=25, seed=0):
    """What a sampler returns: every free variable and deterministic of the model, with the
    model's dims (values positive so they serve as scales too). No compilation needed."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    model = built.model
    variables = {}
    for var in [*model.free_RVs, *model.deterministics]:
        dims = model.named_vars_to_dims.get(var.name, ())
        shape = tuple(len(model.coords[d]) for d in dims)
        values = 0.2 + np.abs(rng.normal(size=(chains, draws, *shape)))
        variables[var.name] = (("chain", "draw", *dims), values)
    coords = {d: list(model.coords[d]) for d in model.coords}
    return xr.Dataset(
        variables, coords={"chain": np.arange(chains), "draw": np.arange(draws), **coords}
    )


def assert_agree(a, b, name, *, z=5.0, stat="mean"):
    """Two independent MC estimates of the same quantity differ by < z combined MCSE."""
    mcse = np.hypot(a.loc[name, f"mcse_{stat}"], b.loc[name, f"mcse_{stat}"])
    diff = a.loc[name, stat] - b.loc[name, stat]
    assert abs(diff) < z * mcse, (
        f"{name} {stat}: {a.loc[name, stat]} vs {b.loc[name, stat]} ({diff / mcse:.1f} MCSE)"
    )


# --------------------------------------------------------------------------- names contract

POOLINGS = {
    # pooling -> (varying, expected scalar variables, expected group variables)
    "pooled": (None, {"intercept", "x", "z", "sigma"}, set()),
    "unpooled": (["intercept", "x"], {"z", "sigma"}, {"intercept", "x"}),
    "hierarchical": (
        ["intercept", "x"],
        {"mu_intercept", "sigma_intercept", "gamma_intercept_u", "mu_x", "sigma_x", "z", "sigma"},
        {"intercept", "x"},
    ),
}


@pytest.mark.unit
@pytest.mark.parametrize("parameterization", ["marginal", "centered", "noncentered"])
@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_posterior_names_follow_the_design_contract(pooling, parameterization):
    varying, scalars, grouped = POOLINGS[pooling]
    config = make_config(
        pooling=pooling,
        parameterization=parameterization,
        predictors=("x", "z"),
        varying=varying,
        group_predictors=("u",) if pooling == "hierarchical" else (),
    )
    frame = synthetic_frame(1, sizes=(4, 1, 6), extra=True)
    data = to_model_data(frame, config)
    built = build_model(config, data)
    assert built.parameterization == parameterization
    raw = fake_posterior(built)
    post = complete_posterior(built, config, data, raw, seed=3)

    assert set(post.data_vars) == scalars | grouped
    assert not [v for v in post.data_vars if v.endswith(("_offset", "_signed"))]
    for name in scalars:
        assert post[name].dims == ("chain", "draw"), name
    for name in grouped:
        assert post[name].dims == ("chain", "draw", "grp"), name
    if grouped:
        assert list(post["grp"].values) == ["g0", "g1", "g2"]  # labels, first-appearance order
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 25
    for name in post.data_vars:
        assert np.isfinite(post[name].values).all(), name


@pytest.mark.unit
def test_completed_marginal_coefficients_are_seeded():
    config = make_config(parameterization="marginal")
    data = to_model_data(synthetic_frame(2), config)
    built = build_model(config, data)
    raw = fake_posterior(built)
    first = complete_posterior(built, config, data, raw, seed=5)
    again = complete_posterior(built, config, data, raw, seed=5)
    other = complete_posterior(built, config, data, raw, seed=6)
    np.testing.assert_array_equal(first["intercept"].values, again["intercept"].values)
    assert not np.allclose(first["intercept"].values, other["intercept"].values)
    # the sampled hyperparameters are passed through untouched
    np.testing.assert_array_equal(first["mu_x"].values, raw["mu_x"].values)


@pytest.mark.unit
@pytest.mark.parametrize("parameterization", ["marginal", "noncentered"])
def test_a_predictor_named_like_an_internal_variable_keeps_its_name(parameterization):
    """`tz_offset` is an ordinary column name; its coefficients (and mu_/sigma_ of it)
    must survive the removal of the internal `<coef>_offset` / `<coef>_signed` variables."""
    config = make_config(parameterization=parameterization, predictors=("tz_offset",))
    frame = synthetic_frame(3).rename(columns={"x": "tz_offset"})
    data = to_model_data(frame, config)
    built = build_model(config, data)
    post = complete_posterior(built, config, data, fake_posterior(built), seed=1)
    assert {"mu_tz_offset", "sigma_tz_offset", "tz_offset"} <= set(post.data_vars)


@pytest.mark.unit
@pytest.mark.parametrize("pooling", ["unpooled", "hierarchical"])
def test_no_varying_coefficients_completes(pooling):
    """`model.varying: []` is a valid config (every coefficient shared): nothing is integrated
    out, and the completed posterior is just the sampled coefficients and sigma."""
    config = make_config(pooling=pooling, varying=[])
    data = to_model_data(synthetic_frame(5), config)
    built = build_model(config, data)
    post = complete_posterior(built, config, data, fake_posterior(built), seed=1)
    assert set(post.data_vars) == {"intercept", "x", "sigma"}


@pytest.mark.unit
def test_a_model_without_intercept_has_the_contract_names():
    """`model.intercept: false` with the default `group_predictors_for` (and no group
    predictors at all) is a valid hierarchical model with a varying slope only."""
    config = make_config(intercept=False)
    data = to_model_data(synthetic_frame(6), config)
    built = build_model(config, data)
    post = complete_posterior(built, config, data, fake_posterior(built), seed=1)
    assert set(post.data_vars) == {"mu_x", "sigma_x", "x", "sigma"}
    assert post["x"].dims == ("chain", "draw", "grp")


# --------------------------------------------------------------------------- parameterization


@pytest.mark.unit
def test_auto_is_marginal_for_normal_priors():
    for pooling in ("pooled", "unpooled", "hierarchical"):
        assert resolve_parameterization(make_config(pooling=pooling)) == "marginal"


@pytest.mark.unit
def test_forced_parameterizations_are_respected():
    for wanted in ("centered", "noncentered", "marginal"):
        assert resolve_parameterization(make_config(parameterization=wanted)) == wanted


STUDENT_T = {"dist": "StudentT", "nu": 3, "mu": 0, "sigma": 2}


@pytest.mark.unit
def test_student_t_coefficient_prior_on_a_pooled_model_is_centered_not_marginal():
    config = make_config(pooling="pooled", priors={"coefficient": STUDENT_T})
    assert resolve_parameterization(config) == "centered"
    forced = make_config(
        pooling="pooled", parameterization="marginal", priors={"coefficient": STUDENT_T}
    )
    with pytest.raises(ConfigError, match="marginal.*Normal"):
        resolve_parameterization(forced)
    # one non-Normal override is enough
    one = make_config(pooling="pooled", priors={"overrides": {"x": STUDENT_T}})
    assert resolve_parameterization(one) == "centered"


@pytest.mark.unit
def test_student_t_only_on_sampled_coefficients_keeps_marginal():
    # hierarchical: the coefficient prior goes to mu_*, the integrated blocks stay Normal
    hier = make_config(pooling="hierarchical", priors={"coefficient": STUDENT_T})
    assert resolve_parameterization(hier) == "marginal"
    # unpooled: a shared (non-varying) coefficient is sampled, not integrated out
    shared = make_config(
        pooling="unpooled",
        predictors=("x", "z"),
        varying=["intercept", "x"],
        priors={"overrides": {"z": STUDENT_T}},
    )
    assert resolve_parameterization(shared) == "marginal"
    on_block = make_config(
        pooling="unpooled", varying=["intercept", "x"], priors={"overrides": {"x": STUDENT_T}}
    )
    assert resolve_parameterization(on_block) == "centered"


# --------------------------------------------------------------------------- sampled models


@pytest.fixture(scope="module")
def hier_fits():
    """The same 8-group, 2-varying-coefficient posterior sampled marginal and non-centered."""
    frame = synthetic_frame(2024)
    fits = {}
    for par in ("marginal", "noncentered"):
        config = make_config(parameterization=par, sampler={"target_accept": 0.9})
        fits[par] = fit(frame, config)
    return fits


HIER_NAMES = [
    "mu_intercept",
    "mu_x",
    "sigma_intercept",
    "sigma_x",
    "sigma",
    "intercept[g0]",
    "x[g0]",
    "intercept[g7]",
    "x[g7]",
]


@pytest.mark.sampling
def test_marginal_and_noncentered_agree(hier_fits):
    m, n = hier_fits["marginal"], hier_fits["noncentered"]
    for f in (m, n):
        assert int(f.sample_stats["diverging"].sum()) == 0
        assert f.summary["r_hat"].max() < 1.01
        assert set(f.posterior.data_vars) == {
            "mu_intercept",
            "sigma_intercept",
            "mu_x",
            "sigma_x",
            "sigma",
            "intercept",
            "x",
        }
    for name in HIER_NAMES:
        assert_agree(m.summary, n.summary, name, stat="mean")
        assert_agree(m.summary, n.summary, name, stat="sd")


def _dependence(post):
    """Posterior correlations between hyperparameters and the smallest group's coefficients."""

    def corr(a, b):
        return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])

    g0 = {name: post[name].sel(grp="g0") for name in ("intercept", "x")}
    return {
        "mu_intercept~intercept[g0]": corr(post["mu_intercept"], g0["intercept"]),
        "mu_x~x[g0]": corr(post["mu_x"], g0["x"]),
        "sigma_intercept~|intercept[g0]-mu|": corr(
            post["sigma_intercept"], np.abs(g0["intercept"] - post["mu_intercept"])
        ),
    }


@pytest.mark.sampling
def test_marginal_draws_keep_the_joint_posterior(hier_fits):
    """The exact coefficient draws must be paired with their own hyperparameter draw: the
    correlations between them (0.2-0.35 here) match the non-centered sampler's. A pairing
    bug would leave the marginal summaries intact but send these to 0. The tolerance 0.15
    is about 3 combined Monte Carlo SEs of a correlation at these ESS (~1/sqrt(700) each)."""
    m = _dependence(hier_fits["marginal"].posterior)
    n = _dependence(hier_fits["noncentered"].posterior)
    for key in m:
        assert m[key] > 0.15, (key, m[key])
        assert abs(m[key] - n[key]) < 0.15, (key, m[key], n[key])


def _ols(X, y):
    beta, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    return beta, float(np.sum((y - X @ beta) ** 2))


WIDE = {"coefficient": {"dist": "Normal", "mu": 0, "sigma": 1000}}


@pytest.mark.sampling
def test_pooled_marginal_matches_the_conjugate_answer():
    """With a flat-ish prior the coefficients' posterior is a multivariate t centred at OLS
    with scale RSS/(n-p-1) (X'X)^-1 and n-p-1 dof (p(sigma) ~ const near the mode), so
    mean = OLS and sd = sqrt(RSS/(n-p-3) [(X'X)^-1]_jj)."""
    rng = np.random.default_rng(8)
    n = 150
    frame = pd.DataFrame({"x": rng.normal(size=n), "z": rng.uniform(-2, 2, size=n)})
    frame["y"] = 0.5 + 2.0 * frame["x"] - 1.0 * frame["z"] + 1.3 * rng.normal(size=n)
    config = make_config(
        pooling="pooled", predictors=("x", "z"), priors=WIDE, sampler={"chains": 2}
    )
    f = fit(frame, config)
    assert f.built.parameterization == "marginal"
    assert set(f.posterior.data_vars) == {"intercept", "x", "z", "sigma"}
    X = np.column_stack([np.ones(n), frame["x"], frame["z"]])
    beta, rss = _ols(X, frame["y"].to_numpy())
    sd = np.sqrt(rss / (n - 3 - 3) * np.diag(np.linalg.inv(X.T @ X)))
    for j, name in enumerate(["intercept", "x", "z"]):
        row = f.summary.loc[name]
        assert abs(row["mean"] - beta[j]) < 5 * row["mcse_mean"], (name, row["mean"], beta[j])
        assert abs(row["sd"] - sd[j]) < 5 * row["mcse_sd"] + 0.01 * sd[j], (name, row["sd"], sd[j])


@pytest.mark.sampling
def test_unpooled_marginal_matches_per_group_least_squares():
    """Unpooled: given sigma each group's coefficients are centred at that group's OLS fit,
    so the posterior means equal per-group OLS; the sds use the pooled residual scale."""
    frame = synthetic_frame(9, sizes=(15, 20, 25, 30))
    config = make_config(pooling="unpooled", priors=WIDE, sampler={"chains": 2})
    f = fit(frame, config)
    assert f.built.parameterization == "marginal"
    assert set(f.posterior.data_vars) == {"intercept", "x", "sigma"}
    N, G, p = len(frame), 4, 2
    fits = {}
    rss_total = 0.0
    for label, rows in frame.groupby("grp"):
        X = np.column_stack([np.ones(len(rows)), rows["x"]])
        beta, rss = _ols(X, rows["y"].to_numpy())
        fits[label] = (beta, np.diag(np.linalg.inv(X.T @ X)))
        rss_total += rss
    for label, (beta, diag) in fits.items():
        sd = np.sqrt(rss_total / (N - G * p - 3) * diag)
        for j, coef in enumerate(["intercept", "x"]):
            row = f.summary.loc[f"{coef}[{label}]"]
            assert abs(row["mean"] - beta[j]) < 5 * row["mcse_mean"], (label, coef)
            assert abs(row["sd"] - sd[j]) < 5 * row["mcse_sd"] + 0.01 * sd[j], (label, coef)


@pytest.mark.sampling
def test_group_level_predictor_is_recovered():
    """Intercepts = 1 + 2 u_g + N(0, 0.3): gamma_intercept_u must come back near 2."""
    frame = synthetic_frame(17, sizes=(10,) * 30, mu=(1.0, -0.5), tau=(0.3, 0.2), gamma=2.0)
    config = make_config(group_predictors=("u",), sampler={"chains": 2})
    f = fit(frame, config)
    assert int(f.sample_stats["diverging"].sum()) == 0
    row = f.summary.loc["gamma_intercept_u"]
    # Within 3 posterior sd of the truth (a 90% interval misses 1 time in 10 by design; with
    # this seed the data's own two-stage estimate is 1.95 +- 0.05 and the posterior 1.91 +- 0.05)
    assert abs(row["mean"] - 2.0) < 3 * row["sd"], row
    assert row["sd"] < 0.2  # informative: 30 groups pin it down
    # the predictor explains the intercepts' spread: the remaining scale is near 0.3, not the
    # ~2 * sd(u) it would have to absorb without it
    assert f.summary.loc["sigma_intercept", "mean"] < 0.6


# --------------------------------------------------------------------------- pointwise


def _hand_posterior(seed=0, chains=2, draws=6):
    """A posterior written by hand: group intercepts and slopes, a shared z, sigma."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    G = 3
    return xr.Dataset(
        {
            "intercept": (("chain", "draw", "grp"), rng.normal(size=(chains, draws, G))),
            "x": (("chain", "draw", "grp"), rng.normal(size=(chains, draws, G))),
            "z": (("chain", "draw"), rng.normal(size=(chains, draws))),
            "sigma": (("chain", "draw"), 0.5 + rng.uniform(size=(chains, draws))),
        },
        coords={"chain": [0, 1], "draw": np.arange(draws), "grp": ["g0", "g1", "g2"]},
    )


def _pointwise_data():
    config = make_config(pooling="unpooled", predictors=("x", "z"), varying=["intercept", "x"])
    return to_model_data(synthetic_frame(4, sizes=(5, 1, 7), extra=True), config)


def _mu(post, data, c, d):
    gi = data.group_idx
    X = data.X  # intercept, x, z
    return (
        post["intercept"].values[c, d][gi] * X[:, 0]
        + post["x"].values[c, d][gi] * X[:, 1]
        + post["z"].values[c, d] * X[:, 2]
    )


@pytest.mark.unit
def test_log_likelihood_equals_normal_logpdf_of_each_draw():
    post, data = _hand_posterior(), _pointwise_data()
    loglik, ppc, note = pointwise_groups(
        post, data, limit=10**9, seed=1, chunk_values=4 * len(data.y)
    )
    assert note is None
    values = loglik["y"].values
    assert values.shape == (2, 6, len(data.y))
    assert loglik["y"].dims == ("chain", "draw", "obs")
    for c in range(2):
        for d in range(6):
            expected = sps.norm.logpdf(data.y, _mu(post, data, c, d), post["sigma"].values[c, d])
            np.testing.assert_allclose(values[c, d], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.unit
def test_posterior_predictive_shape_and_draw_mapping():
    post, data = _hand_posterior(), _pointwise_data()
    post["sigma"][:] = 1e-9  # replicates collapse onto each draw's mean
    _, ppc, _ = pointwise_groups(post, data, limit=10**9, seed=1, chunk_values=4 * len(data.y))
    assert ppc["y"].shape == (2, 6, len(data.y))
    for c in range(2):
        for i, d in enumerate(ppc["draw"].values):
            np.testing.assert_allclose(ppc["y"].values[c, i], _mu(post, data, c, int(d)), atol=1e-6)


@pytest.mark.unit
def test_posterior_predictive_noise_has_the_posterior_sigma():
    post, data = _hand_posterior(draws=400), _pointwise_data()
    _, ppc, _ = pointwise_groups(post, data, limit=10**9, seed=2)
    assert ppc["y"].shape == (2, PPC_DRAWS // 2, len(data.y))  # capped, evenly thinned
    z = np.stack(
        [
            (ppc["y"].values[c, i] - _mu(post, data, c, int(d))) / post["sigma"].values[c, int(d)]
            for c in range(2)
            for i, d in enumerate(ppc["draw"].values)
        ]
    )
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 5 / np.sqrt(2 * z.size)


@pytest.mark.unit
def test_pointwise_limit_skips_log_likelihood_and_thins_the_predictive():
    post, data = _hand_posterior(draws=40), _pointwise_data()
    post["sigma"][:] = 1e-9
    n = len(data.y)
    limit = 2 * 10 * n  # room for 10 draws per chain, not the 80 draws x n of log_likelihood
    loglik, ppc, note = pointwise_groups(post, data, limit=limit, seed=1, chunk_values=7 * n)
    assert loglik is None
    assert "log_likelihood not stored" in note and "pointwise_limit" in note
    assert ppc["y"].shape == (2, 10, n)
    draws = ppc["draw"].values
    assert len(set(draws)) == 10 and draws.min() >= 0 and draws.max() < 40
    for c in range(2):
        for i, d in enumerate(draws):
            np.testing.assert_allclose(ppc["y"].values[c, i], _mu(post, data, c, int(d)), atol=1e-6)


@pytest.mark.sampling
def test_log_likelihood_of_a_sampled_posterior(hier_fits):
    f = hier_fits["marginal"]
    loglik, ppc, note = pointwise_groups(f.posterior, f.data, limit=10**9, seed=3)
    post, data = f.posterior, f.data
    for c, d in [(0, 0), (1, 500), (3, 999)]:
        mu = (
            post["intercept"].values[c, d][data.group_idx]
            + post["x"].values[c, d][data.group_idx] * data.X[:, 1]
        )
        expected = sps.norm.logpdf(data.y, mu, post["sigma"].values[c, d])
        np.testing.assert_allclose(loglik["y"].values[c, d], expected, rtol=1e-10)
    assert ppc["y"].shape == (4, PPC_DRAWS // 4, len(data.y))
    np.testing.assert_array_equal(ppc["draw"].values, np.arange(0, 1000, 1000 // (PPC_DRAWS // 4)))
