"""What the terminal shows: the sampling progress bar and Rich tables of results."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hbreg.terminal import print_table

__all__ = ["fit_progress", "print_design_checks", "print_fit", "print_runs"]


@contextmanager
def fit_progress(console: Console, config):
    """A progress bar over all chains' draws; yields the callback the sampler calls.

    The bar appears with the first draws, so nothing is drawn for a run that fails
    before sampling starts.
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>6.0f}/{task.total:.0f} draws"),
        TextColumn("[red]{task.fields[divergences]} divergences"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    total = config.sampler.chains * (config.sampler.draws + config.sampler.tune)
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task(f"Sampling {config.name}", total=total, divergences=0)

    def update(done: int, _total: int, divergences: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, divergences=divergences)

    try:
        yield update
        if progress.live.is_started:
            progress.update(task, completed=total)
    finally:
        progress.stop()


def print_fit(console: Console, result) -> None:
    """Key parameters, the diagnostics verdict, notes, and the run directory last."""
    summary = result.summary
    rows = []
    for name in result.key_parameters:
        row = summary.loc[name]
        rows.append(
            [
                name,
                f"{row['mean']:.3f}",
                f"{row['sd']:.3f}",
                f"{row.iloc[2]:.3f}",
                f"{row.iloc[3]:.3f}",
                f"{row['ess_bulk']:.0f}",
                f"{row['r_hat']:.3f}",
            ]
        )
    print_table(
        console,
        ["parameter", "mean", "sd", "5%", "95%", "ess_bulk", "r_hat"],
        rows,
        title=(
            "Prior (prior-only run: draws from the priors, no data)"
            if result.prior_check is not None
            else f"Posterior ({result.parameterization}, {result.backend})"
        ),
    )
    if result.prior_check is not None:
        _print_prior_check(console, result.prior_check)
    else:
        _print_verdict(console, result.diagnostics)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    print_design_checks(console, result.design_checks, only_warnings=True)
    t = result.timings
    console.print("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()), highlight=False)
    console.print(f"run directory: [bold]{result.path}[/]", highlight=False, soft_wrap=True)


def _print_verdict(console: Console, diag) -> None:
    verdict = "[green]pass[/]" if diag.passed else "[red]fail[/]"
    console.print(
        f"Diagnostics {verdict}: {diag.divergences} divergences, worst r_hat "
        f"{diag.worst_r_hat:.3f}, lowest bulk ESS {diag.lowest_ess_bulk:.0f} "
        f"({diag.lowest_ess_bulk_parameter})",
        highlight=False,
    )
    for failure in diag.failures:
        console.print(f"  [red]-[/] {failure}", highlight=False)


def _print_prior_check(console: Console, check) -> None:
    low, high = check.observed_range
    q05, q95 = check.predictive_interval
    console.print(
        f"Prior predictive: middle 90% from {q05:.4g} to {q95:.4g}, "
        f"{check.width_ratio:.3g} times the observed range ({low:.4g} to {high:.4g}); "
        f"{100 * check.share_outside:.1f}% of it outside the observed range",
        highlight=False,
    )
    if check.too_wide:
        console.print(
            "[bold yellow]warning:[/] the priors allow outcomes far beyond the data; see "
            "prior_predictive.md",
            highlight=False,
        )


def print_design_checks(console: Console, checks, *, only_warnings: bool = False) -> None:
    """Design warnings (yellow) and notes, one paragraph each (see `hbreg.data.checks`)."""
    from rich.markup import escape

    for check in checks or []:
        if check.level == "warning":
            console.print(f"[bold yellow]warning:[/] {escape(check.message)}", highlight=False)
        elif not only_warnings:
            console.print(f"note: {escape(check.message)}", highlight=False)


def print_runs(console: Console, runs, leftovers=()) -> None:
    """One line per run, newest first, then hidden leftovers of killed processes."""
    rows = []
    for run in runs:
        m = run.manifest
        diag = m.get("diagnostics", {})
        r_hat = diag.get("worst_r_hat")
        rows.append(
            [
                run.path.name,
                run.name,
                m.get("started", "?"),
                run.status,
                m.get("pooling", "-"),
                str(diag.get("divergences", "-")),
                f"{r_hat:.3f}" if r_hat is not None else "-",
            ]
        )
    if rows:
        print_table(
            console,
            ["run", "name", "started", "status", "pooling", "divergences", "worst r_hat"],
            rows,
            justify=["left"] * 5 + ["right"] * 2,
        )
    else:
        console.print("no runs")
    if leftovers:
        print_table(
            console,
            ["leftover", "name", "started", "status"],
            [
                [info.path.name, info.name, info.manifest.get("started", "?"), info.status]
                for info in leftovers
            ],
            title="Hidden temporary directories (a process killed mid-run leaves one)",
            justify=["left"] * 4,
        )
        if any(info.status == "abandoned" for info in leftovers):
            console.print("remove the abandoned ones with: hbreg runs --clean", highlight=False)
