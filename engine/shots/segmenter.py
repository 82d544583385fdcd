"""Online shot segmentation by hysteresis on the speed of a tracked point (DESIGN §4 Shots).

:class:`ShotSegmenter` turns one sample per frame (time in seconds on the source's PTS timeline,
a point's offset in any unit; :class:`engine.shots.ShotAnalyzer` feeds the hands relative to the
shoulders in torso lengths) into :class:`ShotSegment` values. Not thread-safe: one instance per
source.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engine.config import ShotConfig
from engine.types import check_array

__all__ = ["ShotSegment", "ShotSegmenter", "f64_vector"]


def f64_vector(name: str, value: object, n: int | None) -> np.ndarray:
    """Check that ``value`` is a float64 ``[n]`` array (any length when ``n`` is ``None``) and return it.

    Raises:
        TypeError: not an ndarray; ValueError: another dtype or shape (the message names ``name``).
    """
    return check_array(name, value, ("n" if n is None else n,), np.float64)


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
        n = f64_vector("t_s", self.t_s, None).shape[0]
        f64_vector("dx", self.dx, n)
        f64_vector("dy", self.dy, n)
        fi = check_array("frame_index", self.frame_index, (n,), np.int64)
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


def _travel(x: np.ndarray, y: np.ndarray) -> float:
    """Diagonal of the extent of the finite points ``(x, y)``: float64 [n] each; 0 with none."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return 0.0
    return float(math.hypot(np.ptp(x[ok]), np.ptp(y[ok])))


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
    * Motions shorter than ``min_duration_s`` (motion start to end, without padding), with fewer
      than ``min_points`` samples with a point, or whose points span less than ``min_travel``
      (diagonal of the segment's ``dx``, ``dy`` extent, input units) are discarded. A stroke moves
      the hands: over the 485 CricShot10 shots (all ten types, hands relative to the shoulders in
      torso lengths) the extent is >= 1.0 for every pull and cover drive and >= 0.85 for 99 %, while
      keypoint jumps of a batter standing in his stance (head cut off) can pass the speed test.
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

    def reset(self, not_before_s: float = -math.inf) -> None:
        """Forget everything, including a shot in progress.

        Args:
            not_before_s: No later segment starts before this time, seconds (as if a segment had
                ended there): :class:`ShotAnalyzer` passes the end of its last published shot
                when it replays another person's frames, so no shot is published twice.
        """
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
        self._floor_s = float(not_before_s)

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
        if motion_end - start_motion >= c.min_duration_s and n_points >= c.min_points and _travel(x, y) >= c.min_travel:
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
