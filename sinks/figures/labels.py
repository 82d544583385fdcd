"""Keypoint name labels placed by where each point lies on screen, never over each other.

A greedy point-feature label placement (Christensen, Marks & Shieber, "An empirical study of
algorithms for point-feature label placement", ACM TOG 14(3), 1995: candidate positions per point,
labels placed one after the other; the cartographic rule of labelling outwards): each label gets
candidate positions around its point, ordered from "straight away from the skeleton's centroid,
close to the point" outwards, and takes the first one that is free, by these rules in this order:

1. its box (measured with matplotlib's renderer, display pixels) overlaps no label placed before it
   and no obstacle (the legend), and stays inside the axes;
2. it covers no keypoint (a square of ``2 * POINT_HALF_PT`` around each);
3. it lies nearer its own point than any other point.

When no candidate meets all three, the first one meeting the most important rules wins. A label
that is not next to its point (farther than ``2 * GAP_PT``, or nearer another point) gets a thin
leader line to it. So a front-on ``left_shoulder`` (on the right of the screen) is labelled to its
right, whatever its name says.

Why not adjustText: it is not a dependency of batsight, and its iterative repulsion reduces overlaps
without guaranteeing none; 17 labels are a small problem for a greedy search with exact boxes.

The boxes are computed once the figure's layout is final (:meth:`Figure.draw_without_rendering`),
and the labels are kept out of the layout (``in_layout=False``), so a later layout pass (saving at
another dpi) moves nothing relative to the points: offsets are in points, which scale with the
figure like every other length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.text import Annotation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Fewest points a label's box keeps from its own point, typographic points.
GAP_PT = 3.0
#: Half-size of the square kept free around every point (markers are ~5 pt wide), points.
POINT_HALF_PT = 3.5
#: Extra margin around each label box when testing overlaps, points (covers the box's padding).
BOX_PAD_PT = 1.5
#: Candidate directions around a point (every 360 / N degrees) and distances (in units of ``GAP_PT``).
N_DIRECTIONS = 24
DISTANCES = (1.0, 2.5, 4.5, 7.0, 10.0, 14.0, 20.0)
#: The outward direction is taken from the point's offset to the centroid with its vertical part
#: scaled by this, so labels go beside the points of arms and legs (text is wide, not tall).
VERTICAL_BIAS = 0.5
#: Weights of the rules (see the module docstring): any breach of a rule outweighs all later ones.
_WEIGHTS = (1e12, 1e6, 1.0)


def _candidates(point: np.ndarray, outward: float, size: np.ndarray, px_per_pt: float) -> np.ndarray:
    """Candidate label boxes ``[C, 4]`` (x0, y0, x1, y1; display px) around ``point``, best first.

    Best: the direction nearest ``outward`` (radians, display coordinates, y up), then the nearest.
    """
    turns = np.array([(k + 1) // 2 * (1 if k % 2 else -1) for k in range(N_DIRECTIONS)])  # 0, 1, -1, 2, ...
    turn, ring = np.meshgrid(turns, np.arange(len(DISTANCES)), indexing="ij")
    cost = np.abs(turn) / (N_DIRECTIONS / 2) + 0.35 * ring
    order = np.argsort(cost.ravel(), kind="stable")
    angle = outward + turn.ravel()[order] * 2.0 * math.pi / N_DIRECTIONS
    gap = np.asarray(DISTANCES)[ring.ravel()[order]] * GAP_PT * px_per_pt
    u = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    reach = np.abs(u[:, 0]) * size[0] / 2 + np.abs(u[:, 1]) * size[1] / 2  # box half-extent along u
    centres = point + u * (gap + reach)[:, None]
    return np.hstack([centres - size / 2, centres + size / 2])


def _overlap_area(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Summed overlap area of each of ``boxes`` ``[C, 4]`` with ``others`` ``[M, 4]``, pixels²."""
    if not len(others):
        return np.zeros(len(boxes))
    w = np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(boxes[:, None, 0], others[None, :, 0])
    h = np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(boxes[:, None, 1], others[None, :, 1])
    return np.sum(np.clip(w, 0, None) * np.clip(h, 0, None), axis=1)


