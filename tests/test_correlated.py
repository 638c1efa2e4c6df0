"""Correlated group effects: names, model structure and the sleepstudy fit against lme4.

lme4 REML, `Reaction ~ Days + (Days | Subject)` (references: lme4 tests/lmer-1.R and
man/utilities.Rd): fixed effects 251.405 (SE 6.825) and 10.467 (1.546); Subject sds
24.74 and 5.92, correlation 0.066; residual sd 25.59.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hbreg.config import load_config
from hbreg.data import load_model_data, with_formula_roles
from hbreg.names import CORRELATION_CHOLESKY, clashes, correlation, correlation_pairs, parse

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.mark.unit
def test_correlation_names_are_made_and_parsed_in_names():
    assert correlation_pairs(["intercept", "floor", "x_y"]) == [
        (1, 0, "corr_intercept_floor"),
        (2, 0, "corr_intercept_x_y"),
        (2, 1, "corr_floor_x_y"),
    ]
    parsed = parse(correlation("intercept", "x_y"), ["intercept", "x_y"])
    assert (parsed.kind, parsed.coef, parsed.predictor) == ("correlation", "intercept", "x_y")


@pytest.mark.unit
def test_a_column_named_like_a_correlation_is_refused():
    problems = clashes(
        outcome="y",
        intercept=True,
        predictors=["corr_intercept_x", "x"],
        group="g",
        hierarchical=["intercept", "corr_intercept_x", "x"],
        group_predictors={},
        correlated=True,
    )
    assert any("'corr_intercept_x' would name both" in p for p in problems), problems


def _built(parameterization: str, *overrides: str):
    from hbreg.models import build_model

    config = load_config(
        CONFIGS / "sleepstudy_corr.yaml", [f"model.parameterization={parameterization}", *overrides]
    )
    data = load_model_data(config)
    return build_model(with_formula_roles(config, data), data)


@pytest.mark.unit
def test_same_names_and_prior_in_both_parameterizations():
    marginal, noncentered = _built("marginal"), _built("noncentered")
    for built in (marginal, noncentered):
        assert built.correlated and built.correlation_vars == ["corr_intercept_Days"]
        assert "corr_intercept_Days" in built.population_vars
        assert CORRELATION_CHOLESKY in built.internal_vars
        assert built.pair_vars[-1] == "corr_intercept_Days"
    kept = {
        name
        for built in (marginal, noncentered)
        for name in built.model.named_vars
        if name not in built.internal_vars and name != "marginal_loglik"
    }
    assert {"corr_intercept_Days", "mu_intercept", "sigma_Days", "sigma"} <= kept
    # the LKJ prior is the same variable with the same eta in both
    for built in (marginal, noncentered):
        lkj = built.model[CORRELATION_CHOLESKY]
        assert float(lkj.owner.inputs[-1].data) == 2.0


@pytest.mark.unit
@pytest.mark.parametrize("parameterization", ["marginal", "noncentered"])
def test_a_factor_can_have_its_own_correlation_prior(parameterization):
    built = _built(parameterization, "priors.group_corr_by={Subject: {dist: LKJ, eta: 5}}")
    assert float(built.model[CORRELATION_CHOLESKY].owner.inputs[-1].data) == 5.0


@pytest.mark.unit
def test_default_configs_stay_independent():
    from hbreg.models import build_model

    config = load_config(CONFIGS / "radon_hier.yaml")
    assert config.model.correlated is False
    built = build_model(config, load_model_data(config))
    assert not built.correlated and built.correlation_vars == []
    assert CORRELATION_CHOLESKY not in built.model.named_vars


@pytest.fixture(scope="module")
def sleepstudy_corr(tmp_path_factory):
    from typer.testing import CliRunner

    from hbreg.cli import app

    root = tmp_path_factory.mktemp("corr") / "out"
    args = ["fit", str(CONFIGS / "sleepstudy_corr.yaml"), "--set", f"output.root={root}"]
    for item in ("sampler.draws=500", "sampler.tune=500", "output.plots=[forest,pair]"):
        args += ["--set", item]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


@pytest.mark.sampling
@pytest.mark.slow
def test_sleepstudy_correlated_matches_lme4(sleepstudy_corr):
    run = sleepstudy_corr
    table = pd.read_csv(run / "summary.csv", index_col=0)
    assert json.loads((run / "diagnostics.json").read_text())["divergences"] == 0
    for name, value in [("mu_intercept", 251.405), ("mu_Days", 10.467)]:
        row = table.loc[name]
        assert abs(row["mean"] - value) < row["sd"], (name, row["mean"], row["sd"])
    post = xr.open_datatree(run / "idata.nc", engine="h5netcdf")["posterior"].to_dataset()
    for name, value in [("sigma_intercept", 24.74), ("sigma_Days", 5.92), ("sigma", 25.59)]:
        median = float(post[name].median())
        assert abs(median - value) < 0.2 * value, (name, median)
    corr = post["corr_intercept_Days"].values.ravel()
    low, high = np.quantile(corr, [0.05, 0.95])
    assert low < 0.066 < high
    assert np.all(np.abs(corr) < 1)
    assert CORRELATION_CHOLESKY not in post
    assert "corr_intercept_Days" in table.index
    assert {"forest.png", "pair.png"} <= {p.name for p in (run / "plots").iterdir()}
