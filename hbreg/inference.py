"""Sampling backends behind one call: compile, sample, and return tidy xarray groups.

Each backend's sample statistics are renamed to ArviZ's vocabulary (`diverging`,
`energy`, `tree_depth`, `reached_max_treedepth`, ...) so diagnostics and plots never
need to know which sampler ran.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hbreg._imports import defer_import
from hbreg.config import SamplerConfig
from hbreg.errors import ConfigError, SamplingError

__all__ = ["SampleResult", "resolve_backend", "sample"]

_NUTPIE_STATS = {
    "diverging": "diverging",
    "energy": "energy",
    "depth": "tree_depth",
    "maxdepth_reached": "reached_max_treedepth",
    "step_size": "step_size",
    "mean_tree_accept": "acceptance_rate",
    "n_steps": "n_steps",
    "logp": "lp",
}
_ARVIZ_STATS = set(_NUTPIE_STATS.values())

ProgressCallback = Callable[[int, int, int], None]  # (finished draws, total draws, divergences)


@dataclass
class SampleResult:
    """Posterior and sample statistics as xarray Datasets, plus where the time went."""

    posterior: object
    sample_stats: object
    backend: str
    timings: dict[str, float] = field(default_factory=dict)


def resolve_backend(name: str) -> str:
    """`auto` -> nutpie when installed, else PyMC's own NUTS; refuse backends not installed."""
    if name == "auto":
        return "nutpie" if importlib.util.find_spec("nutpie") else "pymc"
    needs = {"nutpie": ["nutpie"], "numpyro": ["numpyro", "jax"], "pymc": []}[name]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        extra = "pip install 'hbreg[jax]'" if name == "numpyro" else f"pip install {name}"
        raise ConfigError(
            f"sampler.backend: '{name}' needs {', '.join(missing)}, which is not installed; "
            f"run `{extra}` or use sampler.backend: auto"
        )
    return name


def sample(model, settings: SamplerConfig, *, seed: int, progress: ProgressCallback | None = None):
    """Run NUTS on `model` with the configured backend; raise SamplingError on failure."""
    from hbreg.signals import interrupted

    backend = resolve_backend(settings.backend)
    cores = settings.cores or min(settings.chains, os.cpu_count() or 1)
    try:
        if backend == "nutpie":
            result = _sample_nutpie(model, settings, seed=seed, cores=cores, progress=progress)
        else:
            result = _sample_pymc(model, settings, seed=seed, cores=cores, backend=backend)
    except (KeyboardInterrupt, SystemExit, SamplingError):
        raise
    except BaseException as exc:  # noqa: BLE001 - the samplers raise many unrelated types,
        # and a panic in nutpie's Rust code arrives as pyo3's PanicException, a BaseException
        raise SamplingError(f"sampling with {backend} failed: {_one_line(exc)}") from exc
    # nutpie and PyMC catch Ctrl-C and return the draws made so far: never keep those.
    if interrupted():
        raise KeyboardInterrupt(interrupted())
    return result


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, at most `limit` characters (a panic's is long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sample_nutpie(model, settings, *, seed, cores, progress):
    defer_import("arviz")  # nutpie imports it for a conversion hbreg does not use
    import nutpie
    import pytensor

    from hbreg.compile_cache import compile_nutpie

    start = time.perf_counter()
    # Without fastmath, code loaded from the numba cache and freshly compiled code round
    # alike, so the same seed gives the same draws on a cold and on a warm cache.
    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = compile_nutpie(model)
    compiled_at = time.perf_counter()
    callback = None
    if progress is not None:
        total = settings.chains * (settings.draws + settings.tune)

        def callback(chains):
            done = sum(c.finished_draws for c in chains)
            progress(done, total, sum(c.divergences for c in chains))

    trace = nutpie.sample(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=cores,
        seed=seed,
        target_accept=settings.target_accept,
        maxdepth=settings.max_tree_depth,
        save_warmup=False,
        progress_bar=False,
        progress_callback=callback,
        progress_rate=200,
        return_raw_trace=True,
    )
    posterior, stats = _nutpie_datasets(trace, compiled)
    done = time.perf_counter()
    return SampleResult(
        posterior=posterior,
        sample_stats=stats,
        backend="nutpie",
        timings={"compile": compiled_at - start, "sample": done - compiled_at},
    )


def _nutpie_datasets(trace, compiled):
    """The Arrow trace of nutpie as posterior and sample_stats Datasets, without ArviZ.

    The same arrays, dims and coords as nutpie's own conversion (`arviz.from_dict`, which
    would import all of ArviZ: 2.4 s of a 20 s radon fit on the loaded 2-core machine,
    0.9 s of CPU); a test compares the two.
    """
    import numpy as np
    import xarray as xr
    from nutpie.sample import _add_arrow_data

    draw_batches, stat_batches = trace.get_arrow_trace()
    n_chains = len(draw_batches)
    tuning = [int(stat.column("tuning").to_numpy().sum()) for stat in stat_batches]
    n_draws = max(d.num_rows - t for d, t in zip(draw_batches, tuning, strict=True))
    values: dict = {}
    stats: dict = {}
    dims: dict = {}
    wanted_stats = [name for name in _NUTPIE_STATS if name in stat_batches[0].column_names]
    for chain, (draws, stat, tuned) in enumerate(
        zip(draw_batches, stat_batches, tuning, strict=True)
    ):
        kept = draws.num_rows - tuned
        _add_arrow_data(values, n_draws, draws.slice(tuned, kept), chain, n_chains, dims, [])
        stat = stat.select(wanted_stats).slice(tuned, kept)
        _add_arrow_data(stats, n_draws, stat, chain, n_chains, dims, [])
    renamed = set(compiled.reparameterized_names or [])
    coords = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    coords.update({k: np.asarray(v) for k, v in (compiled.coords or {}).items()})

    def dataset(arrays: dict) -> xr.Dataset:
        variables = {}
        for name, array in arrays.items():
            if name in renamed:
                continue
            extra = list(dims.get(name) or [])
            extra += [f"{name}_dim_{i}" for i in range(len(extra), array.ndim - 2)]
            variables[name] = (("chain", "draw", *extra), array)
        used = {d for v in variables.values() for d in v[0]}
        return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used})

    sample_stats = dataset(stats).rename({k: v for k, v in _NUTPIE_STATS.items() if k in stats})
    return dataset(values), sample_stats


def _sample_pymc(model, settings, *, seed, cores, backend):
    import pymc as pm

    start = time.perf_counter()
    with model:
        trace = pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=cores,
            random_seed=seed,
            target_accept=settings.target_accept,
            nuts_sampler=backend,
            progressbar=True,
            compute_convergence_checks=False,
            **({"max_treedepth": settings.max_tree_depth} if backend == "pymc" else {}),
        )
    stats = trace.sample_stats.to_dataset()
    stats = stats[[k for k in stats.data_vars if k in _ARVIZ_STATS]]
    # PyMC compiles inside pm.sample; its time is reported as part of sampling.
    return SampleResult(
        posterior=trace.posterior.to_dataset(),
        sample_stats=stats,
        backend=backend,
        timings={"compile": 0.0, "sample": time.perf_counter() - start},
    )