def box_point_distance(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance ``[C, P]`` from each box ``[C, 4]`` (x0, y0, x1, y1) to each point ``[P, 2]``, 0 inside."""
    dx = np.maximum(np.maximum(boxes[:, None, 0] - points[None, :, 0], points[None, :, 0] - boxes[:, None, 2]), 0)
    dy = np.maximum(np.maximum(boxes[:, None, 1] - points[None, :, 1], points[None, :, 1] - boxes[:, None, 3]), 0)
    return np.hypot(dx, dy)


def _best_box(
    i: int, points: np.ndarray, squares: np.ndarray, taken: np.ndarray, axes_box: np.ndarray, outward: float,
    size: np.ndarray, px_per_pt: float,
) -> tuple[np.ndarray, bool]:
    """The best candidate box of point ``i`` by the module's rules, and whether it is nearest its own point."""
    boxes = _candidates(points[i], outward, size, px_per_pt)
    outside = (np.clip(axes_box[0] - boxes[:, 0], 0, None) + np.clip(boxes[:, 2] - axes_box[2], 0, None)
               + np.clip(axes_box[1] - boxes[:, 1], 0, None) + np.clip(boxes[:, 3] - axes_box[3], 0, None))
    clash = _overlap_area(boxes, taken) + outside * float(size.max())
    covers = _overlap_area(boxes, squares)
    distances = box_point_distance(boxes, points)
    own = distances[:, i]
    others = np.delete(distances, i, axis=1).min(axis=1, initial=math.inf)
    nearest = own < others
    cost = _WEIGHTS[0] * clash + _WEIGHTS[1] * covers + _WEIGHTS[2] * (~nearest)
    best = int(np.argmin(cost))  # the first of equals: candidates are in order of preference
    return boxes[best], bool(nearest[best])


def place_labels(
    ax: Axes,
    xy: np.ndarray,
    texts: Sequence[str],
    *,
    fontsize: float = 6.0,
    first: Sequence[int] = (),
    avoid_xy: np.ndarray | None = None,
    avoid_artists: Sequence[Artist] = (),
) -> list[Annotation]:
    """Annotate point ``i`` at data ``xy[i]`` with ``texts[i]``, away from the centroid, without overlaps.

    Call it once the figure's layout is final (after every other artist and the axes limits are
    set); it runs the layout once (``fig.draw_without_rendering()``) to measure.

    Args:
        ax: The axes; its ``transData`` maps ``xy`` to display pixels.
        xy: float ``[n, 2]`` point positions in data coordinates.
        texts: ``n`` label texts.
        fontsize: Label size, points.
        first: Indices placed before the others (they get the best spots); the rest follow, points
            with the most neighbours within a few label heights first.
        avoid_xy: float ``[m, 2]`` further points (data coordinates) that labels must not cover.
        avoid_artists: Artists (a legend) whose window extent labels must not cover.

    Returns:
        The label annotations (gid ``"label:<text>"``), in the order of ``texts``: text centred
        ``xyann`` points from its point (``textcoords="offset points"``). A label not next to its
        point also gets a leader line to it: an annotation without text (gid ``"leader:<text>"``)
        drawn under the labels.

    Raises:
        ValueError: ``xy`` is not ``[len(texts), 2]``.
    """
    points_data = np.asarray(xy, dtype=np.float64)
    if points_data.shape != (len(texts), 2):
        msg = f"`xy` must have shape ({len(texts)}, 2), got {points_data.shape}"
        raise ValueError(msg)
    fig = cast("Figure", ax.get_figure(root=True))  # an axes of a figure always has one
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    px_per_pt = fig.dpi / 72.0
    points = ax.transData.transform(points_data).reshape(-1, 2)
    extra = np.asarray(avoid_xy if avoid_xy is not None else np.zeros((0, 2)), np.float64).reshape(-1, 2)
    all_points = np.vstack([points, ax.transData.transform(extra).reshape(-1, 2)])
    half_point = POINT_HALF_PT * px_per_pt
    squares = np.hstack([all_points - half_point, all_points + half_point])
    axes_box = np.asarray(ax.get_window_extent(renderer).extents)
    centroid = points.mean(axis=0) if len(points) else np.zeros(2)
    sizes = _text_sizes(ax, texts, fontsize, renderer) + 2 * BOX_PAD_PT * px_per_pt
    taken = [np.asarray(artist.get_window_extent(renderer).extents) for artist in avoid_artists]

    spacing = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    crowd = (spacing < 4 * sizes[:, 1].max(initial=1.0)).sum(axis=1)
    order = list(dict.fromkeys([*first, *sorted(range(len(texts)), key=lambda i: -crowd[i])]))
    placed: dict[int, tuple[np.ndarray, bool]] = {}
    for i in order:
        away = (points[i] - centroid) * (1.0, VERTICAL_BIAS)  # beside a limb's point rather than above it
        outward = math.atan2(away[1], away[0]) if np.hypot(*away) > 1e-6 else math.pi / 2  # centre: above
        placed[i] = _best_box(i, points, squares, np.array(taken).reshape(-1, 4), axes_box, outward, sizes[i],
                              px_per_pt)
        taken.append(placed[i][0])

    annotations = []
    for i, text in enumerate(texts):
        box, nearest = placed[i]
        centre = (box[:2] + box[2:]) / 2
        if not nearest or box_point_distance(box[None], points[i : i + 1])[0, 0] > 2 * GAP_PT * px_per_pt:
            # a leader from the box's nearest edge to the point, drawn under every label
            edge = np.clip(points[i], box[:2], box[2:])
            leader = ax.annotate(
                "", tuple(points_data[i]), xytext=tuple((edge - points[i]) / px_per_pt), textcoords="offset points",
                zorder=4.9, annotation_clip=False, gid=f"leader:{text}",
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "black", "shrinkA": 0, "shrinkB": 2},
            )
            leader.set_in_layout(False)
        annotation = ax.annotate(
            text, tuple(points_data[i]), xytext=tuple((centre - points[i]) / px_per_pt), textcoords="offset points",
            ha="center", va="center", fontsize=fontsize, color="black", zorder=5, annotation_clip=False,
            gid=f"label:{text}", bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.8, "lw": 0},
        )
        annotation.set_in_layout(False)
        annotations.append(annotation)
    return annotations


def _text_sizes(ax: Axes, texts: Sequence[str], fontsize: float, renderer: Any) -> np.ndarray:
    """Width and height, float ``[n, 2]``, of each text at ``fontsize`` (display pixels), measured and removed."""
    sizes = []
    for text in texts:
        probe = ax.text(0.0, 0.0, text, fontsize=fontsize, transform=None)
        sizes.append(probe.get_window_extent(renderer).size)
        probe.remove()
    return np.array(sizes, dtype=np.float64).reshape(-1, 2)
