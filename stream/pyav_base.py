"""The shared base of the PyAV sources (:class:`PyAVSource`): open, demux/decode loop, reconnect, close.

The video stream is demuxed packet by packet and every packet is decoded on its own, so a packet the
decoder refuses is skipped and counted in ``corrupt`` instead of ending the source. PyAV's
``Container.demux`` yields one final empty packet per stream; decoding it flushes the decoder, so the
frames it still holds are delivered too.

Live sources (URLs, cameras) read ``stalled`` once no frame came for ``stall_after_s``, and they
reconnect: when the input errors, ends, or delivers nothing for ``read_timeout_s`` (PyAV's read
timeout), the container is closed, the source backs off per
:class:`~stream.reconnect.ReconnectPolicy` and reopens, and the same ``frames()`` generator goes on
yielding. Every source publishes a strictly increasing ``pts_s`` (:class:`~stream.timeline.PtsTimeline`).
The concrete sources (file, URL, webcam) are in :mod:`stream.pyav`.

References (PyAV docs): ``av.open(file, options=..., timeout=(open_s, read_s))``,
``InputContainer.demux``, ``Packet.decode``, ``Packet.is_corrupt``, ``VideoFrame.is_corrupt``,
``VideoStream.thread_type = "SLICE"``,
``VideoStream.average_rate`` / ``guessed_rate`` / ``base_rate``, ``VideoFrame.to_ndarray(format="bgr24")``,
``Frame.pts`` (in ``Frame.time_base`` units) and the ``av.error`` hierarchy
(``InvalidDataError(FFmpegError, ValueError)``, ``TimeoutError``, ``ExitError``).
Reconnect pattern: DeepStream ``nvurisrcbin`` ``rtsp-reconnect-interval`` / ``rtsp-reconnect-attempts``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import av
import av.error
import numpy as np

from engine.config import SOURCE_ID_RE, SourceConfig
from engine.errors import ConfigError, SourceError, safe_text
from engine.sources import Source
from engine.types import DeferredFrame, Frame
from stream.decode import (
    PtsCorrection,
    decode_packet,
    describe_stream,
    frame_time_s,
    has_no_timestamps,
    is_stall,
    select_video_stream,
    stream_choice,
    stream_rate,
)
from stream.display import IDENTITY, Orientation, frame_orientation
from stream.probe import probe_container
from stream.reconnect import ReconnectPolicy
from stream.redact import error_reason, redact_text
from stream.timeline import FALLBACK_FPS, PtsTimeline

__all__ = ["SOURCE_STATES", "PyAVSource", "SourceRefusedError"]

_LOG = logging.getLogger(__name__)

#: Pictures an open video decoder holds, for :attr:`PyAVSource.decoder_bytes`: H.264's largest
#: decoded picture buffer (16 references) plus FFmpeg's frame threads; measured: 80 MiB of RSS per
#: open 1080x1920 H.264 decoder (3.1 MiB pictures) with 3 frame threads.
DECODER_PICTURES = 26
#: Demux errors in a row (``InvalidDataError``) tolerated before the source gives up.
MAX_CONSECUTIVE_DEMUX_ERRORS = 32
#: Values of :attr:`PyAVSource.state`, in lifecycle order.
SOURCE_STATES = ("connecting", "live", "stalled", "reconnecting", "ended")
#: A live read that took at least this share of ``read_timeout_s`` timed out inside FFmpeg, whatever
#: it returned (see :meth:`PyAVSource._connection_frames`).
STALE_READ_FRACTION = 0.9


class SourceRefusedError(SourceError):
    """The server answered the open with ``400 Bad Request`` (HTTP / RTSP): the same request will not succeed later.

    Counted toward ``source.max_refusals`` (:meth:`PyAVSource.open`).
    """


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
        live: ``False`` for files, ``True`` for URLs and cameras; ``config.mode`` ``live`` / ``file``
            forces it, and in mode ``auto`` a source whose input turns out finite at its first open
            (:meth:`_is_finite`: an HTTP file or HLS playlist of known duration) becomes a file:
            every frame in order, frames without PTS timed by the frame rate. A finite network
            source reconnects after a failure, skips the frames it already delivered, and fails
            after ``config.max_same_failures`` failures in a row with the same message.
        total_frames: ``stream.frames`` from the container after ``open()`` (files), ``None`` when unknown.
        corrupt: Damaged packets: refused by the demuxer or decoder (skipped), or flagged corrupt by
            the demuxer (a partial last packet, an MPEG-TS continuity error), each counted once.
        concealed: Frames the decoder delivered with errors concealed (``VideoFrame.is_corrupt``);
            they are published, and counted here.
        truncated: A file ended early: fewer frames than its container announces, or a partial
            last packet (``eos/`` then says ``reason: truncated``).
        fps: Nominal frame rate of the video stream in frames per second after ``open()``
            (:func:`~stream.decode.stream_rate`), ``None`` before ``open()`` and when the stream
            gives none. Also the timeline's frame interval and the step of frames without PTS.
        rate_field: The PyAV field ``fps`` came from (``"average_rate"``, ``"guessed_rate"`` ...), or ``None``.
        width: Frame width in pixels after ``open()`` (0 before): coded, then in display orientation
            from the first frame on (:attr:`orientation`).
        height: Frame height in pixels, likewise.
        orientation: How frames are turned upright (:class:`~stream.display.Orientation`, from the
            display matrix of the first frame of each connection).
        stream_index: Index of the video stream read in its container after ``open()``, ``None`` before.
        stream_choice: Why that stream was chosen, in words (:func:`~stream.decode.stream_choice`).
        reconnects: Successful reopenings after a drop or a failed first open.
        reconnect_attempts: Reopen attempts made, successful or not.
        last_error: Redacted reason of the last drop or failed attempt, ``None`` if none yet.
        timeline: The ``pts_s`` timeline (``timeline.breaks`` counts the breaks flagged).
    """

    live = False
    #: A network input: reconnects after a failure also when read as a file (mode ``file``).
    remote = False

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
        self.live = {"live": True, "file": False}.get(config.mode, type(self).live)
        self._defer = False  # queue live frames unconverted (queued_frames)
        self._same_failures: tuple[str, int] = ("", 0)  # (normalised message, times in a row)
        self._resume_skip = 0  # frames of a reopened file-mode input delivered before its failure
        self.policy = ReconnectPolicy.from_config(config)
        self.total_frames: int | None = None
        self.corrupt = 0
        self.concealed = 0
        self.truncated = False
        self.fps: float | None = None
        self.rate_field: str | None = None
        self.width = 0
        self.height = 0
        self.orientation: Orientation = IDENTITY
        self.stream_index: int | None = None
        self.stream_choice = ""
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
        self._oriented = False
        self._warned_no_pts = False
        self._last_packet_damaged = False
        self._break_announced = False
        self._warned: set[str] = set()
        self._refusals_in_row = 0
        self._pts_correction = PtsCorrection()

    @classmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> PyAVSource:
        """Store the options; nothing is opened.

        Raises:
            ConfigError: ``spec`` is empty or ``source_id`` is not ``[A-Za-z0-9_.-]+``.
        """
        return cls(spec, source_id, config)

    @property
    def label(self) -> str:
        """How the input is named in messages: the spec, UTF-8 safe (:func:`~engine.errors.safe_text`).

        A URL also has its credentials masked (:class:`~stream.pyav.UrlSource`).
        """
        return safe_text(self.spec)

    @property
    def reconnect_enabled(self) -> bool:
        """Whether drops are followed by reconnects: live or network sources with ``config.reconnect``."""
        return bool((self.live or self.remote) and self.config.reconnect)

    @property
    def decoder_bytes(self) -> int:  # type: ignore[override]
        """Bytes the decoder holds, estimated: :data:`DECODER_PICTURES` YUV 4:2:0 pictures of the coded size."""
        return DECODER_PICTURES * self.width * self.height * 3 // 2

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
        return redact_text(safe_text(text))

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

    def _check_size(self, width: int, height: int, decoded: bool = False) -> None:
        """Refuse a frame size above ``config.max_pixels``: the stream's (before decoding) or a decoded frame's.

        Raises:
            SourceError: ``<label>: video is 8192x8192 = 67108864 pixels, above source.max_pixels = ...``.
        """
        limit = self.config.max_pixels
        if width * height > limit:
            when = "a frame grew to" if decoded else "video is"
            msg = (
                f"{self.label}: {when} {width}x{height} = {width * height} pixels, above source.max_pixels = "
                f"{limit}; {'stopped' if decoded else 'refused before decoding'} (raise source.max_pixels to read it)"
            )
            raise self._error(msg)

    # -- open / reconnect ---------------------------------------------------------------------------

    def _connect(self) -> bool:
        """Open the container once and select its video stream; ``False`` if closed meanwhile.

        Raises:
            SourceError: the input cannot be opened or has no decodable video stream.
        """
        container = self._open_container()
        stream = select_video_stream(container, self.label)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        try:
            self._check_size(width, height)
        except SourceError:
            container.close()
            raise
        if self.config.mode == "auto" and self.live and self._next_index == 0 and self._is_finite(container):
            self.live = False  # a finite input is read as a file: every frame, in order
            _LOG.info("%s: finite (duration %.1f s): read as a file", self.label, container.duration / 1e6)
        total = None if self.live else (int(stream.frames) or None)
        fps, rate_field = stream_rate(stream, container)  # also the timeline's interval: they cannot disagree
        choice = stream_choice(container, stream)
        if choice != "the only video stream" and choice != self.stream_choice:
            _LOG.warning("%s: reading video stream %s: %s", self.label, describe_stream(stream), choice)
        no_timestamps = has_no_timestamps(container)
        if no_timestamps and rate_field != self.rate_field:
            _LOG.warning("%s: the container has no timestamps: frames are timed at %g fps (%s)",
                         self.label, fps or FALLBACK_FPS, rate_field or "fallback")
        with self._state_lock:
            if self._closed:
                container.close()
                return False
            self.total_frames = total
            self.fps, self.rate_field = fps, rate_field
            self.width, self.height = width, height
            self.stream_index, self.stream_choice = int(getattr(stream, "index", 0)), choice
            self._oriented, self._warned_no_pts = False, self._warned_no_pts or no_timestamps
            self._pts_correction = PtsCorrection()  # a new decoder: FFmpeg resets its counts too
            self.timeline.nominal_interval_s = 1.0 / fps if fps else None
            self._opened_at_s = time.monotonic()
            self._container, self._stream = container, stream
        return True

    def open(self) -> None:
        """Open the container and select its best video stream (slice threading on).

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
            self._count_refusal(exc)
            self._count_failure(exc)
            _LOG.warning("%s; retrying (reconnect on)", exc)
        self._reconnect()

    def _log_attempt(self, exc: SourceError) -> None:
        """Log a failed reconnect attempt: the first 3 and every 10th at WARNING, the others at DEBUG.

        A source that stays away for hours (reconnect attempts are unlimited by default) would
        otherwise bury every other line; ``health/`` counts every attempt.
        """
        n = self._attempts_in_row
        level = logging.WARNING if n <= 3 or n % 10 == 0 else logging.DEBUG
        hint = "; from now on every 10th attempt is logged (all with --debug)" if n == 3 else ""
        _LOG.log(level, "%s (reconnect attempt %d%s)", exc, n, hint)

    def _count_refusal(self, exc: SourceError) -> None:
        """Count a failed open; fail for good once the server refused ``config.max_refusals`` times in a row.

        Raises:
            SourceError: ``<the refusal> (refused N times in a row; source.max_refusals = N)``.
        """
        self._refusals_in_row = self._refusals_in_row + 1 if isinstance(exc, SourceRefusedError) else 0
        limit = self.config.max_refusals
        if limit and self._refusals_in_row >= limit:
            self._state = "ended"
            msg = f"{exc} (refused {self._refusals_in_row} times in a row; source.max_refusals = {limit})"
            raise SourceError(msg) from exc

    def probe(self) -> dict[str, Any]:
        """Open the input once and describe what :meth:`frames` would read (``batsight probe``); no model.

        Returns:
            :func:`~stream.probe.probe_container`'s ``dict`` (container, streams and the one chosen,
            codec, size after rotation, rate and its field, duration, frame count, mode, warnings).

        Raises:
            SourceError: the input cannot be opened or has no decodable video stream (no retries).
        """
        container = self._open_container()
        try:
            return probe_container(container, self.label, self.live, self.config.max_pixels)
        finally:
            container.close()

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
                self._count_refusal(exc)
                self._count_failure(exc)
                self._log_attempt(exc)
                continue
            self.reconnects += 1
            if self.live:
                self.timeline.mark_break()
                self._break_announced = True
            else:  # the same file again: skip what was delivered, the timeline goes on unbroken
                self._resume_skip = self._next_index
            _LOG.info("%s: reconnected (attempt %d, %d reconnects so far)",
                      self.label, self._attempts_in_row, self.reconnects)
            return True

    def _count_failure(self, exc: SourceError) -> None:
        """Count a failure of a finite input; the ``config.max_same_failures``-th same one in a row ends it.

        Failures are the same when their messages differ in numbers at most. Live inputs (which may
        come back) are not counted: their reconnects are bounded by ``reconnect_max_attempts``.

        Raises:
            SourceError: the failure's message, with how often it happened, once the limit is reached.
        """
        if self.live:
            return
        key = re.sub(r"\d+(?:\.\d+)?", "#", str(exc))
        count = self._same_failures[1] + 1 if self._same_failures[0] == key else 1
        self._same_failures = (key, count)
        if count >= self.config.max_same_failures:
            self._state = "ended"
            msg = f"{exc} ({count} times in a row; giving up)"
            raise self._error(msg) from exc

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
                _LOG.debug("closing %s failed: %s", self.label, error_reason(exc))

    def _decode(self, packet: Any, stream: Any) -> list[tuple[float | None, Any]]:
        """Decode one packet (``None`` = flush) into ``(raw_pts_s, image)`` in display orientation.

        The image is BGR (:meth:`_to_bgr`), or the ``av.VideoFrame`` itself while live frames are
        deferred (:meth:`queued_frames`; turned upright when converted).

        A packet the demuxer flags corrupt or the decoder refuses counts once in ``corrupt``; a frame
        delivered with concealed errors counts in ``concealed``.

        Raises:
            SourceError: a frame larger than ``config.max_pixels`` (the stream grew mid-way).
        """
        flagged = bool(packet is not None and getattr(packet, "is_corrupt", False))
        if flagged:
            self.corrupt += 1
            self._log_damage("flagged", "damaged packet (pts=%s) flagged by the demuxer", packet.pts)
        try:
            video_frames = decode_packet(packet, stream)
        except av.error.FFmpegError as exc:
            self.corrupt += 0 if flagged else 1
            pts = None if packet is None else packet.pts
            self._log_damage("refused", "skipped undecodable packet (pts=%s): %s", pts, error_reason(exc))
            return []
        out = []
        for vf in video_frames:
            if getattr(vf, "is_corrupt", False):
                self.concealed += 1
                self._log_damage("concealed", "frame (pts=%s) decoded with concealed errors", vf.pts)
            if not self._oriented:
                self._orient(vf)
            self._check_size(int(getattr(vf, "width", 0)), int(getattr(vf, "height", 0)), decoded=True)
            raw_s = frame_time_s(vf, stream, self._pts_correction)
            out.append((raw_s, vf if self._defer else self._to_bgr(vf)))
        return out

    def _log_damage(self, kind: str, fmt: str, *args: object) -> None:
        """Log a damaged packet or frame: the first of each ``kind`` at WARNING, later ones at DEBUG (counted)."""
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        suffix = "" if level == logging.DEBUG else " (later ones are counted on health/ and eos/, logged with --debug)"
        _LOG.log(level, "%s: " + fmt + suffix, self.label, *args)

    def _orient(self, video_frame: Any) -> None:
        """Take the display orientation of a connection's first frame (logged when it turns frames)."""
        self._oriented = True
        orientation = frame_orientation(video_frame)
        if orientation.unsupported:
            _LOG.warning("%s: display rotation %.1f degrees is no multiple of 90: frames are left as coded",
                         self.label, orientation.rotation_deg)
        elif orientation.transform and orientation != self.orientation:
            _LOG.info("%s: display rotation %g degrees: frames turned upright (%s)",
                      self.label, orientation.rotation_deg, orientation.transform)
        self.orientation = orientation
        width, height = int(getattr(video_frame, "width", 0)), int(getattr(video_frame, "height", 0))
        if width and height:
            self.width, self.height = orientation.display_size(width, height)

    def _to_bgr(self, video_frame: Any) -> np.ndarray:
        """The picture of an ``av.VideoFrame`` as ``uint8 [H, W, 3]`` BGR, turned upright (:attr:`orientation`)."""
        image: np.ndarray = self.orientation.apply(video_frame.to_ndarray(format="bgr24"))
        return image

    def _make_frame(self, raw_s: float | None, image: Any) -> Frame | DeferredFrame:
        """Stamp a decoded image: next ``frame_index``, monotonic ``pts_s``, state ``live``.

        An ``av.VideoFrame`` (deferred) gives a :class:`DeferredFrame` converted by :meth:`_to_bgr`.
        """
        if raw_s is not None:
            pts_s, is_break = self.timeline.update(raw_s)
        else:
            pts_s, is_break = self.timeline.extrapolate(self._missing_pts_step_s(), self._first_missing_pts_s())
        if is_break and self._next_index:  # a reconnect's break is expected (and logged there)
            level = logging.INFO if self._break_announced else logging.WARNING
            _LOG.log(level, "%s: timeline break at frame %d (raw pts %s s, published %.3f s)",
                     self.label, self._next_index, raw_s, pts_s)
        self._break_announced = False
        if raw_s is None and not self._warned_no_pts:
            self._warned_no_pts = True
            timing = "by the wall clock" if self.live else f"at {self.fps or FALLBACK_FPS:g} fps ({self.rate_field})"
            _LOG.warning("%s: frame %d has no PTS: frames without one are timed %s", self.label, self._next_index,
                         timing)
        stamp = (self.source_id, self._next_index, pts_s, time.time_ns())
        frame: Frame | DeferredFrame
        if isinstance(image, np.ndarray):
            frame = Frame(*stamp, image, raw_pts_s=raw_s, timeline_break=is_break)
        else:
            frame = DeferredFrame(
                self.source_id, sum(plane.buffer_size for plane in image.planes),
                lambda: Frame(*stamp, self._to_bgr(image), raw_pts_s=raw_s, timeline_break=is_break),
                timeline_break=is_break,
            )
        self._next_index += 1
        self._last_frame_mono = time.monotonic()
        self._backoff = None  # frames flow again: the next drop starts the backoff afresh
        self._same_failures = ("", 0)
        self._state = "live"
        return frame

    def _connection_frames(self, container: Any, stream: Any) -> Iterator[Frame | DeferredFrame]:
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
                        msg = f"cannot read {self.label}: {demux_errors} demux errors in a row ({error_reason(exc)})"
                        raise self._error(msg) from self._safe_cause(exc)
                    demux = container.demux(stream)
                    continue
                except (av.error.FFmpegError, OSError) as exc:  # TimeoutError, ExitError, I/O errors
                    if self._is_closed():
                        return
                    if is_stall(exc) and self.live:
                        self._state = "stalled"
                        msg = f"stalled: no packet from {self.label} for {self.config.read_timeout_s:g} s"
                    else:
                        msg = f"cannot read {self.label}: {error_reason(exc)}"
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
                    corrupt_seen = self.corrupt
                    batch = self._decode(packet, stream)
                    if packet.size:
                        self._last_packet_damaged = self.corrupt > corrupt_seen
            finally:
                self._leave()
            for raw_s, image in batch:
                produced += 1
                if self._resume_skip:  # a reopened file-mode input: delivered before its failure
                    self._resume_skip -= 1
                    continue
                yield self._make_frame(raw_s, image)
            if ended:
                break
        short = bool(self.total_frames and produced + 1 < self.total_frames)
        if not self.live and not self._is_closed() and (short or self._last_packet_damaged):
            self.truncated = True
            _LOG.warning(
                "%s: truncated: %s", self.label,
                f"the file announces {self.total_frames} frames but only {produced} could be read" if short
                else "its last packet is damaged",
            )
        if produced == 0 and self.corrupt > corrupt_before:
            msg = f"no decodable frame in {self.label}: {self.corrupt - corrupt_before} packets could not be decoded"
            raise SourceError(msg)
        if self.live and not self._is_closed() and not self._is_finite(container):
            msg = f"stream ended: {self.label} (after {produced} frames)"
            raise SourceError(msg)

    def _is_finite(self, container: Any) -> bool:
        """Whether reaching the end of ``container`` ends the source for good (no reconnect).

        In mode ``auto`` such a live input is read as a file (see :attr:`live`).
        """
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
                when reconnect is off; with it on: ``policy.max_attempts`` reconnects in a row failed,
                or a finite input failed ``config.max_same_failures`` times in a row the same way.
        """
        for item in self._frames():
            yield item if isinstance(item, Frame) else item.resolve()

    def queued_frames(self) -> Iterator[Frame | DeferredFrame]:
        """:meth:`frames` for the engine's queue: a live source's frames come deferred (converted when taken).

        Whether the source is live is known after ``open()``, when the engine calls this.
        """
        self._defer = self.live
        return self._frames()

    def _frames(self) -> Iterator[Frame | DeferredFrame]:
        """The loop of :meth:`frames` and :meth:`queued_frames`."""
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
                    self._count_failure(exc)
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


