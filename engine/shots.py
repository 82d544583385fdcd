"""Shots: segment each stroke in a stream, fit it whole (thesis §6.2) and classify it (DESIGN §4 Shots).

Conventions (see :mod:`engine.types`): keypoints are ``[17, 2]`` COCO keypoints in original-frame
pixels (x right, y down); ``dx``/``dy`` of the thesis fit are frame-normalised (divided by the
frame width / height, :func:`engine.analytics.wrist_offsets`); times are seconds on the source's
PTS timeline. Motion and classifier features are measured in *torso lengths* (distance from the
shoulder midpoint to the hip midpoint, in pixels), so they do not depend on how large the batter
is in the frame or on the frame's aspect ratio.

Pieces, each usable on its own:

* :class:`ShotSegmenter`: online hysteresis on the speed of the hands relative to the shoulders
  -> :class:`ShotSegment` (start / end times, frames, the motion samples).
* :func:`infer_handedness`, :func:`mirror_keypoints`: a left-hander is mirrored (x -> W - x,
  left <-> right labels swapped) so that every feature describes the *front* arm in a
  right-hander's frame (the thesis analyses ``left_wrist`` / ``left_shoulder`` of a right-hander).
* :func:`shot_features`: the classifier's fixed-length feature vector of one segment.
* :class:`ShotClassifier`: numpy inference of the packaged extremely-randomised-trees model
  (``engine/data/shot_classifier_v1.json``, produced by ``python -m engine.train_shots``);
  predictions are averaged over the sequence and its mirror image, so the class does not depend
  on the (inferred) handedness.
* :class:`ShotAnalyzer`: one per source; ties the above together and returns a
  :class:`ShotResult` per shot; :func:`shot_message` turns it into the ``shot/`` wire payload.

Only numpy is used at run time. Nothing here is thread-safe: one :class:`ShotAnalyzer` per
source, called from that source's analytics thread.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.analytics import WristFit, fit_wrist_trajectory, wrist_offsets
from engine.config import AnalyticsConfig, ShotConfig
from engine.errors import ModelError
from engine.types import COCO_KEYPOINT_NAMES, KEYPOINT_INDEX, NUM_KEYPOINTS

__all__ = [
    "FEATURE_SET",
    "FLIP_INDEX",
    "MEDIAPIPE33_TO_COCO17",
    "SHOT_CLASSES",
    "ShotAnalyzer",
    "ShotClassifier",
    "ShotPrediction",
    "ShotResult",
    "ShotSegment",
    "ShotSegmenter",
    "feature_names",
    "handedness_cue",
    "infer_handedness",
    "mediapipe33_to_coco17",
    "mirror_keypoints",
    "mirrored_name",
    "shot_features",
    "shot_message",
]

#: Class names of the shot classifier, in output order.
SHOT_CLASSES: tuple[str, ...] = ("pull", "cover_drive", "other")

#: MediaPipe Pose (33 landmarks) index of each COCO-17 keypoint, in COCO order: nose 0, eyes 2/5,
#: ears 7/8, shoulders 11/12, elbows 13/14, wrists 15/16, hips 23/24, knees 25/26, ankles 27/28.
MEDIAPIPE33_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

#: COCO index of the mirror-image keypoint (left <-> right), ``FLIP_INDEX[FLIP_INDEX[k]] == k``.
FLIP_INDEX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

_FLIP = np.array(FLIP_INDEX)
_LS, _RS = KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]
_LW, _RW = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]
_LH, _RH = KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]
_NOSE = KEYPOINT_INDEX["nose"]
_LA, _RA = KEYPOINT_INDEX["left_ankle"], KEYPOINT_INDEX["right_ankle"]
#: Left/right pairs whose confidence difference is the handedness cue: ears, elbows, wrists.
_CUE_PAIRS = np.array([[3, 4], [7, 8], [9, 10]])

# --------------------------------------------------------------------------------------------------
# Keypoint helpers
# --------------------------------------------------------------------------------------------------


def mediapipe33_to_coco17(landmarks: np.ndarray) -> np.ndarray:
    """Pick the 17 COCO keypoints' x, y out of MediaPipe Pose landmarks.

    Args:
        landmarks: ``[T, 99]`` (33 landmarks x (x, y, z), the CricShot10 ``.npy`` layout) or
            ``[T, 33, C]`` with ``C >= 2``; x, y in any units (MediaPipe: normalised to [0, 1]).

    Returns:
        float64 ``[T, 17, 2]`` in the input's x, y units, COCO order.

    Raises:
        ValueError: any other shape.
    """
    a = np.asarray(landmarks, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 99:
        a = a.reshape(a.shape[0], 33, 3)
    if a.ndim != 3 or a.shape[1] != 33 or a.shape[2] < 2:
        msg = f"`landmarks` must have shape (T, 99) or (T, 33, C>=2), got {a.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(a[:, MEDIAPIPE33_TO_COCO17, :2])


def mirror_keypoints(keypoints_xy: np.ndarray, width: float = 0.0) -> np.ndarray:
    """Mirror image of COCO keypoints: ``x -> width - x`` and left <-> right labels swapped.

    Args:
        keypoints_xy: ``[..., 17, 2]`` x, y (pixels, or any units with ``width`` in the same).
        width: Frame width; 0 mirrors about ``x = 0`` (enough for relative features).

    Returns:
        float64 array of the same shape (a new array).
    """
    kp = np.asarray(keypoints_xy, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-2:] != (NUM_KEYPOINTS, 2):
        msg = f"`keypoints_xy` must have shape (..., {NUM_KEYPOINTS}, 2), got {kp.shape}"
        raise ValueError(msg)
    out = kp[..., _FLIP, :].copy()
    out[..., 0] = float(width) - out[..., 0]
    return out


def mirrored_name(name: str) -> str:
    """COCO name of the mirror-image keypoint (``left_wrist`` <-> ``right_wrist``, ``nose`` stays)."""
    if name not in KEYPOINT_INDEX:
        msg = f"must be a COCO keypoint name ({', '.join(KEYPOINT_INDEX)}), got {name!r}"
        raise ValueError(msg)
    return COCO_KEYPOINT_NAMES[FLIP_INDEX[KEYPOINT_INDEX[name]]]


def handedness_cue(keypoints_conf: np.ndarray) -> np.ndarray:
    """Per-frame handedness evidence: mean of ``conf[left] - conf[right]`` over ears, elbows, wrists.

    Method: the camera of nets sessions and broadcasts looks at the batter from the bowler's end,
    and a batter stands side-on with the *front* shoulder towards the bowler, so the front side's
    ear, elbow and wrist are in view while the back side's are half hidden by the head and body.
    Pose models give hidden keypoints lower confidence, so a positive value means the left side
    faces the camera: a right-hander. Measured on the real clips with YOLO-pose: +0.06 .. +0.17 per
    clip for front-on right-handers; a camera square of the wicket (side-on) can invert it.

    Args:
        keypoints_conf: ``[..., 17]`` per-keypoint confidence in [0, 1].

    Returns:
        float64 ``[...]`` in [-1, 1]; > 0 suggests right-handed.
    """
    c = np.asarray(keypoints_conf, dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != NUM_KEYPOINTS:
        msg = f"`keypoints_conf` must have shape (..., {NUM_KEYPOINTS}), got {c.shape}"
        raise ValueError(msg)
    return (c[..., _CUE_PAIRS[:, 0]] - c[..., _CUE_PAIRS[:, 1]]).mean(axis=-1)


def infer_handedness(keypoints_conf: np.ndarray, min_score: float = 0.02) -> tuple[str, float]:
    """Infer the batter's handedness from keypoint confidences over some frames.

    The score is the mean of :func:`handedness_cue` over the frames (NaN frames ignored). It is
    symmetric: mirroring the input (left <-> right) negates the score and flips the answer, except
    inside the dead band, where the answer is the prior ``"right"`` (most batters are
    right-handed). Set ``shots.handedness`` when the camera is side-on or the cue is weak.

    Args:
        keypoints_conf: ``[T, 17]`` confidences of the batter over the frames considered.
        min_score: Dead band; ``|score| < min_score`` (or no frames) answers ``"right"``.

    Returns:
        ``(handedness, score)``: ``"right"`` or ``"left"``, and the mean cue (0.0 without frames).
    """
    cue = handedness_cue(np.asarray(keypoints_conf, dtype=np.float64).reshape(-1, NUM_KEYPOINTS))
    cue = cue[np.isfinite(cue)]
    score = float(cue.mean()) if cue.size else 0.0
    if score <= -min_score and score < 0:
        return "left", score
    return "right", score


# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------


def _f64(name: str, value: object, n: int | None) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.ndim != 1 or (
        n is not None and value.shape[0] != n
    ):
        got = (value.shape, value.dtype) if isinstance(value, np.ndarray) else type(value).__name__
        want = "(n,)" if n is None else f"({n},)"
        msg = f"`{name}` must be float64 with shape {want}, got {got}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class ShotSegment:
    """One shot found by :class:`ShotSegmenter`: the frames in ``[start_s, end_s]`` (closed).

    Attributes:
        start_s: First frame's time, seconds (source PTS): motion start minus ``pre_roll_s``,
            clipped to the frames seen since the previous segment or reset.
        end_s: Last frame's time, seconds: motion end plus ``post_roll_s`` (or the cut / flush
            time), ``>= start_s``.
        start_frame: ``frame_index`` of the first frame.
        end_frame: ``frame_index`` of the last frame.
        motion_start_s: Time the smoothed speed first rose above ``start_speed``, seconds.
        motion_end_s: Time it fell below ``end_speed`` for good, seconds (the cut or last sample
            when the segment was not ended by quiet).
        end_reason: ``"quiet"`` (hysteresis), ``"gap"`` (hands not visible for more than
            ``max_gap_s``), ``"max_duration"`` (cut), ``"flush"`` (end of stream, timeline break
            or a camera cut).
        t_s: float64 ``[n]`` frame times, seconds, non-decreasing.
        dx: float64 ``[n]`` tracked point's x offset as given to ``update`` (NaN where ``None``).
        dy: float64 ``[n]`` same for y.
        frame_index: int64 ``[n]`` frame indices.

    Raises:
        ValueError: from ``__post_init__`` on inconsistent shapes, dtypes or times.
    """

    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    motion_start_s: float
    motion_end_s: float
    end_reason: str
    t_s: np.ndarray = field(repr=False)
    dx: np.ndarray = field(repr=False)
    dy: np.ndarray = field(repr=False)
    frame_index: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        n = _f64("t_s", self.t_s, None).shape[0]
        _f64("dx", self.dx, n)
        _f64("dy", self.dy, n)
        fi = self.frame_index
        if not isinstance(fi, np.ndarray) or fi.dtype != np.int64 or fi.shape != (n,):
            got = (fi.shape, fi.dtype) if isinstance(fi, np.ndarray) else type(fi).__name__
            msg = f"`frame_index` must be int64 with shape ({n},), got {got}"
            raise ValueError(msg)
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s) and self.start_s <= self.end_s):
            msg = f"`start_s` <= `end_s` (finite) required, got {self.start_s!r}, {self.end_s!r}"
            raise ValueError(msg)
        if n and (self.t_s[0] != self.start_s or self.t_s[-1] != self.end_s):
            msg = (
                f"`t_s` must run from start_s to end_s, got {self.t_s[0]}..{self.t_s[-1]} "
                f"vs {self.start_s}..{self.end_s}"
            )
            raise ValueError(msg)
        if n and (int(fi[0]) != self.start_frame or int(fi[-1]) != self.end_frame):
            msg = f"`frame_index` must run from start_frame to end_frame, got {fi[0]}..{fi[-1]}"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``, seconds."""
        return self.end_s - self.start_s

    @classmethod
    def empty(cls) -> ShotSegment:
        """A segment without frames (times 0, every array ``[0]``)."""
        z = np.zeros((0,), np.float64)
        return cls(0.0, 0.0, 0, 0, 0.0, 0.0, "flush", z, z.copy(), z.copy(), np.zeros((0,), np.int64))


