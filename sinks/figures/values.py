"""The values the report figures draw: a pose snapshot, a wrist segment with its fits, a pair series.

Units: keypoints are frame pixels (x right, y down); ``dx``, ``dy`` are wrist - shoulder in frame
widths / frame heights (so ``dy < 0``: wrist above the shoulder); times are seconds of source PTS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import Legendre

from engine.analytics import WristFit
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS


def float_array(name: str, value: object, ndim: int) -> np.ndarray:
    """``value`` as a float64 array of ``ndim`` dimensions.

    Raises:
        ValueError: ``value`` does not have ``ndim`` dimensions (the message names ``name``).
    """
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        msg = f"`{name}` must be a {ndim}-D array, got shape {array.shape}"
        raise ValueError(msg)
    return array


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
        t = float_array("t_s", self.t_s, 1)
        n = t.shape[0]
        for name in ("dx", "dy"):
            value = float_array(name, getattr(self, name), 1)
            if value.shape != (n,):
                msg = f"`{name}` must have shape ({n},) like `t_s`, got {value.shape}"
                raise ValueError(msg)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "t_s", t)
        for name in ("dx_coef", "dy_coef", "r_coef"):
            coef = float_array(name, getattr(self, name), 1)
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
        t = float_array("t_norm", self.t_norm, 1)
        v = float_array("values", self.values, 1)
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
