"""`hbreg predict` for runs fitted from `model.formula`: one factor, a categorical, crossed factors.

One sleepstudy fit, `Reaction ~ Days + phase + (Days | Subject)` with a two-level
categorical `phase`, and one crossed Penicillin fit are shared by the module (tiny draws).
Predictions read only the run directory and the new file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from hbreg.data import BUILTIN_DATASETS

SAMPLER = {"draws": 300, "tune": 300, "chains": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Fit both formula runs; return their directories, the work folder and a CLI runner."""
    from typer.testing import CliRunner

    from hbreg.cli import app

    base = tmp_path_factory.mktemp("predict_formula")
    sleep = BUILTIN_DATASETS["sleepstudy"].load()
    sleep["phase"] = np.where(sleep["Days"] < 2, "baseline", "deprived")
    sleep.to_csv(base / "sleep.csv", index=False)
    configs = {
        "sleep": {
            "data": {"path": str(base / "sleep.csv")},
            "model": {"formula": "Reaction ~ Days + phase + (Days | Subject)"},
            "priors": {
                "coefficient": {"dist": "Normal", "mu": 0, "sigma": 500},
                "group_sd": {"dist": "HalfNormal", "sigma": 100},
                "sigma": {"dist": "HalfNormal", "sigma": 100},
            },
            "sampler": {**SAMPLER, "seed": 5},
        },
        "penicillin": {
            **yaml.safe_load(Path("configs/penicillin.yaml").read_text()),
            "sampler": {**SAMPLER, "seed": 144, "target_accept": 0.95},
        },
    }
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    found = {"base": base, "invoke": invoke}
    for name, config in configs.items():
        config.update(name=name, output={"root": str(base / name), "plots": []})
        (base / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = invoke("fit", base / f"{name}.yaml")
        assert result.exit_code == 0, result.output
        [found[name]] = list((base / name).iterdir())
    return found


def _predict(runs, run: str, frame: pd.DataFrame, *args, name: str):
    path = runs["base"] / f"{name}.csv"
    frame.to_csv(path, index=False)
    result = runs["invoke"]("predict", runs[run], "--data", path, *args)
    assert result.exit_code == 0, result.output
    [out] = sorted((runs[run] / "predictions").glob(f"*_{name}*"))[-1:]
    return pd.read_csv(out / "predictions.csv")


def _posterior(run: Path) -> xr.Dataset:
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        return tree["posterior"].to_dataset().load()


def _flat(values) -> np.ndarray:
    return np.asarray(values).ravel()


@pytest.mark.sampling
def test_known_subject_equals_its_own_draws(runs):
    rows = pd.DataFrame({"Days": [0, 7], "phase": ["baseline", "deprived"], "Subject": 308})
    table = _predict(runs, "sleep", rows, name="known")
    post = _posterior(runs["sleep"])
    intercept = _flat(post["intercept"].sel(Subject="308"))
    days = _flat(post["Days"].sel(Subject="308"))
    by_hand = [intercept, intercept + 7 * days + _flat(post["phase_deprived"])]
    for i, draws in enumerate(by_hand):
        assert table["expected_mean"][i] == pytest.approx(draws.mean(), rel=1e-9)
        assert table["expected_q5"][i] == pytest.approx(np.quantile(draws, 0.05), rel=1e-9)
        assert table["expected_q95"][i] == pytest.approx(np.quantile(draws, 0.95), rel=1e-9)
    assert not table["new_group"].any()


@pytest.mark.sampling
def test_unseen_subject_is_wider_and_centred_on_the_population(runs):
    post = _posterior(runs["sleep"])
    subjects = [str(s) for s in post["Subject"].values]
    rows = pd.DataFrame({"Days": 0, "phase": "baseline", "Subject": [*subjects, "999"]})
    table = _predict(runs, "sleep", rows, name="unseen")
    width = table["expected_q95"] - table["expected_q5"]
    assert table["new_group"].tolist() == [False] * len(subjects) + [True]
    assert width.iloc[-1] > width.iloc[:-1].max()
    mu = _flat(post["mu_intercept"])
    spread = np.sqrt(mu.var() + (_flat(post["sigma_intercept"]) ** 2).mean())
    assert abs(table["expected_mean"].iloc[-1] - mu.mean()) < 4 * spread / np.sqrt(mu.size)


@pytest.mark.sampling
@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            {"Days": [1], "phase": ["recovery"], "Subject": [308]},
            "column 'phase' has level 'recovery', which the model never saw; "
            "known levels: baseline, deprived",
        ),
        ({"Days": [1], "Subject": [308]}, "column(s) ['phase'] needed by the fit's formula"),
        (
            {"Days": ["x"], "phase": ["baseline"], "Subject": [308]},
            "column 'Days' needs numbers (the fit read it as numeric); row 1 holds 'x'",
        ),
    ],
)
def test_unseen_level_and_missing_column_exit_2_and_write_nothing(runs, rows, message):
    path = runs["base"] / "bad.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    before = sorted((runs["sleep"] / "predictions").glob("*"))
    result = runs["invoke"]("predict", runs["sleep"], "--data", path)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert sorted((runs["sleep"] / "predictions").glob("*")) == before


@pytest.mark.sampling
def test_crossed_known_plate_and_unseen_sample(runs):
    post = _posterior(runs["penicillin"])
    rows = pd.DataFrame({"plate": ["a", "a", "a"], "sample": ["A", "Z", "A"]})
    table = _predict(runs, "penicillin", rows, name="crossed")
    mu = _flat(post["mu_intercept"])
    plate = mu + _flat(post["intercept|plate"].sel(plate="a"))
    known = plate + _flat(post["intercept|sample"].sel(sample="A"))
    assert table["new_group"].tolist() == [False, True, False]
    assert table["expected_mean"][0] == pytest.approx(known.mean(), rel=1e-9)
    assert table["expected_q95"][0] == pytest.approx(np.quantile(known, 0.95), rel=1e-9)
    # the unseen sample: plate a's draws plus N(0, sigma_intercept|sample) per draw
    spread = np.sqrt(plate.var() + (_flat(post["sigma_intercept|sample"]) ** 2).mean())
    assert abs(table["expected_mean"][1] - plate.mean()) < 4 * spread / np.sqrt(mu.size)
    width = table["expected_q95"] - table["expected_q5"]
    assert width[1] > 2 * width[0]
    population = _predict(runs, "penicillin", rows, "--population", name="population")
    assert population["expected_mean"][1] == pytest.approx(mu.mean(), rel=1e-9)


@pytest.mark.unit
def test_a_transform_of_the_fits_own_rows_is_refused():
    from hbreg.config import parse_config
    from hbreg.errors import DataError
    from hbreg.predict.formula import formula_rows

    config = parse_config(
        {
            "name": "s",
            "data": {"dataset": "sleepstudy"},
            "model": {"formula": "Reaction ~ scale(Days)"},
        }
    )
    rows = pd.DataFrame({"Days": [1.0]})
    with pytest.raises(DataError, match=r"scale\(\) depends on the mean and sd of the fit's own"):
        formula_rows(rows, config, None, None, source="f", population=False, new_groups="sample")
