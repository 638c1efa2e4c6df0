"""`hbreg fit` end to end: run directories, the acceptance numbers, repeatability, exit codes.

The radon runs use the shipped config with its real default draws (4 x 1000); they are
shared by several tests through a module fixture so each is sampled once.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PLOTS = ["posterior", "trace", "forest", "ppc", "energy", "pair"]
RUN_FILES = [
    "config.yaml",
    "manifest.json",
    "summary.csv",
    "diagnostics.json",
    "divergences.md",
    "idata.nc",
]
RADON_HIER_NAMES = {
    "mu_intercept",
    "sigma_intercept",
    "mu_floor",
    "sigma_floor",
    "sigma",
    "intercept",
    "floor",
}
IDATA_GROUPS = {
    "posterior",
    "sample_stats",
    "log_likelihood",
    "posterior_predictive",
    "observed_data",
    "constant_data",
}
NO_PLOTS = "output.plots=[]"


def invoke(*args):
    from typer.testing import CliRunner

    from hbreg.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def runs_in(root: Path) -> list[Path]:
    """Complete-looking run directories under root, oldest first."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def only_run(root: Path) -> Path:
    found = runs_in(root)
    assert len(found) == 1, found
    return found[0]


def fit_into(root: Path, config, *overrides, strict=False):
    """Run `hbreg fit` with outputs under `root` (which must be new); return (result, run dir)."""
    args = ["fit", config, "--set", f"output.root={root}"]
    for item in overrides:
        args += ["--set", item]
    if strict:
        args.append("--strict")
    result = invoke(*args)
    run = only_run(root) if root.exists() and runs_in(root) else None
    return result, run


def summary(run: Path) -> str:
    return (run / "summary.csv").read_text()


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


# --------------------------------------------------------------------------- radon, default draws


@pytest.fixture(scope="module")
def radon(tmp_path_factory):
    """The acceptance run (plots, --strict), the same config again, and the same data read
    from a csv file instead of the built-in dataset."""
    from hbreg.data import BUILTIN_DATASETS

    base = tmp_path_factory.mktemp("radon")
    first, run_a = fit_into(base / "a", CONFIGS / "radon_hier.yaml", strict=True)
    assert first.exit_code == 0, first.output
    again, run_b = fit_into(base / "b", CONFIGS / "radon_hier.yaml", NO_PLOTS)
    assert again.exit_code == 0, again.output

    csv = base / "radon.csv"
    BUILTIN_DATASETS["radon"].load().to_csv(csv, index=False)
    raw = yaml.safe_load((CONFIGS / "radon_hier.yaml").read_text())
    raw["data"].pop("dataset")
    raw["data"]["path"] = str(csv)
    config = base / "radon_csv.yaml"
    config.write_text(yaml.safe_dump(raw))
    from_csv, run_c = fit_into(base / "c", config, NO_PLOTS)
    assert from_csv.exit_code == 0, from_csv.output
    return {"a": run_a, "b": run_b, "c": run_c, "output": first.output}


