"""Headless figures and PNG output shared by the report figures.

Every figure is a :class:`~matplotlib.figure.Figure` with its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`; nothing touches ``pyplot`` or the global
backend, so figures can be drawn on a sink's runner thread while other code uses matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Default resolution of :func:`save_png`, dots per inch.
DEFAULT_DPI = 150


def new_figure(width_in: float, height_in: float) -> Figure:
    """An empty figure of ``width_in`` x ``height_in`` inches, constrained layout, on its own Agg canvas."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = DEFAULT_DPI, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``fig`` as a PNG at ``dpi`` and return the path (the figure is not closed: no pyplot)."""
    target = Path(path)
    fig.savefig(target, format="png", dpi=dpi, metadata=dict(metadata or {}))
    return target
