"""Per-source analytics: keypoint dependency matrix (thesis 6.1) and wrist-vs-shoulder fits (6.2).

Conventions (see :mod:`engine.types`): pixel coordinates are original-frame pixels, origin top-left,
x right, y down; ``_norm`` quantities are divided by the frame width / height; times are seconds on
the source's PTS timeline (``pts_s``). ``K`` = 17 COCO keypoints, heatmaps are ``[K, S, S]`` on the
batter's box grid (row = y, column = x).

Pieces, each usable on its own:

* :func:`render_heatmaps` draws Gaussian heatmap *logits* from keypoints, for backends without
  native heatmaps (DESIGN §3, ``heatmap_source: "rendered"``).
* :func:`spatial_softmax` turns logits into one probability map per keypoint (DESIGN §4).
* :func:`cosine_similarity_matrix` / :func:`cosine_similarity_matrices` build the Keypoint
  Dependency Matrix of thesis §6.1 (cosine of flattened maps).
* :class:`RollingMean` averages matrices over a time window and since the start.
* :func:`wrist_offsets`, :func:`fit_wrist_trajectory`, :class:`RollingWristFit` implement the
  geometric analysis of thesis §6.2 (Δx(t), Δy(t) degree-10 fits, r(t) quadratic) in a Legendre
  basis on the window mapped to [-1, 1].
* :class:`SourceAnalytics` ties them together for one source: ``update(PoseResult)``.

Only numpy is used. Nothing here is thread-safe: one :class:`SourceAnalytics` per source, called
from one thread.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import Legendre
from numpy.polynomial import legendre as _leg

from engine.config import AnalyticsConfig
from engine.types import COCO_OKS_SIGMAS, KEYPOINT_INDEX, NUM_KEYPOINTS, PoseResult

__all__ = [
    "AnalyticsUpdate",
    "RollingMean",
    "RollingWristFit",
    "SourceAnalytics",
    "WristFit",
    "cosine_similarity_matrices",
    "cosine_similarity_matrix",
    "fit_wrist_trajectory",
    "render_heatmaps",
    "rendered_similarity_matrix",
    "spatial_softmax",
    "wrist_offsets",
]

# --------------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------------


def _shape_text(shape: tuple[int | None, ...]) -> str:
    """``(17, *)`` style text of an expected shape, ``(4,)`` for one dimension (as numpy prints)."""
    parts = ["*" if s is None else str(s) for s in shape]
    return "(" + parts[0] + ",)" if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def _as_float_array(name: str, value: object, shape: tuple[int | None, ...], dtype: type) -> np.ndarray:
    """Convert ``value`` to an array of ``dtype`` and check its shape (``None`` = any size).

    Raises:
        ValueError: wrong number of dimensions or wrong size, message gives expected and actual.
    """
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, arr.shape, strict=True)):
        msg = f"`{name}` must have shape {_shape_text(shape)}, got {arr.shape}"
        raise ValueError(msg)
    return arr


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
    box = _as_float_array("xyxy", xyxy, (4,), np.float64)
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


def _separable_logits(
    keypoints_xy: object, xyxy: object, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """1-D factors of the rendered logits: ``logit[k, i, j] = ly[k, i] + lx[k, j]``.

    Returns:
        ``(ly, lx)``, float64 ``[K, S]`` each (unitless logits).
    """
    kp = _as_float_array("keypoints_xy", keypoints_xy, (NUM_KEYPOINTS, 2), np.float64)
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
    ly, lx = _separable_logits(keypoints_xy, xyxy, size)
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


def cosine_similarity_matrices(heatmaps: np.ndarray) -> np.ndarray:
    """Keypoint Dependency Matrix (thesis §6.1) for a batch of persons: one matmul.

    Each ``[H, W]`` map is flattened to a vector; entry ``[n, a, b]`` is
    ``A . B / (|A| |B|)`` for maps ``a`` and ``b`` of person ``n``. For non-negative maps (for
    example after :func:`spatial_softmax`) this lies in [0, 1]; the result is clipped to [0, 1]
    (negative inputs are therefore reported as 0) and the diagonal is set to exactly 1. A map that
    is all zeros has no direction: its row and column are 0, except the diagonal entry, which is 1.
    Computed in float32 (inputs are converted).

    Args:
        heatmaps: ``[N, K, H, W]`` non-negative maps (probabilities or any scale: cosine is
            scale-invariant).

    Returns:
        ``float32 [N, K, K]``, symmetric, in [0, 1], diagonal 1.

    Raises:
        ValueError: ``heatmaps`` is not 4-D.
    """
    h = np.asarray(heatmaps, dtype=np.float32)
    if h.ndim != 4:
        msg = f"`heatmaps` must have shape (N, K, H, W), got {h.shape}"
        raise ValueError(msg)
    n, k = h.shape[:2]
    flat = h.reshape(n, k, -1)
    norms = np.sqrt(np.einsum("nkp,nkp->nk", flat, flat))
    with np.errstate(divide="ignore"):
        inv = np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)
    unit = flat * inv[:, :, None]
    sim = np.matmul(unit, unit.transpose(0, 2, 1))
    np.clip(sim, 0.0, 1.0, out=sim)
    diag = np.arange(k)
    sim[:, diag, diag] = 1.0
    return sim


def cosine_similarity_matrix(heatmaps: np.ndarray) -> np.ndarray:
    """Keypoint Dependency Matrix (thesis §6.1) of one person.

    Same rules as :func:`cosine_similarity_matrices` (flattened maps, ``A . B / (|A| |B|)``,
    clipped to [0, 1], diagonal exactly 1, all-zero map -> row and column 0 except the diagonal).

    Args:
        heatmaps: ``[K, H, W]`` non-negative maps.

    Returns:
        ``float32 [K, K]``.

    Raises:
        ValueError: ``heatmaps`` is not 3-D.
    """
    h = np.asarray(heatmaps)
    if h.ndim != 3:
        msg = f"`heatmaps` must have shape (K, H, W), got {h.shape}"
        raise ValueError(msg)
    return cosine_similarity_matrices(h[None])[0]


def rendered_similarity_matrix(keypoints_xy: np.ndarray, xyxy: np.ndarray, size: int = 56) -> np.ndarray:
    """Fast path: ``cosine_similarity_matrix(spatial_softmax(render_heatmaps(...)))`` without the maps.

    Method: a rendered logit map is an outer sum ``ly[i] + lx[j]``, so its softmax is the outer
    product ``py[i] * px[j]`` of two 1-D softmaxes, and for outer products
    ``(ay (x) ax) . (by (x) bx) = (ay . by)(ax . bx)``. The 2-D cosine is therefore the elementwise
    product of the two 1-D cosine matrices: ``O(K^2 S)`` instead of ``O(K^2 S^2)``. Computed in
    float64 and agrees with the generic float32 path to about 1e-6.

    Args:
        keypoints_xy: ``[K, 2]`` keypoint x, y in frame pixels.
        xyxy: ``[4]`` box in frame pixels, ``x1 < x2``, ``y1 < y2``.
        size: Grid side ``S`` in cells.

    Returns:
        ``float32 [K, K]``, symmetric, in [0, 1], diagonal 1.

    Raises:
        ValueError: as :func:`render_heatmaps`.
    """
    ly, lx = _separable_logits(keypoints_xy, xyxy, size)
    out = np.ones((NUM_KEYPOINTS, NUM_KEYPOINTS), dtype=np.float64)
    for factor in (ly, lx):
        p = np.exp(factor - factor.max(axis=1, keepdims=True))  # scale is irrelevant for cosine
        unit = p / np.sqrt(np.einsum("ks,ks->k", p, p))[:, None]
        out *= unit @ unit.T
    np.clip(out, 0.0, 1.0, out=out)
    np.fill_diagonal(out, 1.0)
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Rolling mean
# --------------------------------------------------------------------------------------------------


def _check_window_s(window_s: float) -> float:
    w = float(window_s)
    if not (math.isfinite(w) and w > 0):
        msg = f"`window_s` must be a finite number > 0 seconds, got {window_s!r}"
        raise ValueError(msg)
    return w


def _check_pts_s(pts_s: float) -> float:
    t = float(pts_s)
    if not math.isfinite(t):
        msg = f"`pts_s` must be a finite number of seconds, got {pts_s!r}"
        raise ValueError(msg)
    return t


class RollingMean:
    """Mean of equally shaped arrays over a sliding time window, and since the last reset.

    Window: a sample taken at ``t`` is in the window at time ``pts_s`` while its age
    ``pts_s - t`` lies in ``[0, window_s)``, i.e. ``t`` lies in the half-open interval
    ``(pts_s - window_s, pts_s]``. The window ends at the current sample, so the newest value is
    always included (a window can never be empty after an update); the old end is open so that a
    window of ``window_s`` seconds at a steady frame rate holds exactly ``window_s * fps`` samples
    rather than one extra. In age terms this is the usual half-open ``[start, end)`` interval.

    Cost: a running float64 sum (add the new value, subtract the evicted ones), O(1) amortised per
    update independent of the window length; the sum is zeroed whenever the window empties, so
    rounding drift cannot build up across gaps.

    Timeline breaks: when ``pts_s`` is smaller than the previous update's (a seek, a looped file, a
    restarted stream) everything is reset first, including the cumulative mean, then the value is
    added. Equal ``pts_s`` are accepted as further samples.

    Not thread-safe; one instance per source, called from one thread.

    Args:
        window_s: Window length in seconds, > 0.

    Raises:
        ValueError: ``window_s`` is not a finite number > 0.
    """

    def __init__(self, window_s: float) -> None:
        self._window_s = _check_window_s(window_s)
        self._times: deque[float] = deque()
        self._values: deque[np.ndarray] = deque()
        self._sum: np.ndarray | None = None
        self._total: np.ndarray | None = None
        self._total_count = 0
        self._last_pts_s: float | None = None

    @property
    def window_s(self) -> float:
        """Window length, seconds."""
        return self._window_s

    @property
    def count(self) -> int:
        """Number of samples in the current window (0 before the first update)."""
        return len(self._times)

    @property
    def cumulative_count(self) -> int:
        """Number of samples since the last reset."""
        return self._total_count

    @property
    def cumulative_mean(self) -> np.ndarray | None:
        """float64 mean of every value since the last reset (a new array), or ``None`` if none."""
        if self._total is None or self._total_count == 0:
            return None
        return self._total / self._total_count

    def reset(self) -> None:
        """Forget every sample (window and cumulative)."""
        self.reset_window()
        self._total = None
        self._total_count = 0

    def reset_window(self) -> None:
        """Empty the window but keep the cumulative mean (a timeline break inside one source)."""
        self._times.clear()
        self._values.clear()
        self._sum = None
        self._last_pts_s = None

    def update(self, pts_s: float, value: np.ndarray) -> np.ndarray:
        """Add ``value`` taken at ``pts_s`` and return the window mean.

        Args:
            pts_s: Sample time, seconds on the source's PTS timeline.
            value: Array of any shape (the same for every update until a reset); copied as float64.

        Returns:
            float64 array of ``value``'s shape: mean of the samples with ``t`` in
            ``(pts_s - window_s, pts_s]``.

        Raises:
            ValueError: ``pts_s`` not finite, or ``value``'s shape differs from earlier values.
        """
        t = _check_pts_s(pts_s)
        v = np.array(value, dtype=np.float64, copy=True)
        if self._last_pts_s is not None and t < self._last_pts_s:
            self.reset()
        if self._total is None:
            self._total = np.zeros_like(v)
        if self._sum is None:
            self._sum = np.zeros_like(v)
        if v.shape != self._total.shape:
            msg = f"`value` must have shape {self._total.shape} (as before), got {v.shape}"
            raise ValueError(msg)
        times, values = self._times, self._values
        while times and t - times[0] >= self._window_s:
            times.popleft()
            self._sum -= values.popleft()
        if not times:
            self._sum.fill(0.0)
        times.append(t)
        values.append(v)
        self._sum += v
        self._total += v
        self._total_count += 1
        self._last_pts_s = t
        return self._sum / len(times)


# --------------------------------------------------------------------------------------------------
# Wrist vs shoulder geometry (thesis 6.2)
# --------------------------------------------------------------------------------------------------


def _keypoint_index(name: str, what: str) -> int:
    try:
        return KEYPOINT_INDEX[name]
    except KeyError:
        msg = f"`{what}` must be a COCO keypoint name ({', '.join(KEYPOINT_INDEX)}), got {name!r}"
        raise ValueError(msg) from None


def wrist_offsets(
    keypoints_xy: np.ndarray,
    width: float,
    height: float,
    wrist: str = "left_wrist",
    shoulder: str = "left_shoulder",
) -> tuple[float, float]:
    """Wrist position relative to the shoulder in frame-normalised coordinates (thesis §6.2).

    ``dx = x_w / W - x_s / W``, ``dy = y_w / H - y_s / H``; y grows downwards, so ``dy < 0`` when
    the wrist is above the shoulder. Centring on the shoulder removes global motion and panning.

    Args:
        keypoints_xy: ``[K, 2]`` keypoint x, y in frame pixels.
        width: Frame width ``W`` in pixels, > 0.
        height: Frame height ``H`` in pixels, > 0.
        wrist: COCO name of the wrist keypoint.
        shoulder: COCO name of the shoulder keypoint.

    Returns:
        ``(dx, dy)`` as Python floats, in frame widths / frame heights.

    Raises:
        ValueError: wrong shape, non-positive size, or an unknown keypoint name.
    """
    kp = _as_float_array("keypoints_xy", keypoints_xy, (NUM_KEYPOINTS, 2), np.float64)
    if not (width > 0 and height > 0):
        msg = f"`width` and `height` must be > 0 pixels, got {width!r} x {height!r}"
        raise ValueError(msg)
    iw, ish = _keypoint_index(wrist, "wrist"), _keypoint_index(shoulder, "shoulder")
    dx = (float(kp[iw, 0]) - float(kp[ish, 0])) / float(width)
    dy = (float(kp[iw, 1]) - float(kp[ish, 1])) / float(height)
    return dx, dy


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class WristFit:
    """Legendre fits of the wrist-vs-shoulder trajectory over a time window (thesis §6.2).

    All polynomials are ``numpy.polynomial.Legendre`` series on the domain
    ``[t_start_s, t_end_s]`` mapped to the window ``[-1, 1]`` (``u = 2 (t - t_start_s) /
    (t_end_s - t_start_s) - 1``); the coefficients are exactly those of
    ``Legendre.fit(t, y, deg)`` on the same points. Offsets are in frame-normalised units (see
    :func:`wrist_offsets`).

    Attributes:
        n_points: Number of points fitted (>= 2).
        t_start_s: Earliest point time, seconds (source PTS); start of the fit domain.
        t_end_s: Latest point time, seconds; end of the fit domain (``> t_start_s``).
        degree_xy: Degree of the Δx(t), Δy(t) fits (``len(dx_coef) - 1``).
        dx_coef: float64 ``[degree_xy + 1]`` Legendre coefficients of Δx(t).
        dy_coef: float64 ``[degree_xy + 1]`` Legendre coefficients of Δy(t).
        r_coef: float64 ``[<= 3]`` Legendre coefficients of r(t) = sqrt(Δx² + Δy²) (quadratic).
        rms_dx: Residual RMS of the Δx fit, frame widths.
        rms_dy: Residual RMS of the Δy fit, frame heights.
        rms_r: Residual RMS of the r fit, normalised units.
        horizontal_span: ``max Δx - min Δx`` of the observed points.
        vertical_span: ``max Δy - min Δy`` of the observed points.
        mean_elevation_deg: Mean of ``degrees(atan2(-Δy, |Δx|))`` over the points, in [-90, 90]:
            positive when the wrist is above the shoulder; ``|Δx|`` makes it handedness-free.
        peak_r: Largest observed r.
        peak_r_time_s: Time of the first point with r == ``peak_r``, seconds.
        r_vertex_time_s: Time where the fitted quadratic r(t) has its vertex (zero derivative),
            seconds; may lie outside the domain. ``None`` when the r fit has degree < 2 or its
            quadratic coefficient is 0 (vertex at infinity).

    Raises:
        ValueError: from ``__post_init__`` on inconsistent sizes, dtypes or times.
    """

    n_points: int
    t_start_s: float
    t_end_s: float
    degree_xy: int
    dx_coef: np.ndarray = field(repr=False)
    dy_coef: np.ndarray = field(repr=False)
    r_coef: np.ndarray = field(repr=False)
    rms_dx: float
    rms_dy: float
    rms_r: float
    horizontal_span: float
    vertical_span: float
    mean_elevation_deg: float
    peak_r: float
    peak_r_time_s: float
    r_vertex_time_s: float | None

    def __post_init__(self) -> None:
        if self.n_points < 2:
            msg = f"`n_points` must be >= 2, got {self.n_points}"
            raise ValueError(msg)
        if not (math.isfinite(self.t_start_s) and math.isfinite(self.t_end_s) and self.t_start_s < self.t_end_s):
            msg = f"`t_start_s` < `t_end_s` (finite) required, got {self.t_start_s!r}, {self.t_end_s!r}"
            raise ValueError(msg)
        if self.degree_xy < 1:
            msg = f"`degree_xy` must be >= 1, got {self.degree_xy}"
            raise ValueError(msg)
        for name, expected in (("dx_coef", self.degree_xy + 1), ("dy_coef", self.degree_xy + 1)):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.shape != (expected,):
                got = (value.shape, value.dtype) if isinstance(value, np.ndarray) else type(value).__name__
                msg = f"`{name}` must be float64 with shape ({expected},), got {got}"
                raise ValueError(msg)
        r = self.r_coef
        if not isinstance(r, np.ndarray) or r.dtype != np.float64 or r.ndim != 1 or not 1 <= r.shape[0] <= 3:
            got = (r.shape, r.dtype) if isinstance(r, np.ndarray) else type(r).__name__
            msg = f"`r_coef` must be float64 with shape (1..3,), got {got}"
            raise ValueError(msg)

    @property
    def domain(self) -> tuple[float, float]:
        """``(t_start_s, t_end_s)``, seconds."""
        return (self.t_start_s, self.t_end_s)

    def _poly(self, coef: np.ndarray) -> Legendre:
        return Legendre(coef, domain=[self.t_start_s, self.t_end_s])

    def dx_poly(self) -> Legendre:
        """Δx(t) as a ``Legendre`` series; call it with times in seconds."""
        return self._poly(self.dx_coef)

    def dy_poly(self) -> Legendre:
        """Δy(t) as a ``Legendre`` series; call it with times in seconds."""
        return self._poly(self.dy_coef)

    def r_poly(self) -> Legendre:
        """r(t) (quadratic) as a ``Legendre`` series; call it with times in seconds."""
        return self._poly(self.r_coef)


def fit_wrist_trajectory(t_s: np.ndarray, dx: np.ndarray, dy: np.ndarray, degree: int = 10) -> WristFit | None:
    """Fit Δx(t), Δy(t) (degree ``min(degree, n - 1)``) and r(t) (quadratic) in a Legendre basis.

    Method (thesis §6.2, DESIGN §4): least squares in the Legendre basis with time mapped from
    ``[min t, max t]`` to ``[-1, 1]``, reproducing ``numpy.polynomial.Legendre.fit(t, y, deg)``
    step for step (same mapping, same column scaling, same ``rcond = n * eps``), but with one
    Vandermonde matrix shared by the three fits: Δx and Δy are solved together, and the quadratic
    r fit uses the first three columns (Legendre columns do not depend on the degree). A raw power
    basis is never used; Legendre polynomials on [-1, 1] keep degree 10 well conditioned.
    ``n`` counts *distinct* times, so repeated timestamps do not make the fit rank-deficient. If
    points are so close together that the scaled matrix is still numerically rank-deficient, the
    minimum-norm solution is returned (``Legendre.fit`` would warn; this does not).

    Args:
        t_s: float ``[n]`` point times, seconds (any order).
        dx: float ``[n]`` Δx, frame widths.
        dy: float ``[n]`` Δy, frame heights.
        degree: Maximum degree of the Δx, Δy fits, >= 1.

    Returns:
        The :class:`WristFit`, or ``None`` when ``n < 2`` or all times are equal.

    Raises:
        ValueError: arrays not 1-D of equal length, non-finite values, or ``degree < 1``.
    """
    if int(degree) != degree or degree < 1:
        msg = f"`degree` must be an integer >= 1, got {degree!r}"
        raise ValueError(msg)
    t = _as_float_array("t_s", t_s, (None,), np.float64)
    n = t.shape[0]
    x_rel = _as_float_array("dx", dx, (n,), np.float64)
    y_rel = _as_float_array("dy", dy, (n,), np.float64)
    if not (np.isfinite(t).all() and np.isfinite(x_rel).all() and np.isfinite(y_rel).all()):
        msg = "`t_s`, `dx` and `dy` must be finite"
        raise ValueError(msg)
    if n < 2:
        return None
    t0, t1 = float(t.min()), float(t.max())
    if t0 == t1:
        return None
    n_distinct = int(np.unique(t).shape[0])
    deg_xy = min(int(degree), n_distinct - 1)
    deg_r = min(2, n_distinct - 1)

    # Same arithmetic as Legendre.fit: mapdomain(x, [t0, t1], [-1, 1]) then polyutils._fit.
    u = np.polynomial.polyutils.mapdomain(t, np.array([t0, t1]), np.array([-1.0, 1.0]))
    van = _leg.legvander(u, deg_xy)  # [n, deg_xy + 1]
    rcond = n * np.finfo(np.float64).eps
    scl = np.sqrt(np.square(van).sum(axis=0))
    scl[scl == 0] = 1.0
    xy = np.stack([x_rel, y_rel], axis=1)  # [n, 2]
    c_xy = np.linalg.lstsq(van / scl, xy, rcond)[0] / scl[:, None]
    r = np.hypot(x_rel, y_rel)
    van_r = van[:, : deg_r + 1]
    c_r = np.linalg.lstsq(van_r / scl[: deg_r + 1], r, rcond)[0] / scl[: deg_r + 1]

    res_xy = xy - van @ c_xy
    rms_xy = np.sqrt(np.mean(np.square(res_xy), axis=0))
    rms_r = float(np.sqrt(np.mean(np.square(r - van_r @ c_r))))

    vertex: float | None = None
    if deg_r == 2 and c_r[2] != 0.0:
        # r(u) = c0 + c1 u + c2 (3u^2 - 1)/2  ->  r'(u) = c1 + 3 c2 u = 0.
        u_star = -float(c_r[1]) / (3.0 * float(c_r[2]))
        t_star = t0 + (u_star + 1.0) * 0.5 * (t1 - t0)
        vertex = t_star if math.isfinite(t_star) else None

    peak = int(np.argmax(r))
    return WristFit(
        n_points=n,
        t_start_s=t0,
        t_end_s=t1,
        degree_xy=deg_xy,
        dx_coef=_readonly(np.ascontiguousarray(c_xy[:, 0])),
        dy_coef=_readonly(np.ascontiguousarray(c_xy[:, 1])),
        r_coef=_readonly(np.ascontiguousarray(c_r)),
        rms_dx=float(rms_xy[0]),
        rms_dy=float(rms_xy[1]),
        rms_r=rms_r,
        horizontal_span=float(x_rel.max() - x_rel.min()),
        vertical_span=float(y_rel.max() - y_rel.min()),
        mean_elevation_deg=float(np.degrees(np.arctan2(-y_rel, np.abs(x_rel))).mean()),
        peak_r=float(r[peak]),
        peak_r_time_s=float(t[peak]),
        r_vertex_time_s=vertex,
    )


class RollingWristFit:
    """Online :func:`fit_wrist_trajectory` over a sliding time window.

    Keeps the points with ``t`` in ``(pts_s - window_s, pts_s]`` (same rule and reasons as
    :class:`RollingMean`) and refits them on every update (``O(window)`` per update). When
    ``pts_s`` goes backwards the window is reset before the point is added.

    Not thread-safe; one instance per source, called from one thread.

    Args:
        window_s: Window length in seconds, > 0.
        degree: Maximum degree of the Δx, Δy fits, >= 1.

    Raises:
        ValueError: ``window_s`` not a finite number > 0, or ``degree < 1``.
    """

    def __init__(self, window_s: float, degree: int = 10) -> None:
        self._window_s = _check_window_s(window_s)
        if int(degree) != degree or degree < 1:
            msg = f"`degree` must be an integer >= 1, got {degree!r}"
            raise ValueError(msg)
        self._degree = int(degree)
        self._t: deque[float] = deque()
        self._dx: deque[float] = deque()
        self._dy: deque[float] = deque()

    @property
    def window_s(self) -> float:
        """Window length, seconds."""
        return self._window_s

    @property
    def count(self) -> int:
        """Number of points in the window."""
        return len(self._t)

    def reset(self) -> None:
        """Forget every point."""
        self._t.clear()
        self._dx.clear()
        self._dy.clear()

    def update(self, pts_s: float, dx: float, dy: float) -> WristFit | None:
        """Add the point ``(pts_s, dx, dy)`` and fit the window.

        Args:
            pts_s: Point time, seconds (source PTS).
            dx: Δx, frame widths.
            dy: Δy, frame heights.

        Returns:
            The fit of the window's points, or ``None`` while fewer than two distinct times.

        Raises:
            ValueError: non-finite ``pts_s``, ``dx`` or ``dy``.
        """
        t = _check_pts_s(pts_s)
        fx, fy = float(dx), float(dy)
        if not (math.isfinite(fx) and math.isfinite(fy)):
            msg = f"`dx` and `dy` must be finite, got {dx!r}, {dy!r}"
            raise ValueError(msg)
        if self._t and t < self._t[-1]:
            self.reset()
        while self._t and t - self._t[0] >= self._window_s:
            self._t.popleft()
            self._dx.popleft()
            self._dy.popleft()
        self._t.append(t)
        self._dx.append(fx)
        self._dy.append(fy)
        n = len(self._t)
        if n < 2:
            return None
        return fit_wrist_trajectory(
            np.fromiter(self._t, np.float64, n),
            np.fromiter(self._dx, np.float64, n),
            np.fromiter(self._dy, np.float64, n),
            self._degree,
        )


# --------------------------------------------------------------------------------------------------
# Per-source analytics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticsUpdate:
    """Analytics of one batter frame.

    Attributes:
        similarity: float32 ``[K, K]`` Keypoint Dependency Matrix of this frame (thesis §6.1).
        window_mean: float32 ``[K, K]`` mean of the matrices with pts in ``(pts_s - window_s, pts_s]``.
        cumulative_mean: float32 ``[K, K]`` mean of every matrix since the start or the last
            timeline break.
        window_frames: Number of batter frames in ``window_mean`` (>= 1).
        pairs: ``{"a/b": similarity}`` for the configured keypoint pairs, from this frame's matrix.
        fit: Wrist-vs-shoulder fit of the window, or ``None`` (wrist or shoulder below the
            confidence threshold this frame, or fewer than two points).
        dx: This frame's Δx (frame widths), ``None`` when wrist or shoulder is not confident.
        dy: This frame's Δy (frame heights), ``None`` likewise.

    Raises:
        ValueError: from ``__post_init__`` when a matrix is not float32 ``[K, K]`` or
            ``window_frames < 1``.
    """

    similarity: np.ndarray = field(repr=False)
    window_mean: np.ndarray = field(repr=False)
    cumulative_mean: np.ndarray = field(repr=False)
    window_frames: int
    pairs: dict[str, float]
    fit: WristFit | None
    dx: float | None
    dy: float | None

    def __post_init__(self) -> None:
        for name in ("similarity", "window_mean", "cumulative_mean"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != (
                NUM_KEYPOINTS,
                NUM_KEYPOINTS,
            ):
                got = (value.shape, value.dtype) if isinstance(value, np.ndarray) else type(value).__name__
                msg = f"`{name}` must be float32 with shape ({NUM_KEYPOINTS}, {NUM_KEYPOINTS}), got {got}"
                raise ValueError(msg)
        if self.window_frames < 1:
            msg = f"`window_frames` must be >= 1, got {self.window_frames}"
            raise ValueError(msg)


class SourceAnalytics:
    """All analytics state of one source: dependency matrix means and the rolling wrist fit.

    Per batter frame: heatmap logits (the model's ``result.heatmaps``, or rendered from the batter's
    keypoints and box with :func:`render_heatmaps` when ``None``) -> :func:`spatial_softmax` ->
    :func:`cosine_similarity_matrix`; window and cumulative means over frame PTS
    (:class:`RollingMean`); configured pair values; and, when both the wrist and the shoulder
    keypoints have confidence >= ``min_keypoint_conf``, the point ``(pts_s, Δx, Δy)`` is added to a
    :class:`RollingWristFit` and the window is refitted (otherwise the point is skipped and the
    frame's ``fit`` is ``None``).

    When this object renders the heatmaps itself it uses :func:`rendered_similarity_matrix`, which
    gives the same matrix without building the ``[K, S, S]`` maps.

    Not thread-safe; one instance per source, called from that source's analytics thread.

    Args:
        config: Window length, heatmap size, fit degree, wrist / shoulder names and pairs.
        min_keypoint_conf: Keypoint confidence threshold for the fit, in [0, 1].

    Raises:
        ValueError: ``min_keypoint_conf`` outside [0, 1].
    """

    def __init__(self, config: AnalyticsConfig, min_keypoint_conf: float) -> None:
        if not 0.0 <= min_keypoint_conf <= 1.0:
            msg = f"`min_keypoint_conf` must lie in [0, 1], got {min_keypoint_conf!r}"
            raise ValueError(msg)
        self._config = config
        self._min_conf = float(min_keypoint_conf)
        self._wrist = _keypoint_index(config.wrist, "wrist")
        self._shoulder = _keypoint_index(config.shoulder, "shoulder")
        self._pairs = [
            (f"{a}/{b}", _keypoint_index(a, "pairs"), _keypoint_index(b, "pairs")) for a, b in config.pairs
        ]
        self._mean = RollingMean(config.window_s)
        self._fit = RollingWristFit(config.window_s, config.fit_degree)

    @property
    def config(self) -> AnalyticsConfig:
        """The analytics configuration."""
        return self._config

    def reset(self) -> None:
        """Forget all state (means and fit window)."""
        self._mean.reset()
        self._fit.reset()

    def reset_window(self) -> None:
        """Restart the rolling window and the fit window; keep the cumulative mean of the source."""
        self._mean.reset_window()
        self._fit.reset()

    def similarity(self, result: PoseResult) -> np.ndarray | None:
        """This frame's float32 ``[K, K]`` dependency matrix, or ``None`` without a batter (no state change).

        Raises:
            ValueError: ``result.batter`` out of range or ``result.heatmaps`` not ``[K, S, S]``.
        """
        b = self._batter_index(result)
        if b is None:
            return None
        persons = result.persons
        if result.heatmaps is None:
            return rendered_similarity_matrix(
                persons.keypoints_xy[b], persons.xyxy[b], self._config.heatmap_size
            )
        if result.similarity is not None:  # computed on the inference device from the same heatmaps
            if result.similarity.shape != (NUM_KEYPOINTS, NUM_KEYPOINTS):
                msg = f"`similarity` must have shape ({NUM_KEYPOINTS}, {NUM_KEYPOINTS}), got {result.similarity.shape}"
                raise ValueError(msg)
            return np.ascontiguousarray(result.similarity, np.float32)
        logits = result.heatmaps
        if not isinstance(logits, np.ndarray) or logits.ndim != 3 or logits.shape[0] != NUM_KEYPOINTS:
            got = logits.shape if isinstance(logits, np.ndarray) else type(logits).__name__
            msg = f"`heatmaps` must have shape ({NUM_KEYPOINTS}, S, S), got {got}"
            raise ValueError(msg)
        return cosine_similarity_matrix(spatial_softmax(logits))

    @staticmethod
    def _batter_index(result: PoseResult) -> int | None:
        b = result.batter
        if b is None:
            return None
        n = len(result.persons)
        if not 0 <= b < n:
            msg = f"`batter` must index one of the {n} persons, got {b}"
            raise ValueError(msg)
        return int(b)

    def update(self, result: PoseResult) -> AnalyticsUpdate | None:
        """Process one frame's pose result.

        Args:
            result: The frame's persons, batter index and (optional) batter heatmap logits.

        Returns:
            The frame's :class:`AnalyticsUpdate`, or ``None`` when ``result.batter is None``
            (state is kept unchanged).

        Raises:
            ValueError: ``result.batter`` out of range, ``result.heatmaps`` not ``[K, S, S]``, or a
                non-finite ``pts_s``.
        """
        sim = self.similarity(result)
        if sim is None:
            return None
        b = int(result.batter)  # type: ignore[arg-type]  # not None: similarity() returned a matrix
        frame = result.frame
        pts_s = frame.pts_s
        window_mean = self._mean.update(pts_s, sim).astype(np.float32)
        cumulative = self._mean.cumulative_mean
        cumulative_mean = (cumulative if cumulative is not None else window_mean).astype(np.float32)
        pairs = {key: float(sim[ia, ib]) for key, ia, ib in self._pairs}

        conf = result.persons.keypoints_conf[b]
        dx: float | None = None
        dy: float | None = None
        fit: WristFit | None = None
        if conf[self._wrist] >= self._min_conf and conf[self._shoulder] >= self._min_conf:
            dx, dy = wrist_offsets(
                result.persons.keypoints_xy[b],
                frame.width,
                frame.height,
                self._config.wrist,
                self._config.shoulder,
            )
            fit = self._fit.update(pts_s, dx, dy)
        return AnalyticsUpdate(
            similarity=sim,
            window_mean=window_mean,
            cumulative_mean=cumulative_mean,
            window_frames=self._mean.count,
            pairs=pairs,
            fit=fit,
            dx=dx,
            dy=dy,
        )
