"""The `hbreg fit` pipeline: config -> data -> model -> draws -> diagnostics -> run directory.

Everything that can be checked before sampling (config, data, backend) is checked
before the run directory exists, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hbreg import __version__
from hbreg._gc import gc_paused
from hbreg.config import Config, dump_config, prior_for
from hbreg.config.schema import varying_problem
from hbreg.data import ModelData, load_model_data, with_formula_roles
from hbreg.errors import ConfigError
from hbreg.inference import ProgressCallback, resolve_backend, sample
from hbreg.names import (
    CATEGORICAL_LEVELS,
    COEF_DIM,
    DESIGN,
    GROUP_INDEX,
    GROUP_PREDICTOR_DIM,
    GROUP_PREDICTORS,
    GROUP_SIZE,
    PRIOR_MEAN,
    PRIOR_SD,
    ROW_COLUMNS,
    VARYING,
)
from hbreg.runs import RunDirectory, elapsed

if TYPE_CHECKING:  # the statistics (scipy) are imported when a fit needs them: validate is fast
    from hbreg.stats.diagnostics import Diagnostics

__all__ = ["FitResult", "fit", "prepare"]

_LIBRARIES = ("pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "xarray")


@dataclass
class FitResult:
    """What the CLI shows after a fit."""

    path: Path
    summary: pd.DataFrame
    diagnostics: Diagnostics | None  # None for a prior-only run: no sampler to diagnose
    key_parameters: list[str]
    parameterization: str
    backend: str
    timings: dict[str, float]
    notes: list[str]
    design_checks: list = field(default_factory=list)
    standardization: dict | None = None
    prior_check: object | None = None  # hbreg.prior.PriorCheck of a prior-only run
    # the draws as written to idata.nc (xarray Dataset), for callers that go on with them
    # (simulate's recovery) instead of reading the file back
    posterior: object | None = None


def prepare(config: Config, *, warn=None) -> tuple[Config, ModelData]:
    """Validate everything that needs no sampling; resolve what the run needs to be repeated.

    The priors the config leaves out are scaled to the data (`hbreg.models.default_priors`)
    and written into the returned config, and the seed is drawn. The data come back with
    their design checks (`hbreg.data.checks`) for the terminal and the manifest, and with
    the stated priors that conflict with the data in `data.warnings`. Includes the resource
    estimate (`hbreg.resources`): a run that cannot fit in the machine's memory or on the
    output disk is refused here, before anything is written; one close to the limit is
    warned about in the run's notes. Every warning also goes to `warn` (a callable taking
    the text) when given.
    """
    resolve_backend(config.sampler.backend)
    data = load_model_data(config)  # a missing column is reported before a varying mismatch
    problem = varying_problem(config)
    if problem:
        raise ConfigError(problem)
    config = with_formula_roles(config, data)
    data = _with_design_checks(config, data)
    from hbreg.models import resolve_parameterization
    from hbreg.models.default_priors import prior_conflicts, scale_priors
    from hbreg.resources import check_resources, estimate_resources

    conflicts = prior_conflicts(config, data)
    if conflicts:
        data = dataclasses.replace(data, warnings=[*data.warnings, *conflicts])
        for warning in conflicts if warn is not None else []:
            warn(warning)
    config, _ = scale_priors(config, data)
    parameterization = resolve_parameterization(config)
    for warning in check_resources(
        estimate_resources(config, data, parameterization=parameterization)
    ):
        data.notes.append(warning)
        if warn is not None:
            warn(warning)
    if config.sampler.seed is None:
        config = config.model_copy(deep=True)
        config.sampler.seed = int(np.random.SeedSequence().entropy % 2**32)
    return config, data


def fit(
    config: Config,
    *,
    command: str = "",
    progress: ProgressCallback | None = None,
    prepared: ModelData | None = None,
    root: Path | None = None,
) -> FitResult:
    """Fit `config` and write its run directory; return what the terminal summary needs.

    `prepared` skips loading (see `prepare`); `root` writes somewhere other than
    `output.root` (simulate keeps the config's own paths but writes inside its run).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if prepared is None:
        config, prepared = prepare(config)
    data = _with_design_checks(config, prepared)
    timings["load"] = elapsed(start)
    with (
        gc_paused(),
        RunDirectory(
            root or config.output.root,
            config.name,
            **_manifest_base(config, data, command),
            timings=timings,
        ) as run,
        _plot_workers(config) as plots,
    ):
        result = _fit_into(run, config, data, timings, progress, plots)
        result.path = run.finish(**_manifest_outcome(result))
    return result


def _with_design_checks(config: Config, data: ModelData) -> ModelData:
    if data.design_checks is not None:
        return data
    from hbreg.data.checks import check_design

    return replace(data, design_checks=check_design(config, data))


def _plot_workers(config: Config):
    """The process that will draw the run's figures, started now so it is warm by then."""
    if not config.output.plots:
        return contextlib.nullcontext()
    from hbreg.plots.worker import PlotWorkers

    return PlotWorkers(config.output.plots)


def _fit_into(run, config, data, timings, progress, plots) -> FitResult:
    if config.sampler.prior_only:
        return _prior_into(run, config, data, timings, plots)
    from hbreg.models import build_model, complete_posterior
    from hbreg.models.build import parameterization_note
    from hbreg.models.pointwise import pointwise_groups
    from hbreg.models.standardize import standardize, to_user_scale
    from hbreg.stats.diagnostics import diagnose, divergence_report
    from hbreg.stats.summary import summarize

    seed = config.sampler.seed
    run.write_text("config.yaml", dump_config(config))
    step = time.perf_counter()
    sampled_data, scaling = standardize(config, data)
    built = build_model(config, sampled_data)
    timings["build"] = elapsed(step)
    sampled = sample(built.model, config.sampler, seed=seed, progress=progress)
    timings.update({k: round(v, 3) for k, v in sampled.timings.items()})
    step = time.perf_counter()
    posterior = complete_posterior(built, config, sampled_data, sampled.posterior, seed=seed + 1)
    if scaling is not None:
        posterior = to_user_scale(posterior, scaling, data)
    kinds = config.output.plots
    drawn_now = [kind for kind in kinds if kind != "ppc"]  # all they need exists already
    groups = {"posterior": posterior, "sample_stats": sampled.sample_stats}
    _send_plots(plots, groups, run, config, data, built, kinds=drawn_now)
    loglik, ppc, note = pointwise_groups(
        posterior,
        data,
        limit=config.output.pointwise_limit,
        seed=seed + 2,
        family=config.model.family,
        link=config.model.link,
    )
    chosen = parameterization_note(config, built.parameterization)
    notes = [*([chosen] if chosen else []), *data.notes, *([note] if note else [])]
    summary = summarize(posterior)
    diag = diagnose(posterior, sampled.sample_stats, summary, config.diagnostics)
    run.write_text("summary.csv", summary.to_csv(float_format="%.17g"))
    run.write_json("diagnostics.json", diag.to_dict())
    run.write_text(
        "divergences.md",
        divergence_report(
            diag,
            parameterization=built.parameterization,
            target_accept=config.sampler.target_accept,
        ),
    )
    config_hash = run.manifest["config_hash"]  # hashed once, for the manifest
    idata = _inference_data(
        posterior, sampled.sample_stats, loglik, ppc, data, config, built, config_hash
    )
    shown = ("posterior_predictive", "observed_data")
    groups = {g: idata[g].to_dataset() for g in shown if g in idata.children}
    _send_plots(plots, groups, run, config, data, built, kinds=["ppc"] if "ppc" in kinds else [])
    _write_idata(run, idata, plots)
    timings["report"] = elapsed(step)
    return FitResult(
        path=run.path,
        summary=summary,
        posterior=posterior,
        diagnostics=diag,
        key_parameters=built.population_vars,
        parameterization=built.parameterization,
        backend=sampled.backend,
        timings=timings,
        notes=notes,
        design_checks=list(data.design_checks or []),
        standardization=scaling.to_dict() if scaling is not None else None,
    )


def _prior_into(run, config, data, timings, plots) -> FitResult:
    """A prior-only run: the same directory, with prior draws and the prior predictive."""
    import xarray as xr

    from hbreg.prior import prior_check, prior_draws, prior_report
    from hbreg.stats.summary import summarize

    run.write_text("config.yaml", dump_config(config))
    step = time.perf_counter()
    prior, predictive, built = prior_draws(config, data, seed=config.sampler.seed)
    timings["sample"] = elapsed(step)
    step = time.perf_counter()
    check = prior_check(predictive, data.y, data.outcome)
    summary = summarize(prior)
    run.write_text("summary.csv", summary.to_csv(float_format="%.17g"))
    note = "prior-only run: draws from the priors are independent; there is no sampler to diagnose"
    run.write_json("diagnostics.json", {"prior_only": True, "note": note})
    run.write_text("divergences.md", f"# Prior-only run\n\nNo divergences: {note}.\n")
    draws = config.sampler.chains * config.sampler.draws
    run.write_text("prior_predictive.md", prior_report(check, draws=draws))
    observed = xr.Dataset(
        {data.outcome: (("obs",), data.y)}, coords={"obs": np.arange(len(data.y))}
    )
    tree = xr.DataTree.from_dict(
        {
            "prior": prior,
            "prior_predictive": predictive,
            "observed_data": observed,
            "constant_data": constant_data(data, config),
        }
    )
    config_hash = run.manifest["config_hash"]
    tree.attrs.update(hbreg_version=__version__, config_hash=config_hash, prior_only=1)
    view = {"posterior": prior, "posterior_predictive": predictive, "observed_data": observed}
    shown = [k for k in config.output.plots if k in ("posterior", "forest", "ppc", "pair")]
    _send_plots(plots, view, run, config, data, built, kinds=shown, prior_only=True)
    _write_idata(run, tree, plots)
    timings["report"] = elapsed(step)
    return FitResult(
        path=run.path,
        summary=summary,
        diagnostics=None,
        key_parameters=built.population_vars,
        parameterization="prior",
        backend="pymc forward sampling",
        timings=timings,
        notes=list(data.notes),
        design_checks=list(data.design_checks or []),
        prior_check=check,
    )


def _send_plots(plots, groups, run, config, data, built, *, kinds, prior_only=False) -> None:
    """Hand figures to the plot workers with the InferenceData groups they show."""
    if plots is None or not kinds:
        return
    import xarray as xr

    plots.draw(
        xr.DataTree.from_dict(groups),
        run.path / "plots",
        kinds=kinds,
        population_vars=built.population_vars,
        group_vars=built.group_vars,
        group_dim=data.group_dim,
        pair_vars=built.pair_vars,
        outcome=data.outcome,
        correlation_vars=built.correlation_vars,
        family=config.model.family,
        prior_only=prior_only,
    )


def _inference_data(posterior, sample_stats, loglik, ppc, data, config, built, config_hash):
    import xarray as xr

    observed = xr.Dataset(
        {data.outcome: (("obs",), data.y)}, coords={"obs": np.arange(len(data.y))}
    )
    groups = {
        "posterior": posterior,
        "sample_stats": sample_stats,
        "observed_data": observed,
        "constant_data": constant_data(data, config),
    }
    if loglik is not None:
        groups["log_likelihood"] = loglik
    groups["posterior_predictive"] = ppc
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(
        hbreg_version=__version__,
        config_hash=config_hash,
        pooling=config.model.pooling,
        parameterization=built.parameterization,
        data_fingerprint=data.fingerprint,
    )
    return tree


def constant_data(data: ModelData, config: Config):
    """What readers of the run need about its rows, so they never reload the data file.

    The design matrix with its coefficient names, which coefficients vary by group, the
    binomial trials, offset and likelihood weights of each row where the model has them,
    and, for grouped data, each row's group index, the rows per group (the group labels
    are its coordinate) and the group-level predictors; for an unpooled run with Normal
    priors on its group coefficients, those priors (what integrated LOO integrates over);
    as attributes the family, whether the group effects are correlated and the number of
    grouping factors (with several, the group fields describe the one with the most
    levels), and the levels of a formula's categorical columns in coded order.
    Names: `hbreg.names`.
    """
    import xarray as xr

    coords = {"obs": np.arange(len(data.y)), COEF_DIM: list(data.coef_names)}
    variables = {
        DESIGN: (("obs", COEF_DIM), np.asarray(data.X, dtype=float)),
        VARYING: ((COEF_DIM,), np.array([c in data.varying for c in data.coef_names])),
    }
    for name in ROW_COLUMNS:
        if getattr(data, name) is not None:
            variables[name] = (("obs",), np.asarray(getattr(data, name), dtype=float))
    if data.group_idx is not None:
        dim = data.group_dim
        coords[dim] = list(data.group_labels)
        variables[GROUP_INDEX] = (("obs",), _small_int(data.group_idx, data.n_groups))
        variables[GROUP_SIZE] = ((dim,), data.group_sizes.astype(np.int64))
        if data.group_predictor_names:
            coords[GROUP_PREDICTOR_DIM] = list(data.group_predictor_names)
            variables[GROUP_PREDICTORS] = (
                (dim, GROUP_PREDICTOR_DIM),
                np.asarray(data.group_X, dtype=float),
            )
    # standardized fits put their priors on the sampler's scale, not on this X's
    unpooled = config.model.pooling == "unpooled" and not config.model.standardize
    priors = [prior_for(config, c) for c in data.varying] if unpooled else []
    if unpooled and all(p["dist"] == "Normal" for p in priors):
        by_coef = dict(zip(data.varying, priors, strict=True))
        for name, key in ((PRIOR_MEAN, "mu"), (PRIOR_SD, "sigma")):
            values = [float(by_coef[c][key]) if c in by_coef else np.nan for c in data.coef_names]
            variables[name] = ((COEF_DIM,), np.array(values))
    attrs = {
        "family": config.model.family,
        "correlated": int(bool(data.correlated)),
        "grouping_factors": len(data.factors) or int(data.group_idx is not None),
        "standardize": int(bool(config.model.standardize)),
    }
    if data.levels:
        attrs[CATEGORICAL_LEVELS] = json.dumps(data.levels)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _small_int(values: np.ndarray, upper: int) -> np.ndarray:
    """The smallest signed integer type that holds 0..upper (a million-row index in 2-4 MB)."""
    for dtype in (np.int16, np.int32):
        if upper <= np.iinfo(dtype).max:
            return np.asarray(values, dtype=dtype)
    return np.asarray(values, dtype=np.int64)


# Groups stored as float32: per-observation values read back only for LOO and the
# predictive check, where 7 significant digits are far below their Monte Carlo error.
# The posterior and sample_stats stay float64 (refits and predictions read them), and
# summary.csv is computed from the float64 draws before anything is written. Radon
# hierarchical: idata.nc 39.0 MB -> 22.4 MB and half the write time; gzip on top saves
# another 4 MB for 3x the write time (float draws barely compress), so none.
_FLOAT32_GROUPS = ("log_likelihood", "posterior_predictive")


def _write_idata(run, tree, plots) -> None:
    """Write `idata.nc` while the plot worker draws, then wait for the figures.

    Serialized in memory first: HDF5 failing half-way through a file on a full disk can
    take the process down with it. Written by the netCDF-C library (``netcdf4``): 15-20 ms
    where h5netcdf takes 80-100 ms for a radon fit, whose many small variables each cost
    h5netcdf a scan of the file's dimensions; every reader (h5netcdf included) reads the
    same file.
    """
    encoding = _netcdf_encoding(tree)
    run.write_bytes("idata.nc", bytes(tree.to_netcdf(engine="netcdf4", encoding=encoding)))
    if plots is not None:
        plots.wait()


def _netcdf_encoding(idata) -> dict:
    return {
        f"/{name}": {
            var: {"dtype": "float32"}
            for var, values in idata[name].dataset.data_vars.items()
            if values.dtype == np.float64
        }
        for name in _FLOAT32_GROUPS
        if name in idata.children
    }


def _config_hash(config: Config) -> str:
    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]


