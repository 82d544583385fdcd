"""Report figures (thesis Figs. 3-6) as pure functions: data in, :class:`matplotlib.figure.Figure` out.

Headless and thread-safe by construction: every figure is a :class:`~matplotlib.figure.Figure` with its
own :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`; nothing touches ``pyplot`` or the global
backend, so the functions can run on a sink's runner thread while other code uses matplotlib.

* :func:`dependency_matrix_figure`: the 17x17 Keypoint Dependency Matrix (thesis Fig. 3).
* :func:`wrist_figure`: batter keypoints on a frame, the wrist trajectory relative to the shoulder with
  its Legendre fit, and r(t) with its quadratic fit (thesis Figs. 4 and 5).
* :func:`pair_similarity_figure`: wrist/shoulder heatmap cosine similarity over normalised segment
  time, one line per shot, one colour per shot, class as line style, legend outside (thesis Fig. 6).
* :func:`save_png`: write a figure as PNG.

Modules: :mod:`.values` (the values drawn: :class:`PoseSnapshot`, :class:`WristSegment`,
:class:`PairSeries`), :mod:`.similarity` (Figs. 3 and 6 and the class colours), :mod:`.wrist`
(Figs. 4-5), :mod:`.labels` (keypoint names placed without overlaps), :mod:`.canvas` (the headless
figure and :func:`save_png`).

Units: keypoints are frame pixels (x right, y down); ``dx``, ``dy`` are wrist - shoulder in frame
widths / frame heights (so ``dy < 0``: wrist above the shoulder); times are seconds of source PTS.
"""

from sinks.figures.canvas import DEFAULT_DPI, save_png
from sinks.figures.labels import place_labels
from sinks.figures.similarity import (
    CLASS_COLOURS,
    CLASS_LINESTYLES,
    CLASS_MARKERS,
    MAX_LEGEND_LINES,
    SHOT_COLOURS,
    UNLABELLED_COLOUR,
    class_colour,
    class_style,
    dependency_matrix_figure,
    pair_similarity_figure,
)
from sinks.figures.values import PairSeries, PoseSnapshot, WristSegment, normalised_time
from sinks.figures.wrist import AXIS_MARGIN, data_limits, segment_title, wrist_figure

__all__ = [
    "AXIS_MARGIN",
    "CLASS_COLOURS",
    "CLASS_LINESTYLES",
    "CLASS_MARKERS",
    "DEFAULT_DPI",
    "MAX_LEGEND_LINES",
    "SHOT_COLOURS",
    "UNLABELLED_COLOUR",
    "PairSeries",
    "PoseSnapshot",
    "WristSegment",
    "class_colour",
    "class_style",
    "data_limits",
    "dependency_matrix_figure",
    "normalised_time",
    "pair_similarity_figure",
    "place_labels",
    "save_png",
    "segment_title",
    "wrist_figure",
]
