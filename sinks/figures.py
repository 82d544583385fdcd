"""Report figures (thesis Figs. 3-6) as pure functions: data in, :class:`matplotlib.figure.Figure` out.

Headless and thread-safe by construction: every figure is a :class:`~matplotlib.figure.Figure` with its
own :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`; nothing touches ``pyplot`` or the global
backend, so the functions can run on a sink's runner thread while other code uses matplotlib.

* :func:`dependency_matrix_figure`: the 17x17 Keypoint Dependency Matrix (thesis Fig. 3).
* :func:`wrist_figure`: batter keypoints on a frame, the wrist trajectory relative to the shoulder with
  its Legendre fit, and r(t) with its quadratic fit (thesis Figs. 4 and 5).
* :func:`pair_similarity_figure`: wrist/shoulder heatmap cosine similarity over normalised segment
  time, one line per shot, coloured by class (thesis Fig. 6).
* :func:`save_png`: write a figure as PNG.

Units: keypoints are frame pixels (x right, y down); ``dx``, ``dy`` are wrist - shoulder in frame
widths / frame heights (so ``dy < 0``: wrist above the shoulder); times are seconds of source PTS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.polynomial import Legendre

from engine.analytics import WristFit
from engine.types import COCO_KEYPOINT_NAMES, COCO_SKELETON, KEYPOINT_INDEX, NUM_KEYPOINTS

#: Line / marker colour per shot class label (thesis Fig. 6: pull against cover drive).
CLASS_COLOURS: dict[str, str] = {"pull": "#d62728", "cover_drive": "#1f77b4", "other": "#7f7f7f"}
#: Colour of series without a class label.
UNLABELLED_COLOUR = "#2ca02c"
_EXTRA_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
#: Default resolution of :func:`save_png`, dots per inch.
DEFAULT_DPI = 150
#: Most lines that get their own legend entry in :func:`pair_similarity_figure`; above it the legend
#: lists one entry per class.
MAX_LEGEND_LINES = 12


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _float_array(name: str, value: object, ndim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        msg = f"`{name}` must be a {ndim}-D array, got shape {array.shape}"
        raise ValueError(msg)
    return array


def class_colour(label: str | None) -> str:
    """Colour of a class label (:data:`CLASS_COLOURS`; other labels get a stable extra colour)."""
    if label is None:
        return UNLABELLED_COLOUR
    if label in CLASS_COLOURS:
        return CLASS_COLOURS[label]
    return _EXTRA_COLOURS[sum(label.encode()) % len(_EXTRA_COLOURS)]


# --------------------------------------------------------------------------------------------------
# Values drawn by the figures
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoseSnapshot:
    """The batter's pose on one frame (from a ``pose/`` message).

    Attributes:
        frame_index: 0-based frame index in the source.
        pts_s: Frame time, seconds of source PTS.
        frame_width: Frame width ``W``, pixels (> 0).
        frame_height: Frame height ``H``, pixels (> 0).
        keypoints_xy: float ``[17, 2]`` keypoint x, y in frame pixels (COCO order).
        keypoints_conf: float ``[17]`` keypoint confidence in [0, 1].
        xyxy: float ``[4]`` batter box ``x1, y1, x2, y2`` in frame pixels, or ``None``.

    Raises:
        ValueError: wrong shapes or a non-positive frame size.
    """

    frame_index: int
    pts_s: float
    frame_width: int
    frame_height: int
    keypoints_xy: np.ndarray = field(repr=False)
    keypoints_conf: np.ndarray = field(repr=False)
    xyxy: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints_xy, dtype=np.float64)
        conf = np.asarray(self.keypoints_conf, dtype=np.float64)
        if kp.shape != (NUM_KEYPOINTS, 2):
            msg = f"`keypoints_xy` must have shape ({NUM_KEYPOINTS}, 2), got {kp.shape}"
            raise ValueError(msg)
        if conf.shape != (NUM_KEYPOINTS,):
            msg = f"`keypoints_conf` must have shape ({NUM_KEYPOINTS},), got {conf.shape}"
            raise ValueError(msg)
        if not (self.frame_width > 0 and self.frame_height > 0):
            msg = f"frame size must be > 0 pixels, got {self.frame_width!r} x {self.frame_height!r}"
            raise ValueError(msg)
        object.__setattr__(self, "keypoints_xy", kp)
        object.__setattr__(self, "keypoints_conf", conf)
        if self.xyxy is not None:
            box = np.asarray(self.xyxy, dtype=np.float64)
            if box.shape != (4,):
                msg = f"`xyxy` must have shape (4,), got {box.shape}"
                raise ValueError(msg)
            object.__setattr__(self, "xyxy", box)


@dataclass(frozen=True)
class WristSegment:
    """A wrist-vs-shoulder trajectory segment and its Legendre fits (one shot, or a whole run).

    The fits are ``numpy.polynomial.Legendre`` series on the domain ``[t_start_s, t_end_s]`` (the
    wire's ``dx_coef``, ``dy_coef``, ``r_coef``).

    Attributes:
        source_id: The source.
        t_s: float64 ``[n]`` point times, seconds of source PTS.
        dx: float64 ``[n]`` wrist - shoulder x, frame widths.
        dy: float64 ``[n]`` wrist - shoulder y, frame heights (image y, down positive).
        dx_coef: float64 Legendre coefficients of dx(t) (degree = length - 1).
        dy_coef: float64 Legendre coefficients of dy(t), same length as ``dx_coef``.
        r_coef: float64 ``[<= 3]`` Legendre coefficients of r(t) (quadratic).
        t_start_s: Start of the fit domain, seconds.
        t_end_s: End of the fit domain, seconds (``> t_start_s``).
        wrist: COCO name of the wrist.
        shoulder: COCO name of the shoulder.
        shot_index: Index of the shot in its source, or ``None`` for a whole-run segment.
        label: Class label (``"pull"``, ``"cover_drive"``, ``"other"``, ...), or ``None``.
        confidence: Classifier confidence of ``label`` in [0, 1], or ``None`` (label given by hand).
        start_frame: First frame index of the segment, or ``None``.
        end_frame: Last frame index of the segment, or ``None``.
        handedness: ``"right"`` / ``"left"`` or ``None``.

    Raises:
        ValueError: mismatched array lengths, unknown keypoint names, or an empty / reversed domain.
    """

    source_id: str
    t_s: np.ndarray = field(repr=False)
    dx: np.ndarray = field(repr=False)
    dy: np.ndarray = field(repr=False)
    dx_coef: np.ndarray = field(repr=False)
    dy_coef: np.ndarray = field(repr=False)
    r_coef: np.ndarray = field(repr=False)
    t_start_s: float
    t_end_s: float
    wrist: str = "left_wrist"
    shoulder: str = "left_shoulder"
    shot_index: int | None = None
    label: str | None = None
    confidence: float | None = None
    start_frame: int | None = None
    end_frame: int | None = None
    handedness: str | None = None

    def __post_init__(self) -> None:
        t = _float_array("t_s", self.t_s, 1)
        n = t.shape[0]
        for name in ("dx", "dy"):
            value = _float_array(name, getattr(self, name), 1)
            if value.shape != (n,):
                msg = f"`{name}` must have shape ({n},) like `t_s`, got {value.shape}"
                raise ValueError(msg)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "t_s", t)
        for name in ("dx_coef", "dy_coef", "r_coef"):
            coef = _float_array(name, getattr(self, name), 1)
            if coef.shape[0] < 1:
                msg = f"`{name}` must hold at least one coefficient, got shape {coef.shape}"
                raise ValueError(msg)
            object.__setattr__(self, name, coef)
        if self.dy_coef.shape != self.dx_coef.shape:
            msg = f"`dy_coef` must have shape {self.dx_coef.shape} like `dx_coef`, got {self.dy_coef.shape}"
            raise ValueError(msg)
        if self.r_coef.shape[0] > 3:
            msg = f"`r_coef` must hold at most 3 coefficients (quadratic), got {self.r_coef.shape[0]}"
            raise ValueError(msg)
        if not (math.isfinite(self.t_start_s) and math.isfinite(self.t_end_s) and self.t_start_s < self.t_end_s):
            msg = f"`t_start_s` < `t_end_s` (finite) required, got {self.t_start_s!r}, {self.t_end_s!r}"
            raise ValueError(msg)
        for name in ("wrist", "shoulder"):
            if getattr(self, name) not in KEYPOINT_INDEX:
                msg = f"`{name}` must be a COCO keypoint name, got {getattr(self, name)!r}"
                raise ValueError(msg)

    @classmethod
    def from_fit(
        cls,
        source_id: str,
        t_s: np.ndarray,
        dx: np.ndarray,
        dy: np.ndarray,
        fit: WristFit,
        **fields: object,
    ) -> WristSegment:
        """A segment from points and their :func:`engine.analytics.fit_wrist_trajectory` result."""
        return cls(
            source_id=source_id,
            t_s=t_s,
            dx=dx,
            dy=dy,
            dx_coef=fit.dx_coef,
            dy_coef=fit.dy_coef,
            r_coef=fit.r_coef,
            t_start_s=fit.t_start_s,
            t_end_s=fit.t_end_s,
            **fields,  # type: ignore[arg-type]
        )

    @property
    def degree_xy(self) -> int:
        """Degree of the dx(t), dy(t) fits."""
        return int(self.dx_coef.shape[0] - 1)

    @property
    def domain(self) -> tuple[float, float]:
        """``(t_start_s, t_end_s)``, seconds."""
        return (self.t_start_s, self.t_end_s)

    def dx_poly(self) -> Legendre:
        """dx(t) as a Legendre series; call it with seconds."""
        return Legendre(self.dx_coef, domain=list(self.domain))

    def dy_poly(self) -> Legendre:
        """dy(t) as a Legendre series; call it with seconds."""
        return Legendre(self.dy_coef, domain=list(self.domain))

    def r_poly(self) -> Legendre:
        """r(t) as a Legendre series; call it with seconds."""
        return Legendre(self.r_coef, domain=list(self.domain))

    def describe(self) -> str:
        """Short name: ``"src shot 2: pull (p = 0.91)"`` or ``"src (whole run)"``."""
        head = self.source_id if self.shot_index is None else f"{self.source_id} shot {self.shot_index}"
        if self.label is None:
            return head if self.shot_index is not None else f"{head} (whole run)"
        conf = "" if self.confidence is None else f" (p = {self.confidence:.2f})"
        return f"{head}: {self.label}{conf}"


@dataclass(frozen=True)
class PairSeries:
    """One line of :func:`pair_similarity_figure`.

    Attributes:
        name: Legend text, e.g. ``"pull_01 shot 0: pull (p = 0.91)"``.
        label: Class label that picks the colour, or ``None``.
        t_norm: float64 ``[n]`` time normalised to the segment, ``(t - start) / (end - start)`` in [0, 1].
        values: float64 ``[n]`` cosine similarity of the pair's heatmaps, in [0, 1] (NaN = missing).
        pair: Keypoint pair, ``"left_wrist/left_shoulder"``.

    Raises:
        ValueError: ``t_norm`` and ``values`` differ in length.
    """

    name: str
    label: str | None
    t_norm: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    pair: str = "left_wrist/left_shoulder"

    def __post_init__(self) -> None:
        t = _float_array("t_norm", self.t_norm, 1)
        v = _float_array("values", self.values, 1)
        if t.shape != v.shape:
            msg = f"`values` must have shape {t.shape} like `t_norm`, got {v.shape}"
            raise ValueError(msg)
        object.__setattr__(self, "t_norm", t)
        object.__setattr__(self, "values", v)

    def __len__(self) -> int:
        return int(self.t_norm.shape[0])


def normalised_time(t_s: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """``(t - start) / (end - start)``: 0 at the segment start, 1 at its end (zeros when end == start)."""
    t = np.asarray(t_s, dtype=np.float64)
    span = float(end_s) - float(start_s)
    if not span > 0:
        return np.zeros_like(t)
    return (t - float(start_s)) / span


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
    m = _float_array("matrix", matrix, 2)
    k = len(names)
    if m.shape != (k, k):
        msg = f"`matrix` must have shape ({k}, {k}), got {m.shape}"
        raise ValueError(msg)
    fig = _new_figure(9.0, 8.0)
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
# Figs. 4-5: keypoints, wrist trajectory, r(t)
# --------------------------------------------------------------------------------------------------


def _draw_pose(
    ax: Axes,
    pose: PoseSnapshot | None,
    image: np.ndarray | None,
    *,
    highlight: tuple[str, str],
    wrist_path_xy: np.ndarray | None,
    min_keypoint_conf: float,
    zoom_to_batter: bool,
    frame_size: tuple[int, int] | None,
) -> None:
    """Left panel: the frame (or a blank canvas of its size), skeleton, keypoint names, wrist path."""
    if pose is not None:
        width, height = pose.frame_width, pose.frame_height
    elif frame_size is not None:
        width, height = frame_size
    elif image is not None:
        height, width = image.shape[:2]
    else:
        width, height = 1, 1
    if image is not None:
        ax.imshow(image, extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="bilinear")
    else:
        ax.set_facecolor("#f2f2f2")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # image convention: y down
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px, down)")
    if pose is None:
        ax.text(0.5, 0.5, "no batter pose\nin this segment", transform=ax.transAxes, ha="center", va="center")
        ax.set_title("batter keypoints", fontsize=10)
        return

    kp, conf = pose.keypoints_xy, pose.keypoints_conf
    visible = conf >= min_keypoint_conf
    for a, b in COCO_SKELETON:
        if visible[a] and visible[b]:
            ax.plot(kp[[a, b], 0], kp[[a, b], 1], color="#00d0ff", linewidth=2.0, solid_capstyle="round")
    ax.scatter(kp[visible, 0], kp[visible, 1], s=22, color="#ffcc00", edgecolors="black", linewidths=0.6, zorder=3)
    hidden = ~visible
    if hidden.any():
        ax.scatter(kp[hidden, 0], kp[hidden, 1], s=18, marker="x", color="#888888", zorder=3,
                   label=f"conf < {min_keypoint_conf:g}")
    wrist_i, shoulder_i = KEYPOINT_INDEX[highlight[0]], KEYPOINT_INDEX[highlight[1]]
    ax.scatter(kp[[wrist_i], 0], kp[[wrist_i], 1], s=70, color="#d62728", edgecolors="white", zorder=4,
               label=highlight[0])
    ax.scatter(kp[[shoulder_i], 0], kp[[shoulder_i], 1], s=70, marker="s", color="#9467bd",
               edgecolors="white", zorder=4, label=highlight[1])
    if wrist_path_xy is not None and len(wrist_path_xy) >= 2:
        ax.plot(wrist_path_xy[:, 0], wrist_path_xy[:, 1], color="#d62728", linewidth=1.0, alpha=0.7,
                linestyle="--", label=f"{highlight[0]} path (segment)")
    for i, name in enumerate(COCO_KEYPOINT_NAMES):
        if visible[i]:
            # left-side names to the left of their point, right-side ones to the right: in a side-on
            # view the two arms overlap, and the labels then still do not
            left = name.startswith("left_")
            ax.annotate(name, (kp[i, 0], kp[i, 1]), xytext=(-5 if left else 5, 3), textcoords="offset points",
                        ha="right" if left else "left", fontsize=6, color="black",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.6, "lw": 0})

    if zoom_to_batter:
        points = kp[visible] if visible.any() else kp
        boxes = [points.min(axis=0), points.max(axis=0)]
        if pose.xyxy is not None and np.isfinite(pose.xyxy).all():
            boxes += [pose.xyxy[:2], pose.xyxy[2:]]
        if wrist_path_xy is not None and len(wrist_path_xy):
            boxes += [np.nanmin(wrist_path_xy, axis=0), np.nanmax(wrist_path_xy, axis=0)]
        lo, hi = np.min(boxes, axis=0), np.max(boxes, axis=0)
        centre, half = (lo + hi) / 2.0, np.maximum((hi - lo) * 0.65, 40.0)
        x0, x1 = max(0.0, centre[0] - half[0]), min(float(width), centre[0] + half[0])
        y0, y1 = max(0.0, centre[1] - half[1]), min(float(height), centre[1] + half[1])
        if x1 > x0 and y1 > y0:
            ax.set_xlim(x0, x1)
            ax.set_ylim(y1, y0)
    where = "on the video frame" if image is not None else "no video: blank canvas of the frame size"
    ax.set_title(f"batter keypoints, frame {pose.frame_index} (t = {pose.pts_s:.2f} s)\n{where}", fontsize=10)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)


def segment_title(segment: WristSegment) -> str:
    """Figure title of :func:`wrist_figure`: source, shot, label and confidence, time span."""
    what = "shot" if segment.shot_index is not None else "whole run (no shot messages)"
    head = segment.source_id if segment.shot_index is None else f"{segment.source_id}, shot {segment.shot_index}"
    if segment.shot_index is None:
        head = f"{head}, {what}"
    if segment.label is not None:
        label = segment.label.replace("_", " ")
        head += f": {label}" + ("" if segment.confidence is None else f" (confidence {segment.confidence:.2f})")
        if segment.confidence is None:
            head += " (given label)"
    span = f"{segment.t_start_s:.2f}-{segment.t_end_s:.2f} s ({segment.t_end_s - segment.t_start_s:.2f} s"
    if segment.start_frame is not None and segment.end_frame is not None:
        span += f", frames {segment.start_frame}-{segment.end_frame}"
    span += ")"
    hand = f", {segment.handedness}-handed" if segment.handedness else ""
    return f"{head}\n{span}{hand}, {segment.wrist} relative to {segment.shoulder}"


def wrist_figure(
    segment: WristSegment,
    pose: PoseSnapshot | None = None,
    image: np.ndarray | None = None,
    *,
    wrist_path_xy: np.ndarray | None = None,
    frame_size: tuple[int, int] | None = None,
    min_keypoint_conf: float = 0.3,
    n_dense: int = 400,
    zoom_to_batter: bool = True,
    title: str | None = None,
) -> Figure:
    """Three panels like the thesis' Figs. 4-5 for one segment.

    Left: the batter's keypoints and skeleton (keypoint names, the analysed wrist and shoulder marked)
    on ``image`` or a blank canvas of the frame size, pixel axes with y down. Centre: observed
    ``(dx, dy)`` points (coloured by time) and the Legendre fit ``(dx(t), dy(t))`` evaluated on
    ``n_dense`` times spread evenly over ``[t_start_s, t_end_s]``; the y axis is inverted so that up
    on the plot is up in the image. Right: observed ``r = sqrt(dx² + dy²)`` against time with the
    quadratic fit on the same dense times, and the fit's vertex when it lies inside the segment.

    Args:
        segment: The points and fits.
        pose: The batter's pose on the frame shown on the left, or ``None`` (panel says so).
        image: uint8 ``[H, W, 3]`` RGB frame to draw on, or ``None`` for a blank canvas.
        wrist_path_xy: float ``[m, 2]`` wrist pixel positions over the segment (dashed line), or ``None``.
        frame_size: ``(W, H)`` pixels of the blank canvas when ``pose`` is ``None``.
        min_keypoint_conf: Keypoints below this confidence are drawn as grey crosses, without edges.
        n_dense: Number of times the fitted curves are evaluated at (>= 2).
        zoom_to_batter: Limit the left panel to the batter and the wrist path (axes stay in frame px).
        title: Figure title; :func:`segment_title` when ``None``.

    Returns:
        The figure. ``fig.axes[:3]`` are the left, centre and right panels (in that order); the
        centre panel's first line is the fitted curve, the right panel's first line the r fit, both
        over the same dense times (``right.lines[0].get_xdata()``). Further axes are colour bars.

    Raises:
        ValueError: ``n_dense < 2``, or ``image`` not ``[H, W, 3]``.
    """
    if n_dense < 2:
        msg = f"`n_dense` must be >= 2, got {n_dense}"
        raise ValueError(msg)
    if image is not None and (image.ndim != 3 or image.shape[2] != 3):
        msg = f"`image` must have shape (H, W, 3), got {image.shape}"
        raise ValueError(msg)
    fig = _new_figure(17.0, 5.8)
    left, centre, right = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.25, 1.25]})
    _draw_pose(
        left,
        pose,
        image,
        highlight=(segment.wrist, segment.shoulder),
        wrist_path_xy=wrist_path_xy,
        min_keypoint_conf=min_keypoint_conf,
        zoom_to_batter=zoom_to_batter,
        frame_size=frame_size,
    )

    t_dense = np.linspace(segment.t_start_s, segment.t_end_s, int(n_dense))
    dx_fit, dy_fit = segment.dx_poly()(t_dense), segment.dy_poly()(t_dense)
    degree = segment.degree_xy
    centre.plot(dx_fit, dy_fit, color="black", linewidth=1.8, label=f"degree-{degree} Legendre fit dx(t), dy(t)")
    n = segment.t_s.shape[0]
    points = centre.scatter(segment.dx, segment.dy, c=segment.t_s - segment.t_start_s, cmap="viridis", s=16,
                            zorder=3, label=f"observed (n = {n})")
    centre.plot([dx_fit[0]], [dy_fit[0]], marker="o", markersize=8, markerfacecolor="none", color="black",
                linestyle="none", label="fit start")
    centre.plot([dx_fit[-1]], [dy_fit[-1]], marker="X", markersize=8, color="black", linestyle="none",
                label="fit end")
    centre.plot([0.0], [0.0], marker="s", markersize=8, color="#9467bd", linestyle="none",
                label=f"{segment.shoulder} (origin)")
    centre.axhline(0.0, color="#bbbbbb", linewidth=0.6, zorder=0)
    centre.axvline(0.0, color="#bbbbbb", linewidth=0.6, zorder=0)
    if not centre.yaxis_inverted():
        centre.invert_yaxis()
    centre.set_xlabel(f"Δx = {segment.wrist} − {segment.shoulder} x (frame widths)")
    centre.set_ylabel("Δy (frame heights; axis inverted: up = up in image)")
    centre.set_title("wrist trajectory relative to the shoulder", fontsize=10)
    centre.legend(loc="best", fontsize=7, framealpha=0.8)
    colour_bar = fig.colorbar(points, ax=centre, pad=0.01)
    colour_bar.set_label("time since segment start (s)")

    r_obs = np.hypot(segment.dx, segment.dy)
    r_fit = segment.r_poly()(t_dense)
    right.plot(t_dense, r_fit, color="#d62728", linewidth=1.8,
               label=f"quadratic fit r(t) (degree {segment.r_coef.shape[0] - 1})")
    right.scatter(segment.t_s, r_obs, s=16, color="#1f77b4", zorder=3, label=f"observed (n = {n})")
    if n:
        peak = int(np.argmax(r_obs))
        right.plot([segment.t_s[peak]], [r_obs[peak]], marker="*", markersize=12, color="#ff7f0e",
                   linestyle="none", label=f"peak r = {r_obs[peak]:.3f} at {segment.t_s[peak]:.2f} s")
    vertex = _quadratic_vertex(segment)
    if vertex is not None and segment.t_start_s <= vertex <= segment.t_end_s:
        right.axvline(vertex, color="#d62728", linestyle=":", linewidth=1.0,
                      label=f"fit vertex t = {vertex:.2f} s")
    right.set_xlabel("time (s, source PTS)")
    right.set_ylabel("r = √(Δx² + Δy²) (normalised units)")
    right.set_title("wrist-shoulder distance over time", fontsize=10)
    right.set_xlim(segment.t_start_s, segment.t_end_s)
    right.legend(loc="best", fontsize=7, framealpha=0.8)
    right.grid(alpha=0.3)
    centre.grid(alpha=0.3)
    fig.suptitle(title if title is not None else segment_title(segment), fontsize=11)
    return fig


def _quadratic_vertex(segment: WristSegment) -> float | None:
    """Time where the quadratic r fit has zero slope, or ``None`` (degree < 2 or flat)."""
    c = segment.r_coef
    if c.shape[0] < 3 or c[2] == 0.0:
        return None
    u_star = -float(c[1]) / (3.0 * float(c[2]))  # d/du [c0 + c1 u + c2 (3u² - 1)/2] = c1 + 3 c2 u
    t_star = segment.t_start_s + (u_star + 1.0) * 0.5 * (segment.t_end_s - segment.t_start_s)
    return t_star if math.isfinite(t_star) else None


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
    fig = _new_figure(10.0, 5.5)
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


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def save_png(fig: Figure, path: str | Path, dpi: int = DEFAULT_DPI, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``fig`` as a PNG at ``dpi`` and return the path (the figure is not closed: no pyplot)."""
    target = Path(path)
    fig.savefig(target, format="png", dpi=dpi, metadata=dict(metadata or {}))
    return target
