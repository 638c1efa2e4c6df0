"""Diagnostics on posteriors and sample statistics built by hand, so every number is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hbreg.config import DiagnosticsConfig
from hbreg.stats.diagnostics import _concentrations, bfmi, diagnose, divergence_report
from hbreg.stats.summary import summarize

pytestmark = pytest.mark.unit

GROUPS = ["AITKIN", "ANOKA", "BECKER"]


def make_posterior(chains=4, draws=500, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    return xr.Dataset(
        {
            "mu_intercept": (("chain", "draw"), rng.normal(1.5, 0.05, shape)),
            "sigma_intercept": (("chain", "draw"), np.abs(rng.normal(0.3, 0.05, shape))),
            "mu_floor": (("chain", "draw"), rng.normal(-0.7, 0.1, shape)),
            "sigma_floor": (("chain", "draw"), np.exp(rng.normal(-1.2, 0.5, shape))),
            "sigma": (("chain", "draw"), np.abs(rng.normal(0.7, 0.02, shape))),
            "floor": (("chain", "draw", "county"), rng.normal(-0.7, 0.2, (*shape, 3))),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws), "county": GROUPS},
    )


def make_stats(chains=4, draws=500, *, diverging=None, energy=None, max_depth=None, seed=1):
    rng = np.random.default_rng(seed)
    if diverging is None:
        diverging = np.zeros((chains, draws), dtype=bool)
    if energy is None:
        energy = rng.normal(100, 5, (chains, draws))
    data = {"diverging": (("chain", "draw"), diverging), "energy": (("chain", "draw"), energy)}
    if max_depth is not None:
        data["reached_max_treedepth"] = (("chain", "draw"), max_depth)
    return xr.Dataset(data, coords={"chain": np.arange(chains), "draw": np.arange(draws)})


def good_summary(names) -> pd.DataFrame:
    return pd.DataFrame(
        {"mean": 0.0, "sd": 1.0, "ess_bulk": 2000.0, "ess_tail": 1500.0, "r_hat": 1.001},
        index=list(names),
    )


THRESHOLDS = DiagnosticsConfig()


# --------------------------------------------------------------------------- counts and flags


def test_divergences_are_counted_per_chain():
    diverging = np.zeros((3, 200), dtype=bool)
    diverging[0, [5, 50, 150]] = True
    diverging[2, 10:15] = True
    post = make_posterior(3, 200)
    diag = diagnose(
        post, make_stats(3, 200, diverging=diverging), good_summary(post.data_vars), THRESHOLDS
    )
    assert diag.divergences == 8
    assert diag.divergences_per_chain == [3, 0, 5]
    assert diag.draws_per_chain == 200
    assert not diag.passed
    assert any("8 divergent transitions" in f for f in diag.failures)
    relaxed = diagnose(
        post,
        make_stats(3, 200, diverging=diverging),
        good_summary(post.data_vars),
        DiagnosticsConfig(max_divergences=8),
    )
    assert relaxed.passed, relaxed.failures


def test_a_clean_run_passes():
    post = make_posterior()
    diag = diagnose(post, make_stats(), good_summary(post.data_vars), THRESHOLDS)
    assert diag.passed and diag.failures == []
    assert diag.divergences == 0 and diag.concentrations == []
    assert diag.to_dict()["passed"] is True
    assert diag.tree_depth_hits == 0


def test_r_hat_and_ess_failures_name_the_parameter():
    names = ["mu_intercept", "sigma_intercept", "mu_floor", "sigma_floor", "sigma"]
    summary = good_summary(names)
    summary.loc["sigma_floor", "r_hat"] = 1.06
    summary.loc["sigma_intercept", "r_hat"] = 1.02
    summary.loc["mu_floor", "ess_bulk"] = 45.0
    summary.loc["sigma", "ess_tail"] = 120.0
    summary.loc["mu_intercept", "r_hat"] = np.nan  # e.g. a constant: not a failure
    diag = diagnose(make_posterior(), make_stats(), summary, THRESHOLDS)
    assert diag.worst_r_hat == pytest.approx(1.06)
    assert diag.worst_r_hat_parameter == "sigma_floor"
    assert diag.lowest_ess_bulk == 45.0 and diag.lowest_ess_bulk_parameter == "mu_floor"
    assert diag.lowest_ess_tail == 120.0 and diag.lowest_ess_tail_parameter == "sigma"
    text = " | ".join(diag.failures)
    assert len(diag.failures) == 3, diag.failures
    assert "r_hat 1.060 for sigma_floor" in text
    assert "bulk ESS 45 for mu_floor" in text
    assert "tail ESS 120 for sigma" in text


def test_real_summary_flags_a_stuck_chain():
    """From draws, not a hand-made table: one chain offset in mu_floor gives a high r_hat."""
    post = make_posterior(4, 500, seed=3)
    post["mu_floor"][2] = post["mu_floor"][2] + 0.5
    summary = summarize(post)
    assert "floor[AITKIN]" in summary.index  # group elements are labelled
    diag = diagnose(post, make_stats(), summary, THRESHOLDS)
    assert diag.worst_r_hat_parameter == "mu_floor" and diag.worst_r_hat > 1.5
    assert any(f.startswith("r_hat") and "mu_floor" in f for f in diag.failures)


def test_real_summary_flags_a_sticky_parameter():
    """An AR(1) parameter with rho = 0.95 has a bulk ESS near 2000 * 0.05 / 1.95 = 51."""
    post = make_posterior(4, 500, seed=3)
    rng = np.random.default_rng(4)
    ar = np.zeros((4, 500))
    ar[:, 0] = rng.normal(size=4) * np.sqrt(1 / (1 - 0.95**2))
    for t in range(1, 500):
        ar[:, t] = 0.95 * ar[:, t - 1] + rng.normal(size=4)
    post["sigma"] = (("chain", "draw"), 0.7 + 0.01 * ar)
    diag = diagnose(post, make_stats(), summarize(post), THRESHOLDS)
    assert diag.lowest_ess_bulk_parameter == "sigma"
    assert 15 < diag.lowest_ess_bulk < 150
    assert any(f.startswith("bulk ESS") and "for sigma " in f for f in diag.failures)


def test_tree_depth_hits():
    hits = np.zeros((4, 500), dtype=bool)
    hits[1, :30] = True
    post = make_posterior()
    diag = diagnose(post, make_stats(max_depth=hits), good_summary(post.data_vars), THRESHOLDS)
    assert diag.tree_depth_hits == 30
    assert diag.tree_depth_fraction == pytest.approx(30 / 2000)
    assert any("maximum tree depth" in f for f in diag.failures)


# --------------------------------------------------------------------------- E-BFMI


def testbfmi_of_known_energy_series():
    """E-BFMI = sum (E_n - E_n-1)^2 / sum (E_n - mean E)^2 (Betancourt 2016; Stan; ArviZ 1.x
    `az.bfmi`). An alternating series gives 4 (n-1)/n, a ramp 12 / (n (n+1))."""
    import arviz as az

    n = 10
    alternating = np.tile([0.0, 1.0], n // 2)
    ramp = np.arange(n, dtype=float)
    energy = np.stack([alternating, ramp])
    post = make_posterior(2, n)
    diag = diagnose(post, make_stats(2, n, energy=energy), good_summary(post.data_vars), THRESHOLDS)
    expected = [4 * (n - 1) / n, 12 / (n * (n + 1))]
    np.testing.assert_allclose(bfmi(energy), expected, rtol=1e-12)
    np.testing.assert_allclose(diag.bfmi_per_chain, expected, rtol=1e-12)
    np.testing.assert_allclose(diag.bfmi_per_chain, az.bfmi(energy), rtol=1e-12)


def testbfmi_flags_a_poor_chain():
    rng = np.random.default_rng(5)
    energy = rng.normal(100, 5, (4, 1000))
    energy[3] = 100 + np.cumsum(rng.normal(size=1000))  # a random walk: tiny E-BFMI
    post = make_posterior(4, 1000)
    diag = diagnose(
        post, make_stats(4, 1000, energy=energy), good_summary(post.data_vars), THRESHOLDS
    )
    assert all(1.7 < b < 2.3 for b in diag.bfmi_per_chain[:3])  # i.i.d. energy: about 2
    assert diag.bfmi_per_chain[3] < 0.05
    assert any("E-BFMI" in f for f in diag.failures)


# --------------------------------------------------------------------------- concentrations


def _lower_tail_divergences(post, name, q=0.1):
    values = post[name].values
    return values < np.quantile(values, q)


def test_concentrations_rank_the_parameter_whose_divergences_sit_in_its_lower_tail():
    post = make_posterior(4, 500, seed=7)
    diverging = _lower_tail_divergences(post, "sigma_floor")
    rows = _concentrations(post, diverging)
    assert rows[0]["parameter"] == "sigma_floor"
    assert rows[0]["mean_quantile"] < 0.2
    # the unrelated parameters stay near 0.5
    assert all(abs(r["mean_quantile"] - 0.5) < 0.15 for r in rows[1:]), rows


def test_concentrations_label_group_elements_and_see_upper_tails():
    post = make_posterior(4, 500, seed=8)
    values = post["floor"].sel(county="ANOKA").values
    diverging = values > np.quantile(values, 0.9)
    rows = _concentrations(post, diverging)
    assert rows[0]["parameter"] == "floor[ANOKA]"
    assert rows[0]["mean_quantile"] > 0.8


def test_diagnose_stores_concentrations_only_when_there_are_divergences():
    post = make_posterior(seed=9)
    diverging = _lower_tail_divergences(post, "sigma_floor", 0.05)
    diag = diagnose(post, make_stats(diverging=diverging), good_summary(post.data_vars), THRESHOLDS)
    assert diag.concentrations[0]["parameter"] == "sigma_floor"


# --------------------------------------------------------------------------- the report


def test_report_with_divergences_names_the_scale_and_the_remedies():
    post = make_posterior(seed=10)
    diverging = _lower_tail_divergences(post, "sigma_floor", 0.05)
    diag = diagnose(post, make_stats(diverging=diverging), good_summary(post.data_vars), THRESHOLDS)
    text = divergence_report(diag, parameterization="centered", target_accept=0.8)
    assert f"**{diag.divergences} divergent transitions**" in text
    assert "`sigma_floor`" in text
    assert "small values" in text
    assert "noncentered" in text and "marginal" in text
    assert "`sampler.target_accept` from 0.8 to 0.95" in text  # at least 0.95
    for chain, n in enumerate(diag.divergences_per_chain):
        assert f"| {chain} | {n} |" in text
    assert "No divergent transitions" not in text
    assert "**Verdict: fail**" in text


def test_report_for_a_noncentered_model_suggests_the_marginal_one():
    post = make_posterior(seed=11)
    diverging = _lower_tail_divergences(post, "sigma_intercept", 0.05)
    diag = diagnose(post, make_stats(diverging=diverging), good_summary(post.data_vars), THRESHOLDS)
    text = divergence_report(diag, parameterization="noncentered", target_accept=0.9)
    assert "`sigma_intercept`" in text
    assert "marginal" in text
    assert "`sampler.target_accept` from 0.9 to 0.99" in text


def test_report_without_divergences():
    post = make_posterior()
    diag = diagnose(post, make_stats(), good_summary(post.data_vars), THRESHOLDS)
    text = divergence_report(diag, parameterization="marginal", target_accept=0.8)
    assert "No divergent transitions in 2,000 draws (4 chains)" in text
    assert "Where they concentrate" not in text
    assert "**Verdict: pass**" in text
