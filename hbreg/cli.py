"""The `hbreg` command line: one thin function per command, no modelling logic.

Heavy libraries (PyMC, ArviZ) are imported inside the commands so `hbreg --help`
and `hbreg validate` answer at once. User errors become one line on stderr and their
exit code (README, "Exit codes"); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import gc
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hbreg.errors import HbregError


class _App(typer.Typer):
    """The Typer app, leaving the process without tearing the interpreter down.

    After a fit, Python's shutdown frees millions of PyMC/PyTensor objects and numba's
    LLVM modules one by one: 2.3-2.9 s of a 10 s `hbreg fit` (radon, loaded 2-core machine,
    measured from the last atexit handler to the exit). Every file is written and closed
    and the run directory renamed before a command returns, so the console script flushes
    its streams and logs and exits at once with the command's code. Only the console
    script goes through here; CliRunner and other callers invoke the click command.
    """

    def __call__(self, *args, **kwargs):
        _state["exits_after_command"] = True
        try:
            super().__call__(*args, **kwargs)
        except SystemExit as exc:
            _exit_now(exc.code)
        _exit_now(0)


def _without_dask_arrays() -> None:
    """In the console process of a command that makes no Dask array, xarray imports no Dask.

    An installed Dask costs fit, compare and predict 0.27 s each (`hbreg._imports`);
    other callers of the commands (tests, CliRunner) keep xarray as it is.
    """
    if _state.get("exits_after_command"):
        from hbreg._imports import xarray_without_dask

        xarray_without_dask()


def _exit_now(code) -> None:
    import logging
    import os

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


app = _App(
    help="Hierarchical Bayesian regression experiments: fit, compare, simulate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set sampler.draws=500."),
]


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
):
    """Hierarchical Bayesian regression experiments: fit, compare, simulate."""
    _state["debug"] = debug


def _user_errors(command):
    """Turn every exception into one line on stderr and an exit code; tracebacks only with --debug.

    HbregErrors exit with their code (2 bad input, 3 sampling or output); Ctrl-C and
    SIGTERM (KeyboardInterrupt, hbreg.runs.Interrupted) exit 130; an OSError or MemoryError
    that escaped the library exits 3; anything else is a bug in hbreg: one line saying so
    and how to see the traceback, exit 1. The message names the run directory kept as
    failed/interrupted, if the command made one.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import os

        import click
        from rich.markup import escape

        from hbreg.signals import last_abandoned

        before = last_abandoned()

        def fail(message: str, code: int):
            if _state["debug"]:
                traceback.print_exc()
            kept = last_abandoned()
            if kept is not None and kept != before and str(kept) not in message:
                message += f" (what was written is kept in '{kept}')"
            label = "interrupted" if code == 130 else "error"
            err_console.print(
                f"[bold red]{label}:[/] {escape(message)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code) from None

        hook = sys.unraisablehook
        if not _state["debug"]:  # e.g. h5py's "Exception ignored in __dealloc__" tracebacks
            sys.unraisablehook = lambda unraisable: None
        try:
            return command(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except HbregError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, or hbreg.runs.Interrupted
            text = str(exc)
            fail(text if text.startswith("stopped") else f"stopped by {text or 'Ctrl-C'}", 130)
        except MemoryError:
            fail("out of memory; use fewer draws or chains, or less data", 3)
        except OSError as exc:
            where = f" '{exc.filename}'" if exc.filename else ""
            reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else "")
            reason = reason or str(exc).strip().splitlines()[0][:200]
            fail(f"cannot read or write{where}: {reason}", 3)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no raw traceback
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            fail(
                f"internal error, this is a bug in hbreg: {type(exc).__name__}: {detail}. "
                "Rerun with --debug to see the traceback and please report it",
                1,
            )
        finally:
            sys.unraisablehook = hook

    return wrapper


@app.command()
@_user_errors
def fit(
    config: Annotated[Path, typer.Argument(help="YAML experiment file.")],
    overrides: SetOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 4 when diagnostics miss their thresholds.")
    ] = False,
    prior_only: Annotated[
        bool,
        typer.Option(
            "--prior-only", help="Draw from the priors instead (sets sampler.prior_only)."
        ),
    ] = False,
):
    """Fit an experiment and write its run directory."""
    from hbreg.config import load_config
    from hbreg.signals import handle_sigterm

    handle_sigterm()
    overrides = [*(overrides or []), *(["sampler.prior_only=true"] if prior_only else [])]
    loaded = load_config(config, overrides)  # a typo is refused before the heavy imports
    from hbreg.fit import fit as run_fit
    from hbreg.fit import prepare
    from hbreg.report import fit_progress, print_design_checks, print_fit

    cfg, data = prepare(loaded, warn=_warn)
    print_design_checks(console, data.design_checks)
    if _state.get("exits_after_command"):
        # The process ends after the summary: a full collection over the model's objects,
        # once the fit re-enabled the collector, would only delay the exit (0.15 s on radon).
        gc.disable()
    _without_dask_arrays()
    with fit_progress(console, cfg) as progress:
        result = run_fit(cfg, command=shlex.join(sys.argv), progress=progress, prepared=data)
    print_fit(console, result)
    if strict and result.diagnostics is not None and not result.diagnostics.passed:
        raise typer.Exit(4)