_IDLE, _ACTIVE, _REARM = 0, 1, 2


class ShotSegmenter:
    """Online shot segmentation by hysteresis on the speed of a tracked point (DESIGN §4 Shots).

    Feed one sample per frame, in PTS order. The speed at a sample is the net displacement
    ``hypot(Δdx, Δdy) / Δt`` from the newest earlier sample at least ``smooth_s`` old (or the
    oldest one kept, at the start) to this one, in input units per second (:class:`ShotAnalyzer`
    feeds the hands' midpoint relative to the shoulders' midpoint in torso lengths). Measuring
    over a fixed time keeps keypoint jitter from growing with the frame rate.

    * Start: the speed stays ``>= start_speed`` for ``start_hold_s``; the motion start is the
      middle of the first fast speed's window (the speed is an average over it). The segment
      begins ``pre_roll_s`` earlier (never before the previous segment's end or the last reset).
    * End: the speed stays ``< end_speed`` for ``end_hold_s`` (``"quiet"``); the motion end is
      the middle of the first quiet speed's window and the segment ends ``post_roll_s`` later.
      A gap of more than ``max_gap_s`` without a point ends it at the last point (``"gap"``).
      A motion longer than ``max_duration_s`` is cut there
      (``"max_duration"``); a new shot then needs the speed to fall below ``end_speed`` first.
    * Motions shorter than ``min_duration_s`` (motion start to end, without padding) or with fewer
      than ``min_points`` samples with a point are discarded.
    * ``pts_s`` going backwards is a timeline break: the current shot is finished as by
      :meth:`flush` (and returned), then the state is reset before the sample is used.

    Not thread-safe; one instance per source.

    Args:
        config: Thresholds and durations (``engine.config.ShotConfig``).
    """

    def __init__(self, config: ShotConfig) -> None:
        self._c = config
        self._history_s = config.pre_roll_s + config.smooth_s + config.start_hold_s + 1.0
        self._auto_index = 0
        self.reset()

    @property
    def config(self) -> ShotConfig:
        """The configuration."""
        return self._c

    @property
    def active(self) -> bool:
        """Whether a shot is in progress."""
        return self._state == _ACTIVE

    def reset(self) -> None:
        """Forget everything, including a shot in progress."""
        self._state = _IDLE
        self._t: list[float] = []
        self._x: list[float] = []
        self._y: list[float] = []
        self._f: list[int] = []
        self._recent: deque[tuple[float, float, float]] = deque()
        self._last_visible_t: float | None = None
        self._last_t: float | None = None
        self._fast_since: float | None = None
        self._fast_mid = 0.0
        self._quiet_since: float | None = None
        self._quiet_mid = 0.0
        self._motion_start: float | None = None
        self._floor_s = -math.inf

    # -- internals ------------------------------------------------------------------------------

    def _speed(self, t: float, dx: float | None, dy: float | None) -> float | None:
        """Add a point and return the speed, ``None`` when unknown; 0 after a long gap.

        The speed is the net displacement from a reference point to this one, divided by the time
        between them; the reference is the newest earlier point at least ``smooth_s`` old (the
        oldest point kept while there is none). Measuring over a fixed time rather than between
        consecutive frames keeps keypoint jitter from growing with the frame rate.
        """
        c = self._c
        pts = self._recent
        if dx is None or dy is None:
            if pts and t - pts[-1][0] > c.max_gap_s:
                pts.clear()
                return 0.0
            return None
        if pts and t - pts[-1][0] > c.max_gap_s:
            pts.clear()
            pts.append((t, dx, dy))
            return 0.0
        pts.append((t, dx, dy))
        while len(pts) > 2 and t - pts[1][0] >= c.smooth_s:
            pts.popleft()
        t0, x0, y0 = pts[0]
        if len(pts) < 2 or t <= t0:
            return None
        return math.hypot(dx - x0, dy - y0) / (t - t0)

    def _trim_history(self, t: float) -> None:
        if self._state == _ACTIVE:
            return
        keep_from = t - self._history_s
        k = 0
        while k < len(self._t) and self._t[k] < keep_from:
            k += 1
        if k:
            del self._t[:k], self._x[:k], self._y[:k], self._f[:k]

    def _finish(self, motion_end: float, end_s: float, reason: str) -> ShotSegment | None:
        c = self._c
        start_motion = self._motion_start if self._motion_start is not None else motion_end
        seg_start = max(start_motion - c.pre_roll_s, self._floor_s)
        t = np.asarray(self._t, np.float64)
        inside = (t >= seg_start) & (t <= end_s)
        idx = np.flatnonzero(inside)
        self._state = _REARM if reason == "max_duration" else _IDLE
        self._motion_start = None
        self._quiet_since = None
        self._fast_since = None
        if idx.size == 0:
            return None
        last = int(idx[-1])
        # Samples after the segment stay as history (pre-roll of the next shot).
        seg = None
        x = np.asarray(self._x, np.float64)[idx]
        y = np.asarray(self._y, np.float64)[idx]
        n_points = int(np.count_nonzero(np.isfinite(x) & np.isfinite(y)))
        if motion_end - start_motion >= c.min_duration_s and n_points >= c.min_points:
            ts = t[idx]
            fi = np.asarray(self._f, np.int64)[idx]
            seg = ShotSegment(
                start_s=float(ts[0]),
                end_s=float(ts[-1]),
                start_frame=int(fi[0]),
                end_frame=int(fi[-1]),
                motion_start_s=float(start_motion),
                motion_end_s=float(motion_end),
                end_reason=reason,
                t_s=ts,
                dx=x,
                dy=y,
                frame_index=fi,
            )
            self._floor_s = float(ts[-1]) + 1e-9
        del self._t[: last + 1], self._x[: last + 1], self._y[: last + 1], self._f[: last + 1]
        return seg

    # -- public ---------------------------------------------------------------------------------

    def update(
        self, pts_s: float, dx: float | None, dy: float | None, frame_index: int | None = None
    ) -> ShotSegment | None:
        """Add one frame's sample; return the shot that this sample completes, if any.

        Args:
            pts_s: Frame time, seconds (source PTS).
            dx: Tracked point's x offset (any unit; the speed thresholds use the same unit per
                second), or ``None`` when not visible in this frame.
            dy: Same for y (``None`` together with ``dx``).
            frame_index: The frame's index; ``None`` counts frames from 0 since construction.

        Returns:
            A completed :class:`ShotSegment`, or ``None``.

        Raises:
            ValueError: non-finite ``pts_s``, ``dx`` or ``dy``.
        """
        t = float(pts_s)
        if not math.isfinite(t):
            msg = f"`pts_s` must be a finite number of seconds, got {pts_s!r}"
            raise ValueError(msg)
        if (dx is None) != (dy is None):
            msg = f"`dx` and `dy` must both be numbers or both None, got {dx!r}, {dy!r}"
            raise ValueError(msg)
        if dx is not None and dy is not None:
            dx, dy = float(dx), float(dy)
            if not (math.isfinite(dx) and math.isfinite(dy)):
                msg = f"`dx` and `dy` must be finite or None, got {dx!r}, {dy!r}"
                raise ValueError(msg)
        fi = self._auto_index if frame_index is None else int(frame_index)
        self._auto_index = fi + 1

        result: ShotSegment | None = None
        if self._last_t is not None and t < self._last_t:
            result = self.flush()
            self.reset()
        self._last_t = t
        self._trim_history(t)
        self._t.append(t)
        self._x.append(math.nan if dx is None else dx)
        self._y.append(math.nan if dy is None else dy)
        self._f.append(fi)
        c = self._c
        if dx is not None:
            self._last_visible_t = t
        elif (
            self._state == _ACTIVE
            and self._last_visible_t is not None
            and t - self._last_visible_t > c.max_gap_s
        ):
            q = self._last_visible_t
            self._recent.clear()
            return self._finish(q, min(q + c.post_roll_s, t), "gap") or result
        speed = self._speed(t, dx, dy)
        window_start = self._recent[0][0] if self._recent else t
        if speed is None:
            return result
        if self._state == _REARM:
            if speed < c.end_speed:
                self._state = _IDLE
            return result
        if self._state == _IDLE:
            if speed >= c.start_speed:
                if self._fast_since is None:
                    self._fast_since = t
                    self._fast_mid = 0.5 * (window_start + t)
                if t - self._fast_since >= c.start_hold_s:
                    self._state = _ACTIVE
                    self._motion_start = self._fast_mid
                    self._quiet_since = None
            else:
                self._fast_since = None
            return result
        # _ACTIVE
        motion_start = t if self._motion_start is None else self._motion_start
        if speed < c.end_speed:
            if self._quiet_since is None:
                self._quiet_since = t
                self._quiet_mid = 0.5 * (window_start + t)
            if t - self._quiet_since >= c.end_hold_s:
                q = self._quiet_mid
                return self._finish(q, min(q + c.post_roll_s, t), "quiet") or result
        else:
            self._quiet_since = None
        if t - motion_start >= c.max_duration_s:
            return self._finish(t, t, "max_duration") or result
        return result

    def flush(self) -> ShotSegment | None:
        """Finish the shot in progress (end of stream): return it if long enough, else ``None``.

        The segment ends at the last sample (``end_reason="flush"``); samples seen so far stay as
        history, so later updates continue the same timeline.
        """
        if self._state != _ACTIVE or not self._t:
            return None
        end = self._t[-1]
        motion_end = self._quiet_mid if self._quiet_since is not None else end
        return self._finish(motion_end, end, "flush")


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------

