"""Wrist-vs-shoulder geometry of thesis §6.2: offsets, Legendre fits, and a rolling fit.

Conventions (see :mod:`engine.types`): ``_norm`` / offset quantities are divided by the frame width
/ height; times are seconds on the source's PTS timeline (``pts_s``).

* :func:`wrist_offsets`: Δx, Δy of the wrist relative to the shoulder in one frame.
* :func:`fit_wrist_trajectory` -> :class:`WristFit`: Δx(t), Δy(t) fits of degree up to 10 (capped
  by :func:`fit_degree_cap` so that few points are never interpolated by a swinging curve) and r(t)
  quadratic, in a Legendre basis on the window mapped to [-1, 1].
* :class:`RollingWristFit`: the fit over a sliding time window, refitted on every point.

Only numpy is used; nothing here is thread-safe (one instance per source, called from one thread).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import Legendre
from numpy.polynomial import legendre as _leg

from engine.analytics.rolling import check_pts_s, check_window_s
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS, check_array

__all__ = [
    "MAX_LEBESGUE_RATIO",
    "RollingWristFit",
    "WristFit",
    "continuum_lebesgue_constant",
    "fit_degree_cap",
    "fit_wrist_trajectory",
    "keypoint_index",
    "lebesgue_constant",
    "wrist_offsets",
]

#: How much larger than the continuum limit :func:`fit_degree_cap` lets a fit's Lebesgue constant be.
#: The limit is the same degree's fit to evenly spread data with no gaps (the L2 Legendre
#: projection: 1.67 for degree 1, 3.30 for 5, 4.60 for 10), so a short or gappy segment is never
#: fitted less stably than a long one. For evenly spaced times this allows degree 3 for 5 points,
#: 7 for 10, 9 for 15 and 10 from 20 points on: about ``2 sqrt(n)``, the classical limit for stable
#: least-squares polynomial fits on equispaced points (Rakhmanov, Ann. Math. 165, 2007).
MAX_LEBESGUE_RATIO = 1.1

_LEBESGUE_GRID = np.linspace(-1.0, 1.0, 257)


def keypoint_index(name: str, what: str) -> int:
    """Index of the COCO keypoint ``name`` (0-based, COCO order).

    Raises:
        ValueError: ``name`` is not a COCO keypoint name; the message names the option ``what``.
    """
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
    kp = check_array("keypoints_xy", keypoints_xy, (NUM_KEYPOINTS, 2), np.float64, convert=True)
    if not (width > 0 and height > 0):
        msg = f"`width` and `height` must be > 0 pixels, got {width!r} x {height!r}"
        raise ValueError(msg)
    iw, ish = keypoint_index(wrist, "wrist"), keypoint_index(shoulder, "shoulder")
    dx = (float(kp[iw, 0]) - float(kp[ish, 0])) / float(width)
    dy = (float(kp[iw, 1]) - float(kp[ish, 1])) / float(height)
    return dx, dy


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def lebesgue_constant(u: np.ndarray, degree: int) -> float:
    """Lebesgue constant of the degree-``degree`` least-squares polynomial fit at the points ``u``.

    The fit is linear in the data, ``p(x) = sum_i l_i(x) y_i``; its Lebesgue constant is
    ``max over x in [-1, 1] of sum_i |l_i(x)|`` (Trefethen, *Approximation Theory and Approximation
    Practice*, ch. 15, for interpolation; the same operator norm for least squares). Since the fit
    reproduces constants, ``|p(x) - m| <= constant * max_i |y_i - m|`` for every ``m``: with ``m``
    the middle of the data's range, the curve leaves that range by at most
    ``(constant - 1) / 2`` of its span. Evaluated on 257 evenly spaced ``x``.

    Args:
        u: float ``[n]`` point positions in [-1, 1] (the fit's mapped times), at least
            ``degree + 1`` distinct.
        degree: Polynomial degree, >= 0.

    Returns:
        The constant (>= 1 up to rounding); ``inf`` when the points cannot determine the degree.
    """
    van = _leg.legvander(np.asarray(u, np.float64), degree)  # [n, degree + 1]
    scl = np.sqrt(np.square(van).sum(axis=0))
    scl[scl == 0] = 1.0
    # pinv(V) = pinv(V / scl) / scl: the column scaling of Legendre.fit, for conditioning.
    u_svd, s_svd, vt_svd = np.linalg.svd(van / scl, full_matrices=False)
    if s_svd[-1] <= van.shape[0] * np.finfo(np.float64).eps * s_svd[0]:
        return math.inf
    pinv = (vt_svd.T / s_svd) @ u_svd.T / scl[:, None]  # [degree + 1, n]
    weights = _leg.legvander(_LEBESGUE_GRID, degree) @ pinv  # [257, n]: l_i at each grid x
    return float(np.abs(weights).sum(axis=1).max())


@functools.cache
def continuum_lebesgue_constant(degree: int) -> float:
    """Lebesgue constant of the degree-``degree`` least-squares fit to evenly spread data on [-1, 1].

    The limit of :func:`lebesgue_constant` for many evenly spaced points (the L2 projection onto
    Legendre polynomials), computed once per degree with 2001 points.
    """
    return lebesgue_constant(np.linspace(-1.0, 1.0, 2001), degree)


def fit_degree_cap(t_s: np.ndarray, degree: int, max_ratio: float = MAX_LEBESGUE_RATIO) -> int:
    """Largest degree ``<= degree`` whose least-squares fit at the times ``t_s`` stays honest.

    Rule: the largest ``d <= min(degree, n_distinct - 2)`` (never an interpolation of 3 or more
    points, so the residual RMS means something) whose :func:`lebesgue_constant` at the
    times mapped to [-1, 1] is at most ``max_ratio`` times :func:`continuum_lebesgue_constant` of
    ``d``; at least 1 (a straight line). A short segment is then never interpolated by a curve
    that swings far outside its points between and beyond them (Runge's phenomenon), and uneven
    spacing (dropped frames, gaps without keypoints) lowers the degree where it must. For evenly
    spaced times this is about ``2 sqrt(n)`` (see :data:`MAX_LEBESGUE_RATIO`). Cost
    ``O(257 n d)`` per tried degree, memoised for the 256 latest point layouts (a rolling window
    at a steady frame rate repeats its layout).

    Args:
        t_s: float ``[n]`` point times, seconds (any order, repeats allowed), at least 2 distinct.
        degree: The wanted (maximum) degree, >= 1.
        max_ratio: Largest accepted ratio of the two Lebesgue constants, >= 1.

    Returns:
        The degree to fit, in ``[1, degree]``.

    Raises:
        ValueError: fewer than 2 distinct finite times, ``degree < 1`` or ``max_ratio < 1``.
    """
    if int(degree) != degree or degree < 1:
        msg = f"`degree` must be an integer >= 1, got {degree!r}"
        raise ValueError(msg)
    if not max_ratio >= 1.0:
        msg = f"`max_ratio` must be >= 1, got {max_ratio!r}"
        raise ValueError(msg)
    t = np.unique(check_array("t_s", t_s, (None,), np.float64, convert=True))
    if t.shape[0] < 2 or not np.isfinite(t).all():
        msg = f"`t_s` must hold at least 2 distinct finite times, got {t.shape[0]} distinct"
        raise ValueError(msg)
    u = np.polynomial.polyutils.mapdomain(t, t[[0, -1]], np.array([-1.0, 1.0]))
    # A rolling window at a steady frame rate maps to the same points frame after frame: memoise.
    return _degree_cap(np.round(u, 9).tobytes(), int(degree), float(max_ratio))


@functools.lru_cache(maxsize=256)
def _degree_cap(u_bytes: bytes, degree: int, max_ratio: float) -> int:
    u = np.frombuffer(u_bytes, np.float64)
    n = u.shape[0]
    for d in range(min(degree, n - 1 if n < 3 else n - 2), 1, -1):
        if lebesgue_constant(u, d) <= max_ratio * continuum_lebesgue_constant(d):
            return d
    return 1


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
        TypeError: from ``__post_init__`` when a coefficient array is not a ``numpy.ndarray``.
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
        check_array("dx_coef", self.dx_coef, (self.degree_xy + 1,), np.float64)
        check_array("dy_coef", self.dy_coef, (self.degree_xy + 1,), np.float64)
        r = check_array("r_coef", self.r_coef, (None,), np.float64)
        if not 1 <= r.shape[0] <= 3:
            msg = f"`r_coef` must hold 1 to 3 coefficients (at most quadratic), got {r.shape[0]}"
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


def fit_wrist_trajectory(
    t_s: np.ndarray, dx: np.ndarray, dy: np.ndarray, degree: int = 10, max_ratio: float = MAX_LEBESGUE_RATIO
) -> WristFit | None:
    """Fit Δx(t), Δy(t) (degree ``fit_degree_cap(t_s, degree)``) and r(t) (quadratic) in a Legendre basis.

    Method (thesis §6.2, DESIGN §4): least squares in the Legendre basis with time mapped from
    ``[min t, max t]`` to ``[-1, 1]``, reproducing ``numpy.polynomial.Legendre.fit(t, y, deg)``
    step for step (same mapping, same column scaling, same ``rcond = n * eps``), but with one
    Vandermonde matrix shared by the three fits: Δx and Δy are solved together, and the quadratic
    r fit uses the first three columns (Legendre columns do not depend on the degree). A raw power
    basis is never used; Legendre polynomials on [-1, 1] keep degree 10 well conditioned.
    ``n`` counts *distinct* times, so repeated timestamps do not make the fit rank-deficient. If
    points are so close together that the scaled matrix is still numerically rank-deficient, the
    minimum-norm solution is returned (``Legendre.fit`` would warn; this does not).

    The degree is capped by the number and spacing of the points (:func:`fit_degree_cap` with
    ``max_ratio``): degree 10 through 10 points would interpolate them and swing far outside
    their range between them; the cap gives 7 there, 10 from 20 evenly spaced points on.

    Args:
        t_s: float ``[n]`` point times, seconds (any order).
        dx: float ``[n]`` Δx, frame widths.
        dy: float ``[n]`` Δy, frame heights.
        degree: Maximum degree of the Δx, Δy fits, >= 1.
        max_ratio: ``max_ratio`` of :func:`fit_degree_cap` for the Δx, Δy fits, >= 1.

    Returns:
        The :class:`WristFit`, or ``None`` when ``n < 2`` or all times are equal.

    Raises:
        ValueError: arrays not 1-D of equal length, non-finite values, ``degree < 1`` or
            ``max_ratio < 1``.
    """
    if int(degree) != degree or degree < 1:
        msg = f"`degree` must be an integer >= 1, got {degree!r}"
        raise ValueError(msg)
    t = check_array("t_s", t_s, (None,), np.float64, convert=True)
    n = t.shape[0]
    x_rel = check_array("dx", dx, (n,), np.float64, convert=True)
    y_rel = check_array("dy", dy, (n,), np.float64, convert=True)
    if not (np.isfinite(t).all() and np.isfinite(x_rel).all() and np.isfinite(y_rel).all()):
        msg = "`t_s`, `dx` and `dy` must be finite"
        raise ValueError(msg)
    if n < 2:
        return None
    t0, t1 = float(t.min()), float(t.max())
    if t0 == t1:
        return None
    deg_xy = fit_degree_cap(t, int(degree), max_ratio)
    deg_r = min(2, int(np.unique(t).shape[0]) - 1)

    # Same arithmetic as Legendre.fit: mapdomain(x, [t0, t1], [-1, 1]) then polyutils._fit.
    u = np.polynomial.polyutils.mapdomain(t, np.array([t0, t1]), np.array([-1.0, 1.0]))
    van_all = _leg.legvander(u, max(deg_xy, deg_r))  # [n, max degree + 1]
    rcond = n * np.finfo(np.float64).eps
    scl_all = np.sqrt(np.square(van_all).sum(axis=0))
    scl_all[scl_all == 0] = 1.0
    van, scl = van_all[:, : deg_xy + 1], scl_all[: deg_xy + 1]
    xy = np.stack([x_rel, y_rel], axis=1)  # [n, 2]
    c_xy = np.linalg.lstsq(van / scl, xy, rcond)[0] / scl[:, None]
    r = np.hypot(x_rel, y_rel)
    van_r = van_all[:, : deg_r + 1]
    c_r = np.linalg.lstsq(van_r / scl_all[: deg_r + 1], r, rcond)[0] / scl_all[: deg_r + 1]

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
    ``pts_s`` goes backwards the window is reset before the point is added. The degree is capped
    for each window by :func:`fit_degree_cap`, so a window holding a few points (the start of a
    stream, after a gap) gets a low-degree fit, not an interpolating one.

    Not thread-safe; one instance per source, called from one thread.

    Args:
        window_s: Window length in seconds, > 0.
        degree: Maximum degree of the Δx, Δy fits, >= 1.

    Raises:
        ValueError: ``window_s`` not a finite number > 0, or ``degree < 1``.
    """

    def __init__(self, window_s: float, degree: int = 10) -> None:
        self._window_s = check_window_s(window_s)
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
        t = check_pts_s(pts_s)
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


