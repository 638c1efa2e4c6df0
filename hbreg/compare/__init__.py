"""`hbreg compare`: rank run directories by cross-validation and draw the shrinkage.

Modules by job: `select` (which runs, read from their run directories), `loo` (the kinds of
cross-validation, PSIS, the ranking table and the verdict), `integrated` (a run's hyperparameter
draws and rows for the integrated densities of `hbreg.models.loo`), `kfold` (exact refits),
`shrinkage` (group estimates per run), `plots` (figures), `render` (terminal and markdown) and
`run` (`compare_runs`, which writes the compare directory).
"""

from hbreg.compare.loo import COMPARE_COLUMNS
from hbreg.compare.plots import plot_shrinkage
from hbreg.compare.render import render_comparison
from hbreg.compare.run import ComparisonResult, compare_runs
from hbreg.compare.select import ComparisonError, select_runs
from hbreg.compare.shrinkage import Shrinkage, shrinkage_table

__all__ = [
    "COMPARE_COLUMNS",
    "ComparisonError",
    "ComparisonResult",
    "Shrinkage",
    "compare_runs",
    "plot_shrinkage",
    "render_comparison",
    "select_runs",
    "shrinkage_table",
]
