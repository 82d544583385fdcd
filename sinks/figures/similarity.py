"""Heatmap cosine-similarity figures: thesis Figs. 3 and 6, and the class colours they use.

* :func:`dependency_matrix_figure`: the 17x17 Keypoint Dependency Matrix (Fig. 3).
* :func:`pair_similarity_figure`: wrist/shoulder heatmap cosine similarity over normalised segment
  time, one line per shot, coloured by class (Fig. 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
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
#: Most lines that get their own legend entry in :func:`pair_similarity_figure`; above it the legend
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


def pair_similarity_figure(series: Sequence[PairSeries], *, title: str | None = None) -> Figure:
    """Wrist/shoulder heatmap cosine similarity against normalised segment time (thesis Fig. 6).

    One line per series (shot, or whole run), coloured by class label (:func:`class_colour`) so that
    pull shots and cover drives can be compared on one plot. With at most
    :data:`MAX_LEGEND_LINES` series every line has a legend entry (``series.name``); with more, the
    legend has one entry per class (``"pull (n = 7)"``).

    Args:
        series: The lines; empty series are skipped.
        title: Figure title; a default naming the keypoint pair(s) when ``None``.

    Returns:
        The figure with a single axes.
    """
    fig = new_figure(10.0, 5.5)
    ax = fig.add_subplot()
    drawn = [s for s in series if len(s)]
    per_line_legend = len(drawn) <= MAX_LEGEND_LINES
    counts: dict[str | None, int] = {}
    for s in drawn:
        counts[s.label] = counts.get(s.label, 0) + 1
        ax.plot(s.t_norm, s.values, color=class_colour(s.label), linewidth=1.4, alpha=0.85,
                marker="." if len(s) < 40 else None, label=s.name if per_line_legend else None)
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
            ax.legend(fontsize=8, title="segment: class (line colour = class)", title_fontsize=8)
        else:
            handles = [Line2D([], [], color=class_colour(label), linewidth=2.0,
                              label=f"{label or 'unlabelled'} (n = {count})") for label, count in counts.items()]
            ax.legend(handles=handles, fontsize=8, title="class", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no similarity data", transform=ax.transAxes, ha="center", va="center")
    classes = " vs ".join(sorted({(label or "unlabelled").replace("_", " ") for label in counts})) or "no data"
    ax.set_title(title or f"Heatmap cosine similarity over each segment: {pair_text}\n{classes}", fontsize=11)
    return fig
