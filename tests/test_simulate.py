"""`hbreg simulate`: generation, truth mapping, recovery files, replicates, executors.

The two-group example of the notebook is fitted for real once per module (three
experiments, about 20 s) and its recovery is the acceptance check of issue #5.
Replicate tests use a tiny hierarchical data set; the Dask and 20-replicate
coverage runs are marked slow.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from scipy.special import gamma as gamma_fn

from hbreg.config.priors import DISTRIBUTIONS
from hbreg.simulate import (
    SimulatedData,
    draw_priors,
    fit_config,
    generate_data,
    load_simulation,
    parse_simulation,
    replicate_seeds,
)
from hbreg.simulate import executors as simulate
from hbreg.simulate.recovery import COVERAGE_COLUMNS, RECOVERY_COLUMNS, truth_for

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[1]
TWO_GROUPS = ROOT / "configs" / "simulate_two_groups.yaml"
RADON_LIKE = ROOT / "configs" / "simulate_radon_like.yaml"
FAST = {"draws": 300, "tune": 300, "chains": 2}


def tiny(tmp_path: Path, **changes) -> dict:
    """Six small groups, one predictor, hierarchical truth, one cheap hierarchical fit."""
    spec = {
        "name": "tiny",
        "seed": 11,
        "generate": {
            "groups": 6,
            "rows": [20, 40],
            "predictors": [{"name": "x", "dist": "normal"}],
            "truth": {
                "mu": {"intercept": 1.0, "x": -0.5},
                "group_sd": {"intercept": 0.5, "x": 0.3},
                "sigma": 0.8,
            },
        },
        "experiments": [{"name": "hier", "pooling": "hierarchical", "sampler": dict(FAST)}],
        "output": {"root": str(tmp_path / "outputs")},
    }
    spec.update(changes)
    return spec


def write(tmp_path: Path, spec: dict, name: str = "sim.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


# ----------------------------------------------------------------------------- the example


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory):
    """`hbreg simulate configs/simulate_two_groups.yaml`, run once, in-process."""
    from typer.testing import CliRunner

    from hbreg.cli import app

    root = tmp_path_factory.mktemp("two_groups")
    result = CliRunner().invoke(
        app, ["simulate", str(TWO_GROUPS), "--set", f"output.root={root}"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    run = only_run(root)
    return result, run, pd.read_csv(run / "recovery.csv")


def test_two_groups_pooled_finds_the_weights_cancel(two_groups):
    _, _, rec = two_groups
    pooled = rec[(rec["experiment"] == "pooled") & rec["parameter"].isin(["x1", "x2", "x3"])]
    assert len(pooled) == 3
    assert (pooled["truth"] == 0).all()  # row-weighted mean of w_a and w_b
    assert (pooled["mean"].abs() < 3 * pooled["sd"]).all(), pooled


@pytest.mark.parametrize("experiment", ["unpooled", "hierarchical"])
def test_two_groups_recovers_both_weight_vectors(two_groups, experiment):
    _, _, rec = two_groups
    part = rec[(rec["experiment"] == experiment) & (rec["level"] == "group")].set_index("parameter")
    truth = {"x1[a]": 1, "x2[a]": 3.5, "x3[a]": 6, "x1[b]": -1, "x2[b]": -3.5, "x3[b]": -6}
    assert sorted(part.index) == sorted(truth)
    assert part["truth"].to_dict() == truth
    assert (part["error"].abs() < 0.05).all(), part[["truth", "mean", "error"]]
    assert part["inside_90"].all(), part[["truth", "lower_90", "upper_90"]]
    assert (part["error"] == part["mean"] - part["truth"]).all()


def test_two_groups_files(two_groups):
    result, run, rec = two_groups
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "simulate" and manifest["status"] == "complete"
    assert manifest["seed"] == 20240 and manifest["failures"] == []
    # the hierarchical fit of two groups passes its diagnostics with the shipped priors
    assert manifest["diagnostic_failures"] == [] and rec["diagnostics_passed"].all()
    assert "3 fits: 3 passed their diagnostics" in " ".join(result.output.split())
    truth = json.loads((run / "truth.json").read_text())
    assert truth["kind"] == "coefficients" and truth["seed"] == 20240
    assert truth["groups"] == {"a": 1000, "b": 1000}
    assert truth["parameters"] == {
        "sigma": 0.5,
        "x1[a]": 1.0,
        "x1[b]": -1.0,
        "x2[a]": 3.5,
        "x2[b]": -3.5,
        "x3[a]": 6.0,
        "x3[b]": -6.0,
    }
    data = pd.read_parquet(run / "data.parquet")
    assert list(data.columns) == ["group", "x1", "x2", "x3", "y"] and len(data) == 2000
    assert list(rec.columns) == RECOVERY_COLUMNS
    counts = rec.groupby("experiment", sort=False).size().to_dict()
    assert counts == {"pooled": 4, "unpooled": 7, "hierarchical": 7}
    assert set(rec["replicate"]) == {0} and set(rec["seed"]) == {20240}
    assert rec.loc[rec["experiment"] == "pooled", "parameter"].tolist() == [
        "x1",
        "x2",
        "x3",
        "sigma",
    ]
    fits = sorted((run / "fits").iterdir())
    assert [f.name.split("_")[-1] for f in fits] == ["pooled", "unpooled", "hierarchical"]
    for fit_dir in fits:  # each a normal, complete fit run directory, refittable from `run`
        assert json.loads((fit_dir / "manifest.json").read_text())["status"] == "complete"
        config = yaml.safe_load((fit_dir / "config.yaml").read_text())
        assert config["data"]["path"] == "data.parquet" and config["output"]["root"] == "fits"
        assert config["model"]["intercept"] is False
        assert (fit_dir / "idata.nc").is_file() and (fit_dir / "summary.csv").is_file()
        assert list((fit_dir / "plots").glob("*.png"))  # one replicate: fit plots on
        assert "log_likelihood" in _idata_groups(fit_dir)  # and its pointwise draws (LOO)
    assert (run / "recovery.png").stat().st_size > 0
    text = (run / "recovery.md").read_text()
    assert "## pooled" in text and "row-weighted mean" in text and "| x1[a] | 1.000 |" in text
    out = result.output  # the path is the last thing printed (Rich may wrap it)
    assert out.rstrip().replace("\n", "").endswith(run.name)
    assert out.rfind("simulation directory:") > out.rfind("Recovery: hierarchical") > 0
    assert "x3[b]" in out


# ----------------------------------------------------------------------------- no sampling


def test_replicate_seeds_are_spawned_and_stable():
    assert replicate_seeds(5, 1) == [5]
    three = replicate_seeds(5, 3)
    assert len(set(three)) == 3 and replicate_seeds(5, 5)[:3] == three
    assert replicate_seeds(6, 3) != three


def test_generation_is_determined_by_the_seed(tmp_path):
    spec = parse_simulation(tiny(tmp_path))
    a, b = generate_data(spec, seed=3), generate_data(spec, seed=3)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.parameters == b.parameters
    assert not generate_data(spec, seed=4).frame.equals(a.frame)
    sizes = np.array(list(a.sizes.values()))
    assert list(a.sizes) == [f"g{i}" for i in range(1, 7)]
    assert ((sizes >= 20) & (sizes <= 40)).all() and len(a.frame) == sizes.sum()
    assert a.parameters["mu_x"] == -0.5 and a.parameters["sigma_intercept"] == 0.5
    # the outcome is exactly what the truth says plus noise of the right size
    g, x = a.frame["group"], a.frame["x"]
    fitted = g.map(a.coefficients["intercept"]) + g.map(a.coefficients["x"]) * x
    assert abs(np.std(a.frame["y"] - fitted) - 0.8) < 0.1


def test_generation_of_sizes_predictors_and_prior_truth(tmp_path):
    raw = tiny(tmp_path)
    raw["generate"].update(
        groups=40,
        rows={"dist": "lognormal", "median": 5, "sigma": 1.1, "min": 1, "max": 30},
        predictors=[
            {"name": "floor", "dist": "bernoulli", "p": 0.17},
            {"name": "u", "dist": "uniform", "low": 2, "high": 3},
        ],
        truth="prior",
    )
    raw["experiments"][0]["priors"] = {
        "coefficient": {"dist": "Normal", "mu": 0, "sigma": 1},
        "group_sd": {"dist": "HalfNormal", "sigma": 0.5},
        "sigma": {"dist": "HalfNormal", "sigma": 1},
    }
    spec = parse_simulation(raw)
    sim = generate_data(spec, seed=1)
    sizes = np.array(list(sim.sizes.values()))
    assert sizes.min() >= 1 and sizes.max() <= 30 and np.median(sizes) < 12
    assert set(sim.frame["floor"].unique()) <= {0.0, 1.0}
    assert sim.frame["u"].between(2, 3).all()
    names = {
        "mu_intercept",
        "sigma_intercept",
        "mu_floor",
        "sigma_floor",
        "mu_u",
        "sigma_u",
        "sigma",
    }
    assert names <= set(sim.parameters)
    assert all(sim.parameters[n] > 0 for n in names if n.startswith("sigma"))
    # every replicate draws its own truth from the prior
    assert generate_data(spec, seed=2).parameters["mu_u"] != sim.parameters["mu_u"]


def test_truth_of_a_pooled_fit_is_the_row_weighted_mean(tmp_path):
    raw = tiny(tmp_path)
    raw["generate"].update(
        groups=["a", "b"],
        rows=10,
        intercept=False,
        truth={"coefficients": {"a": [2.0], "b": [-1.0]}, "sigma": 1},
    )
    raw["experiments"] = [
        {"name": "p", "pooling": "pooled"},
        {"name": "h", "pooling": "hierarchical"},
    ]
    spec = parse_simulation(raw)
    sim = SimulatedData(
        frame=None,
        coefficients={"x": {"a": 2.0, "b": -1.0}},
        sizes={"a": 30, "b": 10},
        parameters={"sigma": 1.0},
    )
    pooled = fit_config(
        spec, spec.experiments[0], data_path="d.parquet", root="f", seed=1, plots=False
    )
    assert truth_for(sim, pooled) == {"x": (30 * 2 - 10) / 40, "sigma": 1.0}
    hier = fit_config(
        spec, spec.experiments[1], data_path="d.parquet", root="f", seed=1, plots=False
    )
    # explicit coefficients have no population mean or sd: those get no truth
    assert truth_for(sim, hier) == {"sigma": 1.0, "x[a]": 2.0, "x[b]": -1.0}
    # the pointwise draws a fit keeps: all by default, none for simulate's many replicates
    assert pooled.output.pointwise_limit == 25_000_000
    lean = fit_config(
        spec, spec.experiments[0], data_path="d", root="f", seed=1, plots=False, pointwise=False
    )
    assert lean.output.pointwise_limit == 0


# one parser for --set: a value means the same in `fit` and in `simulate`
SET_VALUES = ["1e-3", "true", "500", "[intercept]", "0.5", "lots", "null"]
SET_KEYS = [  # (fit key, simulate key, where the value lands)
    ("sampler.draws", "experiments.0.sampler.draws", lambda c: c.sampler.draws),
    ("sampler.target_accept", "experiments.hier.sampler.target_accept", None),
    ("priors.coefficient.sigma", "experiments.0.priors.coefficient.sigma", None),
    ("model.varying", "experiments.0.model.varying", lambda c: c.model.varying),
    ("diagnostics.max_divergences", "experiments.0.diagnostics.max_divergences", None),
]


def _set_result(load, key: str, value: str, read):
    from hbreg.errors import ConfigError

    try:
        return "value", read(load([f"{key}={value}"]))
    except ConfigError:
        return "refused", None


@pytest.mark.parametrize("value", SET_VALUES)
@pytest.mark.parametrize(("fit_key", "sim_key", "_"), SET_KEYS, ids=[k[0] for k in SET_KEYS])
def test_set_means_the_same_in_fit_and_simulate(tmp_path, value, fit_key, sim_key, _):
    from hbreg.config import load_config

    priors = {"coefficient": {"dist": "Normal", "mu": 0, "sigma": 1}}
    fit_raw = {
        "name": "x",
        "data": {"path": "d.csv", "outcome": "y", "predictors": ["x"], "group": "group"},
        "priors": priors,
    }
    fit_path = write(tmp_path, fit_raw, "fit.yaml")
    sim_raw = tiny(tmp_path)
    sim_raw["experiments"][0]["priors"] = priors
    sim_path = write(tmp_path, sim_raw)
    section, *rest = fit_key.split(".")

    def read(config):
        node = getattr(config, section)
        for part in rest:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        return node

    fit = _set_result(lambda sets: load_config(fit_path, sets), fit_key, value, read)
    sim = _set_result(
        lambda sets: load_simulation(sim_path, sets).experiments[0], sim_key, value, read
    )
    assert fit == sim
    if value == "1e-3" and fit_key == "priors.coefficient.sigma":
        assert fit == ("value", 0.001)  # a float, not the string '1e-3' (YAML 1.2)
    if value == "true" and fit_key == "sampler.draws":
        assert fit == ("refused", None)  # a number written as a boolean is a mistake


def test_set_into_lists_and_unions_of_a_simulation(tmp_path):
    from hbreg.errors import ConfigError

    path = write(tmp_path, tiny(tmp_path))
    spec = load_simulation(
        path,
        [
            "experiments.hier.sampler.draws=123",
            "generate.truth.mu.x=2.5",
            "generate.predictors.0.sigma=3",
            "replicates=4",
        ],
    )
    assert spec.experiments[0].sampler.draws == 123 and spec.replicates == 4
    assert spec.generate.truth.mu["x"] == 2.5 and spec.generate.predictors[0].sigma == 3
    for bad, message in [
        ("replicates=true", "replicates: must be a number, got true"),
        ("experiments.0.sampler.drws=5", "no key 'drws' in experiments.0.sampler"),
        ("generate.truth.mux.x=1", "no key 'mux' in generate.truth. Did you mean 'mu'?"),
        ("experiments.7.sampler.draws=5", "no item '7'; give an index below 1"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_simulation(path, [bad])


# the scipy distribution with PyMC's parameterization of each allowed prior
_SCIPY = {
    "Normal": lambda p: stats.norm(p["mu"], p["sigma"]),
    "StudentT": lambda p: stats.t(p["nu"], p["mu"], p["sigma"]),
    "Cauchy": lambda p: stats.cauchy(p["alpha"], p["beta"]),
    "Laplace": lambda p: stats.laplace(p["mu"], p["b"]),
    "HalfNormal": lambda p: stats.halfnorm(scale=p["sigma"]),
    "HalfCauchy": lambda p: stats.halfcauchy(scale=p["beta"]),
    "HalfStudentT": lambda p: _HalfT(p["nu"], p["sigma"]),
    "Exponential": lambda p: stats.expon(scale=1 / p["lam"]),
    "Gamma": lambda p: stats.gamma(p["alpha"], scale=1 / p["beta"]),
    "InverseGamma": lambda p: stats.invgamma(p["alpha"], scale=p["beta"]),
    "LogNormal": lambda p: stats.lognorm(p["sigma"], scale=np.exp(p["mu"])),
}
_HEAVY = {"Cauchy", "HalfCauchy"}  # no mean: quantiles instead


class _HalfT:
    """|sigma * t(nu)|, which scipy lacks."""

    def __init__(self, nu, sigma):
        self.nu, self.sigma = nu, sigma

    def cdf(self, x):
        return 2 * stats.t.cdf(np.asarray(x) / self.sigma, self.nu) - 1

    def ppf(self, q):
        return self.sigma * stats.t.ppf((np.asarray(q) + 1) / 2, self.nu)

    def mean(self):
        nu, s = self.nu, self.sigma
        return 2 * s * np.sqrt(nu / np.pi) * gamma_fn((nu + 1) / 2) / (gamma_fn(nu / 2) * (nu - 1))

    def std(self):
        return np.sqrt(self.sigma**2 * self.nu / (self.nu - 2) - self.mean() ** 2)


def _example_params(name: str) -> dict:
    """Non-default values, so a swapped or misread parameter shows."""
    values = {"mu": 1.5, "sigma": 2.0, "nu": 7.0, "alpha": 3.0, "beta": 2.5, "b": 0.7, "lam": 4.0}
    if name == "LogNormal":
        values = {**values, "mu": 0.3, "sigma": 0.4}
    return {k: values[k] for k in DISTRIBUTIONS[name].params}


def test_prior_draws_come_from_pymc_with_the_configured_parameters():
    names = list(DISTRIBUTIONS)
    n = 40_000
    specs = [({"dist": name, **_example_params(name)}, n) for name in names]
    draws = draw_priors(specs, np.random.default_rng(5))
    assert [d.shape for d in draws] == [(n,)] * len(names)
    for name, x in zip(names, draws, strict=True):
        dist = _SCIPY[name](_example_params(name))
        p = stats.kstest(x, dist.cdf).pvalue
        assert p > 1e-4, (name, p)
        if name in _HEAVY:
            q = [0.1, 0.25, 0.5, 0.75, 0.9]
            assert np.allclose(np.quantile(x, q), dist.ppf(q), rtol=0.05), name
        else:
            se = dist.std() / np.sqrt(n)
            assert abs(x.mean() - dist.mean()) < 5 * se, (name, x.mean(), dist.mean())
            assert abs(x.std() / dist.std() - 1) < 0.05, (name, x.std(), dist.std())
    # the draw is determined by the generator's state
    again = draw_priors(specs, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(again, draws, strict=True))


BAD = [
    ({"generate": {"grups": 3}}, "generate -> grups: unknown key 'grups'. Did you mean 'groups'"),
    (
        {"experiments": [{"name": "h", "pooling": "hierarchical", "sampler": {"drws": 9}}]},
        "experiments -> 0 -> sampler -> drws: unknown key",
    ),
    ({"generate": {"truth": "priors"}}, "generate -> truth: truth must be `prior`"),
    (
        {"generate": {"predictors": [{"name": "x", "dist": "poisson"}]}},
        "generate -> predictors -> 0",
    ),
    (
        {"generate": {"truth": {"mu": {"intercept": 1}, "sigma": 1}}},
        "generate -> truth -> mu: no value for coefficient(s) ['x']",
    ),
    ({"generate": {"rows": [40, 20]}}, "generate -> rows: range [min, max] has min > max"),
    (
        {"experiments": [{"name": "h", "pooling": "hierarchical", "sampler": {"seed": 1}}]},
        "experiments -> 0 -> sampler -> seed",
    ),
    (
        {
            "experiments": [
                {
                    "name": "h",
                    "pooling": "hierarchical",
                    "priors": {"overrides": {"mu_z": {"dist": "Normal", "mu": 0, "sigma": 1}}},
                }
            ]
        },
        "experiments -> 0 (h) -> priors.overrides: no parameter 'mu_z'",
    ),
    ({"experiments": []}, "experiments: List should have at least 1 item"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_simulation_config_exits_2_naming_the_key(cli, tmp_path, change, message):
    raw = tiny(tmp_path)
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    result = cli("simulate", write(tmp_path, raw))
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "outputs").exists()


def test_bad_set_and_executor_choices_exit_2(cli, tmp_path, monkeypatch):
    path = write(tmp_path, tiny(tmp_path))
    result = cli("simulate", path, "--set", "experiments.nope.sampler.draws=5")
    assert result.exit_code == 2 and "no item 'nope'" in result.stderr
    result = cli("simulate", path, "--executor", "spark")
    assert result.exit_code == 2 and "--executor" in result.stderr
    result = cli("simulate", path, "--executor", "dask")
    assert result.exit_code == 2 and "--scheduler" in result.stderr
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # not installed
    result = cli("simulate", path, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2 and "pip install 'hbreg[dask]'" in result.stderr
    assert not (tmp_path / "outputs").exists()


def _shipped_simulations() -> list[Path]:
    return [
        path
        for path in sorted((ROOT / "configs").glob("*.yaml"))
        if "experiments" in (yaml.safe_load(path.read_text()) or {})
    ]


def test_the_example_simulations_are_shipped():
    assert {TWO_GROUPS, RADON_LIKE} <= set(_shipped_simulations())


@pytest.mark.parametrize("path", _shipped_simulations(), ids=lambda p: p.name)
def test_shipped_simulation_config_validates(path):
    spec = load_simulation(path)
    assert spec.seed is not None and spec.experiments
    sim = generate_data(spec, seed=spec.seed)  # and generates data without sampling
    assert len(sim.frame) == sum(sim.sizes.values()) > 0


# ----------------------------------------------------------------------------- replicates


def test_replicates_in_a_process_pool_give_coverage(cli, tmp_path):
    path = write(tmp_path, tiny(tmp_path, workers=2))
    result = cli("simulate", path, "--replicates", "3")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "outputs")
    cov = pd.read_csv(run / "coverage.csv")
    assert list(cov.columns) == COVERAGE_COLUMNS
    population = cov[cov["level"] == "population"]
    assert population["parameter"].tolist() == [
        "mu_intercept",
        "sigma_intercept",
        "mu_x",
        "sigma_x",
        "sigma",
    ]
    assert (population["fits"] == 3).all()
    assert cov[["coverage_50", "coverage_90"]].stack().between(0, 1).all()
    assert (cov["coverage_90"] >= cov["coverage_50"]).all()
    seeds = replicate_seeds(11, 3)
    truth = json.loads((run / "truth.json").read_text())
    assert [r["seed"] for r in truth["replicates"]] == seeds
    rec = pd.read_csv(run / "recovery.csv")
    assert sorted(set(rec["seed"])) == sorted(seeds)
    for i in range(3):
        assert (run / "data" / f"rep_{i:03d}.parquet").is_file()
        (fit_dir,) = (run / "fits" / f"rep_{i:03d}").iterdir()
        config = yaml.safe_load((fit_dir / "config.yaml").read_text())
        assert config["data"]["path"] == f"data/rep_{i:03d}.parquet"
        assert not (fit_dir / "plots").exists()  # replicates: fit plots off by default
        stored = _idata_groups(fit_dir)  # and their pointwise draws: recovery needs neither
        assert "posterior" in stored and "log_likelihood" not in stored
        assert config["output"]["pointwise_limit"] == 0
    assert (run / "ranks.png").is_file() and (run / "recovery.png").is_file()
    assert (
        "SBC" in (run / "recovery.md").read_text()
        or "calibration" in (run / "recovery.md").read_text()
    )
    assert "cov 90%" in result.output and "mu_intercept" in result.output
    assert "simulation directory:" in result.output


def test_a_failing_replicate_is_reported_with_its_seed(cli, tmp_path, monkeypatch):
    seeds = replicate_seeds(11, 3)
    real = simulate._fit_experiment

    def flaky(spec, exp, sim, task, *args):
        if task["seed"] == seeds[1]:
            raise RuntimeError("injected failure")
        return real(spec, exp, sim, task, *args)

    monkeypatch.setattr(simulate, "_fit_experiment", flaky)
    path = write(tmp_path, tiny(tmp_path, workers=1))  # one worker: in-process
    result = cli("simulate", path, "--replicates", "3")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert (
        f"replicate 1 (seed {seeds[1]}) failed (experiment hier): RuntimeError: injected failure"
        in out
    )
    run = only_run(tmp_path / "outputs")
    rec = pd.read_csv(run / "recovery.csv")
    assert sorted(set(rec["replicate"])) == [0, 2]
    cov = pd.read_csv(run / "coverage.csv")
    assert (cov.loc[cov["level"] == "population", "fits"] == 2).all()
    text = (run / "recovery.md").read_text()
    assert "## Failures" in text and f"| 1 | {seeds[1]} | hier | RuntimeError: injected" in text
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["failures"][0]["seed"] == seeds[1]
    assert (run / "data" / "rep_001.parquet").is_file()  # its data are kept to look at


def test_a_fit_failing_its_diagnostics_is_marked_and_strict_exits_4(cli, tmp_path):
    raw = tiny(tmp_path)
    raw["experiments"][0]["diagnostics"] = {"min_ess_bulk": 1e9}  # no fit can pass
    result = cli("simulate", write(tmp_path, raw), "--strict")
    assert result.exit_code == 4, result.output
    out = " ".join(result.output.split())
    assert "Recovery: hier (diagnostics FAILED)" in out
    assert "diagnostics failed: replicate 0 (seed 11), experiment hier: " in out
    assert "(needed: 1000000000)" in out  # the missed threshold is named
    assert "1 fit: 0 passed their diagnostics, 1 failed their diagnostics" in out
    run = only_run(tmp_path / "outputs")
    assert not run.name.endswith(".failed")  # the simulation itself is complete
    rec = pd.read_csv(run / "recovery.csv")
    assert len(rec) > 0 and not rec["diagnostics_passed"].any()
    text = (run / "recovery.md").read_text()
    assert "**Diagnostics: FAILED** (" in text and "## Failed diagnostics" in text
    assert "(needed: 1000000000)" in text
    (fit_dir,) = (run / "fits").iterdir()
    assert f"`fits/{fit_dir.name}/divergences.md`" in text
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [f["experiment"] for f in manifest["diagnostic_failures"]] == ["hier"]


LENIENT = {
    "max_r_hat": 1.5,
    "min_ess_bulk": 0,
    "min_ess_tail": 0,
    "max_divergences": 10_000,
    "min_bfmi": 0,
    "max_tree_depth_fraction": 1,
}


def test_coverage_with_and_without_fits_that_failed_diagnostics(cli, tmp_path, monkeypatch):
    seeds = replicate_seeds(11, 3)
    real = simulate._fit_experiment

    def flagged(spec, exp, sim, task, *args):
        rows, path, verdict = real(spec, exp, sim, task, *args)
        if task["seed"] == seeds[1]:  # as if this fit had diverged
            verdict = {"passed": False, "failures": ["3 divergent transitions"], "divergences": 3}
            rows = [{**r, "diagnostics_passed": False} for r in rows]
        return rows, path, verdict

    monkeypatch.setattr(simulate, "_fit_experiment", flagged)
    raw = tiny(tmp_path, workers=1)
    raw["experiments"][0]["diagnostics"] = LENIENT  # the tiny fits pass on their own
    path = write(tmp_path, raw)
    result = cli("simulate", path, "--replicates", "3")
    assert result.exit_code == 0, result.output  # reported, not fatal without --strict
    run = only_run(tmp_path / "outputs")
    rec = pd.read_csv(run / "recovery.csv")
    assert rec.groupby("replicate")["diagnostics_passed"].all().to_dict() == {
        0: True,
        1: False,
        2: True,
    }
    cov = pd.read_csv(run / "coverage.csv").set_index("parameter")
    assert (cov["failed_diagnostics"] == 1).all() and (cov["fits"] >= 3).all()
    population = rec[rec["level"] == "population"]
    for name, part in population.groupby("parameter"):
        ok = part[part["diagnostics_passed"]]
        assert cov.loc[name, "coverage_90"] == pytest.approx(part["inside_90"].mean())
        assert cov.loc[name, "coverage_90_passed"] == pytest.approx(ok["inside_90"].mean())
    text = (run / "recovery.md").read_text()
    assert f"| 1 | {seeds[1]} | hier | 3 divergent transitions |" in text
    assert "3 fits: 2 passed their diagnostics, 1 failed their diagnostics" in text
    out = " ".join(result.output.split())
    assert "3 fits: 2 passed their diagnostics, 1 failed their diagnostics" in out
    assert f"diagnostics failed: replicate 1 (seed {seeds[1]}), experiment hier" in out
    assert cli("simulate", path, "--replicates", "3", "--strict").exit_code == 4


def test_every_replicate_failing_exits_3_and_marks_the_run_failed(cli, tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("always")

    monkeypatch.setattr(simulate, "_fit_experiment", broken)
    path = write(tmp_path, tiny(tmp_path, workers=1))
    result = cli("simulate", path, "--replicates", "2")
    assert result.exit_code == 3
    assert "every replicate failed" in result.stderr
    (run,) = (tmp_path / "outputs").iterdir()
    assert run.name.endswith(".failed")


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_dask_gives_the_same_numbers_as_the_local_executor(cli, tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = tiny(tmp_path)
    local = write(tmp_path, spec, "local.yaml")
    spec["output"] = {"root": str(tmp_path / "dask")}
    remote = write(tmp_path, spec, "dask.yaml")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = cli(
            "simulate",
            remote,
            "--replicates",
            "2",
            "--executor",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
        )
    assert result.exit_code == 0, result.output
    assert cli("simulate", local, "--replicates", "2").exit_code == 0
    a = pd.read_csv(only_run(tmp_path / "dask") / "recovery.csv")
    b = pd.read_csv(only_run(tmp_path / "outputs") / "recovery.csv")
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.slow
def test_twenty_replicates_of_radon_like_data_cover_the_hyperparameters(cli, tmp_path):
    raw = yaml.safe_load(RADON_LIKE.read_text())
    raw["experiments"] = [e for e in raw["experiments"] if e["name"] == "hierarchical"]
    raw["output"] = {"root": str(tmp_path / "outputs")}
    start = time.perf_counter()
    result = cli("simulate", write(tmp_path, raw), "--replicates", "20")
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    cov = pd.read_csv(only_run(tmp_path / "outputs") / "coverage.csv")
    hyper = cov[cov["level"] == "population"].set_index("parameter")
    print(f"\n20 radon-like replicates in {seconds:.0f} s\n{hyper.to_string()}")
    assert sorted(hyper.index) == [
        "mu_floor",
        "mu_intercept",
        "sigma",
        "sigma_floor",
        "sigma_intercept",
    ]
    assert (hyper["fits"] == 20).all()
    assert hyper["coverage_90"].between(0.75, 1.0).all(), hyper["coverage_90"]


def _idata_groups(fit_dir) -> list[str]:
    import xarray as xr

    with xr.open_datatree(fit_dir / "idata.nc", engine="h5netcdf") as tree:
        return list(tree.children)
