"""Matplotlib figures rendered to PNG bytes with the Agg canvas.

Figures are built with :class:`matplotlib.figure.Figure` and :class:`FigureCanvasAgg`
directly, never through ``pyplot``: no global figure state, no GUI backend, and nothing to
close, so report code runs the same on a headless server and inside a notebook.
"""

from __future__ import annotations

import io
import math

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Resolution of every report figure (dots per inch).
DPI = 90


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def subplot_grid(fig: Figure, n: int, ncols: int) -> list[Axes]:
    """``n`` axes laid out ``ncols`` to a row (at least one, so an empty plot still renders)."""
    n = max(n, 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    return [fig.add_subplot(nrows, ncols, k + 1) for k in range(n)]


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
