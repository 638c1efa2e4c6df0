"""The `hbreg` command line: one thin function per command, no modelling logic.

Heavy libraries (PyMC, ArviZ) are imported inside the commands so `hbreg --help`
and `hbreg validate` answer at once. User errors become one line on stderr and the
exit code of DESIGN.md; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hbreg.errors import HbregError

app = typer.Typer(
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
    """Print HbregErrors as one line and exit with their code; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except HbregError as exc:
            if _state["debug"]:
                traceback.print_exc()
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@_user_errors
def fit(
    config: Annotated[Path, typer.Argument(help="YAML experiment file.")],
    overrides: SetOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 4 when diagnostics miss their thresholds.")
    ] = False,
):
    """Fit an experiment and write its run directory."""
    from hbreg.config import load_config
    from hbreg.fit import fit as run_fit
    from hbreg.fit import prepare
    from hbreg.report import fit_progress, print_fit

    from hbreg.runs import handle_sigterm

    handle_sigterm()
    cfg, data = prepare(load_config(config, overrides or []))
    with fit_progress(console, cfg) as progress:
        result = run_fit(cfg, command=shlex.join(sys.argv), progress=progress, prepared=data)
    print_fit(console, result)
    if strict and not result.diagnostics.passed:
        raise typer.Exit(4)


@app.command()
@_user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="YAML experiment file.")],
    overrides: SetOption = None,
):
    """Check a config and its data without sampling."""
    from hbreg.config import load_config
    from hbreg.data import load_model_data

    cfg = load_config(config, overrides or [])
    data = load_model_data(cfg)
    groups = f", {data.n_groups} groups of '{data.group_dim}'" if data.group_dim else ""
    console.print(
        f"[green]ok[/] {cfg.name}: {len(data.y)} rows{groups}; {cfg.model.pooling} model of "
        f"'{data.outcome}' on {', '.join(data.coef_names)}"
    )
    for note in data.notes:
        console.print(f"note: {note}")


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
):
    """List runs, newest first: name, time, status, pooling, divergences, worst r_hat."""
    from hbreg.report import print_runs
    from hbreg.runs import list_runs

    print_runs(console, list_runs(root))


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
):
    """Rank runs by PSIS-LOO and draw the shrinkage of group estimates."""
    from hbreg.compare import compare_runs, render_comparison, select_runs

    runs, root = select_runs(paths or [], latest=latest, names=name or [])
    result = compare_runs(runs, root=root)
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
):
    """Fit data simulated from known parameters and report what was recovered."""
    from hbreg.runs import handle_sigterm
    from hbreg.simulate import load_simulation, render_recovery, run_simulation

    handle_sigterm()
    spec = load_simulation(config, overrides or [], replicates=replicates)
    result = run_simulation(spec, executor=executor, scheduler=scheduler, console=console)
    render_recovery(console, result)
