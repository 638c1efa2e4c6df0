"""Default priors scaled to the data, stated priors left alone, and prior–data conflicts.

The formulas are those of `hbreg.models.default_priors` (rstanarm's defaults, with bambi's
adjustment of the intercept for uncentred predictors); the acceptance case is lme4's
Dyestuff, whose outcome (Yield around 1,527) a fixed Normal(0, 10) cannot reach.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hbreg.config import dump_config, load_config, parse_config
from hbreg.data import to_model_data
from hbreg.fit import prepare
from hbreg.models.default_priors import prior_conflicts, scale_priors, scaled_priors

ROOT = Path(__file__).resolve().parents[1]
DYESTUFF = {
    "name": "dyestuff",
    "data": {"dataset": "dyestuff", "outcome": "Yield", "group": "Batch"},
    "model": {"pooling": "hierarchical"},
}
LME4_INTERCEPT = 1527.5  # lmer(Yield ~ 1 + (1 | Batch), Dyestuff): fixed effect


def _frame(seed=0, n=60):
    rng = np.random.default_rng(seed)
    g = np.repeat(["a", "b", "c", "d"], n // 4)
    x = rng.normal(5.0, 2.0, n)
    w = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 3.0}
    return pd.DataFrame(
        {
            "y": 1000 + 30 * x + rng.normal(0, 50, n),
            "x": x,
            "g": g,
            "w": [w[k] for k in g],
        }
    )


def _config(**extra):
    raw = {
        "name": "t",
        "data": {"path": "unused.csv", "outcome": "y", "predictors": ["x"], "group": "g"},
        "model": {"pooling": "hierarchical"},
    }
    for key, value in extra.items():
        raw.setdefault(key, {}).update(value)
    return parse_config(raw)


@pytest.mark.unit
def test_scaled_priors_follow_the_rstanarm_formulas():
    frame = _frame()
    config = _config(data={"group_predictors": ["w"]})
    data = to_model_data(frame, config)
    priors = scaled_priors(config, data)
    s_y, s_x = frame["y"].std(ddof=1), frame["x"].std(ddof=1)
    x_bar = frame["x"].mean()
    s_w = np.std([1.0, 2.0, 4.0, 3.0], ddof=1)
    slope_sd = 2.5 * s_y / s_x
    intercept_sd = math.hypot(2.5 * s_y, slope_sd * x_bar)
    assert priors["mu_intercept"]["dist"] == "Normal"
    assert priors["mu_intercept"]["mu"] == pytest.approx(frame["y"].mean(), rel=1e-3)
    assert priors["mu_intercept"]["sigma"] == pytest.approx(intercept_sd, rel=1e-3)
    assert priors["mu_x"] == {"dist": "Normal", "mu": 0.0, "sigma": pytest.approx(slope_sd, 1e-3)}
    assert priors["sigma_x"] == {"dist": "HalfNormal", "sigma": pytest.approx(s_y / s_x, 1e-3)}
    assert priors["sigma_intercept"]["sigma"] == pytest.approx(
        math.hypot(s_y, s_y / s_x * x_bar), rel=1e-3
    )
    assert priors["sigma"] == {"dist": "Exponential", "lam": pytest.approx(1 / s_y, 1e-3)}
    assert priors["gamma_intercept_w"]["sigma"] == pytest.approx(2.5 * s_y / s_w, rel=1e-3)
    # four significant digits: what config.yaml shows is exactly what the model uses
    for spec in priors.values():
        for key, value in spec.items():
            if key != "dist" and value:
                assert float(f"{value:.4g}") == value or key == "mu"


@pytest.mark.unit
def test_pooled_and_unpooled_models_get_coefficient_priors_directly():
    frame = _frame()
    for pooling in ("pooled", "unpooled"):
        config = _config(model={"pooling": pooling})
        data = to_model_data(frame, config)
        assert set(scaled_priors(config, data)) == {"intercept", "x", "sigma"}


@pytest.mark.unit
def test_only_unstated_priors_are_scaled():
    frame = _frame()
    stated = {"dist": "Normal", "mu": 0, "sigma": 10}
    config = _config(priors={"coefficient": stated})
    data = to_model_data(frame, config)
    resolved, scaled = scale_priors(config, data)
    assert set(scaled) == {"sigma_intercept", "sigma_x", "sigma"}
    assert resolved.priors.coefficient == stated
    assert "mu_intercept" not in resolved.priors.overrides
    # an override counts as stated too, and nothing is changed twice
    config = _config(priors={"overrides": {"sigma": {"dist": "HalfNormal", "sigma": 3}}})
    resolved, scaled = scale_priors(config, data)
    assert "sigma" not in scaled
    assert resolved.priors.overrides["sigma"] == {"dist": "HalfNormal", "sigma": 3}
    again, more = scale_priors(resolved, data)
    assert more == [] and again == resolved


@pytest.mark.unit
def test_a_prior_given_with_set_is_stated(write_config):
    path = write_config({**DYESTUFF})
    config = load_config(path, ["priors.sigma={dist: HalfNormal, sigma: 80}"])
    resolved, _ = prepare(config)
    assert resolved.priors.sigma == {"dist": "HalfNormal", "sigma": 80}
    assert "sigma" not in resolved.priors.overrides
    assert "mu_intercept" in resolved.priors.overrides


def _states_priors(path: Path) -> bool:
    raw = yaml.safe_load(path.read_text())
    return "experiments" not in raw and "priors" in raw


@pytest.mark.parametrize(
    "path", sorted(filter(_states_priors, (ROOT / "configs").glob("*.yaml"))), ids=lambda p: p.name
)
@pytest.mark.unit
def test_shipped_configs_state_every_prior(path, monkeypatch):
    """The shipped configs with a priors section keep their results: no parameter of theirs
    is left to the scaled defaults."""
    monkeypatch.chdir(ROOT)
    config = load_config(path)
    resolved, data = prepare(config)
    assert resolved.priors == config.priors
    assert data.warnings == []  # and none of their stated priors conflicts with the data


@pytest.mark.unit
def test_resolved_config_shows_the_scaled_priors_and_refits_the_same(write_config, tmp_path):
    resolved, data = prepare(load_config(write_config({**DYESTUFF})))
    saved = yaml.safe_load(dump_config(resolved))
    # no unused Normal(0, 10) or HalfCauchy(5) left to mislead
    assert not {"coefficient", "group_sd", "sigma", "group_corr"} & set(saved["priors"])
    assert saved["priors"]["overrides"]["mu_intercept"] == {
        "dist": "Normal",
        "mu": 1527.5,
        "sigma": 157.6,
    }
    assert saved["priors"]["overrides"]["sigma_intercept"] == {"dist": "HalfNormal", "sigma": 63.02}
    assert saved["priors"]["overrides"]["sigma"] == {"dist": "Exponential", "lam": 0.01587}
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(resolved))
    reresolved, _ = prepare(load_config(again))
    assert reresolved.priors.overrides == resolved.priors.overrides
    assert dump_config(reresolved) == dump_config(resolved)


@pytest.mark.unit
def test_validate_prints_the_priors_with_their_numbers(cli, write_config):
    result = cli("validate", write_config({**DYESTUFF}))
    assert result.exit_code == 0, result.output
    assert "mu_intercept     Normal(mu=1527.5, sigma=157.6)" in result.output
    assert "sigma            Exponential(lam=0.01587)" in result.output
    assert "(scaled to the data)" in result.output
    assert "warning" not in result.output


# --------------------------------------------------------------------------- conflicts


@pytest.mark.unit
def test_an_intercept_prior_that_cannot_reach_the_data_warns(cli, write_config):
    raw = {**DYESTUFF, "priors": {"coefficient": {"dist": "Normal", "mu": 0, "sigma": 10}}}
    result = cli("validate", write_config(raw))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: prior priors.coefficient Normal(mu=0, sigma=10) for 'mu_intercept'" in text
    assert "the mean of 'Yield', 1527.5, far in its tail" in text
    assert "suggested: Normal(mu=1527.5, sigma=157.6)" in text
    assert text.count("warning:") == 1  # the scaled group and residual sds are not checked


@pytest.mark.unit
def test_conflicting_scale_prior_warns_and_a_wide_one_does_not():
    frame = _frame()
    tight = _config(priors={"sigma": {"dist": "HalfNormal", "sigma": 1}})
    data = to_model_data(frame, tight)
    (warning,) = prior_conflicts(tight, data)
    assert "priors.sigma HalfNormal(sigma=1) for 'sigma'" in warning
    assert "the residual sd of 'y' within groups" in warning
    wide = _config(priors={"sigma": {"dist": "HalfCauchy", "beta": 5}})
    assert prior_conflicts(wide, data) == []


@pytest.mark.unit
@pytest.mark.parametrize("name", ["radon_hier", "radon_pooled", "radon_unpooled", "sleepstudy"])
def test_stated_priors_that_fit_the_data_do_not_warn(name, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = cli("validate", f"configs/{name}.yaml")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


@pytest.mark.sampling
def test_fit_warns_before_sampling_and_records_the_warning(cli, write_config, tmp_path):
    raw = {
        **DYESTUFF,
        "priors": {"coefficient": {"dist": "Normal", "mu": 0, "sigma": 10}},
        "sampler": {"draws": 100, "tune": 100, "chains": 1, "seed": 3},
    }
    result = cli("fit", write_config(raw))
    assert result.exit_code == 0, result.output
    assert result.output.index("warning:") < result.output.index("Posterior")
    (run,) = (tmp_path / "outputs").iterdir()
    warnings = json.loads((run / "manifest.json").read_text())["warnings"]
    assert len(warnings) == 1 and "mu_intercept" in warnings[0]


# --------------------------------------------------------------------------- acceptance


@pytest.mark.sampling
@pytest.mark.slow
def test_dyestuff_without_priors_matches_lme4(cli, write_config, tmp_path):
    """Issue 16: with no `priors:` section the intercept is within one posterior sd of
    lme4's 1527.5 with no divergences (the fixed Normal(0, 10) gave 0.5 and 6)."""
    result = cli("fit", write_config({**DYESTUFF, "sampler": {"seed": 1527}}))
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "outputs").iterdir()
    table = pd.read_csv(run / "summary.csv", index_col=0)
    row = table.loc["mu_intercept"]
    assert abs(row["mean"] - LME4_INTERCEPT) < row["sd"], (row["mean"], row["sd"])
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["divergences"] == 0
    assert diagnostics["passed"] is True
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["priors"]["overrides"]["mu_intercept"]["mu"] == 1527.5


@pytest.mark.unit
def test_standardized_models_get_priors_on_the_sampled_scale(write_config):
    """With model.standardize the priors apply to standardized columns: unit-scale priors."""
    raw = {**DYESTUFF, "model": {**DYESTUFF["model"], "standardize": True}}
    resolved, data = prepare(load_config(write_config(raw)))
    overrides = resolved.priors.overrides
    # sd with ddof=1 here, ddof=0 in the standardization: 1.017 on 30 rows
    assert overrides["mu_intercept"]["mu"] == 0.0
    assert overrides["mu_intercept"]["sigma"] == pytest.approx(2.5, rel=0.03)
    assert overrides["sigma"]["lam"] == pytest.approx(1.0, rel=0.03)
    assert data.warnings == []