@app.command()
@_user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="YAML experiment file.")],
    overrides: SetOption = None,
):
    """Check a config and its data without sampling."""
    from rich.markup import escape

    from hbreg.config import load_config
    from hbreg.fit import prepare
    from hbreg.models import resolve_parameterization
    from hbreg.models.default_priors import prior_table
    from hbreg.report import print_design_checks
    from hbreg.resources import estimate_resources

    stated = load_config(config, overrides or [])
    cfg, data = prepare(stated)
    groups = f", {data.n_groups} groups of '{data.group_dim}'" if data.group_dim else ""
    if data.factors:
        groups = ", " + ", ".join(f"{len(f.labels)} groups of '{f.name}'" for f in data.factors)
    console.print(
        f"[green]ok[/] {cfg.name}: {len(data.y)} rows{groups}; {cfg.model.pooling} model of "
        f"'{data.outcome}' on {', '.join(data.coef_names)}"
    )
    estimate = estimate_resources(cfg, data, parameterization=resolve_parameterization(cfg))
    console.print(f"estimate: {estimate.describe()}", highlight=False, soft_wrap=True)
    rows = prior_table(cfg, stated)
    width = [max(len(row[i]) for row in rows) for i in (0, 1)]
    console.print("priors:", highlight=False)
    for name, prior, source in rows:
        line = f"  {name:<{width[0]}}  {prior:<{width[1]}}  ({source})"
        console.print(escape(line), highlight=False, soft_wrap=True)
    for note in data.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    print_design_checks(console, data.design_checks)
    for warning in data.warnings:
        _warn(warning)


def _warn(message: str) -> None:
    """A warning before the work starts, on stderr so that piped results stay clean."""
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@app.command()
def datasets():
    """List the built-in datasets."""
    from hbreg.data import BUILTIN_DATASETS

    for name, builtin in BUILTIN_DATASETS.items():
        console.print(f"[bold]{name:<12}[/] {builtin.description}", highlight=False)