@pytest.mark.sampling
def test_run_directory_has_every_file_of_the_contract(radon):
    run = radon["a"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_radon_hier(_\d+)?", run.name), run.name
    for name in RUN_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    for kind in PLOTS:
        png = run / "plots" / f"{kind}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
    assert [p.name for p in run.parent.iterdir()] == [run.name]  # no temporary left behind
    m = manifest(run)
    assert m["status"] == "complete"
    assert m["seed"] == 20211
    assert m["parameterization"] == "marginal" and m["backend"] == "nutpie"
    assert set(m["timings"]) >= {"load", "build", "compile", "sample", "report"}
    assert m["data"]["rows"] == 919 and m["data"]["groups"] == 85
    assert str(run) in radon["output"].replace("\n", "")


@pytest.mark.sampling
def test_compiled_code_is_cached_outside_the_run_and_the_source_tree(radon):
    from hbreg.compile_cache import cache_dir

    compiled = ["*.nbi", "*.nbc", "sealed.json"]
    for place in (radon["a"], ROOT / "hbreg", ROOT / "tests", ROOT / "configs"):
        assert not [p for pattern in compiled for p in place.rglob(pattern)], place
    assert list((cache_dir() / "nutpie").glob("*/sealed.json"))


@pytest.mark.sampling
def test_idata_has_the_groups_and_names(radon):
    tree = xr.open_datatree(radon["a"] / "idata.nc", engine="h5netcdf")
    assert IDATA_GROUPS <= set(tree.children)
    post = tree["posterior"].to_dataset()
    assert set(post.data_vars) == RADON_HIER_NAMES
    assert post["floor"].dims == ("chain", "draw", "county")
    assert "AITKIN" in list(post["county"].values) and post.sizes["county"] == 85
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == 1000
    loglik = tree["log_likelihood"].to_dataset()["log_radon"]
    assert loglik.shape == (4, 1000, 919)
    assert np.isfinite(loglik.values).all()
    observed = tree["observed_data"].to_dataset()["log_radon"]
    assert observed.shape == (919,)
    assert tree["posterior_predictive"].to_dataset()["log_radon"].shape[2] == 919
    assert tree.attrs["parameterization"] == "marginal"
    assert tree.attrs["data_fingerprint"] == manifest(radon["a"])["data"]["fingerprint"]


@pytest.mark.sampling
def test_idata_stores_per_observation_values_in_float32_and_draws_in_float64(radon):
    tree = xr.open_datatree(radon["a"] / "idata.nc", engine="h5netcdf")
    assert tree["log_likelihood"]["log_radon"].dtype == np.float32
    assert tree["posterior_predictive"]["log_radon"].dtype == np.float32
    post = tree["posterior"].to_dataset()
    assert all(post[v].dtype == np.float64 for v in post.data_vars)
    # summary.csv comes from the float64 draws: its means are those of the stored posterior
    table = pd.read_csv(radon["a"] / "summary.csv", index_col=0)
    assert table.loc["mu_floor", "mean"] == float(post["mu_floor"].mean())


@pytest.mark.sampling
def test_radon_hierarchical_acceptance(radon):
    """The notebook's hierarchical radon fit: no divergences, converged, and the known
    posterior means (within 2 posterior sd)."""
    run = radon["a"]
    table = pd.read_csv(run / "summary.csv", index_col=0)
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["divergences"] == 0
    assert diagnostics["passed"] is True
    assert table["r_hat"].max() <= 1.01
    expected = {
        "mu_intercept": 1.46,
        "mu_floor": -0.68,
        "sigma_intercept": 0.34,
        "sigma_floor": 0.27,
        "sigma": 0.75,
    }
    for name, value in expected.items():
        row = table.loc[name]
        assert abs(row["mean"] - value) < 2 * row["sd"], (name, row["mean"], row["sd"])
    assert "No divergent transitions" in (run / "divergences.md").read_text()
    assert len(table) == 5 + 2 * 85  # every parameter, each county element too


@pytest.mark.sampling
def test_same_seed_gives_the_same_summary(radon):
    assert summary(radon["a"]) == summary(radon["b"])


@pytest.mark.sampling
def test_csv_copy_of_the_builtin_data_gives_the_same_run(radon):
    a, c = manifest(radon["a"]), manifest(radon["c"])
    assert c["data"]["source"].endswith("radon.csv")
    assert c["data"]["fingerprint"] == a["data"]["fingerprint"]
    assert summary(radon["c"]) == summary(radon["a"])


# --------------------------------------------------------------------------- small runs

SMALL = ["sampler.draws=150", "sampler.tune=150", "sampler.chains=2", NO_PLOTS]


@pytest.mark.sampling
def test_strict_exits_4_when_a_threshold_is_missed(tmp_path):
    result, run = fit_into(
        tmp_path / "out",
        CONFIGS / "radon_hier.yaml",
        *SMALL,
        "diagnostics.min_ess_bulk=1000000",
        strict=True,
    )
    assert result.exit_code == 4, result.output
    assert run is not None and manifest(run)["status"] == "complete"  # the run is still kept
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["passed"] is False
    assert any("bulk ESS" in f for f in diagnostics["failures"])
    # without --strict the same miss is reported but the exit code is 0
    plain, _ = fit_into(
        tmp_path / "plain", CONFIGS / "radon_hier.yaml", *SMALL, "diagnostics.min_ess_bulk=1000000"
    )
    assert plain.exit_code == 0, plain.output


@pytest.mark.sampling
def test_pooling_override_is_saved_resolved_and_refitting_it_repeats_the_run(tmp_path):
    result, run = fit_into(
        tmp_path / "first",
        CONFIGS / "radon_hier.yaml",
        *SMALL,
        "model.pooling=pooled",
        "sampler.seed=null",
    )
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["pooling"] == "pooled"
    assert isinstance(saved["sampler"]["seed"], int)  # drawn once, written down
    assert saved["sampler"]["draws"] == 150
    # every default filled in
    assert saved["model"]["parameterization"] == "auto"
    assert {
        "max_r_hat",
        "min_ess_bulk",
        "min_ess_tail",
        "max_divergences",
        "min_bfmi",
        "max_tree_depth_fraction",
    } <= set(saved["diagnostics"])
    assert {"backend", "target_accept", "max_tree_depth", "cores"} <= set(saved["sampler"])
    assert "pointwise_limit" in saved["output"]
    table = pd.read_csv(run / "summary.csv", index_col=0)
    assert set(table.index) == {"intercept", "floor", "sigma"}
    assert manifest(run)["seed"] == saved["sampler"]["seed"]

    refit, rerun = fit_into(
        tmp_path / "second", run / "config.yaml", f"output.root={tmp_path / 'second'}"
    )
    assert refit.exit_code == 0, refit.output
    assert summary(rerun) == summary(run)


@pytest.mark.sampling
def test_pymc_backend_on_the_marginal_model(tmp_path):
    result, run = fit_into(
        tmp_path / "out",
        CONFIGS / "radon_hier.yaml",
        *SMALL,
        "sampler.backend=pymc",
        "sampler.cores=1",
        "sampler.draws=300",
        "sampler.tune=300",
    )
    assert result.exit_code == 0, result.output
    m = manifest(run)
    assert m["backend"] == "pymc" and m["parameterization"] == "marginal"
    tree = xr.open_datatree(run / "idata.nc", engine="h5netcdf")
    post = tree["posterior"].to_dataset()
    assert set(post.data_vars) == RADON_HIER_NAMES
    assert {"diverging", "energy"} <= set(tree["sample_stats"].to_dataset().data_vars)
    table = pd.read_csv(run / "summary.csv", index_col=0)
    # the same posterior as nutpie's (test_radon_hierarchical_acceptance), loosely
    for name, value, sd in [
        ("mu_intercept", 1.46, 0.055),
        ("mu_floor", -0.67, 0.086),
        ("sigma", 0.75, 0.02),
    ]:
        assert abs(table.loc[name, "mean"] - value) < 1.0 * sd, name


def _hide_jax(monkeypatch):
    import hbreg.inference

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] in {"jax", "numpyro"} else real(name, *args, **kwargs)

    monkeypatch.setattr(hbreg.inference.importlib.util, "find_spec", find_spec)


