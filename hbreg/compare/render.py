"""What `hbreg compare` shows: the ranking table for the terminal and `compare.md` for a person.

One row formatter (`_cells`) serves both, so the terminal and the markdown never disagree;
both name the kind of cross-validation every number comes from (`CV_KINDS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hbreg.compare.loo import PARETO_K_THRESHOLD, cv_description, cv_title

if TYPE_CHECKING:
    from rich.console import Console

    from hbreg.compare.run import ComparisonResult

__all__ = ["markdown", "render_comparison"]

_COLUMNS = (
    "rank",
    "run",
    "pooling",
    "cv",
    "elpd",
    "se",
    "elpd_diff",
    "dse",
    "p",
    "weight",
    f"k>{PARETO_K_THRESHOLD}",
)


def _cells(r) -> list[str]:
    """One row of the comparison table as text, in `_COLUMNS` order."""
    kfold = r["cv"].startswith("kfold")
    return [
        str(r["rank"]),
        r["run"],
        r["pooling"],
        r["cv"],
        f"{r['elpd']:.1f}",
        f"{r['se']:.1f}",
        f"{r['elpd_diff']:.1f}",
        f"{r['dse']:.1f}",
        "-" if kfold else f"{r['p']:.1f}",
        f"{r['weight']:.2f}",
        "-" if kfold else str(r["pareto_k_high"]),
    ]


def _units(result_or_table, n_obs: int) -> str:
    table = result_or_table
    n_units = int(table["n_units"].iloc[0])
    kind = table["cv"].iloc[0]
    if kind in ("logo", "kfold_group"):
        return f"{n_units} groups ({n_obs} observations)"
    return f"{n_obs} observations"


def markdown(table, verdict, warn, notes, outcome, n_obs, files, *, k=None) -> str:
    """`compare.md`: the CV kind, the table, the verdict, warnings, notes, the runs, the files."""
    kind = table["cv"].iloc[0]
    header = [*_COLUMNS[:-1], f"Pareto k > {PARETO_K_THRESHOLD}"]
    lines = [
        f"# Comparison by {cv_title(kind, k)}",
        "",
        f"{len(table)} runs of `{outcome}` on the same {_units(table, n_obs)}, ranked by the "
        "expected log predictive density (`elpd`, higher is better) estimated by "
        f"**{cv_title(kind, k)}** (`cv` = `{kind}`): {cv_description(kind, k)}. "
        "Every run is scored the same way. `elpd_diff` is each run's difference to the best and "
        "`dse` its standard error; `p` is the effective number of parameters; `weight` is the "
        "stacking weight.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if h in ("run", "pooling", "cv") else "---:" for h in header) + "|",
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
    from rich.text import Text

    from hbreg.terminal import print_table

    kind = result.table["cv"].iloc[0]
    # every row has the same kind, named in the title: the terminal table leaves its column out
    shown = [i for i, column in enumerate(_COLUMNS) if column != "cv"]
    rows = []
    for _, r in result.table.iterrows():
        cells = _cells(r)
        k_high = cells[-1]
        rows.append(
            [cells[i] for i in shown[:-1]]
            + [Text(k_high, style="yellow") if r["pareto_k_high"] else k_high]
        )
    print_table(
        console,
        [_COLUMNS[i] for i in shown],
        rows,
        title=f"{cv_title(kind, result.k)} comparison: '{result.outcome}', "
        f"{_units(result.table, result.n_obs)}",
        justify=["left" if _COLUMNS[i] in ("run", "pooling") else "right" for i in shown],
    )
    console.print(f"cv: {cv_description(kind, result.k)}", highlight=False)
    console.print(result.verdict, highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"compare directory: [bold]{result.path}[/]", highlight=False, soft_wrap=True)
