"""Recovery in words: the terminal tables and `recovery.md`.

One replicate gets a table per experiment (truth, posterior mean, 90% interval, hit
or miss); several get the coverage table. Both read a `SimulationResult` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from hbreg.simulate.recovery import SimulationResult

__all__ = ["recovery_lines", "recovery_markdown", "render_recovery"]

_MAX_GROUP_ROWS = 12  # group values shown one by one up to this many per fit, else summarized


def _recovery_cells(r) -> list[str]:
    """parameter, truth, mean, 90% interval, inside?, error: one table row as text."""
    interval = f"[{_fmt(r['lower_90'])}, {_fmt(r['upper_90'])}]"
    inside = "yes" if r["inside_90"] else "NO"
    return [r["parameter"], _fmt(r["truth"]), _fmt(r["mean"]), interval, inside, _fmt(r["error"])]


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def recovery_lines(recovery: pd.DataFrame, experiment: str) -> tuple[list[list[str]], str]:
    """Rows (parameter, truth, mean, 90% interval, inside, error) of one single-replicate fit.

    Group values are listed one by one when there are few, else one line per coefficient.
    """
    part = recovery[recovery["experiment"] == experiment]
    rows = []
    for _, r in part[part["level"] == "population"].iterrows():
        rows.append(_recovery_cells(r))
    groups = part[part["level"] == "group"]
    if len(groups) <= _MAX_GROUP_ROWS:
        for _, r in groups.iterrows():
            rows.append(_recovery_cells(r))
    else:
        coef = groups["parameter"].str.replace(r"\[.*\]$", "", regex=True)
        for name, g in groups.groupby(coef, sort=False):
            rows.append(
                [
                    f"{name}[{len(g)} groups]",
                    "-",
                    "-",
                    "-",
                    f"{int(g['inside_90'].sum())}/{len(g)}",
                    f"rmse {np.sqrt(np.mean(np.square(g['error']))):.3f}",
                ]
            )
    inside = int(part["inside_90"].sum())
    return rows, f"{inside} of {len(part)} true values inside their 90% interval"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_RECOVERY_HEADER = ["parameter", "truth", "mean", "90% interval", "inside", "error"]
_COVERAGE_HEADER = [
    "parameter",
    "fits",
    "50% coverage",
    "90% coverage",
    "mean error",
    "rmse",
    "mean sd",
    "failed diagnostics",
    "90% coverage, passed fits only",
]
# the terminal's coverage table has the first seven; the fits that passed their
# diagnostics get their own narrow table, so both print whole at 80 columns
_COVERAGE_COLUMNS = ["parameter", "fits", "cov 50%", "cov 90%", "mean err", "rmse", "mean sd"]
_PASSED_COLUMNS = ["parameter", "failed diagnostics", "cov 50%", "cov 90%"]


def _coverage_rows(table: pd.DataFrame, experiment: str) -> list[list[str]]:
    part = table[table["experiment"] == experiment]
    return [
        [
            r["parameter"],
            str(int(r["fits"])),
            _fmt(r["coverage_50"], 2),
            _fmt(r["coverage_90"], 2),
            _fmt(r["mean_error"]),
            _fmt(r["rmse"]),
            _fmt(r["mean_sd"]),
            str(int(r["failed_diagnostics"])),
            _fmt(r["coverage_90_passed"], 2),
        ]
        for _, r in part.iterrows()
    ]


def fits_line(result: SimulationResult) -> str:
    """How many fits ran, passed their diagnostics, failed them, or failed to run."""
    flagged = len(result.diagnostic_failures)
    errors = len({(f["replicate"], f["experiment"]) for f in result.failures})
    passed = result.n_ok - flagged
    fits = f"{result.n_fits} fit" + ("" if result.n_fits == 1 else "s")
    return (
        f"{fits}: {passed} passed their diagnostics, {flagged} failed their diagnostics, "
        f"{errors} failed to run"
    )


def _flagged(result: SimulationResult, experiment: str) -> list[dict]:
    return [f for f in result.diagnostic_failures if f["experiment"] == experiment]


def _diagnostics_note(failure: dict) -> str:
    return (
        f"**Diagnostics: FAILED** ({failure['problems']}). These numbers come from a fit that "
        f"missed its diagnostic thresholds; see `{failure['fit']}/divergences.md`."
    )


def recovery_markdown(result: SimulationResult) -> str:
    """recovery.md: what was simulated, what each fit recovered, what failed."""
    out = [f"# Recovery: {result.name}", ""]
    out.append(
        f"Seed {result.seed}, {result.replicates} replicate(s), truth: "
        f"{result.truth_kind}, {result.seconds:.0f} s. {fits_line(result)}."
    )
    out += [
        "",
        "Truth of each posterior parameter: group values are the simulated ones; "
        "`mu_*`/`sigma_*` the generating population mean and between-group sd (none when "
        "the truth was given as per-group coefficients); a coefficient the fit takes as "
        "common to all groups (all of a pooled fit's) is compared with the row-weighted "
        "mean of the group values; `sigma` is the generating residual sd. Intervals are "
        "central (equal-tailed) posterior intervals; the full table is `recovery.csv`.",
        "",
    ]
    for exp in result.experiments:
        out.append(f"## {exp}")
        if exp in result.fit_dirs:
            out.append(f"Fit: `{result.fit_dirs[exp]}`")
        out.append("")
        if result.coverage is None:
            flagged = _flagged(result, exp)
            if flagged:
                out += [_diagnostics_note(flagged[0]), ""]
            elif exp in result.fit_dirs and result.n_ok:
                out += ["Diagnostics: passed.", ""]
            rows, verdict = recovery_lines(result.recovery, exp)
            out += [_markdown_table(_RECOVERY_HEADER, rows), "", verdict, ""]
        else:
            out += [_markdown_table(_COVERAGE_HEADER, _coverage_rows(result.coverage, exp)), ""]
    if result.coverage is not None:
        out += [
            "## Ranks",
            "`ranks.png`: for each population parameter, the rank of the truth among the "
            "posterior draws (as a fraction of the draws), one per replicate. They are "
            "uniform for a calibrated model only when the truth is drawn from the fitted "
            "model's own prior (`truth: prior`, simulation-based calibration); with a fixed "
            f"truth (this run: `{result.truth_kind}`) they are drawn anyway, for a look, and "
            "need not be uniform. Ranks of autocorrelated draws are noisier than those of "
            "independent ones.",
            "",
        ]
    if result.diagnostic_failures:
        out += [
            "## Failed diagnostics",
            "",
            "These fits ran but missed their diagnostic thresholds (divergences, r_hat, "
            "ESS, E-BFMI or tree depth): their rows in `recovery.csv` have "
            "`diagnostics_passed` false"
            + (
                ", and the coverage table gives the coverage with and without them."
                if result.coverage is not None
                else "."
            ),
            "",
            _markdown_table(
                ["replicate", "seed", "experiment", "problems", "fit"],
                [
                    [
                        f["replicate"],
                        f["seed"],
                        f["experiment"],
                        f["problems"].replace("|", "\\|"),
                        f"`{f['fit']}`",
                    ]
                    for f in result.diagnostic_failures
                ],
            ),
            "",
        ]
    if result.failures:
        out += [
            "## Failures",
            "",
            _markdown_table(
                ["replicate", "seed", "experiment", "error"],
                [
                    [
                        f["replicate"],
                        f["seed"],
                        f["experiment"] or "(data)",
                        f["error"].replace("|", "\\|"),
                    ]
                    for f in result.failures
                ],
            ),
            "",
            "A replicate is fully determined by its seed: `hbreg simulate CONFIG --set "
            "seed=SEED --replicates 1` runs that one again.",
            "",
        ]
    return "\n".join(out)


def _passed_table(result: SimulationResult):
    """Coverage over the fits that passed their diagnostics, beside how many did not."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"Coverage without the {len(result.diagnostic_failures)} fit(s) that failed "
        "their diagnostics",
        title_style="bold red",
    )
    for col in _PASSED_COLUMNS:
        table.add_column(col, justify="left" if col == "parameter" else "right")
    cov = result.coverage
    for exp in result.experiments:
        table.add_row(f"[bold]{escape(exp)}[/]")
        part = cov[cov["experiment"] == exp]
        for k, (_, r) in enumerate(part.iterrows()):
            cells = [
                r["parameter"],
                str(int(r["failed_diagnostics"])),
                _fmt(r["coverage_50_passed"], 2),
                _fmt(r["coverage_90_passed"], 2),
            ]
            table.add_row(*map(escape, cells), end_section=k == len(part) - 1)
    return table


