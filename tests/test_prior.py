"""`hbreg fit --prior-only`: a run directory of prior draws, marked as such everywhere, whose
report says whether the priors put the outcome on the data's scale."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import xarray as xr

from hbreg.prior import prior_check

NOTEBOOK_PRIORS = {
    "coefficient": {"dist": "Normal", "mu": 0, "sigma": 10},
    "group_sd": {"dist": "HalfCauchy", "beta": 5},
    "sigma": {"dist": "HalfCauchy", "beta": 5},
}
UNIT_PRIORS = {
    "coefficient": {"dist": "Normal", "mu": 0, "sigma": 1},
    "group_sd": {"dist": "HalfNormal", "sigma": 1},
    "sigma": {"dist": "HalfNormal", "sigma": 1},
}


def _prior_run(cli, write_config, radon_hier_config, tmp_path, priors, *flags):
    config = {
        **radon_hier_config,
        "priors": priors,
        "sampler": {"draws": 250, "chains": 2, "seed": 3},
        "output": {"root": str(tmp_path / "out"), "plots": ["posterior", "ppc", "trace"]},
    }
    result = cli("fit", write_config(config), "--prior-only", *flags)
    assert result.exit_code == 0, result.output
    [run] = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    return run, result.output


@pytest.mark.sampling
def test_notebook_priors_are_far_wider_than_the_data(
    cli, write_config, radon_hier_config, tmp_path
):
    run, output = _prior_run(cli, write_config, radon_hier_config, tmp_path, NOTEBOOK_PRIORS)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["prior_only"] is True
    check = manifest["prior_predictive"]
    assert check["too_wide"] and check["width_ratio"] > 10
    assert check["share_outside_observed_range"] > 0.5
    text = (run / "prior_predictive.md").read_text()
    assert "far beyond the data" in text and "prior-only" in text
    assert "Prior (prior-only run" in output and "far beyond the data" in " ".join(output.split())
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        assert {"prior", "prior_predictive", "observed_data"} <= set(tree.children)
        assert "posterior" not in tree.children
        prior = tree["prior"].to_dataset()
        assert dict(prior.sizes)["chain"] == 2 and dict(prior.sizes)["draw"] == 250
        assert "intercept_offset" not in prior and "intercept" in prior
        assert tree.attrs["prior_only"] == 1
    summary = pd.read_csv(run / "summary.csv", index_col=0)
    assert summary.loc["mu_intercept", "sd"] == pytest.approx(10, rel=0.15)
    assert json.loads((run / "diagnostics.json").read_text())["prior_only"] is True
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == ["posterior.png", "ppc.png"]  # a trace of independent draws is not drawn


@pytest.mark.sampling
def test_unit_scale_priors_stay_on_the_data_scale(cli, write_config, radon_hier_config, tmp_path):
    run, output = _prior_run(cli, write_config, radon_hier_config, tmp_path, UNIT_PRIORS)
    check = json.loads((run / "manifest.json").read_text())["prior_predictive"]
    assert not check["too_wide"] and check["width_ratio"] < 3
    assert "on the scale of the data" in (run / "prior_predictive.md").read_text()
    assert "warning" not in output


@pytest.mark.sampling
def test_compare_refuses_prior_only_runs(cli, write_config, radon_hier_config, tmp_path):
    run, _ = _prior_run(cli, write_config, radon_hier_config, tmp_path, UNIT_PRIORS)
    result = cli("compare", run, run)
    assert result.exit_code == 2
    assert "prior-only run" in result.output


@pytest.mark.unit
def test_prior_check_counts_values_outside_the_observed_range():
    predictive = xr.Dataset({"y": (("chain", "draw"), [[-1.0, 0.5, 2.0, 0.0]])})
    check = prior_check(predictive, y=pd.Series([0.0, 1.0]).to_numpy(), outcome="y")
    assert check.observed_range == (0.0, 1.0)
    assert check.share_outside == pytest.approx(0.5)


@pytest.mark.unit
def test_prior_figures_never_read_as_posterior():
    from hbreg.plots.common import as_prior, figure

    fig = figure(4, 3, left=0.5, right=0.2, top=0.4, bottom=0.5)
    ax = fig.subplots()
    ax.set_title("Posterior predictive check: y")
    ax.plot([0, 1], label="replicated (50 posterior predictive draws)")
    ax.legend()
    as_prior(fig)
    assert ax.get_title() == "Prior predictive check: y"
    assert ax.get_legend().get_texts()[0].get_text() == "replicated (50 prior predictive draws)"
    other = figure(4, 3, left=0.5, right=0.2, top=0.4, bottom=0.5)
    other.subplots().set_title("Group coefficients by county")
    as_prior(other)
    assert other.axes[0].get_title() == "Prior draws: Group coefficients by county"


@pytest.mark.sampling
def test_standardized_priors_are_drawn_on_the_standardized_scale(
    cli, write_config, radon_hier_config, tmp_path
):
    config = {**radon_hier_config, "model": {"pooling": "hierarchical", "standardize": True}}
    run, _ = _prior_run(
        cli,
        write_config,
        config,
        tmp_path,
        {**UNIT_PRIORS, "sigma": {"dist": "HalfNormal", "sigma": 0.1}},
    )
    summary = pd.read_csv(run / "summary.csv", index_col=0)
    # sigma ~ HalfNormal(0.1) in units of sd(y): its mean on the user scale is 0.1 sqrt(2/pi) sd(y)
    from hbreg.data import BUILTIN_DATASETS

    sd_y = BUILTIN_DATASETS["radon"].load()["log_radon"].std(ddof=0)
    assert summary.loc["sigma", "mean"] == pytest.approx(
        0.1 * (2 / 3.14159265) ** 0.5 * sd_y, rel=0.1
    )
    check = json.loads((run / "manifest.json").read_text())["prior_predictive"]
    assert not check["too_wide"]
