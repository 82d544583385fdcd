"""PyAV sources: video files, network streams (RTSP/HTTP/RTMP/...) and V4L2 webcams.

All three share one demux/decode loop (:class:`PyAVSource`): the video stream is demuxed packet by
packet and every packet is decoded on its own, so a packet the decoder refuses is skipped and counted
in ``corrupt`` instead of ending the source. PyAV's ``Container.demux`` yields one final empty packet
per stream; decoding it flushes the decoder, so the frames it still holds are delivered too.

Live sources (URLs, cameras) read ``stalled`` once no frame came for ``stall_after_s``, and they
reconnect: when the input errors, ends, or delivers nothing for ``read_timeout_s`` (PyAV's read
timeout), the container is closed, the source backs off per
:class:`~stream.reconnect.ReconnectPolicy` and reopens, and the same ``frames()`` generator goes on
yielding. Every source publishes a strictly increasing ``pts_s`` (:class:`PtsTimeline`): a PTS reset,
a step back, a huge step forward or a reconnect moves an offset instead of the published time, and
the first frame after such a break carries ``timeline_break=True``.

References (PyAV docs): ``av.open(file, options=..., timeout=(open_s, read_s))``,
``InputContainer.demux``, ``Packet.decode``, ``VideoStream.thread_type = "AUTO"``,
``VideoFrame.to_ndarray(format="bgr24")``, ``Frame.pts`` (in ``Frame.time_base`` units) and the
``av.error`` hierarchy (``InvalidDataError(FFmpegError, ValueError)``, ``TimeoutError``, ``ExitError``).
Reconnect pattern: DeepStream ``nvurisrcbin`` ``rtsp-reconnect-interval`` / ``rtsp-reconnect-attempts``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from engine.config import SOURCE_ID_RE, SourceConfig
from engine.errors import ConfigError, SourceError
from engine.sources import Source
from engine.types import Frame
from stream.reconnect import ReconnectPolicy

__all__ = [
    "FileSource",
    "PtsTimeline",
    "PyAVSource",
    "SOURCE_STATES",
    "UrlSource",
    "WebcamSource",
    "redact_text",
    "redact_url",
]

_LOG = logging.getLogger(__name__)

#: Frame rate assumed for ``pts_s`` when a stream has neither PTS nor an average rate.
FALLBACK_FPS = 30.0
#: Demux errors in a row (``InvalidDataError``) tolerated before the source gives up.
MAX_CONSECUTIVE_DEMUX_ERRORS = 32
#: Smallest ``pts_s`` step of a live frame without PTS (frames decoded from one packet), seconds.
MIN_WALL_STEP_S = 1e-3
#: Values of :attr:`PyAVSource.state`, in lifecycle order.
SOURCE_STATES = ("connecting", "live", "stalled", "reconnecting", "ended")
#: A live read that took at least this share of ``read_timeout_s`` timed out inside FFmpeg, whatever
#: it returned (see :meth:`PyAVSource._connection_frames`).
STALE_READ_FRACTION = 0.9

_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_USERINFO_ANYWHERE_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s'\"]*@")
_SECRET_QUERY_RE = re.compile(
    r"([?&;](?:[^=&;#\s]*(?:pass|pwd|token|secret|key|auth|sig)[^=&;#\s]*)=)[^&;#\s'\"]*", re.I
)


def redact_url(url: str) -> str:
    """Return ``url`` with credentials masked, for log and error messages.

    ``user:password@`` (or ``user@``) in the authority becomes ``***@``, and the values of query
    parameters whose name looks secret (``password``, ``token``, ``key``, ``auth``, ``sig`` ...) become
    ``***``. Anything else is kept, so the host, port and path stay readable.

    Args:
        url: Any URL string, e.g. ``"rtsp://admin:pw@10.0.0.1:554/stream1"``.

    Returns:
        The masked URL, e.g. ``"rtsp://***@10.0.0.1:554/stream1"``.
    """
    masked = _USERINFO_RE.sub(r"\1***@", url)
    return _SECRET_QUERY_RE.sub(r"\1***", masked)


def redact_text(text: str) -> str:
    """Mask the credentials of every URL inside free text (an FFmpeg / OS error message, a log line).

    Example: ``"Immediate exit requested: 'rtsp://u:pw@h/x'"`` -> ``"... 'rtsp://***@h/x'"``.
    """
    masked = _USERINFO_ANYWHERE_RE.sub(r"\1***@", text)
    return _SECRET_QUERY_RE.sub(r"\1***", masked)


def _reason(exc: BaseException) -> str:
    """Short human reason of a PyAV / OS error (its ``strerror`` when it has one), credentials masked."""
    reason = getattr(exc, "strerror", None)
    return redact_text(str(reason) if reason else (str(exc) or type(exc).__name__))


def _is_stall(exc: BaseException) -> bool:
    """Whether a read error is PyAV's read timeout (its interrupt callback) or a socket timeout."""
    return isinstance(exc, (av.error.ExitError, av.error.TimeoutError, TimeoutError))


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


