"""What `hbreg compare` shows: the ranking table for the terminal and `compare.md` for a person.

One row formatter (`_cells`) serves both, so the terminal and the markdown never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hbreg.compare.loo import PARETO_K_THRESHOLD

if TYPE_CHECKING:
    from rich.console import Console

    from hbreg.compare.run import ComparisonResult

__all__ = ["markdown", "render_comparison"]

_COLUMNS = (
    "rank",
    "run",
    "pooling",
    "elpd_loo",
    "se",
    "elpd_diff",
    "dse",
    "p_loo",
    "weight",
    f"k>{PARETO_K_THRESHOLD}",
)


def _cells(r) -> list[str]:
    """One row of the comparison table as text, in `_COLUMNS` order."""
    return [
        str(r["rank"]),
        r["run"],
        r["pooling"],
        f"{r['elpd_loo']:.1f}",
        f"{r['se']:.1f}",
        f"{r['elpd_diff']:.1f}",
        f"{r['dse']:.1f}",
        f"{r['p_loo']:.1f}",
        f"{r['weight']:.2f}",
        str(r["pareto_k_high"]),
    ]


def markdown(table, verdict, warn, notes, outcome, n_obs, files) -> str:
    """`compare.md`: the table, the verdict, warnings, notes, the runs and the files."""
    header = [*_COLUMNS[:-1], f"Pareto k > {PARETO_K_THRESHOLD}"]
    lines = [
        "# LOO comparison",
        "",
        f"{len(table)} runs of `{outcome}` on the same {n_obs} observations, ranked by the "
        "expected log pointwise predictive density estimated with PSIS-LOO (higher is better). "
        "`elpd_diff` is each run's difference to the best and `dse` its standard error; "
        "`weight` is the stacking weight.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if h not in ("run", "pooling") else "---" for h in header) + "|",
    ]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_cells(r)) + " |")
    lines += ["", verdict, ""]
    if warn:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warn] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Runs", ""] + [f"- {r['run']}: `{r['path']}`" for _, r in table.iterrows()]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files] + [""]
    return "\n".join(lines)


def render_comparison(console: Console, result: ComparisonResult) -> None:
    """The ranking table, the verdict, warnings and notes, and the compare directory last."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"PSIS-LOO comparison: '{result.outcome}', {result.n_obs} observations",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 0),
        pad_edge=False,
    )
    for column in _COLUMNS:
        left = column in ("run", "pooling")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for _, r in result.table.iterrows():
        *cells, k_high = _cells(r)
        table.add_row(*cells, f"[yellow]{k_high}" if r["pareto_k_high"] else k_high)
    console.print(table)
    console.print(result.verdict, highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"compare directory: [bold]{result.path}[/]", highlight=False, soft_wrap=True)