def _manifest_base(config: Config, data: ModelData, command: str) -> dict:
    source = config.data.path or f"built-in:{config.data.dataset}"
    outside = bool(config.data.path) and not Path(config.data.path).resolve().is_relative_to(
        Path.cwd()
    )
    return {
        "command": command,
        "hbreg_version": __version__,
        "python": platform.python_version(),
        "libraries": {lib: _version(lib) for lib in _LIBRARIES},
        "seed": config.sampler.seed,
        "config_hash": _config_hash(config),
        "pooling": config.model.pooling,
        "family": config.model.family,
        "link": config.model.link,
        "data": {
            "source": source,
            "outside_working_tree": outside,
            "fingerprint": data.fingerprint,
            "outcome": data.outcome,
            "rows": len(data.y),
            "groups": data.n_groups,
            "group": data.group_dim,
        },
        "design_checks": [check.to_dict() for check in data.design_checks or []],
        "argv": sys.argv,
        "warnings": list(data.warnings),
    }


def _manifest_outcome(result: FitResult) -> dict:
    diag = result.diagnostics
    if diag is None:
        return {
            "prior_only": True,
            "backend": result.backend,
            "notes": result.notes,
            "prior_predictive": result.prior_check.to_dict(),
        }
    return {
        "parameterization": result.parameterization,
        "backend": result.backend,
        "notes": result.notes,
        "standardization": result.standardization,
        "diagnostics": {
            "passed": diag.passed,
            "divergences": diag.divergences,
            "worst_r_hat": diag.worst_r_hat,
            "lowest_ess_bulk": diag.lowest_ess_bulk,
        },
    }


@functools.cache  # a process fitting many data sets (simulate, K-fold) looks each up once
def _version(lib: str) -> str | None:
    try:
        return version(lib)
    except Exception:
        return None
