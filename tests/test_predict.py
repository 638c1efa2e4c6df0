"""`hbreg predict`: known groups use their own draws, unseen groups the population, held-out
rows are covered at the nominal rate, and bad input is refused before anything is written.

One radon hierarchical fit on 90% of the rows (the other 10% held out) is shared by the
module; the encoding checks run on configs alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hbreg.config import parse_config
from hbreg.data import BUILTIN_DATASETS
from hbreg.errors import DataError
from hbreg.predict.design import new_rows

HELD_OUT_SEED = 3


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Fit radon hierarchical on 90% of the rows; return the run, the held-out rows, a runner."""
    from typer.testing import CliRunner

    from hbreg.cli import app

    base = tmp_path_factory.mktemp("predict")
    frame = BUILTIN_DATASETS["radon"].load()
    rng = np.random.default_rng(HELD_OUT_SEED)
    test = np.zeros(len(frame), dtype=bool)
    test[rng.choice(len(frame), size=len(frame) // 10, replace=False)] = True
    train_rows = frame[~test]
    assert "AITKIN" in set(train_rows["county"])
    train_rows.to_csv(base / "train.csv", index=False)
    frame[test].to_csv(base / "test.csv", index=False)
    config = {
        "name": "radon_train",
        "data": {
            "path": str(base / "train.csv"),
            "outcome": "log_radon",
            "predictors": ["floor"],
            "group": "county",
        },
        "model": {"pooling": "hierarchical"},
        "priors": {
            "coefficient": {"dist": "Normal", "mu": 0, "sigma": 10},
            "group_sd": {"dist": "HalfCauchy", "beta": 5},
            "sigma": {"dist": "HalfCauchy", "beta": 5},
        },
        "sampler": {"draws": 500, "tune": 500, "chains": 2, "seed": 11},
        "output": {"root": str(base / "out"), "plots": []},
    }
    import yaml

    (base / "config.yaml").write_text(yaml.safe_dump(config))
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    result = invoke("fit", base / "config.yaml")
    assert result.exit_code == 0, result.output
    [run] = list((base / "out").iterdir())
    return {"run": run, "base": base, "invoke": invoke, "test": frame[test]}


def _predict(held_out, frame: pd.DataFrame, *args, name="new"):
    path = held_out["base"] / f"{name}.csv"
    frame.to_csv(path, index=False)
    result = held_out["invoke"]("predict", held_out["run"], "--data", path, *args)
    assert result.exit_code == 0, result.output
    [out] = sorted((held_out["run"] / "predictions").glob(f"*_{name}*"))[-1:]
    return pd.read_csv(out / "predictions.csv"), out, result.output


def _posterior(run: Path) -> xr.Dataset:
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        return tree["posterior"].to_dataset().load()


@pytest.mark.sampling
def test_known_county_equals_its_own_coefficient_draws(held_out):
    rows = pd.DataFrame({"county": ["AITKIN", "AITKIN"], "floor": [0.0, 1.0]})
    table, _, _ = _predict(held_out, rows, name="aitkin")
    post = _posterior(held_out["run"])
    intercept = post["intercept"].sel(county="AITKIN").values.ravel()
    slope = post["floor"].sel(county="AITKIN").values.ravel()
    by_hand = [intercept, intercept + slope]
    for i, draws in enumerate(by_hand):
        assert table["expected_mean"][i] == pytest.approx(draws.mean(), rel=1e-9)
        assert table["expected_q5"][i] == pytest.approx(np.quantile(draws, 0.05), rel=1e-9)
        assert table["expected_q95"][i] == pytest.approx(np.quantile(draws, 0.95), rel=1e-9)
        sigma = post["sigma"].values.ravel()
        spread = np.sqrt(draws.var() + (sigma**2).mean())  # predictive sd by hand
        se = spread / np.sqrt(draws.size)
        assert abs(table["predicted_mean"][i] - draws.mean()) < 4 * se
    assert not table["new_group"].any()


@pytest.mark.sampling
def test_unseen_county_is_wider_than_every_known_one_and_centred_on_the_population(held_out):
    post = _posterior(held_out["run"])
    counties = [str(c) for c in post["county"].values]
    rows = pd.DataFrame({"county": [*counties, "ATLANTIS"], "floor": 0.0})
    table, out, output = _predict(held_out, rows, name="atlantis")
    width = table["expected_q95"] - table["expected_q5"]
    assert width.iloc[-1] > width.iloc[:-1].max()
    mu = post["mu_intercept"].values.ravel()
    sd = np.sqrt(mu.var() + (post["sigma_intercept"].values.ravel() ** 2).mean())
    assert abs(table["expected_mean"].iloc[-1] - mu.mean()) < 4 * sd / np.sqrt(mu.size)
    assert table["new_group"].tolist() == [False] * len(counties) + [True]
    assert f"1 row of {len(rows)} fell in 1 group the fit never saw (ATLANTIS)" in " ".join(
        output.split()
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["new_group_rows"] == 1


@pytest.mark.sampling
def test_held_out_rows_are_covered_at_the_nominal_rate(held_out):
    table, out, output = _predict(held_out, held_out["test"], name="test")
    y = table["log_radon"]
    inside = ((y >= table["predicted_q5"]) & (y <= table["predicted_q95"])).mean()
    assert 0.85 <= inside <= 0.95, inside
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["coverage_90"] == pytest.approx(inside)
    assert np.isfinite(manifest["log_predictive_density"])
    assert "log predictive density" in output
    with xr.open_dataset(out / "predictions.nc", engine="h5netcdf") as draws:
        assert draws["log_radon"].shape == (1000, len(table))
    assert (out / "predictions.png").stat().st_size > 5_000


@pytest.mark.sampling
def test_same_seed_same_file_and_population_rows(held_out):
    rows = pd.DataFrame({"county": ["ATLANTIS", "AITKIN"], "floor": [0.0, 1.0]})
    first, _, _ = _predict(held_out, rows, "--seed", "5", name="seeded")
    again, _, _ = _predict(held_out, rows, "--seed", "5", name="seeded")
    pd.testing.assert_frame_equal(first, again)
    pop, _, output = _predict(held_out, rows, "--population", name="population")
    assert "population means" in output
    post = _posterior(held_out["run"])
    mu = post["mu_intercept"].values.ravel()
    assert pop["expected_mean"][0] == pytest.approx(mu.mean(), rel=1e-9)
    assert "new_group" not in pop.columns


@pytest.mark.sampling
@pytest.mark.parametrize(
    ("args", "rows", "message"),
    [
        ((), pd.DataFrame({"county": ["AITKIN"]}), "['floor'] needed by the fit are missing"),
        (
            ("--new-groups", "error"),
            pd.DataFrame({"county": ["ATLANTIS"], "floor": [0.0]}),
            "'ATLANTIS' not in the fit (--new-groups error)",
        ),
        ((), pd.DataFrame({"county": ["AITKIN"], "floor": ["high"]}), "row 1 holds 'high'"),
    ],
)
def test_bad_rows_exit_2_and_write_nothing(held_out, args, rows, message):
    path = held_out["base"] / "bad.csv"
    rows.to_csv(path, index=False)
    before = (
        sorted((held_out["run"] / "predictions").glob("*"))
        if (held_out["run"] / "predictions").exists()
        else []
    )
    result = held_out["invoke"]("predict", held_out["run"], "--data", path, *args)
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")
    after = (
        sorted((held_out["run"] / "predictions").glob("*"))
        if (held_out["run"] / "predictions").exists()
        else []
    )
    assert after == before


@pytest.mark.sampling
def test_incomplete_run_is_refused(held_out, tmp_path):
    run = tmp_path / "2026-01-01_00-00-00_x.failed"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "failed", "kind": "fit"}))
    path = tmp_path / "rows.csv"
    pd.DataFrame({"county": ["AITKIN"], "floor": [0.0]}).to_csv(path, index=False)
    result = held_out["invoke"]("predict", run, "--data", path)
    assert result.exit_code == 2
    assert "is failed, not complete" in result.output


