"""Means over a sliding window of source time, and the checks of window lengths and times.

:class:`RollingMean` averages equally shaped arrays (the dependency matrices) over the window
``(pts_s - window_s, pts_s]`` and since the start. Times are seconds on the source's PTS timeline.
Only numpy is used; nothing here is thread-safe (one instance per source, called from one thread).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["RollingMean", "check_pts_s", "check_window_s"]


def check_window_s(window_s: float) -> float:
    """``window_s`` as a float; raises ``ValueError`` unless it is a finite number > 0 (seconds)."""
    w = float(window_s)
    if not (math.isfinite(w) and w > 0):
        msg = f"`window_s` must be a finite number > 0 seconds, got {window_s!r}"
        raise ValueError(msg)
    return w


def check_pts_s(pts_s: float) -> float:
    """``pts_s`` as a float; raises ``ValueError`` unless it is a finite number (seconds)."""
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
        self._window_s = check_window_s(window_s)
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
        t = check_pts_s(pts_s)
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


