"""Heatmap logits rendered from keypoints, and the spatial softmax that makes them probability maps.

Conventions (see :mod:`engine.types`): pixel coordinates are original-frame pixels, origin top-left,
x right, y down. ``K`` = 17 COCO keypoints, heatmaps are ``[K, S, S]`` on the batter's box grid
(row = y, column = x).

* :func:`render_heatmaps` draws Gaussian heatmap *logits* from keypoints, for backends without
  native heatmaps (DESIGN §3, ``heatmap_source: "rendered"``); :func:`separable_logits` gives its
  two 1-D factors (the fast path of :func:`engine.analytics.similarity.rendered_similarity_matrix`).
* :func:`spatial_softmax` turns logits into one probability map per keypoint (DESIGN §4).

Only numpy is used.
"""

from __future__ import annotations

import math

import numpy as np

from engine.types import COCO_OKS_SIGMAS, NUM_KEYPOINTS, check_array

__all__ = ["render_heatmaps", "separable_logits", "spatial_softmax"]


def _box_grid(xyxy: object, size: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cell-centre coordinates of an ``size x size`` grid on a box.

    Returns:
        ``(xs, ys, box_w, box_h)``: ``xs`` float64 ``[S]`` cell-centre x (frame pixels, column j),
        ``ys`` float64 ``[S]`` cell-centre y (row i), box width and height in pixels.

    Raises:
        ValueError: ``xyxy`` not shape (4,), not finite, or ``x2 <= x1`` / ``y2 <= y1``;
            ``size < 1``.
    """
    if int(size) != size or size < 1:
        msg = f"`size` must be a positive integer, got {size!r}"
        raise ValueError(msg)
    size = int(size)
    box = check_array("xyxy", xyxy, (4,), np.float64, convert=True)
    x1, y1, x2, y2 = (float(v) for v in box)
    box_w, box_h = x2 - x1, y2 - y1
    if not (math.isfinite(box_w) and math.isfinite(box_h)) or box_w <= 0 or box_h <= 0:
        msg = f"`xyxy` must be a finite box with x1 < x2 and y1 < y2, got {box.tolist()}"
        raise ValueError(msg)
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    return x1 + centres * box_w, y1 + centres * box_h, box_w, box_h


def _keypoint_sigmas_px(box_w: float, box_h: float) -> np.ndarray:
    """Per-keypoint Gaussian sigma in pixels, float64 ``[K]``: ``2 * COCO_OKS_SIGMAS * sqrt(w * h)``."""
    return 2.0 * COCO_OKS_SIGMAS.astype(np.float64) * math.sqrt(box_w * box_h)


def separable_logits(keypoints_xy: object, xyxy: object, size: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D factors of the rendered logits of :func:`render_heatmaps`: ``logit[k, i, j] = ly[k, i] + lx[k, j]``.

    Args:
        keypoints_xy: ``[K, 2]`` (K = 17) keypoint x, y in frame pixels, any real dtype.
        xyxy: ``[4]`` box ``x1, y1, x2, y2`` in frame pixels, ``x1 < x2``, ``y1 < y2``.
        size: Grid side ``S`` in cells (>= 1).

    Returns:
        ``(ly, lx)``, float64 ``[K, S]`` each (unitless logits): ``ly`` over rows (y), ``lx`` over
        columns (x).

    Raises:
        ValueError: as :func:`render_heatmaps`.
    """
    kp = check_array("keypoints_xy", keypoints_xy, (NUM_KEYPOINTS, 2), np.float64, convert=True)
    xs, ys, box_w, box_h = _box_grid(xyxy, size)
    inv_two_var = 1.0 / (2.0 * np.square(_keypoint_sigmas_px(box_w, box_h)))  # [K]
    lx = -np.square(xs[None, :] - kp[:, 0:1]) * inv_two_var[:, None]
    ly = -np.square(ys[None, :] - kp[:, 1:2]) * inv_two_var[:, None]
    return ly, lx


def render_heatmaps(keypoints_xy: np.ndarray, xyxy: np.ndarray, size: int = 56) -> np.ndarray:
    """Render Gaussian heatmap logits for one person on the grid of its box.

    Used for backends without native heatmaps (YOLO-pose; DESIGN §3 "rendered" heatmaps). The box
    ``xyxy`` is split into ``size x size`` equal cells; cell ``(i, j)`` (row ``i`` = y, column ``j``
    = x) has its centre at ``x1 + (j + 0.5) * w / S``, ``y1 + (i + 0.5) * h / S`` in frame pixels.
    The logit of that cell for keypoint ``k`` is ``-d^2 / (2 sigma_k^2)`` with ``d`` the pixel
    distance from the cell centre to keypoint ``k`` and
    ``sigma_k = 2 * COCO_OKS_SIGMAS[k] * sqrt(w * h)`` pixels.

    Method: COCO's object keypoint similarity scores a keypoint error ``d`` as
    ``exp(-d^2 / (2 s^2 kappa_k^2))`` with ``kappa_k = 2 sigma_k^COCO`` and ``s^2`` the object's
    segment area (cocoapi ``COCOeval.computeOks``); the rendered map is that same Gaussian, with the
    box area ``w * h`` standing in for the segment area (which a detector does not give). The
    logit is separable, ``-(dx^2)/(2 sigma^2) - (dy^2)/(2 sigma^2)``, and is built as an outer sum.

    Keypoints may lie outside the box; their logits stay finite (the map then peaks at the border
    cell nearest to the keypoint). Keypoint confidence is ignored: every keypoint is drawn where
    the model put it.

    Args:
        keypoints_xy: ``[K, 2]`` (K = 17) keypoint x, y in frame pixels, any real dtype.
        xyxy: ``[4]`` box ``x1, y1, x2, y2`` in frame pixels, ``x1 < x2``, ``y1 < y2``.
        size: Grid side ``S`` in cells (>= 1).

    Returns:
        ``float32 [K, S, S]`` logits (<= 0, maximum 0 only when a keypoint sits on a cell centre).

    Raises:
        ValueError: wrong shape of ``keypoints_xy`` or ``xyxy`` (expected vs actual), a degenerate
            or non-finite box, or ``size < 1``.
    """
    ly, lx = separable_logits(keypoints_xy, xyxy, size)
    out = np.empty((NUM_KEYPOINTS, ly.shape[1], lx.shape[1]), dtype=np.float32)
    np.add(ly.astype(np.float32)[:, :, None], lx.astype(np.float32)[:, None, :], out=out)
    return out


def spatial_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last two (spatial) axes: one probability map per keypoint.

    Numerically stable: each map's maximum is subtracted before ``exp``. Input of any real dtype is
    converted to float32 first. A map containing NaN, or all ``-inf``, gives NaN.

    Args:
        logits: ``[..., K, H, W]`` (at least 2-D; softmax runs over ``H, W``), unitless.

    Returns:
        ``float32`` of the same shape; every ``[H, W]`` map is non-negative and sums to 1.

    Raises:
        ValueError: fewer than 2 dimensions or an empty spatial map.
    """
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        msg = f"`logits` must have shape (..., K, H, W) with H, W >= 1, got {x.shape}"
        raise ValueError(msg)
    out = x - x.max(axis=(-2, -1), keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=(-2, -1), keepdims=True)
    return out


