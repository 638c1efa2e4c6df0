"""Running replicates: the worker, the local process pool, the Dask executor, the run.

Workers never write into the simulation directory: each fits into a private
temporary folder and sends back the data, the truth, the recovery numbers and its fit
run directories as tar archives; the client writes them. The simulation directory is
therefore created atomically like every run (one `RunDirectory` context), and a Dask
cluster needs no shared file system. A replicate's numbers depend only on its seed,
never on the executor that ran it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hbreg.errors import SamplingError
from hbreg.executors import EXECUTORS, connect, dask_map, local_map, one_line
from hbreg.runs import RunDirectory
from hbreg.simulate.config import SimulationConfig, dump_simulation, fit_config
from hbreg.simulate.generate import generate_data, replicate_seeds, stream_seeds
from hbreg.simulate.recovery import SimulationResult, assemble_results, recover, truth_for

__all__ = ["EXECUTORS", "ReplicateOutcome", "run_simulation"]


@dataclass
class ReplicateOutcome:
    """What a worker sends back for one replicate; plain data, picklable."""

    replicate: int
    seed: int
    truth: dict | None = None
    data: bytes | None = None  # parquet
    rows: list[dict] = field(default_factory=list)  # recovery rows
    fits: dict[str, bytes] = field(default_factory=dict)  # experiment -> tar of its run dir
    fit_dirs: dict[str, str] = field(default_factory=dict)  # experiment -> run dir name
    errors: list[dict] = field(default_factory=list)  # {experiment, error}
    # experiment -> {passed, failures, divergences}: the fit's own diagnostics verdict
    diagnostics: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0


def _run_replicate(task: dict, on_fit=None) -> ReplicateOutcome:
    """Generate, fit every experiment and measure recovery; never raises for one bad fit."""
    start = time.perf_counter()
    spec = SimulationConfig.model_validate(task["spec"])
    outcome = ReplicateOutcome(replicate=task["replicate"], seed=task["seed"])
    try:
        sim = generate_data(spec, seed=task["seed"])
        outcome.truth = sim.to_dict()
        buffer = io.BytesIO()
        sim.frame.to_parquet(buffer, index=False)
        outcome.data = buffer.getvalue()
    except Exception as exc:
        outcome.errors.append({"experiment": None, "error": one_line(exc)})
        outcome.seconds = time.perf_counter() - start
        return outcome
    _, fit_seeds = stream_seeds(task["seed"], len(spec.experiments))
    with tempfile.TemporaryDirectory(prefix="hbreg-sim-") as work:
        data_file = Path(work) / "data.parquet"
        data_file.write_bytes(outcome.data)
        for exp, fit_seed in zip(spec.experiments, fit_seeds, strict=True):
            try:
                rows, run_path, verdict = _fit_experiment(
                    spec, exp, sim, task, fit_seed, Path(work), data_file
                )
                outcome.rows += rows
                outcome.diagnostics[exp.name] = verdict
            except Exception as exc:
                outcome.errors.append({"experiment": exp.name, "error": one_line(exc)})
                run_path = next(Path(work, "fits").glob(f"*_{exp.name}*"), None)
            if run_path is not None:
                outcome.fits[exp.name] = _archive(run_path)
                outcome.fit_dirs[exp.name] = run_path.name
            if on_fit is not None:
                on_fit()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _fit_experiment(spec, exp, sim, task, fit_seed, work: Path, data_file: Path):
    """Fit one experiment into `work/fits`; its recovery rows, run directory and verdict.

    Every recovery row carries the fit's diagnostics verdict (`diagnostics_passed`), so
    a fit that missed its thresholds is never read as a good recovery.
    """
    from hbreg.data import load_model_data
    from hbreg.fit import fit

    config = fit_config(
        spec,
        exp,
        data_path=task["data_path"],
        root=task["fits_root"],
        seed=fit_seed,
        plots=task["plots"],
        pointwise=task["pointwise"],
    )
    # the recorded paths are relative to the simulation directory (refit from there);
    # the data are read from the worker's copy
    local = config.model_copy(deep=True)
    local.data.path = str(data_file)
    data = load_model_data(local)
    with _no_dask_scheduler():
        result = fit(config, prepared=data, root=work / "fits", command=task["command"])
    truth = truth_for(sim, config)
    rows = recover(result.posterior, truth, group_dim=data.group_dim)
    diag = result.diagnostics
    for row in rows:
        row.update(
            experiment=exp.name,
            pooling=exp.pooling,
            replicate=task["replicate"],
            seed=task["seed"],
            diagnostics_passed=diag.passed,
        )
    verdict = {
        "passed": diag.passed,
        "failures": list(diag.failures),
        "divergences": int(diag.divergences),
    }
    return rows, result.path, verdict


def _no_dask_scheduler():
    """No Dask scheduler while fitting, so xarray takes a local lock to write netCDF.

    Inside a Dask worker xarray locks the target across the cluster, which fails for
    the in-memory file that `fit` writes. A process that has not imported Dask (a local
    pool worker) has no scheduler to turn off, and is not made to import it.
    """
    dask = sys.modules.get("dask")
    if dask is None:
        return contextlib.nullcontext()
    return dask.config.set(scheduler="synchronous")


def _archive(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- executors


def _local_outcomes(tasks: list[dict], workers: int, on_fit):
    """In-process (with per-fit progress) when one worker is asked for, else a process pool."""
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            yield _run_replicate(task, on_fit=on_fit)
        return
    yield from local_map(_run_replicate, tasks, workers=workers, on_lost=_lost)


def _dask_outcomes(client, tasks: list[dict]):
    keys = [f"hbreg-replicate-{t['replicate']}-{t['seed']}-{os.getpid()}" for t in tasks]
    try:
        yield from dask_map(client, _run_replicate, tasks, keys=keys, on_lost=_lost)
    finally:
        client.close()


def _lost(task: dict, exc: BaseException) -> ReplicateOutcome:
    return ReplicateOutcome(
        replicate=task["replicate"],
        seed=task["seed"],
        errors=[{"experiment": None, "error": f"worker lost: {one_line(exc)}"}],
    )


def run_simulation(
    spec: SimulationConfig,
    *,
    executor: str = "local",
    scheduler: str | None = None,
    console=None,
    command: str | None = None,
) -> SimulationResult:
    """Simulate, fit and measure recovery for every replicate; write the simulation directory.

    Raises ConfigError (exit 2) for a bad executor choice before anything is written,
    and SamplingError (exit 3) when every replicate failed.
    """
    import shlex

    from rich.console import Console

    console = console or Console()
    client = connect(executor, scheduler)
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": int(np.random.SeedSequence().entropy % 2**32)})
    command = command or shlex.join(["hbreg", *sys.argv[1:]])
    start = time.perf_counter()
    single = spec.replicates == 1
    plots, pointwise = (
        setting if isinstance(setting, bool) else single
        for setting in (spec.output.plots, spec.output.pointwise)
    )
    seeds = replicate_seeds(spec.seed, spec.replicates)
    tasks = [
        {
            "spec": spec.model_dump(mode="json"),
            "replicate": i,
            "seed": s,
            "plots": plots,
            "pointwise": pointwise,
            "command": f"{command} (replicate {i}, seed {s})",
            "data_path": "data.parquet" if single else f"data/rep_{i:03d}.parquet",
            "fits_root": "fits" if single else f"fits/rep_{i:03d}",
        }
        for i, s in enumerate(seeds)
    ]
    manifest = {
        "command": command,
        "seed": spec.seed,
        "replicates": spec.replicates,
        "executor": executor,
        "scheduler": scheduler,
        "experiments": [e.name for e in spec.experiments],
    }
    closing = contextlib.closing(client) if client is not None else contextlib.nullcontext()
    workers = spec.workers or os.cpu_count() or 1
    in_process = executor != "dask" and (workers == 1 or len(tasks) == 1)
    with (
        closing,
        RunDirectory(spec.output.root, spec.name, kind="simulate", **manifest) as run,
        _figure_workers(in_process) as figures,
    ):
        run.write_text("config.yaml", dump_simulation(spec))
        outcomes = _collect(spec, tasks, run, executor, client, console, workers)
        seconds = time.perf_counter() - start
        result = assemble_results(spec, outcomes, run, seconds=seconds, figures=figures)
        run.manifest.update(
            failures=result.failures,
            diagnostic_failures=result.diagnostic_failures,
            seconds=round(time.perf_counter() - start, 3),
        )
        if result.n_ok == 0:
            first = result.failures[0]
            raise SamplingError(
                f"every replicate failed; replicate {first['replicate']} (seed "
                f"{first['seed']}): {first['error']}"
            )
    result.path = run.path
    return result


def _figure_workers(in_process: bool):
    """The process drawing the recovery figures, warmed up while the replicates run.

    Not for replicates fitted in this process: it would compete with them for the core.
    """
    if in_process:
        return contextlib.nullcontext()
    from hbreg.plots.worker import PlotWorkers

    return PlotWorkers(["recovery", "ranks"])


def _collect(
    spec, tasks, run: RunDirectory, executor, client, console, workers: int
) -> list[ReplicateOutcome]:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    n_exp = len(spec.experiments)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("fits"),
        TextColumn("[red]{task.fields[failed]} failed, {task.fields[flagged]} failed diagnostics"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    outcomes = []
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(
            f"Simulating {spec.name}", total=len(tasks) * n_exp, failed=0, flagged=0
        )
        fits_done = {"n": 0}

        def on_fit():
            fits_done["n"] += 1
            progress.advance(bar)

        if executor == "dask":
            stream = _dask_outcomes(client, tasks)
        else:
            stream = _local_outcomes(tasks, workers, on_fit)
        failed = flagged = 0
        for outcome in stream:
            flagged += sum(not d["passed"] for d in outcome.diagnostics.values())
            _store(run, outcome, single=spec.replicates == 1)
            outcomes.append(outcome)
            for err in outcome.errors:
                failed += 1
                what = f"experiment {err['experiment']}" if err["experiment"] else "replicate"
                console.print(
                    f"[red]replicate {outcome.replicate} (seed {outcome.seed}) failed[/]"
                    f" ({escape(what)}): {escape(err['error'])}",
                    highlight=False,
                )
            done = n_exp * len(outcomes)
            progress.update(
                bar, completed=max(done, fits_done["n"]), failed=failed, flagged=flagged
            )
    return sorted(outcomes, key=lambda o: o.replicate)


def _store(run: RunDirectory, outcome: ReplicateOutcome, *, single: bool) -> None:
    """Write a replicate's data and extract its fit run directories into the simulation."""
    from hbreg.errors import OutputError

    i = outcome.replicate
    data_rel = "data.parquet" if single else f"data/rep_{i:03d}.parquet"
    fits_dir = run.path / ("fits" if single else f"fits/rep_{i:03d}")
    if outcome.data is not None:
        run.write_bytes(data_rel, outcome.data)
    try:
        for archive in outcome.fits.values():
            fits_dir.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
                tar.extractall(fits_dir, filter="data")
    except OSError as exc:
        raise OutputError(f"cannot write replicate {i} into '{run.path}': {exc}") from None
    outcome.data = None
    outcome.fits = {}
