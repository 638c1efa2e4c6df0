"""Several grouping factors: names, the offset marginal likelihood and draws, lme4 checks.

lme4 REML references (GLMMG goldens of lme4 1.1.38, see notes/references.md):
Penicillin `diameter ~ 1 + (1|plate) + (1|sample)`: 22.972 (SE 0.809), plate sd 0.847,
sample sd 1.932, residual 0.550. Pastes `strength ~ 1 + (1|batch/cask)`: 60.053 (SE 0.677),
batch:cask sd 2.904, batch sd 1.287, residual 0.823.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sps

from hbreg.config import load_config, parse_config
from hbreg.data import load_model_data, with_formula_roles
from hbreg.models.marginal import (
    draw_group_coefficients,
    marginal_loglik,
    sufficient_stats,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _data(name: str):
    config = load_config(CONFIGS / f"{name}.yaml")
    data = load_model_data(config)
    return with_formula_roles(config, data), data


@pytest.mark.unit
def test_crossed_and_nested_factors_are_encoded_with_observed_levels():
    _, pen = _data("penicillin")
    assert [(f.name, len(f.labels)) for f in pen.factors] == [("plate", 24), ("sample", 6)]
    assert pen.group_dim == "plate"  # the factor with the most levels is the integrated one
    _, pastes = _data("pastes")
    assert [(f.name, len(f.labels)) for f in pastes.factors] == [("batch", 10), ("batch:cask", 30)]
    nested = pastes.factors[1]
    assert nested.labels[:3] == ["A:a", "A:b", "A:c"] and pastes.group_dim == "batch:cask"


@pytest.mark.unit
@pytest.mark.parametrize("parameterization", ["marginal", "noncentered"])
def test_names_say_their_factor_and_are_the_same_in_both(parameterization):
    from hbreg.models import build_model

    config, data = _data("penicillin")
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"parameterization": parameterization})}
    )
    built = build_model(config, data)
    assert built.population_vars == [
        "mu_intercept",
        "sigma_intercept|plate",
        "sigma_intercept|sample",
        "sigma",
    ]
    assert built.group_vars == ["intercept|plate"]
    stored = {n for n in built.model.named_vars if n not in built.internal_vars}
    assert "intercept|sample" in stored
    assert ("intercept|plate" in stored) == (parameterization == "noncentered")


@pytest.mark.unit
def test_one_factor_formulas_keep_the_one_factor_names():
    _, data = _data("radon_formula")
    assert data.factors == ()


@pytest.mark.unit
def test_an_unknown_override_is_refused_with_the_parameters():
    from hbreg.errors import ConfigError
    from hbreg.models import build_model

    raw = {
        "name": "p",
        "data": {"dataset": "penicillin"},
        "model": {"formula": "diameter ~ 1 + (1 | plate) + (1 | sample)"},
        "priors": {"overrides": {"sigma_intercept|plat": {"dist": "HalfNormal", "sigma": 1}}},
    }
    config = parse_config(raw)
    data = load_model_data(config)
    with pytest.raises(ConfigError, match=r"no parameter 'sigma_intercept\|plat'"):
        build_model(with_formula_roles(config, data), data)


@pytest.mark.unit
def test_a_correlation_prior_for_an_unknown_factor_is_refused():
    from hbreg.errors import ConfigError
    from hbreg.models import build_model

    raw = {
        "name": "p",
        "data": {"dataset": "penicillin"},
        "model": {"formula": "diameter ~ 1 + (1 | plate) + (1 | sample)"},
        "priors": {"group_corr_by": {"plates": {"dist": "LKJ", "eta": 3}}},
    }
    config = parse_config(raw)
    data = load_model_data(config)
    with pytest.raises(ConfigError, match=r"group_corr_by: no grouping factor 'plates'"):
        build_model(with_formula_roles(config, data), data)


def _case(seed=3):
    """Two crossed factors, a random slope on the first: y, X, codes, effects of factor 2."""
    rng = np.random.default_rng(seed)
    n, g1, g2 = 40, 5, 4
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    i1, i2 = rng.integers(0, g1, n), rng.integers(0, g2, n)
    i1[:g1], i2[:g2] = np.arange(g1), np.arange(g2)
    y = rng.normal(size=n) * 2 + 1
    other = rng.normal(size=g2) * 0.7  # factor 2's intercept effects (sampled in the model)
    return X, y, i1, i2, g1, other


@pytest.mark.unit
def test_offset_marginal_equals_the_dense_conditional_density():
    """Given factor 2's effects, factor 1 integrated out: the density of y - offset."""
    import pytensor
    import pytensor.tensor as pt

    from hbreg.data import GroupFactor, ModelData
    from hbreg.models.several import _shifted_stats

    X, y, i1, i2, g1, other = _case()
    beta, tau, sigma, rho = np.array([0.5, -0.3]), [0.8, 0.4], 0.9, 0.35
    main = GroupFactor("g1", i1, [str(g) for g in range(g1)], ["intercept", "x"], True)
    data = ModelData(y=y, X=X, coef_names=["intercept", "x"], varying=[], outcome="y")
    shift = pt.as_tensor(other)[i2]
    stats = sufficient_stats(X, y, i1, g1)
    const = _shifted_stats(stats, data, main, shift, pt)
    L = np.linalg.cholesky(np.array([[1, rho], [rho, 1]]))
    value = pytensor.function(
        [], marginal_loglik(const, list(beta), tau, sigma, [0, 1], pt, corr_chol=L)
    )()
    T = np.outer(tau, tau) * np.array([[1, rho], [rho, 1]])
    r = y - other[i2]
    dense = sum(
        sps.multivariate_normal(
            X[i1 == g] @ beta, sigma**2 * np.eye((i1 == g).sum()) + X[i1 == g] @ T @ X[i1 == g].T
        ).logpdf(r[i1 == g])
        for g in range(g1)
    )
    assert float(value) == pytest.approx(dense, rel=1e-9)