def _assert_numpyro_refused(result, root):
    assert result.exit_code == 2, result.output
    assert "numpyro" in result.output and "pip install 'hbreg[jax]'" in result.output
    assert not root.exists() or not any(root.iterdir())  # nothing written


@pytest.mark.unit
def test_numpyro_without_jax_exits_2_and_says_how_to_install(tmp_path, monkeypatch):
    _hide_jax(monkeypatch)
    root = tmp_path / "out"
    result, _ = fit_into(root, CONFIGS / "radon_hier.yaml", "sampler.backend=numpyro")
    _assert_numpyro_refused(result, root)


@pytest.mark.unit
@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed")
def test_numpyro_without_jax_really_installed(tmp_path):
    root = tmp_path / "out"
    result, _ = fit_into(root, CONFIGS / "radon_hier.yaml", "sampler.backend=numpyro")
    _assert_numpyro_refused(result, root)


# --------------------------------------------------------------------------- slow


@pytest.mark.sampling
@pytest.mark.slow
def test_centered_radon_shows_the_funnel_and_names_it(tmp_path):
    result, run = fit_into(tmp_path / "out", CONFIGS / "radon_hier_centered.yaml", NO_PLOTS)
    assert result.exit_code == 0, result.output
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert manifest(run)["parameterization"] == "centered"
    assert diagnostics["divergences"] > 0 or diagnostics["lowest_ess_bulk"] < 400
    assert diagnostics["passed"] is False
    text = (run / "divergences.md").read_text()
    assert re.search(r"`sigma_(floor|intercept)`", text), text
    assert "model.parameterization: auto" in text and "noncentered" in text
    assert "sampler.target_accept" in text
    post = xr.open_datatree(run / "idata.nc", engine="h5netcdf")["posterior"].to_dataset()
    assert set(post.data_vars) == RADON_HIER_NAMES
    assert post["intercept"].dims == ("chain", "draw", "county")


