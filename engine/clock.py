"""The clock the pipeline reads, injectable so tests control time (STYLE rule 9).

Pattern: bytewax ``EventClock(now_getter=...)``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Two readings: a monotonic one for intervals and the wall clock for timestamps.

    Implementations must be safe to call from any thread.
    """

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (intervals, deadlines, rates); its zero is arbitrary."""
        ...

    def time_ns(self) -> int:
        """Unix epoch nanoseconds (``publish_time_ns``, uptime)."""
        ...


class SystemClock:
    """The real clock: ``time.perf_counter`` (monotonic, highest resolution) and ``time.time_ns``."""

    def monotonic(self) -> float:
        """``time.perf_counter()``, seconds."""
        return time.perf_counter()

    def time_ns(self) -> int:
        """``time.time_ns()``."""
        return time.time_ns()
