"""`hbreg.summary.summarize` against ArviZ's own `az.summary` on posteriors built by hand."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hbreg.stats.summary import _next_fast_len, summarize

COLUMNS = [
    "mean",
    "sd",
    "eti90_lb",
    "eti90_ub",
    "ess_bulk",
    "ess_tail",
    "r_hat",
    "mcse_mean",
    "mcse_sd",
]


def arviz_table(posterior: xr.Dataset) -> pd.DataFrame:
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 for constant parameters
        table = az.summary(posterior, round_to="none", ci_prob=0.9, ci_kind="eti")
    return pd.DataFrame(table).astype(float)


def assert_matches_arviz(posterior: xr.Dataset) -> pd.DataFrame:
    expected = arviz_table(posterior)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # summarize itself warns about nothing
        got = summarize(posterior)
    pd.testing.assert_index_equal(got.index, expected.index)
    pd.testing.assert_index_equal(got.columns, expected.columns)
    assert list(got.columns) == COLUMNS
    assert (got.dtypes == np.float64).all()
    np.testing.assert_array_equal(np.isnan(got.to_numpy()), np.isnan(expected.to_numpy()))
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-8, atol=1e-10)
    return got


def ar1(rng, shape, phi):
    """AR(1) chains along axis 1 with unit innovations, started in the stationary law."""
    noise = rng.normal(size=shape)
    out = np.empty(shape)
    out[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        out[:, t] = phi * out[:, t - 1] + noise[:, t]
    return out


@pytest.mark.unit
@pytest.mark.parametrize(("chains", "draws"), [(3, 101), (4, 200), (2, 64)])
def test_normal_posterior_with_group_variables(chains, draws):
    rng = np.random.default_rng(chains * draws)
    shape = (chains, draws)
    posterior = xr.Dataset(
        {
            "mu_intercept": (("chain", "draw"), rng.normal(1.5, 0.05, shape)),
            "sigma": (("chain", "draw"), np.abs(rng.normal(0.7, 0.02, shape))),
            "intercept": (("chain", "draw", "county"), rng.normal(0, 1, (*shape, 3))),
            "beta": (("chain", "draw", "county", "coef"), rng.normal(0, 2, (*shape, 3, 2))),
            "offset": (("chain", "draw", "obs"), rng.normal(0, 1, (*shape, 4))),
        },
        coords={"county": ["AITKIN", "ANOKA", "BECKER"], "coef": [0.5, 1.5]},
    )
    got = assert_matches_arviz(posterior)
    assert list(got.index[:4]) == ["mu_intercept", "sigma", "intercept[AITKIN]", "intercept[ANOKA]"]
    assert "beta[BECKER, 1.5]" in got.index
    assert "offset[3]" in got.index
    assert len(got) == 2 + 3 + 6 + 4


@pytest.mark.unit
def test_autocorrelated_chains_have_small_ess():
    rng = np.random.default_rng(1)
    posterior = xr.Dataset(
        {
            "sticky": (
                ("chain", "draw", "i"),
                np.stack([ar1(rng, (4, 501), 0.97) for _ in range(3)], -1),
            ),
            "slow": (("chain", "draw"), ar1(rng, (4, 501), 0.995)),
            "antithetic": (("chain", "draw"), ar1(rng, (4, 501), -0.6)),
        }
    )
    got = assert_matches_arviz(posterior)
    n = 4 * 501
    assert (got.loc[["sticky[0]", "sticky[1]", "sticky[2]", "slow"], "ess_bulk"] < n / 10).all()
    assert got.loc["antithetic", "ess_bulk"] > n  # negative autocorrelation: ESS above N


@pytest.mark.unit
def test_chains_with_different_means_have_large_r_hat():
    rng = np.random.default_rng(2)
    shifts = np.array([0.0, 0.0, 1.5, -1.5])[:, None]
    posterior = xr.Dataset(
        {
            "stuck": (("chain", "draw"), rng.normal(size=(4, 300)) + shifts),
            "fine": (("chain", "draw"), rng.normal(size=(4, 300))),
            "wide": (
                ("chain", "draw"),
                rng.normal(size=(4, 300)) * np.array([1, 1, 1, 5])[:, None],
            ),
        }
    )
    got = assert_matches_arviz(posterior)
    assert got.loc["stuck", "r_hat"] > 1.1
    assert got.loc["fine", "r_hat"] < 1.05
    assert got.loc["wide", "r_hat"] > 1.1  # caught by the folded (tail) R-hat


@pytest.mark.unit
@pytest.mark.parametrize("value", [1.0, 0.1, 1 / 3, -123.456])
def test_constant_parameter(value):
    rng = np.random.default_rng(3)
    posterior = xr.Dataset(
        {
            "fixed": (("chain", "draw"), np.full((4, 250), value)),
            "free": (("chain", "draw"), rng.normal(size=(4, 250))),
        }
    )
    got = assert_matches_arviz(posterior)
    row = got.loc["fixed"]
    assert row["ess_bulk"] == row["ess_tail"] == 1000 and np.isnan(row["r_hat"])
    assert row["sd"] <= 1e-15 * abs(value)  # the mean of 1000 copies need not be exact
    if value == 1.0:
        assert row["sd"] == 0 and row["mcse_mean"] == 0 and np.isnan(row["mcse_sd"])


@pytest.mark.unit
@pytest.mark.parametrize("draws", [333, 400])
def test_one_chain(draws):
    rng = np.random.default_rng(4)
    posterior = xr.Dataset(
        {
            "theta": (("chain", "draw", "k"), rng.normal(size=(1, draws, 3))),
            "rho": (("chain", "draw"), ar1(rng, (1, draws), 0.9)),
        }
    )
    got = assert_matches_arviz(posterior)
    assert got["r_hat"].isna().all()
    assert got[["ess_bulk", "ess_tail", "mcse_mean", "mcse_sd"]].notna().all().all()


@pytest.mark.unit
def test_ties_nan_and_infinite_draws():
    rng = np.random.default_rng(5)
    with_nan = rng.normal(size=(4, 120))
    with_nan[2, 17] = np.nan
    with_inf = rng.normal(size=(4, 120))
    with_inf[1, 3] = np.inf
    posterior = xr.Dataset(
        {
            "count": (("chain", "draw", "j"), rng.integers(0, 4, size=(4, 120, 2)).astype(float)),
            "coin": (("chain", "draw"), rng.integers(0, 2, size=(4, 120))),
            "with_nan": (("chain", "draw"), with_nan),
            "with_inf": (("chain", "draw"), with_inf),
            "all_nan": (("chain", "draw"), np.full((4, 120), np.nan)),
        }
    )
    got = assert_matches_arviz(posterior)
    assert got.loc["with_nan"].isna().all()
    assert got.loc["count[0]"].notna().all()


@pytest.mark.unit
@pytest.mark.parametrize("draws", [3, 4, 5, 6, 7, 9])
@pytest.mark.parametrize("chains", [1, 2, 4])
def test_short_chains(chains, draws):
    rng = np.random.default_rng(10 * chains + draws)
    posterior = xr.Dataset(
        {
            "a": (("chain", "draw", "k"), rng.normal(size=(chains, draws, 3))),
            "b": (("chain", "draw"), ar1(rng, (chains, draws), 0.8)),
        }
    )
    got = assert_matches_arviz(posterior)
    if draws < 4:
        assert got[["ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]].isna().all().all()


@pytest.mark.unit
def test_many_parameters_across_blocks():
    """More parameters than one block holds, split over variables of different sizes."""
    rng = np.random.default_rng(6)
    posterior = xr.Dataset(
        {
            "mu": (("chain", "draw"), rng.normal(size=(4, 1000))),
            "a": (("chain", "draw", "g"), ar1(rng, (4, 1000, 23), 0.5)),
            "b": (("chain", "draw", "h"), rng.standard_t(3, size=(4, 1000, 17))),
        }
    )
    assert_matches_arviz(posterior)


@pytest.mark.unit
def test_sample_dims_in_any_position():
    rng = np.random.default_rng(7)
    posterior = xr.Dataset({"a": (("draw", "k", "chain"), rng.normal(size=(150, 2, 3)))})
    assert_matches_arviz(posterior)


@pytest.mark.unit
def test_labels_follow_the_variables_own_dimension_order():
    """Each label names its own numbers, also for a variable whose dimension order differs
    from the dataset's (where az.summary pairs the labels of one order with the numbers of
    the other); in dataset order the tables agree."""
    rng = np.random.default_rng(8)
    first = rng.normal(size=(2, 50, 2, 3))
    second = rng.normal(size=(2, 50, 3, 2))
    posterior = xr.Dataset(
        {"u": (("chain", "draw", "grp", "k"), first), "v": (("chain", "draw", "k", "grp"), second)},
        coords={"grp": ["A", "B"], "k": [10, 20, 30]},
    )
    got = summarize(posterior)
    means = posterior["v"].mean(("chain", "draw"))
    for k in (10, 20, 30):
        for grp in ("A", "B"):
            assert got.loc[f"v[{k}, {grp}]", "mean"] == pytest.approx(
                float(means.sel(k=k, grp=grp)), rel=1e-12
            )
    in_dataset_order = posterior.assign(v=posterior["v"].transpose("chain", "draw", "grp", "k"))

    def swap(label: str) -> str:  # "v[A, 10]" -> "v[10, A]"
        if not label.startswith("v["):
            return label
        grp, k = label[2:-1].split(", ")
        return f"v[{k}, {grp}]"

    expected = arviz_table(in_dataset_order).rename(index=swap)
    np.testing.assert_allclose(
        got.loc[expected.index].to_numpy(), expected.to_numpy(), rtol=1e-8, atol=1e-10
    )


@pytest.mark.unit
def test_empty_posterior():
    got = summarize(xr.Dataset())
    assert got.empty and list(got.columns) == COLUMNS


@pytest.mark.unit
def test_missing_sample_dimension_is_an_error():
    with pytest.raises(ValueError, match="chain"):
        summarize(xr.Dataset({"a": (("draw",), np.zeros(10))}))


@pytest.mark.unit
def test_fft_length_matches_scipy_fftpack():
    from scipy.fftpack import next_fast_len

    assert [_next_fast_len(n) for n in range(1, 5001)] == [next_fast_len(n) for n in range(1, 5001)]


@pytest.mark.process
def test_importing_summary_does_not_import_arviz():
    code = (
        "import sys, hbreg.stats.summary; sys.exit(any(m.startswith('arviz') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
