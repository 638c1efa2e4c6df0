"""Figure helpers shared by every command's plots: one canvas, one size, one way to save.

Figures are created on the Agg canvas and never registered with pyplot, so no display
is needed and nothing has to be closed. Margins are fixed in inches by hand where the
layout is known, because matplotlib's constrained layout costs 0.1-0.2 s per figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DPI", "figure", "group", "new_figure", "save", "suptitle"]

DPI = 100


def figure(
    width: float,
    height: float,
    *,
    left: float,
    right: float,
    top: float,
    bottom: float,
    wspace: float = 0.2,
    hspace: float = 0.2,
) -> Figure:
    """A Figure on the Agg canvas, not registered with pyplot (nothing to close, no display).

    Margins are in inches, so they hold whatever the figure size; they are fixed by hand
    because matplotlib's constrained layout costs 0.1-0.2 s per figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=wspace,
        hspace=hspace,
    )
    return fig


def suptitle(fig: Figure, text: str) -> None:
    """The figure title, a fixed distance below the top edge whatever the figure height."""
    fig.suptitle(text, fontsize=11, y=1 - 0.1 / fig.get_figheight(), va="top")


def new_figure(width: float, height: float) -> Figure:
    """A Figure with constrained layout, for figures whose content sets the margins."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG at the shared resolution and free its artists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path


def group(idata: Any, name: str) -> Any:
    """The Dataset of group `name`, or None when the InferenceData lacks it or it is empty."""
    try:
        node = idata[name]
    except KeyError:
        return None
    dataset = node.to_dataset() if hasattr(node, "to_dataset") else node
    return dataset if len(dataset.data_vars) else None