@app.command()
@_user_errors
def runs(
    root: Annotated[Path, typer.Argument(help="Output root.")] = Path("outputs"),
    clean: Annotated[
        bool,
        typer.Option("--clean", help="Remove hidden directories left by killed processes."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --clean: do not ask.")] = False,
):
    """List runs, newest first: name, time, status, pooling, divergences, worst r_hat."""
    from hbreg.report import print_runs
    from hbreg.runs import leftovers, list_runs, remove_leftovers

    if not clean:
        print_runs(console, list_runs(root), leftovers(root))
        return
    abandoned = [info for info in leftovers(root) if info.status == "abandoned"]
    if not abandoned:
        console.print(f"nothing to clean in '{root}'", highlight=False)
        return
    for info in abandoned:
        console.print(f"abandoned: {info.path}", highlight=False, soft_wrap=True)
    if not yes and not typer.confirm(f"Remove these {len(abandoned)} directories?"):
        console.print("nothing removed", highlight=False)
        return
    removed = remove_leftovers(root)
    console.print(f"removed {len(removed)} abandoned directories", highlight=False)


@app.command()
@_user_errors
def compare(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Run directories to compare; with --latest, the output root."),
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Compare the newest complete run of each name.")
    ] = False,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Only runs with this experiment name.")
    ] = None,
    cv: Annotated[
        str,
        typer.Option(
            "--cv",
            help="loo: PSIS-LOO, integrated over the group coefficients for Gaussian runs; "
            "conditional: PSIS-LOO given the drawn group coefficients; group: "
            "leave-one-group-out (a new group).",
        ),
    ] = "loo",
    kfold: Annotated[
        int | None,
        typer.Option("--kfold", min=2, help="Score by K exact refits instead of PSIS."),
    ] = None,
    by_group: Annotated[
        bool, typer.Option("--by-group", help="With --kfold: folds of whole groups.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the K-fold folds and refits.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="K-fold refits at once (local process pool)."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="Where K-fold refits run: local or dask.")
    ] = "local",
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address, tcp://HOST:PORT.")
    ] = None,
):
    """Rank runs by cross-validation (PSIS-LOO, LOGO or K-fold) and draw the shrinkage."""
    from hbreg.compare import ComparisonError, compare_runs, render_comparison, select_runs

    _without_dask_arrays()
    if cv not in ("loo", "conditional", "group"):
        raise ComparisonError(f"--cv: '{cv}' is not a kind of CV; choose loo, conditional or group")
    runs, root = select_runs(paths or [], latest=latest, names=name or [])
    done = []

    def on_refit(fit: dict) -> None:
        done.append(fit)
        console.print(
            f"refit {len(done)}/{kfold * len(runs)}: {fit['label']} without fold {fit['fold']} "
            f"({fit['seconds']:.1f} s, {fit['divergences']} divergences)",
            highlight=False,
        )

    result = compare_runs(
        runs,
        root=root,
        cv=cv,
        kfold=kfold,
        by_group=by_group,
        seed=seed,
        workers=workers,
        executor=executor,
        scheduler=scheduler,
        on_refit=on_refit if kfold else None,
    )
    render_comparison(console, result)


@app.command()
@_user_errors
def simulate(
    config: Annotated[Path, typer.Argument(help="YAML simulation file.")],
    overrides: SetOption = None,
    replicates: Annotated[
        int | None, typer.Option("--replicates", "-n", min=1, help="Independent datasets to fit.")
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="Where replicates run: local or dask.")
    ] = "local",
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address, tcp://HOST:PORT.")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 4 when any fit misses its diagnostic thresholds or fails."
        ),
    ] = False,
):
    """Fit data simulated from known parameters and report what was recovered."""
    from hbreg.signals import handle_sigterm
    from hbreg.simulate import load_simulation, render_recovery, run_simulation

    handle_sigterm()
    spec = load_simulation(config, overrides or [], replicates=replicates)
    result = run_simulation(spec, executor=executor, scheduler=scheduler, console=console)
    render_recovery(console, result)
    if strict and (result.diagnostic_failures or result.failures):
        raise typer.Exit(4)


@app.command()
@_user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A complete fit run directory.")],
    data: Annotated[
        Path, typer.Option("--data", help="New rows: .csv, .tsv or .parquet with the predictors.")
    ],
    new_groups: Annotated[
        str,
        typer.Option(
            "--new-groups",
            help="Groups the fit never saw: 'sample' draws them from the population, "
            "'error' refuses them.",
        ),
    ] = "sample",
    population: Annotated[
        bool, typer.Option("--population", help="Ignore the groups; use the population means.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the draws (default: the fit's seed).")
    ] = None,
    x: Annotated[
        str | None, typer.Option("--x", help="Draw the predictions against this column.")
    ] = None,
):
    """Predict new rows from a fit; write a predictions directory under the run."""
    from hbreg.predict import predict as run_predict
    from hbreg.predict.render import print_predictions
    from hbreg.signals import handle_sigterm

    handle_sigterm()
    _without_dask_arrays()
    result = run_predict(
        run_dir, data, new_groups=new_groups, population=population, seed=seed, x=x
    )
    print_predictions(console, result)
