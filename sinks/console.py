"""``console`` sink: a live status line per interval, and a summary per source at the end.

Reads ``pose`` messages (frames, arrival rate, ``batter_found``), ``health`` messages (per-source
``dropped``, ``corrupt``, ``state``) and ``eos`` messages (final counts, reason). Its job is terminal
output, so it writes to a stream (standard error by default), not to :mod:`logging`.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from engine.errors import SinkError
from engine.messages import AnyMessage, EndOfStream, Health, Pose
from sinks.base import Sink


@dataclass
class _SourceStats:
    frames: int = 0
    batter: int = 0
    arrivals: deque[list] = field(default_factory=deque)  # [arrival_s, frames] per distinct arrival time
    first_arrival_s: float | None = None
    last_arrival_s: float | None = None
    dropped: int = 0
    corrupt: int = 0
    state: str = ""
    eos_reason: str | None = None
    error: str | None = None


#: Source states (``health/``) not worth a mention in the status line; others (``stalled``,
#: ``reconnecting``, ``failed`` ...) are shown next to the source id.
_QUIET_STATES = frozenset({"", "live", "ended"})

#: Above this many sources the status line sums them into one part instead of listing each.
MAX_SOURCES_LISTED = 6

#: Shortest arrival span, seconds, over which the end-of-run summary gives a mean fps; a shorter run
#: (a few frames delivered in one batch) shows ``- fps`` instead of a meaningless large number.
MIN_SUMMARY_SPAN_S = 1.0


class ConsoleSink(Sink):
    """Print ``cam1: 120 frames, 29.9 fps, batter 95%, dropped 0 | cam2: ...`` every interval.

    One line per interval, written through ``tqdm.write`` on a terminal or on standard error (so it
    never lands inside the CLI's progress bar). fps is the number of ``pose`` messages that arrived
    in the last ``rate_window_s`` seconds (arrival clock) divided by that window, or by the time since
    :meth:`open` while that is shorter. The window spans several intervals so that batched delivery
    (8 frames at once, then nothing for a while) reads as a steady rate instead of alternating with 0.0.

    Args:
        interval_s: Seconds between status lines, ``> 0``; a string (``--sink console:0.5``) is
            converted. The fps window ``rate_window_s`` is ``max(5 * interval_s, 3.0)`` seconds.
        stream: Text stream written to; ``sys.stderr`` (looked up at :meth:`open`) when ``None``.
            For code only: not a user option (:attr:`user_options`).
        now_fn: Monotonic clock in seconds (injectable for tests); not a user option either.

    Raises:
        SinkError: ``interval_s`` is not a positive number, or an unknown option is given.
    """

    primary_option: ClassVar[str | None] = "interval_s"
    user_options: ClassVar[tuple[str, ...] | None] = ("interval_s",)

    def __init__(
        self,
        interval_s: float | str = 1.0,
        stream: IO[str] | None = None,
        now_fn: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        try:
            value = float(interval_s)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(interval_s, bool) or not value > 0 or value == float("inf"):
            msg = f"console option 'interval_s' must be a positive number of seconds, got {interval_s!r}"
            raise SinkError(msg)
        self.interval_s = value
        self.rate_window_s = max(5.0 * value, 3.0)
        self._opened_s = 0.0
        self._stream_option = stream
        self._now_fn = now_fn
        self._stream: IO[str] | None = None
        self._tty = False
        self._last_status_s = 0.0
        self._engine_state = ""
        self._sources: dict[str, _SourceStats] = {}

    def open(self) -> None:
        """Select the stream and start the interval clock."""
        self._stream = self._stream_option if self._stream_option is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False
        self._last_status_s = self._opened_s = self._now_fn()

    def _source(self, source_id: str) -> _SourceStats:
        stats = self._sources.get(source_id)
        if stats is None:
            stats = self._sources[source_id] = _SourceStats()
        return stats

    def _update(self, message: AnyMessage, now_s: float) -> None:
        if isinstance(message, Pose):
            stats = self._source(message.source_id)
            stats.frames += 1
            if stats.arrivals and stats.arrivals[-1][0] == now_s:
                stats.arrivals[-1][1] += 1
            else:
                stats.arrivals.append([now_s, 1])
                while stats.arrivals[0][0] < now_s - self.rate_window_s:
                    stats.arrivals.popleft()
            stats.batter += message.batter_found
            if stats.first_arrival_s is None:
                stats.first_arrival_s = now_s
            stats.last_arrival_s = now_s
        elif isinstance(message, Health):
            self._engine_state = message.engine_state
            for source_id, info in message.sources.items():
                stats = self._source(source_id)
                stats.dropped = info.dropped
                stats.corrupt = info.corrupt
                stats.state = info.state
        elif isinstance(message, EndOfStream):
            stats = self._source(message.source_id)
            stats.dropped = message.dropped
            stats.corrupt = message.corrupt
            stats.eos_reason = message.reason
            stats.error = message.error

    def _write(self, text: str) -> None:
        if self._stream is None:
            msg = "console sink must be open to write"
            raise SinkError(msg)
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: write to a closed stream
            msg = f"cannot write console output: {exc}"
            raise SinkError(msg) from exc

    def status_line(self, now_s: float) -> str:
        """The live status text for ``now_s`` (seconds on ``now_fn``'s clock); resets nothing.

        One part per source, its state in brackets unless it is ``live`` or ``ended``; with more than
        :data:`MAX_SOURCES_LISTED` sources, one part for all of them together (summed frames, fps and
        drops, and how many sources are in each state).
        """
        cutoff_s = now_s - self.rate_window_s
        span_s = max(min(self.rate_window_s, now_s - self._opened_s), 1e-9)
        rows: list[tuple[str, int, float, int, int]] = []  # (source_id, frames, fps, batter frames, dropped)
        for source_id in sorted(self._sources):
            stats = self._sources[source_id]
            fps = sum(n for t, n in stats.arrivals if t >= cutoff_s) / span_s
            name = source_id if stats.state in _QUIET_STATES else f"{source_id} [{stats.state}]"
            rows.append((name, stats.frames, fps, stats.batter, stats.dropped))
        if len(rows) > MAX_SOURCES_LISTED:
            states: dict[str, int] = {}
            for stats in self._sources.values():
                states[stats.state or "?"] = states.get(stats.state or "?", 0) + 1
            state_text = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
            frames_total, fps_total = sum(r[1] for r in rows), sum(r[2] for r in rows)
            batter_total, dropped_total = sum(r[3] for r in rows), sum(r[4] for r in rows)
            rows = [(f"{len(rows)} sources ({state_text})", frames_total, fps_total, batter_total, dropped_total)]
        parts = []
        for name, frames, fps, batter_frames, dropped in rows:
            batter = f"{100.0 * batter_frames / frames:.0f}%" if frames else "-"
            parts.append(f"{name}: {frames} frames, {fps:.1f} fps, batter {batter}, dropped {dropped}")
        return " | ".join(parts) if parts else "waiting for messages"

    def _emit_status(self, now_s: float) -> None:
        line = self.status_line(now_s)
        if self._tty or self._stream is sys.stderr:
            # tqdm.write clears and redraws any progress bar of this process on that stream (the
            # CLI's, on stderr, also when stderr is a log file), so status lines never land inside
            # the bar's line.
            from tqdm import tqdm

            tqdm.write(line, file=self._stream)
        else:
            self._write(line + "\n")
        self._last_status_s = now_s

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Update per-source counters and write a status line when ``interval_s`` has passed.

        Raises:
            SinkError: the sink is not open or the stream cannot be written.
        """
        if self._stream is None:
            msg = "console sink must be open to write"
            raise SinkError(msg)
        now_s = self._now_fn()
        for message in messages:
            self._update(message, now_s)
        if now_s - self._last_status_s >= self.interval_s:
            self._emit_status(now_s)

    def summary_lines(self) -> list[str]:
        """One final line per source: frames, mean arrival fps, batter %, drops, end reason.

        The mean fps is ``(frames - 1) / span`` over the span from the first to the last ``pose``
        arrival; with a span under :data:`MIN_SUMMARY_SPAN_S` it reads ``- fps``. The end reason is
        the ``eos`` reason (``no eos`` without one), ``error: TEXT`` when the source failed.
        """
        lines = []
        for source_id in sorted(self._sources):
            stats = self._sources[source_id]
            span_s = (
                stats.last_arrival_s - stats.first_arrival_s
                if stats.first_arrival_s is not None and stats.last_arrival_s is not None
                else 0.0
            )
            fps = f"{(stats.frames - 1) / span_s:.1f} fps" if span_s >= MIN_SUMMARY_SPAN_S else "- fps"
            batter = f"{100.0 * stats.batter / stats.frames:.1f}%" if stats.frames else "-"
            end = stats.eos_reason or "no eos"
            if stats.error:
                end = f"error: {stats.error}" if end == "error" else f"{end}, error: {stats.error}"
            lines.append(
                f"{source_id}: {stats.frames} frames, {fps}, batter found {batter}, "
                f"dropped {stats.dropped}, corrupt {stats.corrupt} ({end})"
            )
        return lines

    def close(self) -> None:
        """Write the summary lines; the stream itself is left open. Idempotent."""
        if self._stream is None:
            return
        text = "".join(line + "\n" for line in self.summary_lines())
        try:
            if text:
                self._write(text)
        finally:
            self._stream = None