@pytest.mark.unit
def test_draws_with_a_per_draw_offset_equal_draws_on_the_shifted_outcome():
    """`wty` per draw (the integrated factor given the other factors' effects): with one
    offset for every draw it gives exactly the draws made from the statistics of y - offset;
    with a different offset per draw, different draws."""
    X, y, i1, i2, g1, other = _case()
    S = 300
    offsets = np.random.default_rng(1).normal(size=(S, len(other)))
    wty = np.stack([sufficient_stats(X, y - o[i2], i1, g1).wty for o in offsets])
    args = (np.zeros((S, g1, 2)), np.full((S, 2), 0.7), np.full(S, 0.9), [0, 1])
    got = draw_group_coefficients(
        sufficient_stats(X, y, i1, g1), *args, np.random.default_rng(2), chunk=64, wty=wty
    )
    assert got.shape == (S, g1, 2) and np.isfinite(got).all()
    # one offset for every draw: identical to conditioning on the shifted outcome directly
    same = np.broadcast_to(wty[0], wty.shape).copy()
    a = draw_group_coefficients(
        sufficient_stats(X, y, i1, g1), *args, np.random.default_rng(2), chunk=64, wty=same
    )
    shifted = sufficient_stats(X, y - offsets[0][i2], i1, g1)
    b = draw_group_coefficients(shifted, *args, np.random.default_rng(2), chunk=64)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(got[1:], a[1:])


def _fit(tmp_path_factory, name: str, *overrides: str):
    from typer.testing import CliRunner

    from hbreg.cli import app

    root = tmp_path_factory.mktemp(name) / "out"
    args = ["fit", str(CONFIGS / f"{name}.yaml"), "--set", f"output.root={root}"]
    for item in ("sampler.draws=600", "sampler.tune=600", "output.plots=[forest]", *overrides):
        args += ["--set", item]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def _check_against_lme4(run, fixed, sds, sd_tolerance):
    table = pd.read_csv(run / "summary.csv", index_col=0)
    assert json.loads((run / "diagnostics.json").read_text())["divergences"] == 0
    for name, value in fixed.items():
        row = table.loc[name]
        assert abs(row["mean"] - value) < row["sd"], (name, row["mean"], row["sd"])
    post = xr.open_datatree(run / "idata.nc", engine="h5netcdf")["posterior"].to_dataset()
    for name, value in sds.items():
        median = float(post[name].median())
        tolerance = sd_tolerance.get(name, 0.25)
        assert abs(median - value) < tolerance * value, (name, median, value)
    return post


@pytest.mark.sampling
@pytest.mark.slow
def test_penicillin_crossed_matches_lme4(tmp_path_factory):
    run = _fit(tmp_path_factory, "penicillin")
    post = _check_against_lme4(
        run,
        {"mu_intercept": 22.972},
        {"sigma_intercept|plate": 0.847, "sigma_intercept|sample": 1.932, "sigma": 0.550},
        {},
    )
    assert post["intercept|plate"].dims == ("chain", "draw", "plate")
    assert list(post["intercept|sample"]["sample"].values) == list("ABCDEF")


@pytest.mark.sampling
@pytest.mark.slow
def test_pastes_nested_matches_lme4(tmp_path_factory):
    run = _fit(tmp_path_factory, "pastes")
    # 10 batches: the batch sd's posterior is wide and right-skewed, so 40% (not 25%)
    _check_against_lme4(
        run,
        {"mu_intercept": 60.053},
        {"sigma_intercept|batch:cask": 2.904, "sigma_intercept|batch": 1.287, "sigma": 0.823},
        {"sigma_intercept|batch": 0.4},
    )


@pytest.mark.unit
def test_validate_names_every_factor(cli):
    result = cli("validate", CONFIGS / "pastes.yaml")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "10 groups of 'batch', 30 groups of 'batch:cask'" in text


@pytest.mark.unit
def test_validate_refuses_an_override_of_no_parameter(cli, write_config):
    path = write_config(
        {
            "name": "p",
            "data": {"dataset": "penicillin"},
            "model": {"formula": "diameter ~ 1 + (1 | plate) + (1 | sample)"},
            "priors": {"overrides": {"sigma_intercept|plat": {"dist": "HalfNormal", "sigma": 1}}},
        }
    )
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "no parameter 'sigma_intercept|plat'" in " ".join(result.output.split())
