"""Families: closed-form log densities against scipy, draws against their moments, the
config and data checks of each family, and small fits against lme4's published ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hbreg.config import parse_config
from hbreg.errors import ConfigError
from hbreg.families import FAMILIES, inverse_link

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(5)


def _reference(family: str, y, mean, params, trials):
    return {
        "gaussian": lambda: stats.norm.logpdf(y, mean, params["sigma"]),
        "student_t": lambda: stats.t.logpdf(y, params["nu"], mean, params["sigma"]),
        "bernoulli": lambda: stats.bernoulli.logpmf(y, mean),
        "binomial": lambda: stats.binom.logpmf(y, trials, mean),
        "poisson": lambda: stats.poisson.logpmf(y, mean),
        "negative_binomial": lambda: stats.nbinom.logpmf(
            y, params["alpha"], params["alpha"] / (params["alpha"] + mean)
        ),
    }[family]()


@pytest.mark.unit
@pytest.mark.parametrize("family", list(FAMILIES))
def test_log_density_matches_scipy(family):
    n = 200
    trials = RNG.integers(1, 30, n).astype(float)
    mean = {
        "gaussian": RNG.normal(0, 3, n),
        "student_t": RNG.normal(0, 3, n),
        "bernoulli": RNG.uniform(0.01, 0.99, n),
        "binomial": RNG.uniform(0.01, 0.99, n),
        "poisson": RNG.uniform(0.1, 40, n),
        "negative_binomial": RNG.uniform(0.1, 40, n),
    }[family]
    params = {"sigma": 1.7, "nu": 4.5, "alpha": 2.3}
    y = FAMILIES[family].draw(mean, params, trials, RNG)
    ours = FAMILIES[family].loglik(y, mean, params, trials)
    np.testing.assert_allclose(ours, _reference(family, y, mean, params, trials), rtol=1e-9)


@pytest.mark.unit
@pytest.mark.parametrize("family", list(FAMILIES))
def test_draws_have_the_family_mean(family):
    n = 200_000
    mean = {"bernoulli": 0.3, "binomial": 0.3}.get(family, 4.0)
    params = {"sigma": 2.0, "nu": 6.0, "alpha": 3.0}
    draws = FAMILIES[family].draw(np.full(n, mean), params, np.full(n, 10.0), RNG)
    expected = mean * (10 if family == "binomial" else 1)
    assert draws.mean() == pytest.approx(expected, rel=0.02)
    if family == "negative_binomial":
        assert draws.var() == pytest.approx(mean + mean**2 / 3.0, rel=0.05)


@pytest.mark.unit
def test_inverse_links():
    eta = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(inverse_link("logit", eta), 1 / (1 + np.exp(-eta)))
    np.testing.assert_allclose(inverse_link("probit", eta), stats.norm.cdf(eta))
    np.testing.assert_allclose(inverse_link("log", eta), np.exp(eta))


def _config(**model):
    data = {"dataset": "cbpp", "outcome": "incidence", "predictors": ["period2"], "group": "herd"}
    data.update(model.pop("data", {}))
    return {"name": "x", "data": data, "model": {"pooling": "hierarchical", **model}}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"family": "binomial"}, "needs data.trials"),
        ({"family": "poisson", "data": {"trials": "size"}}, "data.trials is for model.family"),
        ({"family": "poisson", "link": "logit"}, "link 'logit' does not go with family 'poisson'"),
        ({"family": "bernoulli", "parameterization": "marginal"}, "only a Gaussian likelihood"),
        ({"family": "student_t", "data": {"predictors": ["nu"]}}, "'nu' would name both"),
        (
            {"family": "gaussian", "data": {"weights": "size"}, "parameterization": "marginal"},
            "here: likelihood weights",
        ),
    ],
)
def test_family_config_mistakes(model, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(**model))


@pytest.mark.unit
def test_family_parameters_have_default_priors_and_links_are_filled_in():
    from hbreg.config import parameter_names, prior_for

    config = parse_config(_config(family="negative_binomial", data={"outcome": "incidence"}))
    assert config.model.link == "log"
    names = parameter_names(config)
    assert names["alpha"] == "family" and "sigma" not in names
    assert prior_for(config, "alpha") == {"dist": "HalfCauchy", "beta": 1}
    student = parse_config(_config(family="student_t"))
    assert {"sigma", "nu"} <= set(parameter_names(student))
    assert prior_for(student, "nu") == {"dist": "Gamma", "alpha": 2, "beta": 0.1}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("family", "column", "values", "message"),
    [
        (
            "bernoulli",
            "y",
            [0, 1, 2.5, 1],
            "column 'y' must hold 0 or 1 for family 'bernoulli'; row 3 holds 2.5",
        ),
        (
            "poisson",
            "y",
            [0, 3, -1, 1],
            "column 'y' must hold counts (0, 1, 2, ...) for family 'poisson'; row 3 holds -1",
        ),
        (
            "binomial",
            "y",
            [0, 3, 9, 1],
            "column 'y' must hold at most the trials in 'n'; row 3 holds 9",
        ),
        (
            "gaussian",
            "w",
            [1, 0, 1, 1],
            "column 'w' must hold positive likelihood weights; row 2 holds 0",
        ),
    ],
)
def test_bad_outcomes_for_the_family_exit_2_naming_the_row(
    cli, write_config, tmp_path, family, column, values, message
):
    frame = pd.DataFrame(
        {
            "y": [0, 1, 1, 0],
            "x": [0.1, 0.5, 0.2, 0.9],
            "n": [5, 5, 5, 5],
            "w": [1, 1, 1, 1],
            "g": ["a", "a", "b", "b"],
        }
    )
    frame[column] = values
    frame.to_csv(tmp_path / "data.csv", index=False)
    data = {"path": str(tmp_path / "data.csv"), "outcome": "y", "predictors": ["x"], "group": "g"}
    if family == "binomial":
        data["trials"] = "n"
    if column == "w":
        data["weights"] = "w"
    config = {"name": "bad", "data": data, "model": {"family": family}}
    result = cli("validate", write_config(config))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "outputs").exists()


@pytest.fixture(scope="module")
def cbpp_run(tmp_path_factory):
    from typer.testing import CliRunner

    from hbreg.cli import app

    out = tmp_path_factory.mktemp("cbpp")
    result = CliRunner().invoke(
        app,
        [
            "fit",
            str(ROOT / "configs" / "cbpp_binomial.yaml"),
            "--set",
            f"output.root={out}",
            "--set",
            "sampler.draws=500",
            "--set",
            "sampler.tune=500",
            "--set",
            "sampler.chains=2",
            "--set",
            "output.plots=[ppc]",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    [run] = [p for p in out.iterdir() if not p.name.startswith(".")]
    return run, result.output


@pytest.mark.sampling
def test_cbpp_agrees_with_lme4(cbpp_run):
    run, output = cbpp_run
    summary = pd.read_csv(run / "summary.csv", index_col=0)
    lme4 = {"mu_intercept": -1.398, "period_2": -0.992, "period_3": -1.128, "period_4": -1.580}
    for name, value in lme4.items():
        assert abs(summary.loc[name, "mean"] - value) < summary.loc[name, "sd"], name
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["divergences"] == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["family"] == "binomial" and manifest["link"] == "logit"
    assert "auto -> noncentered" in " ".join(manifest["notes"])
    assert "family 'binomial'" in " ".join(output.split())


@pytest.mark.sampling
def test_cbpp_herd_sd_within_30_percent_of_lme4(cbpp_run):
    import xarray as xr

    run, _ = cbpp_run
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        median = float(tree["posterior"]["sigma_intercept"].median())
        loglik = tree["log_likelihood"]["incidence"]
        predictive = tree["posterior_predictive"]["incidence"].values
        trials = tree["constant_data"]
    assert abs(median - 0.642) / 0.642 < 0.3
    assert loglik.shape[-1] == 56 and np.isfinite(loglik.values).all()
    assert (predictive == np.round(predictive)).all() and (predictive >= 0).all()
    assert trials is not None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("lhs", "expected"),
    [
        ("incidence | trials(size)", ("incidence", "size")),
        ("`new cases` | trials(`herd size`)", ("new cases", "herd size")),
        ("log_radon", ("log_radon", None)),
    ],
)
def test_formula_outcome_with_trials(lhs, expected):
    from hbreg.config.formula import outcome_of

    assert outcome_of(lhs) == expected


@pytest.mark.unit
def test_cbind_is_refused_with_the_spelling_that_works():
    from hbreg.config.formula import FormulaError, outcome_of

    with pytest.raises(FormulaError, match=r"successes \| trials\(n\)"):
        outcome_of("cbind(incidence, size - incidence)")


@pytest.mark.unit
def test_formula_fills_the_trials_column():
    config = parse_config(
        {
            "name": "x",
            "data": {"dataset": "cbpp"},
            "model": {
                "formula": "incidence | trials(size) ~ period + (1 | herd)",
                "family": "binomial",
            },
        }
    )
    assert config.data.outcome == "incidence" and config.data.trials == "size"


@pytest.mark.unit
@pytest.mark.parametrize("family", ["poisson", "negative_binomial", "bernoulli"])
def test_several_factors_take_the_family_likelihood(family):
    from hbreg.data import load_model_data
    from hbreg.models import build_model

    outcome = "TICKS" if family != "bernoulli" else "any_ticks"
    config = parse_config(
        {
            "name": "x",
            "data": {"dataset": "grouseticks"},
            "model": {
                "formula": f"{outcome} ~ cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                "family": family,
            },
        }
    )
    if family == "bernoulli":
        import hbreg.data.datasets as datasets

        frame = datasets.BUILTIN_DATASETS["grouseticks"].load()
        assert set(frame["any_ticks"]) == {0.0, 1.0}
    data = load_model_data(config)
    built = build_model(config, data)
    assert built.parameterization == "noncentered"
    [observed] = built.model.observed_RVs
    assert observed.owner.op.name == family
    assert ("alpha" in built.model.named_vars) == (family == "negative_binomial")
    assert "sigma" not in built.model.named_vars
