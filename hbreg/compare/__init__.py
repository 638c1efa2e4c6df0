"""`hbreg compare`: rank run directories by cross-validation and draw the shrinkage."""

from hbreg.compare._all import compare_runs, render_comparison, select_runs

__all__ = ["compare_runs", "render_comparison", "select_runs"]
