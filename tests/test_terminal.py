"""Tables print whole: on an 80-column terminal, in a pipe, never with `…`."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console

from hbreg.report import print_fit
from hbreg.terminal import format_bytes, print_table

LONG_NAME = "mu_intercept_of_a_very_long_predictor_name_from_a_formula"


def _console(*, terminal: bool, width: int = 80) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=width, color_system=None), out


def _fit_result():
    summary = pd.DataFrame(
        {
            "mean": [1000001.4172, 0.7513],
            "sd": [0.0521, 0.0188],
            "eti_5%": [1000001.3311, 0.7201],
            "eti_95%": [1000001.5022, 0.7822],
            "ess_bulk": [746.9, 757.1],
            "r_hat": [1.003, 0.998],
        },
        index=[LONG_NAME, "sigma"],
    )
    diagnostics = SimpleNamespace(
        passed=True,
        divergences=0,
        worst_r_hat=1.003,
        lowest_ess_bulk=746.9,
        lowest_ess_bulk_parameter=LONG_NAME,
        failures=[],
    )
    return SimpleNamespace(
        summary=summary,
        key_parameters=[LONG_NAME, "sigma"],
        parameterization="marginal",
        backend="nutpie",
        diagnostics=diagnostics,
        notes=[],
        timings={"sample": 1.0},
        path="outputs/run",
        design_checks=[],
        prior_check=None,
    )


@pytest.mark.unit
@pytest.mark.parametrize("terminal", [True, False], ids=["terminal-80", "pipe"])
def test_fit_summary_keeps_long_names_and_seven_digit_means_whole(terminal):
    console, out = _console(terminal=terminal)
    print_fit(console, _fit_result())
    text = out.getvalue()
    assert "…" not in text
    row = next(line for line in text.splitlines() if line.startswith(LONG_NAME))
    for value in ("1000001.417", "1000001.331", "1000001.502", "747", "1.003"):
        assert value in row


@pytest.mark.unit
def test_a_table_that_fits_the_terminal_is_a_rich_table():
    console, out = _console(terminal=True)
    print_table(console, ["parameter", "mean"], [["sigma", "0.751"]], title="Posterior")
    text = out.getvalue()
    assert "┃" in text or "│" in text  # drawn with borders
    assert "sigma" in text and "0.751" in text


@pytest.mark.unit
def test_plain_rows_are_aligned_and_keep_wide_characters_whole():
    console, out = _console(terminal=False)
    rows = [["intercept[Zürich 🏠]", "1.5"], ["intercept[東京]", "22.25"]]
    print_table(console, ["parameter", "mean"], rows)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("parameter")
    assert lines[1].startswith("intercept[Zürich 🏠]") and lines[1].endswith("  1.5")
    assert lines[2].startswith("intercept[東京]") and lines[2].endswith("22.25")
    # right-justified numbers end in the same terminal column (wide glyphs count twice)
    from rich.cells import cell_len

    assert len({cell_len(line) for line in lines}) == 1


@pytest.mark.unit
def test_markup_in_cells_is_printed_literally():
    console, out = _console(terminal=False)
    print_table(console, ["name"], [["[bold]x[/]"]])
    assert "[bold]x[/]" in out.getvalue()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("n", "text"),
    [(999, "999 B"), (1500, "1.5 KB"), (8e9, "8.0 GB"), (2.5e15, "2.5 PB")],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text
