"""What the terminal shows after `hbreg predict`: counts, fit to the outcome, where it went."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from hbreg.predict.run import PredictionResult

__all__ = ["print_predictions"]


def print_predictions(console: Console, result: PredictionResult) -> None:
    """Rows predicted, how many fell in unseen groups, log density and coverage if known."""
    console.print(f"[green]predicted[/] {result.rows} rows in {result.seconds:.1f} s")
    if result.population:
        console.print("rows use the population means (no group)")
    elif result.new_group_rows:
        shown = ", ".join(result.new_groups[:5]) + (" ..." if len(result.new_groups) > 5 else "")
        console.print(
            f"{_count(result.new_group_rows, 'row')} of {result.rows} fell in "
            f"{_count(len(result.new_groups), 'group')} the fit never saw ({escape(shown)}); "
            "their coefficients are drawn from the population",
            highlight=False,
        )
    else:
        console.print("every row is in a group the fit saw")
    if result.observed_rows:
        console.print(
            f"{_count(result.observed_rows, 'row')} with {escape(result.outcome)}: log "
            f"predictive density {result.log_density:.2f} "
            f"({result.log_density / result.observed_rows:.3f} per row); "
            f"{100 * result.coverage:.1f}% inside their 90% predictive interval",
            highlight=False,
        )
    console.print(f"predictions: {escape(str(result.path))}", highlight=False, soft_wrap=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
