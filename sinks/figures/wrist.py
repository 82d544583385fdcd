"""Thesis Figs. 4-5: batter keypoints on a frame, the wrist trajectory and its fit, r(t) and its fit.

Units: keypoints are frame pixels (x right, y down); ``dx``, ``dy`` are wrist - shoulder in frame
widths / frame heights (so ``dy < 0``: wrist above the shoulder); times are seconds of source PTS.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine.types import COCO_KEYPOINT_NAMES, COCO_SKELETON, KEYPOINT_INDEX
from sinks.figures.canvas import new_figure
from sinks.figures.labels import place_labels
from sinks.figures.values import PoseSnapshot, WristSegment

#: Share of the observed data's span left free on each side of the centre and right panels; the
#: fitted curves are clipped there, so a fit that leaves the data's range cannot take the axes over.
AXIS_MARGIN = 0.08


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
    ax.legend(loc="best", fontsize=7, framealpha=0.8)


def _label_keypoints(
    ax: Axes, pose: PoseSnapshot, highlight: tuple[str, str], min_keypoint_conf: float, path: np.ndarray | None
) -> None:
    """Name each visible keypoint, placed by its position on screen (:func:`~sinks.figures.labels.place_labels`).

    Call it when the figure is otherwise complete: placement measures the final layout.
    """
    visible = np.flatnonzero(pose.keypoints_conf >= min_keypoint_conf)
    if not visible.size:
        return
    first = [int(np.flatnonzero(visible == KEYPOINT_INDEX[name])[0]) for name in highlight
             if KEYPOINT_INDEX[name] in visible]
    hidden = np.flatnonzero(pose.keypoints_conf < min_keypoint_conf)
    avoid = [pose.keypoints_xy[hidden]]
    if path is not None and len(path):
        avoid.append(path[np.isfinite(path).all(axis=1)])
    legend = ax.get_legend()
    place_labels(ax, pose.keypoints_xy[visible], [COCO_KEYPOINT_NAMES[i] for i in visible], fontsize=6.0,
                 first=first, avoid_xy=np.vstack(avoid), avoid_artists=[legend] if legend is not None else [])


def data_limits(values: np.ndarray, *, include: tuple[float, ...] = (), margin: float = AXIS_MARGIN,
                ) -> tuple[float, float] | None:
    """``(lo, hi)`` of the finite ``values`` and ``include``, widened by ``margin`` of the span on each side.

    A single value (zero span) gets ``margin`` of its magnitude, at least ``1e-3``, on each side.
    ``None`` when there is no finite value.
    """
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = np.r_[finite[np.isfinite(finite)], np.asarray(include, dtype=np.float64)]
    if not finite.size:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    pad = (hi - lo) * margin if hi > lo else max(abs(hi) * margin, 1e-3)
    return lo - pad, hi + pad


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

    Keypoint names are placed by where each point lies on screen, away from the skeleton's centre,
    never over each other or another point (:func:`~sinks.figures.labels.place_labels`). The centre
    and right panels show the observed points' range (and the shoulder at the origin) plus
    :data:`AXIS_MARGIN` of it: a fit that leaves that range is clipped at the axes instead of
    stretching them. The fits are drawn over the fit's domain only (the fitted points' first to last
    time, never beyond), and :func:`engine.analytics.fit_degree_cap` keeps the degree low enough
    for the points that they stay near the data; the clipping guards fits made elsewhere.

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
    fig = new_figure(17.0, 5.8)
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
    _draw_trajectory(centre, segment, t_dense)
    _draw_distance(right, segment, t_dense)
    fig.suptitle(title if title is not None else segment_title(segment), fontsize=11)
    if pose is not None:
        _label_keypoints(left, pose, (segment.wrist, segment.shoulder), min_keypoint_conf, wrist_path_xy)
    return fig


def _draw_trajectory(centre: Axes, segment: WristSegment, t_dense: np.ndarray) -> None:
    """Centre panel: observed (dx, dy) coloured by time, the Legendre fit, axes held to the data (+ margin)."""
    dx_fit, dy_fit = segment.dx_poly()(t_dense), segment.dy_poly()(t_dense)
    centre.plot(dx_fit, dy_fit, color="black", linewidth=1.8,
                label=f"degree-{segment.degree_xy} Legendre fit dx(t), dy(t)")
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
    x_limits = data_limits(segment.dx, include=(0.0,))
    y_limits = data_limits(segment.dy, include=(0.0,))
    if x_limits is not None and y_limits is not None:
        centre.set_xlim(*x_limits)
        centre.set_ylim(y_limits[1], y_limits[0])  # inverted: up = up in the image
    if not centre.yaxis_inverted():
        centre.invert_yaxis()
    centre.set_xlabel(f"Δx = {segment.wrist} − {segment.shoulder} x (frame widths)")
    centre.set_ylabel("Δy (frame heights; axis inverted: up = up in image)")
    centre.set_title("wrist trajectory relative to the shoulder", fontsize=10)
    centre.legend(loc="best", fontsize=7, framealpha=0.8)
    fig = cast("Figure", centre.get_figure(root=True))
    colour_bar = fig.colorbar(points, ax=centre, pad=0.01)
    colour_bar.set_label("time since segment start (s)")
    centre.grid(alpha=0.3)


def _draw_distance(right: Axes, segment: WristSegment, t_dense: np.ndarray) -> None:
    """Right panel: observed r(t), its quadratic fit and vertex, axes held to the data (+ margin)."""
    r_obs = np.hypot(segment.dx, segment.dy)
    r_fit = segment.r_poly()(t_dense)
    right.plot(t_dense, r_fit, color="#d62728", linewidth=1.8,
               label=f"quadratic fit r(t) (degree {segment.r_coef.shape[0] - 1})")
    right.scatter(segment.t_s, r_obs, s=16, color="#1f77b4", zorder=3, label=f"observed (n = {segment.t_s.shape[0]})")
    if np.isfinite(r_obs).any():
        peak = int(np.nanargmax(r_obs))
        right.plot([segment.t_s[peak]], [r_obs[peak]], marker="*", markersize=12, color="#ff7f0e",
                   linestyle="none", label=f"peak r = {r_obs[peak]:.3f} at {segment.t_s[peak]:.2f} s")
    vertex = _quadratic_vertex(segment)
    if vertex is not None and segment.t_start_s <= vertex <= segment.t_end_s:
        right.axvline(vertex, color="#d62728", linestyle=":", linewidth=1.0,
                      label=f"fit vertex t = {vertex:.2f} s")
    right.set_xlabel("time (s, source PTS)")
    right.set_ylabel("r = √(Δx² + Δy²) (normalised units)")
    right.set_title("wrist-shoulder distance over time", fontsize=10)
    t_limits = data_limits(segment.t_s, include=segment.domain, margin=0.02)  # points at the ends stay whole
    if t_limits is not None:
        right.set_xlim(*t_limits)
    r_limits = data_limits(r_obs)
    if r_limits is not None:
        right.set_ylim(max(r_limits[0], 0.0), r_limits[1])  # r >= 0
    right.legend(loc="best", fontsize=7, framealpha=0.8)
    right.grid(alpha=0.3)


def _quadratic_vertex(segment: WristSegment) -> float | None:
    """Time where the quadratic r fit has zero slope, or ``None`` (degree < 2 or flat)."""
    c = segment.r_coef
    if c.shape[0] < 3 or c[2] == 0.0:
        return None
    u_star = -float(c[1]) / (3.0 * float(c[2]))  # d/du [c0 + c1 u + c2 (3u² - 1)/2] = c1 + 3 c2 u
    t_star = segment.t_start_s + (u_star + 1.0) * 0.5 * (segment.t_end_s - segment.t_start_s)
    return t_star if math.isfinite(t_star) else None