#: Name of the feature definition implemented by :func:`shot_features` (stored in the params file).
FEATURE_SET = "pose_t4_v1"
_N_TIMES = 4
_ARM_DESCRIPTORS = ("horizontal_span", "vertical_span", "mean_elevation_deg", "peak_r", "peak_r_time")


def feature_names(n_times: int = _N_TIMES) -> list[str]:
    """Names of the :func:`shot_features` vector, in order."""
    names = [f"{k}.{axis}@{i}" for k in COCO_KEYPOINT_NAMES for axis in ("x", "y") for i in range(n_times)]
    names += ["ankle_gap_mean", "ankle_gap_max", "nose_height_mean"]
    names += [f"front_arm.{d}" for d in _ARM_DESCRIPTORS]
    return names


def _longest_consistent_run(sh_mid: np.ndarray, torso: np.ndarray, max_jump: float, max_ratio: float) -> np.ndarray:
    """Indices of the longest run of consecutive frames that look like one person.

    Consecutive frames belong together when the shoulder midpoint moves at most ``max_jump``
    torso lengths and the torso length changes by at most ``max_ratio``. Camera cuts and
    switches to another person (CricShot10 sequences often hold the bowler or a fielder for some
    frames) break runs. Ties go to the earliest run.
    """
    n = sh_mid.shape[0]
    best_start, best_len, start = 0, min(n, 1), 0
    for i in range(1, n):
        a, b = torso[i - 1], torso[i]
        small = max(min(a, b), 1e-12)
        same = np.hypot(*(sh_mid[i] - sh_mid[i - 1])) <= max_jump * max(a, b) and max(a, b) / small <= max_ratio
        if not same:
            start = i
        if i - start + 1 > best_len:
            best_start, best_len = start, i - start + 1
    return np.arange(best_start, best_start + best_len)