def render_recovery(console, result: SimulationResult) -> None:
    """Recovery (one replicate) or coverage (several) per experiment; the directory last."""
    from rich.markup import escape
    from rich.table import Table

    if result.coverage is None:
        for exp in result.experiments:
            rows, verdict = recovery_lines(result.recovery, exp)
            if not rows:
                continue
            flagged = _flagged(result, exp)
            if flagged:
                verdict += "; [bold]diagnostics FAILED[/]: do not trust these numbers"
            title = f"Recovery: {exp}" + (" ([bold red]diagnostics FAILED[/])" if flagged else "")
            table = Table(title=title, caption=verdict)
            for col in _RECOVERY_HEADER:
                table.add_column(col, justify="left" if col == "parameter" else "right")
            for row in rows:
                style = "red" if row[4] == "NO" else None
                table.add_row(*map(escape, row), style=style)
            console.print(table)
    else:
        table = Table(
            title=f"Coverage over {result.replicates} replicates (truth: {result.truth_kind})"
        )
        for col in _COVERAGE_COLUMNS:
            table.add_column(col, justify="left" if col == "parameter" else "right")
        for exp in result.experiments:
            table.add_row(f"[bold]{escape(exp)}[/]")
            rows = [row[: len(_COVERAGE_COLUMNS)] for row in _coverage_rows(result.coverage, exp)]
            for k, row in enumerate(rows):
                table.add_row(*map(escape, row), end_section=k == len(rows) - 1)
        console.print(table)
        if result.diagnostic_failures:
            console.print(_passed_table(result))
    for f in result.failures:
        what = f"experiment {f['experiment']}" if f["experiment"] else "data generation"
        console.print(
            f"[red]failed:[/] replicate {f['replicate']} (seed {f['seed']}), "
            f"{escape(what)}: {escape(f['error'])}",
            highlight=False,
        )
    for f in result.diagnostic_failures:
        console.print(
            f"[red]diagnostics failed:[/] replicate {f['replicate']} (seed {f['seed']}), "
            f"experiment {escape(f['experiment'])}: {escape(f['problems'])} "
            f"(see {escape(f['fit'])}/divergences.md)",
            highlight=False,
        )
    style = "red" if result.diagnostic_failures or result.failures else "green"
    console.print(f"[{style}]{fits_line(result)}[/]", highlight=False)
    console.print(f"time: {result.seconds:.1f}s", highlight=False)
    console.print(f"simulation directory: [bold]{escape(str(result.path))}[/]", highlight=False)