@pytest.mark.sampling
@pytest.mark.slow
def test_sleepstudy_population_means_match_lme4(tmp_path):
    result, run = fit_into(tmp_path / "out", CONFIGS / "sleepstudy.yaml", NO_PLOTS)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(run / "summary.csv", index_col=0)
    assert json.loads((run / "diagnostics.json").read_text())["divergences"] == 0
    for name, value in [("mu_intercept", 251.4), ("mu_Days", 10.47)]:
        row = table.loc[name]
        assert abs(row["mean"] - value) < 2 * row["sd"], (name, row["mean"], row["sd"])
    assert {"intercept[308]", "Days[372]"} <= set(table.index)


@pytest.mark.sampling
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_numpyro_backend_on_the_marginal_model(tmp_path):
    result, run = fit_into(
        tmp_path / "out",
        CONFIGS / "radon_hier.yaml",
        *SMALL,
        "sampler.backend=numpyro",
        "sampler.draws=300",
        "sampler.tune=300",
    )
    assert result.exit_code == 0, result.output
    assert manifest(run)["backend"] == "numpyro"
    table = pd.read_csv(run / "summary.csv", index_col=0)
    assert set(table.index) >= {"mu_intercept", "sigma_floor", "sigma", "floor[AITKIN]"}
    assert abs(table.loc["mu_floor", "mean"] + 0.67) < 0.086


@pytest.mark.process
@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="Dask is not installed")
def test_the_fit_command_imports_no_dask_and_its_idata_reads_back(
    write_config, radon_hier_config, tmp_path
):
    """xarray imports an installed Dask for nothing (0.27 s of a radon fit); the command
    tells it no Dask array exists (hbreg._imports), and writes the same idata.nc."""
    import subprocess
    import sys

    radon_hier_config["sampler"] = {"draws": 50, "tune": 50, "chains": 1, "seed": 3}
    output = {"root": str(tmp_path / "outputs"), "plots": ["posterior"]}
    config = write_config({**radon_hier_config, "output": output})
    argv = ["hbreg", "fit", str(config)]
    code = f"import sys; sys.argv = {argv!r}; from hbreg.cli import app; app()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"xarray", "pymc", "netCDF4"} <= imported  # the log is the whole process's
    assert not [m for m in imported if m.split(".")[0] in ("dask", "distributed")]
    (run,) = (tmp_path / "outputs").iterdir()
    summary = pd.read_csv(run / "summary.csv", index_col=0)
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive"} <= set(
            tree.children
        )
        assert tree["sample_stats"]["diverging"].dtype == bool
        posterior = tree["posterior"]
        stored = {
            "mu_intercept": posterior["mu_intercept"].mean(),
            "sigma": posterior["sigma"].mean(),
            "floor[AITKIN]": posterior["floor"].sel(county="AITKIN").mean(),
        }
        for name, mean in stored.items():
            assert float(mean) == pytest.approx(summary.loc[name, "mean"], rel=1e-12), name
    assert (run / "plots" / "posterior.png").is_file()