@pytest.mark.unit
@pytest.mark.parametrize("pooling", ["unpooled", "pooled", "hierarchical"])
def test_new_rows_encoding_per_pooling(pooling):
    config = parse_config(
        {
            "name": "x",
            "data": {
                "dataset": "radon",
                "outcome": "log_radon",
                "predictors": ["floor"],
                "group": "county",
            },
            "model": {"pooling": pooling},
        }
    )
    frame = pd.DataFrame({"county": ["A", "Z", "Z"], "floor": [0.0, 1.0, 0.0]})

    def encode(**kwargs):
        options = {"population": False, "new_groups": "sample", **kwargs}
        return new_rows(frame, config, source="rows", known_labels=["A", "B"], **options)

    if pooling == "unpooled":
        with pytest.raises(DataError, match="unpooled model has no population"):
            encode()
        with pytest.raises(DataError, match="--population"):
            encode(population=True)
        return
    rows = encode()
    np.testing.assert_array_equal(rows.X, [[1, 0], [1, 1], [1, 0]])
    if pooling == "pooled":
        assert rows.group_idx is None
        return
    np.testing.assert_array_equal(rows.group_idx, [0, -1, -1])
    assert rows.new_labels == ["Z"] and rows.n_new_rows == 2
    with pytest.raises(DataError, match="'Z' not in the fit"):
        encode(new_groups="error")