class PyAVSource(Source):
    """Shared base of the PyAV sources: option storage, stream selection, decode loop, reconnect, close.

    Subclasses only say how to open the container (:meth:`_open_container`) and how to name the
    input in messages (:attr:`label`). Lifecycle and threads follow :class:`~engine.sources.Source`:
    ``open()`` and ``frames()`` run on the source's reader thread; ``close()`` and the read-only
    health attributes (``state``, ``reconnects`` ...) may be used from any thread. ``close()`` never
    touches the container while ``frames()`` is inside a PyAV call: it sets a flag, and ``frames()``
    sees it before its next packet and releases the container itself. A blocking network read ends
    within ``read_timeout_s`` (PyAV's read timeout), a reconnect backoff within 0.05 s, and a reopen
    attempt within ``open_timeout_s``, so ``frames()`` returns at most that long after ``close()``.
    After ``close()``, ``frames()`` yields nothing.

    Stall (live sources): with no frame for :attr:`stall_after_s` the state reads ``"stalled"`` while
    the read still waits; a frame brings ``"live"`` back, and the read timeout (``read_timeout_s``)
    ends the connection: a reconnect, or with reconnect off a :class:`SourceError`.
    Reconnect (live sources with ``config.reconnect``): when a read fails, times out or the stream
    ends, the container is closed and the source backs off and reopens per :attr:`policy` (state
    ``"reconnecting"``), then goes on yielding from the same generator:
    ``frame_index`` keeps counting and ``pts_s`` keeps increasing, and the first frame after the
    reconnect has ``timeline_break=True``. A failed first ``open()`` is retried the same way inside
    ``open()``. The backoff sequence and the attempt count restart only once a frame has arrived, so
    a server that accepts but never sends keeps backing off. Credentials never reach a message.

    Attributes:
        spec: The path, URL or device given on the command line.
        source_id: Name of the source (``[A-Za-z0-9_.-]+``).
        config: Reader options (timeouts, RTSP transport, reconnect).
        policy: Backoff and attempt limit of reconnects (from ``config``; replace it before ``open()``).
        live: ``False`` for files, ``True`` for URLs and cameras.
        total_frames: ``stream.frames`` from the container after ``open()`` (files), ``None`` when unknown.
        corrupt: Packets skipped because the demuxer or decoder refused them.
        fps: Average frame rate of the video stream in frames per second after ``open()``, ``None`` if unknown.
        width: Coded frame width in pixels after ``open()`` (0 before).
        height: Coded frame height in pixels after ``open()`` (0 before).
        reconnects: Successful reopenings after a drop or a failed first open.
        reconnect_attempts: Reopen attempts made, successful or not.
        last_error: Redacted reason of the last drop or failed attempt, ``None`` if none yet.
        timeline: The ``pts_s`` timeline (``timeline.breaks`` counts the breaks flagged).
    """

    live = False

    def __init__(self, spec: str, source_id: str, config: SourceConfig) -> None:
        if not isinstance(spec, str) or not spec:
            msg = f"source spec must be a non-empty string, got {spec!r}"
            raise ConfigError(msg)
        if not isinstance(source_id, str) or not SOURCE_ID_RE.match(source_id):
            msg = f"source id must match [A-Za-z0-9_.-]+, got {source_id!r}"
            raise ConfigError(msg)
        self.spec = spec
        self.source_id = source_id
        self.config = config
        self.policy = ReconnectPolicy.from_config(config)
        self.total_frames: int | None = None
        self.corrupt = 0
        self.fps: float | None = None
        self.width = 0
        self.height = 0
        self.reconnects = 0
        self.reconnect_attempts = 0
        self.last_error: str | None = None
        self.timeline = PtsTimeline(config.max_pts_jump_s)
        self._state = "connecting"
        self._next_index = 0
        self._last_frame_mono = 0.0
        self._backoff: Iterator[float] | None = None
        self._attempts_in_row = 0
        self._container: Any = None
        self._stream: Any = None
        self._opened_at_s = 0.0
        self._state_lock = threading.Lock()
        self._close_event = threading.Event()
        self._closed = False
        self._busy = False

    @classmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> PyAVSource:
        """Store the options; nothing is opened.

        Raises:
            ConfigError: ``spec`` is empty or ``source_id`` is not ``[A-Za-z0-9_.-]+``.
        """
        return cls(spec, source_id, config)

    @property
    def label(self) -> str:
        """How the input is named in messages (a URL has its credentials masked)."""
        return self.spec

    @property
    def reconnect_enabled(self) -> bool:
        """Whether drops are followed by reconnects: live sources with ``config.reconnect``."""
        return bool(self.live and self.config.reconnect)

    @property
    def stall_after_s(self) -> float:
        """Seconds without a frame after which a live source reads ``"stalled"``.

        ``config.stall_after_s``, capped at ``config.read_timeout_s``: a larger value is accepted and
        means ``"stalled"`` shows from the read timeout on, so a dead input goes (almost) straight
        to ``"reconnecting"``, while an input whose reads still return packets but no frame shows it.
        """
        return min(self.config.stall_after_s, self.config.read_timeout_s)

    @property
    def state(self) -> str:
        """Health state, one of :data:`SOURCE_STATES` (any thread may read it).

        ``"connecting"`` while the first open runs and until the first frame; ``"live"`` while frames
        flow; ``"stalled"`` when a live source in ``"live"`` got no frame for :attr:`stall_after_s`
        (its read still waiting) or its read timed out, until the next frame (``"live"`` again) or the
        reconnect; ``"reconnecting"`` while backing off, reopening, and until the first frame after
        it; ``"ended"`` once the source finished for good (end of file, failure, ``close()``). Files
        are never ``"stalled"``.
        """
        state = self._state  # read before the frame time: _make_frame() writes them the other way round
        if state == "live" and self.live and time.monotonic() - self._last_frame_mono > self.stall_after_s:
            return "stalled"
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source_id={self.source_id!r}, spec={self.label!r})"

    @abstractmethod
    def _open_container(self) -> Any:
        """Return an open ``av.container.InputContainer``, or raise :class:`SourceError`."""

    def _redact(self, text: str) -> str:
        """``text`` with this source's spec shown as its label and every URL's credentials masked."""
        if self.label != self.spec:
            text = text.replace(self.spec, self.label)
        return redact_text(text)

    def _error(self, msg: str) -> SourceError:
        """A :class:`SourceError` whose message has every credential masked."""
        return SourceError(self._redact(msg))

    def _safe_cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` when its text carries no secret, else ``None``: ``raise err from self._safe_cause(exc)``.

        PyAV's ``str(exc)`` repeats the URL, password included; ``from None`` keeps it out of tracebacks.
        """
        text = f"{exc} {getattr(exc, 'filename', '') or ''}"
        return exc if self._redact(text) == text else None

    def _is_closed(self) -> bool:
        with self._state_lock:
            return self._closed

    # -- times -------------------------------------------------------------------------------------

    def _missing_pts_step_s(self) -> float:
        """``pts_s`` step of a frame without PTS: one frame interval (files)."""
        return 1.0 / (self.fps or FALLBACK_FPS)

    def _first_missing_pts_s(self) -> float:
        """``pts_s`` of a first frame without PTS: 0 (files; ``frame_index / fps`` of frame 0)."""
        return 0.0

    # -- open / reconnect ---------------------------------------------------------------------------

    def _connect(self) -> bool:
        """Open the container once and select its video stream; ``False`` if closed meanwhile.

        Raises:
            SourceError: the input cannot be opened or has no decodable video stream.
        """
        container = self._open_container()
        try:
            stream = container.streams.best("video")
            if stream is None:
                msg = f"no video stream in {self.label}"
                raise SourceError(msg)
            if stream.codec_context is None:
                msg = f"no decoder for the video stream ({stream.codec_name}) in {self.label}"
                raise SourceError(msg)
            stream.thread_type = "AUTO"
        except BaseException:
            container.close()
            raise
        total = None if self.live else (int(stream.frames) or None)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        with self._state_lock:
            if self._closed:
                container.close()
                return False
            self.total_frames = total
            self.fps = fps
            self.width = int(stream.codec_context.width)
            self.height = int(stream.codec_context.height)
            self.timeline.nominal_interval_s = 1.0 / fps if fps else None
            self._opened_at_s = time.monotonic()
            self._container, self._stream = container, stream
        return True

    def open(self) -> None:
        """Open the container and select its best video stream (frame threading on).

        Calling it again while open does nothing. With reconnect on (live sources), a failed open is
        retried per :attr:`policy`, logging a redacted warning per attempt, until it succeeds, the
        attempts run out, or ``close()`` is called (then ``open()`` returns and ``frames()`` yields
        nothing).

        Raises:
            SourceError: the input is missing or unreadable, is not media, has no video stream (with
                reconnect on: after the last attempt), or ``close()`` was already called. The message
                names the input (credentials masked) and the reason.
        """
        with self._state_lock:
            if self._closed:
                msg = f"source {self.source_id!r} is closed: {self.label}"
                raise SourceError(msg)
            if self._container is not None:
                return
        self._state = "connecting"
        try:
            if not self._connect():
                self._state = "ended"
            return
        except SourceError as exc:
            self.last_error = str(exc)
            if not self.reconnect_enabled:
                self._state = "ended"
                raise
            _LOG.warning("%s; retrying (reconnect on)", exc)
        self._reconnect()

    def _reconnect(self) -> bool:
        """Back off and reopen until connected (``True``) or closed (``False``).

        Raises:
            SourceError: ``policy.max_attempts`` attempts in a row failed.
        """
        if self._backoff is None:
            self._backoff = self.policy.delays()
            self._attempts_in_row = 0
        while True:
            self._state = "reconnecting"
            delay_s = next(self._backoff, None)
            if delay_s is None:
                self._state = "ended"
                msg = (
                    f"cannot reach {self.label}: gave up after {self._attempts_in_row} reconnect attempts"
                    f" (last error: {self.last_error})"
                )
                raise SourceError(self._redact(msg))
            if self.policy.wait(delay_s, self._close_event):
                self._state = "ended"
                return False
            self._attempts_in_row += 1
            self.reconnect_attempts += 1
            try:
                if not self._connect():
                    self._state = "ended"
                    return False
            except SourceError as exc:
                self.last_error = str(exc)
                _LOG.warning("%s (reconnect attempt %d)", exc, self._attempts_in_row)
                continue
            self.reconnects += 1
            self.timeline.mark_break()
            _LOG.info("%s: reconnected (attempt %d, %d reconnects so far)",
                      self.label, self._attempts_in_row, self.reconnects)
            return True

    # -- decode loop ---------------------------------------------------------------------------

    def _enter(self) -> bool:
        """Mark the container busy unless ``close()`` was called; ``False`` means stop."""
        with self._state_lock:
            if self._closed or self._container is None:
                return False
            self._busy = True
            return True

    def _leave(self) -> None:
        with self._state_lock:
            self._busy = False

    def _release(self) -> None:
        """Close the container once (whichever of ``frames()`` / ``close()`` gets here first)."""
        with self._state_lock:
            container, self._container, self._stream = self._container, None, None
        if container is not None:
            try:
                container.close()
            except (av.error.FFmpegError, OSError) as exc:  # closing must not mask the real error
                _LOG.debug("closing %s failed: %s", self.label, _reason(exc))

    def _decode(self, packet: Any, stream: Any) -> list[tuple[float | None, np.ndarray]]:
        """Decode one packet (``None`` = flush) into ``(raw_pts_s, bgr image)``; refused = corrupt."""
        try:
            video_frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except av.error.EOFError:  # decoder already flushed
            return []
        except av.error.FFmpegError as exc:
            self.corrupt += 1
            pts = None if packet is None else packet.pts
            _LOG.debug("%s: skipped undecodable packet (pts=%s): %s", self.label, pts, _reason(exc))
            return []
        out: list[tuple[float | None, np.ndarray]] = []
        for vf in video_frames:
            raw_s = None
            if vf.pts is not None:
                time_base = vf.time_base or stream.time_base
                if time_base:
                    raw_s = float(vf.pts * time_base)
            out.append((raw_s, vf.to_ndarray(format="bgr24")))
        return out

    def _make_frame(self, raw_s: float | None, image: np.ndarray) -> Frame:
        """Stamp a decoded image: next ``frame_index``, monotonic ``pts_s``, state ``live``."""
        if raw_s is not None:
            pts_s, is_break = self.timeline.update(raw_s)
        else:
            pts_s, is_break = self.timeline.extrapolate(self._missing_pts_step_s(), self._first_missing_pts_s())
        if is_break and self._next_index:
            _LOG.info("%s: timeline break at frame %d (raw pts %s s, published %.3f s)",
                      self.label, self._next_index, raw_s, pts_s)
        frame = Frame(
            self.source_id, self._next_index, pts_s, time.time_ns(), image,
            raw_pts_s=raw_s, timeline_break=is_break,
        )
        self._next_index += 1
        self._last_frame_mono = time.monotonic()
        self._backoff = None  # frames flow again: the next drop starts the backoff afresh
        self._state = "live"
        return frame

    def _connection_frames(self, container: Any, stream: Any) -> Iterator[Frame]:
        """Yield the frames of one open container; return at its end (files) or when closed.

        Raises:
            SourceError: a read failed or timed out; too many demux errors in a row; no decodable
                frame although packets were refused; a live input ended.
        """
        produced = 0
        corrupt_before = self.corrupt
        demux = container.demux(stream)
        flushed = False
        demux_errors = 0
        while True:
            if not self._enter():
                return
            ended = False
            try:
                try:
                    read_start_s = time.monotonic()
                    packet = next(demux, None)
                    waited_s = time.monotonic() - read_start_s
                except av.error.InvalidDataError as exc:
                    self.corrupt += 1
                    demux_errors += 1
                    if demux_errors > MAX_CONSECUTIVE_DEMUX_ERRORS:
                        msg = f"cannot read {self.label}: {demux_errors} demux errors in a row ({_reason(exc)})"
                        raise self._error(msg) from self._safe_cause(exc)
                    demux = container.demux(stream)
                    continue
                except (av.error.FFmpegError, OSError) as exc:  # TimeoutError, ExitError, I/O errors
                    if self._is_closed():
                        return
                    if _is_stall(exc) and self.live:
                        self._state = "stalled"
                        msg = f"stalled: no packet from {self.label} for {self.config.read_timeout_s:g} s"
                    else:
                        msg = f"cannot read {self.label}: {_reason(exc)}"
                    raise self._error(msg) from self._safe_cause(exc)
                demux_errors = 0
                stale = self.live and produced and waited_s >= STALE_READ_FRACTION * self.config.read_timeout_s
                if stale and not self._is_closed():
                    # FFmpeg's RTSP demuxer answers a timed-out read with the packet still in its
                    # reorder queue: a frame from before the outage, a read timeout late. Reconnect
                    # now instead of publishing it and waiting out a second timeout. (Before the
                    # connection's first frame there is nothing queued: waiting is no outage.)
                    self._state = "stalled"
                    msg = f"stalled: no packet from {self.label} for {waited_s:.1f} s"
                    raise self._error(msg)
                if packet is None:
                    ended = True
                    batch = [] if flushed else self._decode(None, stream)
                else:
                    flushed = flushed or packet.size == 0
                    batch = self._decode(packet, stream)
            finally:
                self._leave()
            for raw_s, image in batch:
                yield self._make_frame(raw_s, image)
                produced += 1
            if ended:
                break
        if not self.live and self.total_frames and produced + 1 < self.total_frames and not self._is_closed():
            _LOG.warning(
                "%s: the file announces %d frames but only %d could be read (truncated?)",
                self.label, self.total_frames, produced,
            )
        if produced == 0 and self.corrupt > corrupt_before:
            msg = f"no decodable frame in {self.label}: {self.corrupt - corrupt_before} packets could not be decoded"
            raise SourceError(msg)
        if self.live and not self._is_closed() and not self._is_finite(container):
            msg = f"stream ended: {self.label} (after {produced} frames)"
            raise SourceError(msg)

    def _is_finite(self, container: Any) -> bool:
        """Whether reaching the end of ``container`` ends the source for good (no reconnect)."""
        return False

    def frames(self) -> Iterator[Frame]:
        """Yield the decoded frames of the video stream, in decode order (reader thread only).

        Each :class:`~engine.types.Frame` has ``frame_index`` 0, 1, 2, ... (never restarting, also
        across reconnects), a strictly increasing ``pts_s`` in seconds with the stream's own time in
        ``raw_pts_s`` (see :class:`PtsTimeline`; frames without PTS continue from the previous frame
        by ``1 / fps`` for files or by the wall-clock time between them for live sources, the very
        first such frame of a live source at its seconds since ``open()``), ``timeline_break`` on the
        first frame after a discontinuity, ``capture_time_ns`` from ``time.time_ns()`` and ``image``
        ``uint8 [H, W, 3]`` BGR. Packets the demuxer or decoder refuse are skipped and counted in
        ``corrupt``. The container is closed when the generator ends. With reconnect on, a live
        source's drops are bridged by reconnects (see the class docstring) instead of raising.

        Raises:
            SourceError: ``open()`` was not called; a read failed or timed out; more than
                ``MAX_CONSECUTIVE_DEMUX_ERRORS`` demux errors in a row; the input ended without one
                decodable frame although packets were refused; a live input ended -- each only
                when reconnect is off; with it on: ``policy.max_attempts`` reconnects in a row failed.
        """
        with self._state_lock:
            container, stream, closed = self._container, self._stream, self._closed
        if closed:
            return
        if container is None:
            msg = f"frames() called before open() on source {self.source_id!r} ({self.label})"
            raise SourceError(msg)
        try:
            while True:
                try:
                    yield from self._connection_frames(container, stream)
                    return
                except SourceError as exc:
                    self.last_error = str(exc)
                    if self._is_closed():
                        return
                    if not self.reconnect_enabled:
                        raise
                    _LOG.warning("%s; reconnecting", exc)
                self._release()
                if not self._reconnect():
                    return
                with self._state_lock:
                    container, stream = self._container, self._stream
                if container is None:
                    return
        finally:
            self._state = "ended"
            self._release()

    def close(self) -> None:
        """Stop ``frames()`` (or a reconnect backoff) and release the container; idempotent, any thread.

        When ``frames()`` is inside a PyAV call, only the flag is set here and ``frames()`` closes the
        container itself when the call returns, so a container is never closed under a running read.
        """
        with self._state_lock:
            self._closed = True
            busy = self._busy
        self._close_event.set()
        self._state = "ended"
        if not busy:
            self._release()


class FileSource(PyAVSource):
    """A video file (mp4, avi, mov, mkv, gif, ts ...) read with PyAV; not live, every frame in order.

    ``total_frames`` is the container's frame count (``stream.frames``) or ``None`` when the
    container does not say. Frames without PTS get ``pts_s = frame_index / fps``. A file whose PTS
    restart or jump (concatenated recordings) still gets a strictly increasing ``pts_s`` and a
    ``timeline_break`` where its raw timeline breaks. Never reconnects.
    """

    live = False

    def _open_container(self) -> Any:
        """Open the file.

        Raises:
            SourceError: ``file not found: <path>``; a directory or an empty file; a file FFmpeg
                cannot read (``cannot open <path>: <reason>``).
        """
        path = Path(self.spec)
        if not path.exists():
            msg = f"file not found: {path}"
            raise SourceError(msg)
        if path.is_dir():
            msg = f"cannot open {path}: expected a video file, got a directory"
            raise SourceError(msg)
        try:
            size = path.stat().st_size
        except OSError as exc:
            msg = f"cannot open {path}: {_reason(exc)}"
            raise SourceError(msg) from exc
        if size == 0 and path.is_file():
            msg = f"cannot open {path}: file is empty (0 bytes)"
            raise SourceError(msg)
        try:
            return av.open(os.fspath(path), mode="r", metadata_errors="replace")
        except av.error.InvalidDataError as exc:
            msg = f"cannot open {path}: not a readable media file ({_reason(exc)})"
            raise SourceError(msg) from exc
        except (av.error.FFmpegError, OSError) as exc:
            msg = f"cannot open {path}: {_reason(exc)}"
            raise SourceError(msg) from exc


class _LiveSource(PyAVSource):
    """Live PyAV input: frames without PTS are timed by the wall clock."""

    live = True

    def _missing_pts_step_s(self) -> float:
        """Wall-clock seconds since the previous frame (at least ``MIN_WALL_STEP_S``)."""
        return max(MIN_WALL_STEP_S, time.monotonic() - self._last_frame_mono)

    def _first_missing_pts_s(self) -> float:
        """Wall-clock seconds since ``open()``."""
        return time.monotonic() - self._opened_at_s


class UrlSource(_LiveSource):
    """A network stream (``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``srt://`` ...).

    Live: opened with ``timeout=(open_timeout_s, read_timeout_s)``; RTSP uses ``rtsp_transport``.
    Frames without PTS are timed by the wall clock (seconds since ``open()``, then the time between
    frames). With ``config.reconnect`` (the default) a failed open, an error, the end of the stream or
    a read timeout is followed by reconnects (see :class:`PyAVSource`); without it they raise
    :class:`SourceError`. Every message and log line shows the URL through :func:`redact_url`, and
    FFmpeg's error texts (which may repeat the URL) are masked too.
    """

    @property
    def label(self) -> str:
        """The URL with credentials masked."""
        return redact_url(self.spec)

    def _is_finite(self, container: Any) -> bool:
        """An ``http(s)://`` file with a known duration ends at its end instead of being replayed."""
        duration = getattr(container, "duration", None)
        return self.spec.lower().startswith(("http://", "https://")) and bool(duration and duration > 0)

    def _open_container(self) -> Any:
        """Open the URL.

        Raises:
            SourceError: ``cannot open <redacted url>: <reason>`` (refused, unreachable, timeout, 4xx ...).
        """
        options: dict[str, str] = {}
        if self.spec.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.config.rtsp_transport
        timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
        started = time.monotonic()
        try:
            return av.open(self.spec, mode="r", options=options, timeout=timeout, metadata_errors="replace")
        except (av.error.FFmpegError, OSError) as exc:
            # An open cut by the timeout surfaces as ExitError or, from some demuxers (RTSP), as
            # InvalidDataError: judge by the clock.
            if _is_stall(exc) or time.monotonic() - started >= 0.95 * self.config.open_timeout_s:
                msg = f"cannot open {self.label}: no answer within {self.config.open_timeout_s:g} s ({_reason(exc)})"
            else:
                msg = f"cannot open {self.label}: {_reason(exc)}"
            raise self._error(msg) from self._safe_cause(exc)


class WebcamSource(_LiveSource):
    """A V4L2 camera (``/dev/videoN``), opened with ``format="v4l2"``; live.

    Frames without PTS are timed by the wall clock. With ``config.reconnect`` an unplugged or failing
    camera is reopened with backoff (see :class:`PyAVSource`).
    """

    def _open_container(self) -> Any:
        """Open the device.

        Raises:
            SourceError: ``camera not found: /dev/videoN``; ``cannot open camera <dev>: <reason>``
                (busy, permission denied, timeout).
        """
        if not Path(self.spec).exists():
            msg = f"camera not found: {self.spec}"
            raise SourceError(msg)
        timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
        try:
            return av.open(self.spec, mode="r", format="v4l2", timeout=timeout)
        except (av.error.FileNotFoundError, FileNotFoundError) as exc:
            msg = f"camera not found: {self.spec}"
            raise SourceError(msg) from exc
        except (av.error.FFmpegError, OSError) as exc:
            msg = f"cannot open camera {self.spec}: {_reason(exc)}"
            raise SourceError(msg) from exc
