"""The ``pts_s`` timeline of a source: raw stream times in, strictly increasing published times out.

Pure logic (no PyAV, no clock): the caller gives each frame's raw time (``Frame.pts * time_base`` in
seconds) or, for a frame without PTS, the step since the previous frame. A PTS reset, a step back, a
huge step forward or an announced break (a reconnect) moves an offset instead of the published time,
and the first frame after such a break is flagged (``Frame.timeline_break``).
"""

from __future__ import annotations

import numpy as np

from engine.errors import ConfigError

__all__ = ["FALLBACK_FPS", "PtsTimeline"]

#: Frame rate assumed for ``pts_s`` when a stream has neither PTS nor an average rate.
FALLBACK_FPS = 30.0


class PtsTimeline:
    """Turns the raw times of one source's frames into a strictly increasing ``pts_s``.

    ``pts_s = raw_s + offset_s``. The offset starts at 0 (so a clean file keeps its own times) and
    moves only where the raw timeline breaks: a step back or no step (PTS reset, concatenated
    streams), a step forward above ``max_jump_s``, or a break announced with :meth:`mark_break` (a
    reconnect). There the published time continues one frame interval after the previous frame
    (``1 / fps`` when the rate is known, else the last good step) and the frame is flagged as a
    break. Frames without PTS continue from the previous frame by a step the caller gives
    (:meth:`extrapolate`). Used from the reader thread only.

    Attributes:
        max_jump_s: Largest forward step of the raw time that is not a break, seconds.
        nominal_interval_s: Frame interval used to bridge a break, seconds; ``None`` = unknown.
        breaks: Breaks flagged so far.
    """

    def __init__(self, max_jump_s: float, nominal_interval_s: float | None = None) -> None:
        if not max_jump_s > 0:
            msg = f"max_jump_s must be > 0, got {max_jump_s}"
            raise ConfigError(msg)
        self.max_jump_s = max_jump_s
        self.nominal_interval_s = nominal_interval_s
        self.breaks = 0
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next frame starts the timeline again at its own raw time."""
        self._last_s: float | None = None
        self._offset_s: float | None = None
        self._last_step_s: float | None = None
        self._pending_break = False

    @property
    def last_pts_s(self) -> float | None:
        """The last published ``pts_s``, ``None`` before the first frame."""
        return self._last_s

    @property
    def interval_s(self) -> float:
        """Frame interval bridging a break: nominal, else the last good step, else ``1 / FALLBACK_FPS``."""
        return self.nominal_interval_s or self._last_step_s or 1.0 / FALLBACK_FPS

    def mark_break(self) -> None:
        """Announce a discontinuity (e.g. a reconnect): the next frame is rebased and flagged."""
        self._pending_break = True

    def update(self, raw_s: float) -> tuple[float, bool]:
        """Publish a frame whose raw time is ``raw_s`` seconds; return ``(pts_s, timeline_break)``."""
        if self._last_s is None:  # the very first frame: nothing to break
            self._offset_s = 0.0
            self._pending_break = False
            return self._publish(raw_s, False)
        if self._offset_s is None:  # first PTS after frames without any: join without a break
            self._offset_s = self._last_s + self.interval_s - raw_s
            return self._publish(raw_s + self._offset_s, self._take_pending())
        step = raw_s + self._offset_s - self._last_s
        if self._pending_break or not 0.0 < step <= self.max_jump_s:
            self._offset_s = self._last_s + self.interval_s - raw_s
            self._pending_break = False
            return self._publish(self._last_s + self.interval_s, True)
        self._last_step_s = step
        return self._publish(self._last_s + step, False)

    def extrapolate(self, step_s: float, first_s: float) -> tuple[float, bool]:
        """Publish a frame without PTS: ``step_s`` after the previous frame, or ``first_s`` if it is the first."""
        if self._last_s is None:
            self._pending_break = False
            return self._publish(first_s, False)
        if not step_s > 0:
            step_s = self.interval_s
        is_break = self._take_pending()
        if is_break:  # the old offset belongs to the old timeline: the next PTS re-anchors, unflagged
            self._offset_s = None
        return self._publish(self._last_s + step_s, is_break)

    def _take_pending(self) -> bool:
        pending, self._pending_break = self._pending_break, False
        return pending

    def _publish(self, pts_s: float, is_break: bool) -> tuple[float, bool]:
        if self._last_s is not None and not pts_s > self._last_s:  # float rounding on huge offsets
            pts_s = float(np.nextafter(self._last_s, np.inf))
        self._last_s = pts_s
        self.breaks += int(is_break)
        return pts_s, is_break
