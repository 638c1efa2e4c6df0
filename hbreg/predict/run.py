"""`hbreg predict RUN_DIR --data NEW.csv`: a fit's predictions for new rows, as a directory.

Everything comes from the run directory (its resolved `config.yaml` and `idata.nc`) and
the new file; the fit's own data file is never read. The output is a run directory of
kind `predict` under `RUN_DIR/predictions/`, written atomically like every run:
`predictions.csv` (the inputs, then mean and 5/50/95% quantiles of the expected value
and of the posterior predictive per row), `predictions.nc` (thinned draws),
`predictions.png` and `manifest.json`. The same seed gives the same files.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hbreg.config import Config, load_config
from hbreg.data.load import read_table
from hbreg.errors import DataError
from hbreg.predict.design import NewRows, new_rows
from hbreg.predict.draws import PredictiveDraws, predictive_draws
from hbreg.predict.formula import formula_rows
from hbreg.runs import RunDirectory, RunInfo, elapsed, load_run

__all__ = ["PredictionResult", "predict"]

NEW_GROUPS = ("sample", "error")


@dataclass
class PredictionResult:
    """What the terminal shows after predicting."""

    path: Path
    rows: int
    new_group_rows: int
    new_groups: list[str]
    population: bool
    log_density: float | None  # summed over the rows whose outcome is given
    observed_rows: int  # rows whose outcome is given
    coverage: float | None  # share of those outcomes inside their 90% predictive interval
    outcome: str
    seconds: float


def predict(
    run_dir: str | Path,
    data_path: str | Path,
    *,
    new_groups: str = "sample",
    population: bool = False,
    seed: int | None = None,
    x: str | None = None,
) -> PredictionResult:
    """Predict the rows of `data_path` from the fit in `run_dir`; write and return the result."""
    start = time.perf_counter()
    if new_groups not in NEW_GROUPS:
        raise DataError(f"--new-groups must be one of {', '.join(NEW_GROUPS)}, got '{new_groups}'")
    run = _complete_run(Path(run_dir))
    config = load_config(run.path / "config.yaml")
    source = f"data file '{data_path}'"
    frame = read_table(Path(data_path), key="--data")
    idata = _open_idata(run)
    posterior = idata["posterior"].to_dataset()
    if config.model.formula is not None:
        if "constant_data" not in idata:
            raise DataError(f"run '{run.path}' has no constant_data in idata.nc; refit it")
        config, rows = formula_rows(
            frame,
            config,
            idata["constant_data"].to_dataset(),
            posterior,
            source=source,
            population=population,
            new_groups=new_groups,
        )
    else:
        rows = new_rows(
            frame,
            config,
            source=source,
            known_labels=_group_labels(posterior, config),
            population=population,
            new_groups=new_groups,
        )
    if x is not None and x not in frame.columns:
        raise DataError(f"--x: no column '{x}' in {source}")
    seed = config.sampler.seed if seed is None else seed
    draws = predictive_draws(posterior, rows, config, seed=seed)
    table = _table(frame, rows, draws, config)
    manifest = {
        "command": shlex.join(sys.argv),
        "run": str(run.path.resolve()),
        "data": str(Path(data_path).resolve()),
        "seed": seed,
        "population": population,
        "new_groups": new_groups,
    }
    result = PredictionResult(
        path=run.path,
        rows=len(frame),
        new_group_rows=rows.n_new_rows,
        new_groups=rows.unseen,
        population=population or rows.new_mask is None,
        log_density=None if rows.y is None else float(np.nansum(draws.log_density)),
        observed_rows=0 if rows.y is None else int(np.isfinite(rows.y).sum()),
        coverage=_coverage(rows, draws),
        outcome=config.data.outcome,
        seconds=0.0,
    )
    with RunDirectory(
        run.path / "predictions", Path(data_path).stem or "predictions", kind="predict", **manifest
    ) as out:
        from hbreg.plots.common import save
        from hbreg.predict.plots import plot_predictions

        out.write_text("predictions.csv", table.to_csv(index=False, float_format="%.10g"))
        out.write_bytes("predictions.nc", _netcdf(draws, rows, config))
        save(
            plot_predictions(table, outcome=config.data.outcome, group=config.data.group, x=x),
            out.path / "predictions.png",
        )
        result.seconds = elapsed(start)
        result.path = out.finish(
            rows=result.rows,
            new_group_rows=result.new_group_rows,
            new_groups=result.new_groups,
            log_predictive_density=result.log_density,
            observed_rows=result.observed_rows,
            coverage_90=result.coverage,
            seconds=result.seconds,
        )
    return result


def _complete_run(path: Path) -> RunInfo:
    try:
        run = load_run(path)
    except Exception as exc:  # OutputError: not a run directory
        raise DataError(str(exc)) from None
    if not run.complete:
        raise DataError(f"run '{path}' is {run.status}, not complete; predict from a complete fit")
    if run.manifest.get("kind", "fit") != "fit":
        raise DataError(f"'{path}' is a {run.manifest['kind']} directory, not a fit run")
    if not (path / "idata.nc").is_file():
        raise DataError(f"run '{path}' has no idata.nc")
    return run


def _open_idata(run: RunInfo):
    import xarray as xr

    return xr.open_datatree(run.path / "idata.nc", engine="h5netcdf")


def _group_labels(posterior, config: Config) -> list[str]:
    group = config.data.group
    if group is None or group not in posterior.coords:
        return []
    return [str(label) for label in posterior[group].values]


def _table(frame: pd.DataFrame, rows: NewRows, draws: PredictiveDraws, config) -> pd.DataFrame:
    """The inputs, a new-group flag, then the expected value and predictive summaries."""
    table = frame.reset_index(drop=True).copy()
    if rows.new_mask is not None:
        table["new_group"] = rows.new_mask
    for prefix, values in (("expected", draws.expected), ("predicted", draws.predicted)):
        for key in ("mean", "q5", "q50", "q95"):
            table[f"{prefix}_{key}"] = values[key]
    if draws.log_density is not None:
        table["log_density"] = draws.log_density
    return table


def _coverage(rows: NewRows, draws: PredictiveDraws) -> float | None:
    observed = np.isfinite(rows.y) if rows.y is not None else None
    if observed is None or not observed.any():
        return None
    y, low, high = (
        rows.y[observed],
        draws.predicted["q5"][observed],
        draws.predicted["q95"][observed],
    )
    return float(((y >= low) & (y <= high)).mean())


def _netcdf(draws: PredictiveDraws, rows: NewRows, config) -> bytes:
    """The kept draws (float32) as a NetCDF file, serialized in memory first."""
    import xarray as xr

    n = rows.X.shape[0]
    coords = {"draw": draws.kept_draws, "row": np.arange(n)}
    variables = {}
    if draws.expected_draws is not None:
        variables["expected"] = (("draw", "row"), draws.expected_draws)
        variables[config.data.outcome] = (("draw", "row"), draws.predicted_draws)
    dataset = xr.Dataset(variables, coords=coords)
    dataset.attrs["note"] = (
        "draws are flat posterior draw indices (chain-major), evenly thinned to bound the size"
        if len(draws.kept_draws)
        else "too many rows to keep draws; predictions.csv has every row's summaries"
    )
    return bytes(dataset.to_netcdf(engine="h5netcdf"))