def shot_features(
    keypoints_xy: np.ndarray,
    t_s: np.ndarray | None = None,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
) -> np.ndarray | None:
    """Fixed-length features of one shot for :class:`ShotClassifier` (feature set ``pose_t4_v1``).

    Give the keypoints already in the right-hander's frame (mirror a left-hander first). Method:

    1. Keypoints with confidence ``< min_keypoint_conf`` are missing (NaN). Frames need both
       shoulders and both hips; among those, the longest run that looks like one person is kept
       (see :func:`_longest_consistent_run`: shoulder jump <= 1 torso length, torso change
       <= 1.6x).
    2. Every keypoint is taken relative to the hip midpoint and divided by the run's median torso
       length (shoulder midpoint to hip midpoint), so units are torso lengths, y down.
    3. Time is normalised to [0, 1] over the run (by ``t_s``, or by frame order when ``t_s`` is
       ``None``: CricShot10 sequences have no timestamps) and each keypoint's x and y are linearly
       interpolated at 4 equally spaced times (17 x 2 x 4 = 136 values).
    4. Summary values: mean and max ankle gap, mean nose height; and the thesis descriptors of the
       front arm (``left_wrist`` - ``left_shoulder``) in torso lengths: horizontal span, vertical
       span, mean elevation angle (degrees, ``atan2(-Δy, |Δx|)``), peak r and its normalised time
       (same definitions as :class:`engine.analytics.WristFit`).

    Features that cannot be measured (a keypoint never visible) are NaN; the classifier fills
    them with the training medians.

    Args:
        keypoints_xy: ``[T, 17, 2]`` x, y in pixels or any *isotropic* unit (same scale on x and y).
        t_s: ``[T]`` frame times in seconds, non-decreasing, or ``None``.
        keypoints_conf: ``[T, 17]`` confidences, or ``None`` (all visible).
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        float64 ``[len(feature_names())]``, or ``None`` when fewer than 2 frames show both
        shoulders and both hips.

    Raises:
        ValueError: wrong shapes.
    """
    kp = np.array(keypoints_xy, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 2):
        msg = f"`keypoints_xy` must have shape (T, {NUM_KEYPOINTS}, 2), got {kp.shape}"
        raise ValueError(msg)
    n = kp.shape[0]
    if keypoints_conf is not None:
        conf = np.asarray(keypoints_conf, dtype=np.float64)
        if conf.shape != (n, NUM_KEYPOINTS):
            msg = f"`keypoints_conf` must have shape ({n}, {NUM_KEYPOINTS}), got {conf.shape}"
            raise ValueError(msg)
        kp[conf < min_keypoint_conf] = np.nan
    if t_s is not None:
        t = np.asarray(t_s, dtype=np.float64)
        if t.shape != (n,):
            msg = f"`t_s` must have shape ({n},), got {t.shape}"
            raise ValueError(msg)
    else:
        t = np.arange(n, dtype=np.float64)
    sh_mid = (kp[:, _LS] + kp[:, _RS]) / 2.0
    hip_mid = (kp[:, _LH] + kp[:, _RH]) / 2.0
    torso = np.hypot(*(sh_mid - hip_mid).T)
    ok = np.isfinite(torso) & (torso > 0) & np.isfinite(t)
    if np.count_nonzero(ok) < 2:
        return None
    kp, t, sh_mid, hip_mid, torso = kp[ok], t[ok], sh_mid[ok], hip_mid[ok], torso[ok]
    run = _longest_consistent_run(sh_mid, torso, 1.0, 1.6)
    if run.size < 2:
        return None
    kp, t, hip_mid, torso = kp[run], t[run], hip_mid[run], torso[run]
    scale = float(np.median(torso))
    rel = (kp - hip_mid[:, None, :]) / scale  # [m, 17, 2], torso lengths
    span = float(t[-1] - t[0])
    u = (t - t[0]) / span if span > 0 else np.linspace(0.0, 1.0, t.shape[0])
    q = np.linspace(0.0, 1.0, _N_TIMES)
    out: list[float] = []
    for k in range(NUM_KEYPOINTS):
        for axis in (0, 1):
            v = rel[:, k, axis]
            good = np.isfinite(v)
            if np.count_nonzero(good) == 0:
                out.extend([math.nan] * _N_TIMES)
            else:
                out.extend(np.interp(q, u[good], v[good]).tolist())
    gap = np.hypot(*(rel[:, _LA] - rel[:, _RA]).T)
    gap = gap[np.isfinite(gap)]
    nose = rel[:, _NOSE, 1]
    nose = nose[np.isfinite(nose)]
    out += [float(gap.mean()) if gap.size else math.nan, float(gap.max()) if gap.size else math.nan]
    out += [float(-nose.mean()) if nose.size else math.nan]
    d = rel[:, _LW] - rel[:, _LS]
    good = np.isfinite(d).all(axis=1)
    if np.count_nonzero(good):
        dx, dy, ug = d[good, 0], d[good, 1], u[good]
        r = np.hypot(dx, dy)
        peak = int(np.argmax(r))
        out += [
            float(dx.max() - dx.min()),
            float(dy.max() - dy.min()),
            float(np.degrees(np.arctan2(-dy, np.abs(dx))).mean()),
            float(r[peak]),
            float(ug[peak]),
        ]
    else:
        out += [math.nan] * len(_ARM_DESCRIPTORS)
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShotPrediction:
    """A shot's class.

    Attributes:
        label: One of :data:`SHOT_CLASSES`.
        confidence: Probability of ``label`` in [0, 1] (the largest of ``probabilities``).
        probabilities: ``{class: probability}`` for every class, summing to 1.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]


_DATA_PACKAGE = "engine"
_DEFAULT_PARAMS = "data/shot_classifier_v1.json"


class ShotClassifier:
    """Numpy inference of the shot classifier (extremely randomised trees, ``engine.train_shots``).

    The parameter file (JSON) holds ``version``, ``classes``, the ``feature`` definition (name
    and length), per-feature ``fill`` values (training medians, used for NaN), and ``trees``: each
    a dict of parallel node arrays ``feature`` (-1 at leaves), ``threshold``, ``left``, ``right``
    and ``value`` (class probabilities at leaves, ``null`` at inner nodes). A sample goes left when
    ``x[feature] <= threshold``. The probability is the mean of the leaves' distributions.

    Args:
        params: The parsed parameter dict.
        source: Where it came from (for messages).

    Raises:
        ModelError: the dict does not follow the format; the message names ``source``.
    """

    def __init__(self, params: dict[str, Any], source: str = "<dict>") -> None:
        self.source = source
        try:
            self.version = str(params["version"])
            self.classes = tuple(str(c) for c in params["classes"])
            feature = params["feature"]
            self.feature_set = str(feature["name"])
            n_features = int(feature["n_features"])
            self.fill = np.asarray(params["fill"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"shot classifier parameters {source} are invalid: {exc.__class__.__name__}: {exc}"
            raise ModelError(msg) from None
        if self.classes != SHOT_CLASSES:
            msg = f"shot classifier parameters {source}: classes must be {list(SHOT_CLASSES)}, got {list(self.classes)}"
            raise ModelError(msg)
        if self.feature_set != FEATURE_SET or n_features != len(feature_names()) or self.fill.shape != (n_features,):
            msg = (
                f"shot classifier parameters {source}: feature set must be {FEATURE_SET!r} with "
                f"{len(feature_names())} features, got {self.feature_set!r} with {n_features} "
                f"(fill {self.fill.shape})"
            )
            raise ModelError(msg)
        try:
            trees = []
            for tree in params["trees"]:
                feat = np.asarray(tree["feature"], dtype=np.int64)
                thr = np.asarray(tree["threshold"], dtype=np.float64)
                left = np.asarray(tree["left"], dtype=np.int64)
                right = np.asarray(tree["right"], dtype=np.int64)
                m = feat.shape[0]
                k = len(self.classes)
                rows = [[math.nan] * k if v is None else v for v in tree["value"]]
                value = np.asarray(rows, dtype=np.float64).reshape(len(rows), k)
                if not (thr.shape == left.shape == right.shape == (m,) and value.shape == (m, k)):
                    msg = f"tree arrays disagree: {m} nodes, value {value.shape}"
                    raise ValueError(msg)
                inner = feat >= 0
                if not np.isfinite(value[~inner]).all():
                    msg = "a leaf has no class distribution"
                    raise ValueError(msg)
                bad_child = (left <= 0) | (left >= m) | (right <= 0) | (right >= m)
                if (feat >= n_features).any() or (inner & bad_child).any():
                    msg = "tree node index out of range"
                    raise ValueError(msg)
                trees.append((feat, thr, left, right, value))
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"shot classifier parameters {source} are invalid: {exc.__class__.__name__}: {exc}"
            raise ModelError(msg) from None
        if not trees:
            msg = f"shot classifier parameters {source}: no trees"
            raise ModelError(msg)
        self.n_features = n_features
        self._trees = trees
        self.params = params

    @classmethod
    def load(cls, path: str | Path | None = None) -> ShotClassifier:
        """Load a parameter file; ``None`` (or ``""``) loads the packaged ``shot_classifier_v1.json``.

        Raises:
            ModelError: missing, unreadable or malformed file; the message names the file.
        """
        if path is None or str(path) == "":
            ref = importlib.resources.files(_DATA_PACKAGE).joinpath(_DEFAULT_PARAMS)
            source = f"{_DATA_PACKAGE}/{_DEFAULT_PARAMS} (packaged)"
            try:
                text = ref.read_text(encoding="utf-8")
            except (OSError, ModuleNotFoundError) as exc:
                msg = f"cannot read shot classifier parameters {source}: {exc}; run `python -m engine.train_shots`"
                raise ModelError(msg) from None
        else:
            source = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"cannot read shot classifier parameters {source}: {exc.strerror or exc}"
                raise ModelError(msg) from None
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"shot classifier parameters {source} are not valid JSON: {exc}"
            raise ModelError(msg) from None
        if not isinstance(params, dict):
            msg = f"shot classifier parameters {source} must hold a JSON object, got {type(params).__name__}"
            raise ModelError(msg)
        return cls(params, source)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of feature vectors.

        Args:
            features: float ``[F]`` or ``[N, F]``; NaN entries are replaced by the training medians.

        Returns:
            float64 ``[C]`` or ``[N, C]`` (C = 3), rows summing to 1.

        Raises:
            ValueError: wrong feature length.
        """
        x = np.array(features, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            msg = f"`features` must have shape (N, {self.n_features}) or ({self.n_features},), got {np.shape(features)}"
            raise ValueError(msg)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(self.fill, x.shape)[bad]
        rows = np.arange(x.shape[0])
        total = np.zeros((x.shape[0], len(self.classes)), np.float64)
        for feat, thr, left, right, value in self._trees:
            node = np.zeros(x.shape[0], np.int64)
            while True:
                f = feat[node]
                inner = f >= 0
                if not inner.any():
                    break
                go_left = x[rows, np.where(inner, f, 0)] <= thr[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            total += value[node]
        total /= total.sum(axis=1, keepdims=True)
        return total[0] if single else total

    def predict(self, features: np.ndarray, mirrored_features: np.ndarray | None = None) -> ShotPrediction:
        """Classify one shot.

        Args:
            features: float ``[F]`` from :func:`shot_features`.
            mirrored_features: The same shot's features after :func:`mirror_keypoints`; when given,
                the probabilities are the mean of both, which makes the class independent of the
                handedness normalisation (the model was trained on both orientations).

        Returns:
            The :class:`ShotPrediction`.
        """
        p = self.predict_proba(features)
        if mirrored_features is not None:
            p = 0.5 * (p + self.predict_proba(mirrored_features))
        p = p / p.sum()
        k = int(np.argmax(p))
        return ShotPrediction(
            label=self.classes[k],
            confidence=float(p[k]),
            probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)},
        )

    def predict_keypoints(
        self,
        keypoints_xy: np.ndarray,
        t_s: np.ndarray | None = None,
        keypoints_conf: np.ndarray | None = None,
        min_keypoint_conf: float = 0.3,
    ) -> ShotPrediction | None:
        """Features of the sequence and of its mirror image -> :meth:`predict`.

        ``keypoints_xy`` must be isotropic (pixels). Returns ``None`` when :func:`shot_features`
        finds fewer than 2 frames with shoulders and hips.
        """
        f = shot_features(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
        if f is None:
            return None
        conf_m = None if keypoints_conf is None else np.asarray(keypoints_conf)[:, _FLIP]
        fm = shot_features(mirror_keypoints(keypoints_xy), t_s, conf_m, min_keypoint_conf)
        return self.predict(f, fm)


# --------------------------------------------------------------------------------------------------
# Per-source analyzer
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShotResult:
    """Everything known about one finished shot.

    Attributes:
        shot_index: 0-based count of shots of this analyzer (since construction).
        segment: The :class:`ShotSegment` (its ``dx``/``dy`` are the segmentation signal: hands'
            midpoint minus shoulders' midpoint in torso lengths, NaN where not visible).
        handedness: ``"right"`` or ``"left"``.
        handedness_source: ``"config"`` or ``"inferred"``.
        handedness_score: Mean :func:`handedness_cue` used for the inference (0.0 when configured).
        wrist: COCO name of the front wrist actually used (``right_wrist`` for a left-hander when
            the configured wrist is ``left_wrist``).
        shoulder: COCO name of the front shoulder actually used.
        t_s: float64 ``[n]`` times of the segment's frames, seconds.
        dx: float64 ``[n]`` front wrist minus front shoulder x / frame width, in the right-hander's
            frame (negated for a left-hander); NaN where either keypoint is not visible.
        dy: float64 ``[n]`` same for y / frame height (y down).
        pair_similarity: float32 ``[n]`` heatmap similarity of the front arm's ``wrist`` /
            ``shoulder`` pair per frame (the mirrored pair given to :meth:`ShotAnalyzer.update` for
            a left-hander), NaN where missing.
        fit: Whole-segment :class:`engine.analytics.WristFit` of the finite ``(t_s, dx, dy)``
            points, or ``None`` with fewer than 2 distinct times.
        prediction: The :class:`ShotPrediction`, or ``None`` when no frame shows shoulders and hips.
        classifier_version: ``version`` of the classifier parameters.
    """

    shot_index: int
    segment: ShotSegment
    handedness: str
    handedness_source: str
    handedness_score: float
    wrist: str
    shoulder: str
    t_s: np.ndarray = field(repr=False)
    dx: np.ndarray = field(repr=False)
    dy: np.ndarray = field(repr=False)
    pair_similarity: np.ndarray = field(repr=False)
    fit: WristFit | None
    prediction: ShotPrediction | None
    classifier_version: str

    def __post_init__(self) -> None:
        n = _f64("t_s", self.t_s, None).shape[0]
        _f64("dx", self.dx, n)
        _f64("dy", self.dy, n)
        ps = self.pair_similarity
        if not isinstance(ps, np.ndarray) or ps.dtype != np.float32 or ps.shape != (n,):
            got = (ps.shape, ps.dtype) if isinstance(ps, np.ndarray) else type(ps).__name__
            msg = f"`pair_similarity` must be float32 with shape ({n},), got {got}"
            raise ValueError(msg)
        if self.handedness not in ("right", "left") or self.handedness_source not in ("config", "inferred"):
            msg = f"bad handedness {self.handedness!r} / source {self.handedness_source!r}"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


@dataclass
class _FrameRecord:
    pts_s: float
    frame_index: int
    keypoints_xy: np.ndarray | None  # float64 [17, 2] pixels
    keypoints_conf: np.ndarray | None  # float64 [17]
    width: float
    height: float
    pair_similarity: float
    mirrored_pair_similarity: float


class ShotAnalyzer:
    """Shots of one source: segment, infer handedness, fit the whole segment, classify.

    Per frame, when both wrists and both shoulders have confidence ``>= min_keypoint_conf``,
    the segmentation signal is the wrists' midpoint minus the shoulders' midpoint in pixels,
    divided by the batter's torso length (median of the last 15 frames with hips visible), and fed
    to a :class:`ShotSegmenter` (so ``shots.*_speed`` are torso lengths per second); otherwise the
    frame is fed as not visible. A shoulder jump of more than ``max_jump`` torso lengths between
    consecutive visible frames (camera cut, another person) or ``pts_s`` going backwards finishes
    the shot in progress and starts afresh.

    When a segment completes, its frames (kept in a bounded buffer) give:

    * handedness: ``shots.handedness`` if not ``auto``, else :func:`infer_handedness` over the
      frames from ``handedness_window_s`` before the segment to its end;
    * right-hander frame: a left-hander's keypoints are mirrored (:func:`mirror_keypoints`), so
      the configured front arm (``analytics.wrist`` / ``analytics.shoulder``, default left) is
      the front arm for both; the published names are the original labels;
    * ``dx``, ``dy`` by :func:`engine.analytics.wrist_offsets` and the whole-segment
      :func:`engine.analytics.fit_wrist_trajectory` at ``shots.fit_degree`` (r quadratic);
    * the class by :meth:`ShotClassifier.predict_keypoints` (mirror-averaged).

    Not thread-safe; one instance per source, called from that source's analytics thread.
    ``update`` never blocks and holds at most a few seconds of frames.

    Args:
        shot_config: Segmentation, handedness, fit degree, classifier file.
        analytics_config: Front wrist / shoulder names for a right-hander.
        min_keypoint_conf: Keypoints below this confidence are not visible, in [0, 1].
        classifier: A loaded classifier; ``None`` loads ``shot_config.classifier`` (or the
            packaged file).

    Raises:
        ValueError: ``min_keypoint_conf`` outside [0, 1].
        ModelError: the classifier file cannot be loaded.
    """

    def __init__(
        self,
        shot_config: ShotConfig,
        analytics_config: AnalyticsConfig,
        min_keypoint_conf: float = 0.3,
        classifier: ShotClassifier | None = None,
    ) -> None:
        if not 0.0 <= min_keypoint_conf <= 1.0:
            msg = f"`min_keypoint_conf` must lie in [0, 1], got {min_keypoint_conf!r}"
            raise ValueError(msg)
        self._c = shot_config
        self._wrist = analytics_config.wrist
        self._shoulder = analytics_config.shoulder
        self._min_conf = float(min_keypoint_conf)
        self._classifier = classifier if classifier is not None else ShotClassifier.load(shot_config.classifier or None)
        self._segmenter = ShotSegmenter(shot_config)
        self._keep_s = (
            shot_config.max_duration_s + shot_config.pre_roll_s + shot_config.post_roll_s
            + shot_config.end_hold_s + shot_config.handedness_window_s + shot_config.max_gap_s + 1.0
        )
        self._shots = 0
        self.reset()

    @property
    def classifier(self) -> ShotClassifier:
        """The shot classifier."""
        return self._classifier

    @property
    def shots(self) -> int:
        """Number of shots returned so far."""
        return self._shots

    def reset(self) -> None:
        """Forget the frames and any shot in progress (the shot counter keeps counting)."""
        self._segmenter.reset()
        self._frames: deque[_FrameRecord] = deque()
        self._torso: deque[float] = deque(maxlen=15)
        self._last_sh: tuple[np.ndarray, float] | None = None
        self._last_pts: float | None = None

    def _visible(self, conf: np.ndarray, *idx: int) -> bool:
        return bool(all(conf[i] >= self._min_conf for i in idx))

    def _signal(self, kp: np.ndarray, conf: np.ndarray) -> tuple[float | None, float | None, bool]:
        """``(dx, dy, cut)``: hands relative to shoulders in torso lengths, and a cut flag."""
        if not self._visible(conf, _LS, _RS):
            return None, None, False
        sh = (kp[_LS] + kp[_RS]) / 2.0
        torso_now: float | None = None
        if self._visible(conf, _LH, _RH):
            torso_now = float(np.hypot(*(sh - (kp[_LH] + kp[_RH]) / 2.0)))
            if not torso_now > 0:
                torso_now = None
        cut = False
        if self._last_sh is not None:
            prev_sh, prev_scale = self._last_sh
            ref = prev_scale if torso_now is None else min(prev_scale, torso_now)
            cut = float(np.hypot(*(sh - prev_sh))) > self._c.max_jump * ref
        if cut:
            self._torso.clear()
        if torso_now is not None:
            self._torso.append(torso_now)
        if not self._torso:
            self._last_sh = None
            return None, None, cut
        scale = float(np.median(np.fromiter(self._torso, np.float64)))
        self._last_sh = (sh, scale)
        if not self._visible(conf, _LW, _RW):
            return None, None, cut
        hands = (kp[_LW] + kp[_RW]) / 2.0
        d = (hands - sh) / scale
        return float(d[0]), float(d[1]), cut

    def update(
        self,
        pts_s: float,
        frame_index: int,
        keypoints_xy: np.ndarray | None,
        keypoints_conf: np.ndarray | None,
        width: float,
        height: float,
        pair_similarity: float | None = None,
        mirrored_pair_similarity: float | None = None,
    ) -> ShotResult | None:
        """Add one frame of the batter; return the shot it completes, if any.

        Args:
            pts_s: Frame time, seconds (source PTS).
            frame_index: The frame's index.
            keypoints_xy: Batter's ``[17, 2]`` keypoints in frame pixels, or ``None`` (no batter).
            keypoints_conf: ``[17]`` confidences in [0, 1], or ``None`` (no batter).
            width: Frame width, pixels (> 0).
            height: Frame height, pixels (> 0).
            pair_similarity: This frame's heatmap similarity of the configured wrist/shoulder
                pair (``analytics.wrist`` / ``analytics.shoulder``), or ``None``.
            mirrored_pair_similarity: The same for the other arm's pair (``right_wrist`` /
                ``right_shoulder`` for the default), or ``None``. A left-hander's shot publishes
                this one, so that ``pair_similarity`` always follows the front arm, like ``dx``.

        Returns:
            A :class:`ShotResult` or ``None``.

        Raises:
            ValueError: non-finite ``pts_s``, bad shapes, or non-positive frame size.
        """
        t = float(pts_s)
        if not math.isfinite(t):
            msg = f"`pts_s` must be a finite number of seconds, got {pts_s!r}"
            raise ValueError(msg)
        if not (width > 0 and height > 0):
            msg = f"`width` and `height` must be > 0 pixels, got {width!r} x {height!r}"
            raise ValueError(msg)
        kp = conf = None
        if keypoints_xy is not None and keypoints_conf is not None:
            kp = np.array(keypoints_xy, dtype=np.float64)
            conf = np.array(keypoints_conf, dtype=np.float64)
            if kp.shape != (NUM_KEYPOINTS, 2) or conf.shape != (NUM_KEYPOINTS,):
                msg = (
                    f"`keypoints_xy` must have shape ({NUM_KEYPOINTS}, 2) and `keypoints_conf` "
                    f"({NUM_KEYPOINTS},), got {kp.shape} and {conf.shape}"
                )
                raise ValueError(msg)
        done: ShotSegment | None = None
        if self._last_pts is not None and t < self._last_pts:
            done = self._segmenter.flush()
            result = self._result(done) if done is not None else None
            self.reset()
        else:
            result = None
        self._last_pts = t
        dx = dy = None
        if kp is not None and conf is not None:
            dx, dy, cut = self._signal(kp, conf)
            if cut and result is None:
                done = self._segmenter.flush()
                result = self._result(done) if done is not None else None
                self._segmenter.reset()
                self._frames.clear()  # the stance before a cut says nothing about the new view
        sim = math.nan if pair_similarity is None else float(pair_similarity)
        mirrored_sim = math.nan if mirrored_pair_similarity is None else float(mirrored_pair_similarity)
        self._frames.append(
            _FrameRecord(t, int(frame_index), kp, conf, float(width), float(height), sim, mirrored_sim)
        )
        while self._frames and t - self._frames[0].pts_s > self._keep_s:
            self._frames.popleft()
        seg = self._segmenter.update(t, dx, dy, int(frame_index))
        if seg is not None:
            # A cut and a completed shot on the same frame cannot both happen: the segmenter was
            # reset at the cut and cannot complete a shot on its first sample.
            return self._result(seg)
        return result

    def flush(self) -> ShotResult | None:
        """End of stream: finish the shot in progress, if long enough."""
        seg = self._segmenter.flush()
        return self._result(seg) if seg is not None else None

    def _result(self, seg: ShotSegment) -> ShotResult:
        c = self._c
        frames = [f for f in self._frames if seg.start_s <= f.pts_s <= seg.end_s]
        n = len(frames)
        if c.handedness == "auto":
            lo = seg.start_s - c.handedness_window_s
            stance = [
                f.keypoints_conf
                for f in self._frames
                if lo <= f.pts_s <= seg.end_s and f.keypoints_conf is not None
            ]
            conf_arr = np.asarray(stance, np.float64).reshape(-1, NUM_KEYPOINTS)
            handedness, score = infer_handedness(conf_arr, c.handedness_min_score)
            source = "inferred"
        else:
            handedness, score, source = c.handedness, 0.0, "config"
        left = handedness == "left"
        wrist = mirrored_name(self._wrist) if left else self._wrist
        shoulder = mirrored_name(self._shoulder) if left else self._shoulder
        t = np.array([f.pts_s for f in frames], np.float64)
        dx = np.full(n, np.nan)
        dy = np.full(n, np.nan)
        iw, ish = KEYPOINT_INDEX[self._wrist], KEYPOINT_INDEX[self._shoulder]
        kps = np.full((n, NUM_KEYPOINTS, 2), np.nan)
        confs = np.zeros((n, NUM_KEYPOINTS))
        for i, f in enumerate(frames):
            if f.keypoints_xy is None or f.keypoints_conf is None:
                continue
            kp = mirror_keypoints(f.keypoints_xy, f.width) if left else f.keypoints_xy
            cf = f.keypoints_conf[_FLIP] if left else f.keypoints_conf
            kps[i], confs[i] = kp, cf
            if cf[iw] >= self._min_conf and cf[ish] >= self._min_conf:
                dx[i], dy[i] = wrist_offsets(kp, f.width, f.height, self._wrist, self._shoulder)
        good = np.isfinite(dx) & np.isfinite(dy)
        fit = fit_wrist_trajectory(t[good], dx[good], dy[good], c.fit_degree) if np.count_nonzero(good) >= 2 else None
        prediction = self._classifier.predict_keypoints(kps, t, confs, self._min_conf) if n else None
        result = ShotResult(
            shot_index=self._shots,
            segment=seg,
            handedness=handedness,
            handedness_source=source,
            handedness_score=score,
            wrist=wrist,
            shoulder=shoulder,
            t_s=t,
            dx=dx,
            dy=dy,
            pair_similarity=np.array(
                [f.mirrored_pair_similarity if left else f.pair_similarity for f in frames], np.float32
            ),
            fit=fit,
            prediction=prediction,
            classifier_version=self._classifier.version,
        )
        self._shots += 1
        return result


# --------------------------------------------------------------------------------------------------
# Wire payload
# --------------------------------------------------------------------------------------------------


def _num(value: float | None) -> float | None:
    """Plain float, or ``None`` for ``None`` / NaN / inf."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def shot_message(result: ShotResult) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The ``shot/`` payload of a :class:`ShotResult`: scalar fields and raw arrays.

    Fields hold plain Python values only (``int``, ``float``, ``str``, ``dict``, ``None``), with
    ``None`` for NaN or unknown (no fit, no prediction). Arrays: ``dx_coef``, ``dy_coef``,
    ``r_coef`` float64 Legendre coefficients on ``[t_start_s, t_end_s]`` (empty without a fit),
    ``t_s``, ``dx``, ``dy`` float64 ``[n]`` (right-hander frame, NaN where not visible) and
    ``pair_similarity`` float32 ``[n]`` over the segment's frames.
    """
    seg, fit, pred = result.segment, result.fit, result.prediction
    fields: dict[str, Any] = {
        "shot_index": int(result.shot_index),
        "start_frame": int(seg.start_frame),
        "end_frame": int(seg.end_frame),
        "start_s": float(seg.start_s),
        "end_s": float(seg.end_s),
        "duration_s": float(seg.duration_s),
        "label": pred.label if pred is not None else None,
        "confidence": _num(pred.confidence) if pred is not None else None,
        "probabilities": {k: float(v) for k, v in pred.probabilities.items()} if pred is not None else None,
        "handedness": result.handedness,
        "handedness_source": result.handedness_source,
        "wrist": result.wrist,
        "shoulder": result.shoulder,
        "n_points": int(fit.n_points) if fit is not None else int(np.count_nonzero(np.isfinite(result.dx))),
        "degree_xy": int(fit.degree_xy) if fit is not None else None,
        "basis": "legendre",
        "t_start_s": _num(fit.t_start_s) if fit is not None else None,
        "t_end_s": _num(fit.t_end_s) if fit is not None else None,
        "rms_dx": _num(fit.rms_dx) if fit is not None else None,
        "rms_dy": _num(fit.rms_dy) if fit is not None else None,
        "rms_r": _num(fit.rms_r) if fit is not None else None,
        "horizontal_span": _num(fit.horizontal_span) if fit is not None else None,
        "vertical_span": _num(fit.vertical_span) if fit is not None else None,
        "mean_elevation_deg": _num(fit.mean_elevation_deg) if fit is not None else None,
        "peak_r": _num(fit.peak_r) if fit is not None else None,
        "peak_r_time_s": _num(fit.peak_r_time_s) if fit is not None else None,
        "r_vertex_time_s": _num(fit.r_vertex_time_s) if fit is not None else None,
        "classifier_version": result.classifier_version,
    }
    empty = np.zeros((0,), np.float64)
    arrays: dict[str, np.ndarray] = {
        "dx_coef": np.ascontiguousarray(fit.dx_coef, np.float64) if fit is not None else empty,
        "dy_coef": np.ascontiguousarray(fit.dy_coef, np.float64) if fit is not None else empty.copy(),
        "r_coef": np.ascontiguousarray(fit.r_coef, np.float64) if fit is not None else empty.copy(),
        "t_s": np.ascontiguousarray(result.t_s, np.float64),
        "dx": np.ascontiguousarray(result.dx, np.float64),
        "dy": np.ascontiguousarray(result.dy, np.float64),
        "pair_similarity": np.ascontiguousarray(result.pair_similarity, np.float32),
    }
    return fields, arrays