@pytest.mark.sampling
def test_blank_outcomes_are_predicted_and_left_out_of_the_fit_to_the_outcome(held_out):
    rows = pd.DataFrame(
        {"county": ["AITKIN", "AITKIN"], "floor": [0.0, 1.0], "log_radon": [0.8, None]}
    )
    table, out, output = _predict(held_out, rows, name="blank")
    assert np.isfinite(table["log_density"][0]) and np.isnan(table["log_density"][1])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["observed_rows"] == 1
    assert manifest["log_predictive_density"] == pytest.approx(table["log_density"][0])
    assert "1 row with log_radon" in " ".join(output.split())


@pytest.mark.unit
@pytest.mark.parametrize("correlated", [False, True])
def test_new_groups_follow_each_draws_population_covariance(correlated):
    from hbreg.predict.draws import _new_group_draws

    config = parse_config(
        {
            "name": "x",
            "data": {
                "dataset": "radon",
                "outcome": "log_radon",
                "predictors": ["floor"],
                "group": "county",
            },
            "model": {"pooling": "hierarchical", "correlated": correlated},
        }
    )
    n = 4000
    flat = {
        "sigma": np.ones(n),
        "mu_intercept": np.full(n, 1.5),
        "mu_floor": np.full(n, -0.7),
        "sigma_intercept": np.full(n, 0.3),
        "sigma_floor": np.full(n, 2.0),
        "corr_intercept_floor": np.full(n, 0.8),
    }
    rows = new_rows(
        pd.DataFrame({"county": [f"new{i}" for i in range(5)], "floor": 0.0}),
        config,
        source="rows",
        known_labels=["A"],
        population=False,
        new_groups="sample",
    )
    draws = _new_group_draws(
        flat, rows, config, ["intercept", "floor"], [], np.random.default_rng(0)
    ).reshape(-1, 2)
    np.testing.assert_allclose(draws.mean(axis=0), [1.5, -0.7], atol=0.05)
    np.testing.assert_allclose(draws.std(axis=0), [0.3, 2.0], rtol=0.03)
    expected = 0.8 if correlated else 0.0
    assert abs(np.corrcoef(draws.T)[0, 1] - expected) < 0.03


@pytest.mark.unit
def test_expected_values_and_draws_are_on_the_family_scale():
    from hbreg.predict.draws import predictive_draws

    config = parse_config(
        {
            "name": "x",
            "data": {
                "dataset": "cbpp",
                "outcome": "incidence",
                "trials": "size",
                "predictors": ["period2"],
            },
            "model": {"pooling": "pooled", "family": "binomial"},
        }
    )
    rng = np.random.default_rng(1)
    posterior = xr.Dataset(
        {
            "intercept": (("chain", "draw"), rng.normal(-1.0, 0.1, (2, 500))),
            "period2": (("chain", "draw"), rng.normal(0.5, 0.1, (2, 500))),
        }
    )
    frame = pd.DataFrame({"period2": [0.0, 1.0], "size": [10.0, 40.0], "incidence": [2.0, 30.0]})
    rows = new_rows(
        frame, config, source="rows", known_labels=[], population=False, new_groups="sample"
    )
    draws = predictive_draws(posterior, rows, config, seed=0)
    p = 1 / (1 + np.exp(-(posterior["intercept"] + posterior["period2"] * frame["period2"][1])))
    assert draws.expected["mean"][1] == pytest.approx(float(p.mean()), rel=1e-9)
    assert draws.predicted["mean"][1] == pytest.approx(40 * float(p.mean()), rel=0.05)
    assert (draws.predicted_draws <= np.array([10, 40])).all()
    assert draws.predicted_draws.min() >= 0
    assert draws.log_density[1] < draws.log_density[0]  # 30 of 40 is unlikely at p = 0.38
