"""`compare_runs`: cross-validate the chosen runs, rank them, and write the compare directory.

Everything that can refuse the comparison (different data, no log-likelihood, a failed LOO)
happens before the directory is opened, so a refused comparison writes nothing. The result is
written atomically to ``<root>/<stamp>_compare/``: ``compare.csv`` (full precision),
``compare.md`` (for a person), ``loo.png`` and, when unpooled or hierarchical runs share a
group variable, ``shrinkage.png`` and ``shrinkage.csv``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hbreg.compare.loo import compare_table, loo, loo_warnings, verdict
from hbreg.compare.plots import plot_loo, plot_shrinkage, save_figure
from hbreg.compare.render import markdown
from hbreg.compare.select import ComparisonError, load_runs
from hbreg.compare.shrinkage import Shrinkage, shrinkage_table
from hbreg.runs import RunDirectory, RunInfo

__all__ = ["ComparisonResult", "compare_runs"]

_MANIFEST_COLUMNS = (
    "run",
    "name",
    "pooling",
    "elpd_loo",
    "se",
    "elpd_diff",
    "dse",
    "weight",
    "pareto_k_high",
)


@dataclass
class ComparisonResult:
    """What `render_comparison` shows and what was written."""

    path: Path
    table: pd.DataFrame  # COMPARE_COLUMNS, best first
    outcome: str
    n_obs: int
    best: str
    verdict: str
    warnings: list[str]
    notes: list[str]
    files: list[Path]
    shrinkage: Shrinkage | None = None


def compare_runs(runs: Sequence[RunInfo], *, root: str | Path) -> ComparisonResult:
    """Rank `runs` by PSIS-LOO and write the compare directory under `root`.

    Raises
    ------
    ComparisonError
        Runs on different observations, or a run without a usable log-likelihood.
    """
    runs = list(runs)
    if len(runs) < 2:
        raise ComparisonError(f"need at least 2 runs to compare, got {len(runs)}")
    loaded = load_runs(runs)
    elpds = {item.label: loo(item) for item in loaded}
    table = compare_table(loaded, elpds)
    warn = loo_warnings(table, loaded, elpds)
    notes: list[str] = []
    shrinkage = None
    try:
        shrinkage = shrinkage_table(runs, trees={i.run.path: i.tree for i in loaded})
    except ComparisonError as exc:
        notes.append(f"no shrinkage plot: {exc}")
    else:
        notes.extend(shrinkage.notes)
    text = verdict(table)
    outcome, n_obs = loaded[0].outcome, int(table["n_obs"].iloc[0])
    paths = [str(r.path.resolve()) for r in runs]
    with RunDirectory(root, "compare", kind="compare", runs=paths) as out:
        files = _write(out, table, text, warn, notes, shrinkage, outcome, n_obs)
        path = out.finish(
            command=shlex.join(sys.argv),
            outcome=outcome,
            rows=n_obs,
            best=table["run"].iloc[0],
            ranking=[{k: _plain(row[k]) for k in _MANIFEST_COLUMNS} for _, row in table.iterrows()],
            warnings=warn,
            files=[f.name for f in files],
        )
    return ComparisonResult(
        path=path,
        table=table,
        outcome=outcome,
        n_obs=n_obs,
        best=table["run"].iloc[0],
        verdict=text,
        warnings=warn,
        notes=notes,
        files=[path / f.name for f in files],
        shrinkage=shrinkage,
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _write(out: RunDirectory, table, text, warn, notes, shrinkage, outcome, n_obs) -> list[Path]:
    files = [out.write_text("compare.csv", table.to_csv(index=False, float_format="%.17g"))]
    if shrinkage is not None:
        files.append(out.write_text("shrinkage.csv", shrinkage.table.to_csv(float_format="%.17g")))
    files.append(save_figure(plot_loo(table), out.path / "loo.png"))
    if shrinkage is not None:
        files.append(save_figure(plot_shrinkage(shrinkage), out.path / "shrinkage.png"))
    md = markdown(table, text, warn, notes, outcome, n_obs, [f.name for f in files])
    files.insert(1, out.write_text("compare.md", md))
    return files
