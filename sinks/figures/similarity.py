"""Heatmap cosine-similarity figures: thesis Figs. 3 and 6, and the class colours they use.

* :func:`dependency_matrix_figure`: the 17x17 Keypoint Dependency Matrix (Fig. 3).
* :func:`pair_similarity_figure`: wrist/shoulder heatmap cosine similarity over normalised segment
  time, one line per shot, one colour per shot and the class as line style (Fig. 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from engine.types import COCO_KEYPOINT_NAMES
from sinks.figures.canvas import new_figure
from sinks.figures.values import PairSeries, float_array

#: Line / marker colour per shot class label (thesis Fig. 6: pull against cover drive).
CLASS_COLOURS: dict[str, str] = {"pull": "#d62728", "cover_drive": "#1f77b4", "other": "#7f7f7f"}
#: Colour of series without a class label.
UNLABELLED_COLOUR = "#2ca02c"
_EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
#: Colour of each shot's line in :func:`pair_similarity_figure`, in order (matplotlib's ``tab10`` then
#: two more distinct ones), while there are at most :data:`MAX_LEGEND_LINES` lines.
SHOT_COLOURS: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                                 "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#b15928")
LineStyle = Literal["-", "--", ":", "-."]
#: Line style and marker per class label in Fig. 6 (key ``None``: no or another label).
CLASS_LINESTYLES: dict[str | None, LineStyle] = {"pull": "-", "cover_drive": "--", "other": ":", None: "-."}
CLASS_MARKERS: dict[str | None, str] = {"pull": "o", "cover_drive": "s", "other": "^", None: "D"}
#: Most lines that get their own colour and legend entry in :func:`pair_similarity_figure`; above it the legend
#: lists one entry per class.
MAX_LEGEND_LINES = 12


def class_colour(label: str | None) -> str:
    """Colour of a class label (:data:`CLASS_COLOURS`; other labels get a stable extra colour)."""
    if label is None:
        return UNLABELLED_COLOUR
    if label in CLASS_COLOURS:
        return CLASS_COLOURS[label]
    return _EXTRA_COLOURS[sum(label.encode()) % len(_EXTRA_COLOURS)]


# --------------------------------------------------------------------------------------------------
# Fig. 3: Keypoint Dependency Matrix
# --------------------------------------------------------------------------------------------------

_HEATMAP_SOURCE_TEXT = {
    "rendered": "heatmaps rendered from YOLO-pose keypoints",
    "model": "Keypoint R-CNN model heatmaps",
}


def dependency_matrix_figure(
    matrix: np.ndarray,
    *,
    source_id: str,
    heatmap_source: str | None,
    n_frames: int,
    names: Sequence[str] = COCO_KEYPOINT_NAMES,
    annotate: bool = True,
) -> Figure:
    """Heatmap of a Keypoint Dependency Matrix (thesis Fig. 3).

    Args:
        matrix: float ``[K, K]`` mean cosine similarity of keypoint heatmaps, in [0, 1] (NaN = none).
        source_id: Source named in the title.
        heatmap_source: ``"rendered"`` (YOLO-pose keypoints) or ``"model"`` (Keypoint R-CNN), as in
            the ``sim/`` messages; other values are printed as they are.
        n_frames: Number of batter frames in the mean.
        names: ``K`` keypoint names for both axes (COCO order by default).
        annotate: Print each cell's value (2 decimals).

    Returns:
        The figure; ``fig.axes[0]`` is the matrix, ``fig.axes[1]`` its colour bar.

    Raises:
        ValueError: ``matrix`` is not square ``[K, K]`` with ``K == len(names)``.
    """
    m = float_array("matrix", matrix, 2)
    k = len(names)
    if m.shape != (k, k):
        msg = f"`matrix` must have shape ({k}, {k}), got {m.shape}"
        raise ValueError(msg)
    fig = new_figure(9.0, 8.0)
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(k), labels=list(names), rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(k), labels=list(names), fontsize=8)
    ax.set_xlabel("keypoint B (COCO)")
    ax.set_ylabel("keypoint A (COCO)")
    if annotate:
        for i in range(k):
            for j in range(k):
                value = m[i, j]
                if math.isfinite(value):
                    colour = "white" if value > 0.6 else "black"
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5.5, color=colour)
    source_text = _HEATMAP_SOURCE_TEXT.get(str(heatmap_source), f"heatmap source: {heatmap_source}")
    ax.set_title(
        f"Keypoint Dependency Matrix: {source_id}\n"
        f"cumulative mean cosine similarity over {n_frames} batter frames ({source_text})",
        fontsize=10,
    )
    colour_bar = fig.colorbar(image, ax=ax, shrink=0.85)
    colour_bar.set_label("cosine similarity")
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 6: pair similarity over time
# --------------------------------------------------------------------------------------------------


def class_style(label: str | None) -> tuple[LineStyle, str]:
    """Line style and marker of a class label in Fig. 6 (:data:`CLASS_LINESTYLES`, :data:`CLASS_MARKERS`)."""
    key = label if label in CLASS_LINESTYLES else None
    return CLASS_LINESTYLES[key], CLASS_MARKERS[key]


def pair_similarity_figure(series: Sequence[PairSeries], *, title: str | None = None) -> Figure:
    """Wrist/shoulder heatmap cosine similarity against normalised segment time (thesis Fig. 6).

    With at most :data:`MAX_LEGEND_LINES` series, each line (shot, or whole run) has its own colour
    (:data:`SHOT_COLOURS`, in order) and legend entry (``series.name``), and its class shows as the
    line style and marker (:func:`class_style`: pull solid, cover drive dashed, other dotted), so
    pull shots and cover drives can still be told apart at a glance. With more, lines are coloured
    by class (:func:`class_colour`) and the legend has one entry per class (``"pull (n = 7)"``).
    The legend sits outside the axes, to their right, so it never covers a line.

    Args:
        series: The lines; empty series are skipped.
        title: Figure title; a default naming the keypoint pair(s) when ``None``.

    Returns:
        The figure with a single axes (its legend is ``fig.axes[0].get_legend()``).
    """
    fig = new_figure(10.0, 5.5)
    ax = fig.add_subplot()
    drawn = [s for s in series if len(s)]
    per_line_legend = len(drawn) <= MAX_LEGEND_LINES
    counts: dict[str | None, int] = {}
    for i, s in enumerate(drawn):
        counts[s.label] = counts.get(s.label, 0) + 1
        linestyle, marker = class_style(s.label)
        colour = SHOT_COLOURS[i % len(SHOT_COLOURS)] if per_line_legend else class_colour(s.label)
        ax.plot(s.t_norm, s.values, color=colour, linewidth=1.5, alpha=0.9, linestyle=linestyle,
                marker=marker if len(s) < 40 else None, markersize=3.5,
                label=s.name if per_line_legend else None)
    pairs = sorted({s.pair for s in drawn}) or ["left_wrist/left_shoulder"]
    pair_text = ", ".join(p.replace("/", " vs ") for p in pairs)
    ax.set_xlabel("normalised time in segment (0 = start, 1 = end)")
    ax.set_ylabel(f"cosine similarity of heatmaps\n({pair_text})")
    ax.set_xlim(0.0, 1.0)
    top = max((float(np.nanmax(s.values)) for s in drawn if np.isfinite(s.values).any()), default=1.0)
    ax.set_ylim(0.0, min(1.0, max(0.05, top * 1.15)))
    ax.grid(alpha=0.3)
    if drawn:
        if per_line_legend:
            _legend_outside(ax, title="shot: class\n(colour = shot, line style = class)")
        else:
            handles = [Line2D([], [], color=class_colour(label), linewidth=2.0, linestyle=class_style(label)[0],
                              label=f"{label or 'unlabelled'} (n = {count})") for label, count in counts.items()]
            _legend_outside(ax, handles=handles, title="class")
    else:
        ax.text(0.5, 0.5, "no similarity data", transform=ax.transAxes, ha="center", va="center")
    classes = " vs ".join(sorted({(label or "unlabelled").replace("_", " ") for label in counts})) or "no data"
    # over the whole figure (the legend takes part of its width): a long pair list still fits
    fig.suptitle(title or f"Heatmap cosine similarity over each segment: {pair_text}\n{classes}", fontsize=11)
    return fig


def _legend_outside(ax: Axes, **options: Any) -> None:
    """The axes' legend to the right of its data area, top-aligned (constrained layout makes room)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, title_fontsize=8,
              alignment="left", **options)
