"""PyAV sources: video files, network streams (RTSP/HTTP/RTMP/...) and V4L2 webcams.

All three share one demux/decode loop (:class:`PyAVSource`): the video stream is demuxed packet by
packet and every packet is decoded on its own, so a packet the decoder refuses is skipped and counted
in ``corrupt`` instead of ending the source. PyAV's ``Container.demux`` yields one final empty packet
per stream; decoding it flushes the decoder, so the frames it still holds are delivered too.

References (PyAV docs): ``av.open(file, options=..., timeout=(open_s, read_s))``,
``InputContainer.demux``, ``Packet.decode``, ``VideoStream.thread_type = "AUTO"``,
``VideoFrame.to_ndarray(format="bgr24")``, ``Frame.pts`` (in ``Frame.time_base`` units) and the
``av.error`` hierarchy (``InvalidDataError(FFmpegError, ValueError)``, ``TimeoutError``, ``ExitError``).
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

from engine.config import SOURCE_ID_RE, SourceConfig
from engine.errors import ConfigError, SourceError
from engine.sources import Source
from engine.types import Frame

__all__ = ["FileSource", "PyAVSource", "UrlSource", "WebcamSource", "redact_url"]

_LOG = logging.getLogger(__name__)

#: Frame rate assumed for ``pts_s`` when a stream has neither PTS nor an average rate.
FALLBACK_FPS = 30.0
#: Demux errors in a row (``InvalidDataError``) tolerated before the source gives up.
MAX_CONSECUTIVE_DEMUX_ERRORS = 32

_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_SECRET_QUERY_RE = re.compile(r"([?&;](?:[^=&;#]*(?:pass|pwd|token|secret|key|auth|sig)[^=&;#]*)=)[^&;#]*", re.I)


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


def _reason(exc: BaseException) -> str:
    """Short human reason of a PyAV / OS error (its ``strerror`` when it has one)."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else (str(exc) or type(exc).__name__)


class PyAVSource(Source):
    """Shared base of the PyAV sources: option storage, stream selection, decode loop, close.

    Subclasses only say how to open the container (:meth:`_open_container`) and how to name the
    input in messages (:attr:`label`). Lifecycle and threads follow :class:`~engine.sources.Source`:
    ``open()`` and ``frames()`` run on the source's reader thread; ``close()`` may run on any thread.
    ``close()`` never touches the container while ``frames()`` is inside a PyAV call: it sets a flag,
    and ``frames()`` sees it before its next packet and releases the container itself. A blocking
    network read ends within ``read_timeout_s`` (PyAV's read timeout), so ``frames()`` returns within
    ``read_timeout_s`` of ``close()``. After ``close()``, ``frames()`` yields nothing.

    Attributes:
        spec: The path, URL or device given on the command line.
        source_id: Name of the source (``[A-Za-z0-9_.-]+``).
        config: Reader options (timeouts, RTSP transport).
        live: ``False`` for files, ``True`` for URLs and cameras.
        total_frames: ``stream.frames`` from the container after ``open()`` (files), ``None`` when unknown.
        corrupt: Packets skipped because the demuxer or decoder refused them.
        fps: Average frame rate of the video stream in frames per second after ``open()``, ``None`` if unknown.
        width: Coded frame width in pixels after ``open()`` (0 before).
        height: Coded frame height in pixels after ``open()`` (0 before).
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
        self.total_frames: int | None = None
        self.corrupt = 0
        self.fps: float | None = None
        self.width = 0
        self.height = 0
        self._container: Any = None
        self._stream: Any = None
        self._opened_at_s = 0.0
        self._state_lock = threading.Lock()
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source_id={self.source_id!r}, spec={self.label!r})"

    @abstractmethod
    def _open_container(self) -> Any:
        """Return an open ``av.container.InputContainer``, or raise :class:`SourceError`."""

    def _fallback_pts_s(self, frame_index: int) -> float:
        """``pts_s`` for a frame without PTS: ``frame_index / fps`` (30 fps when the rate is unknown)."""
        return frame_index / (self.fps or FALLBACK_FPS)

    def open(self) -> None:
        """Open the container and select its best video stream (frame threading on).

        Calling it again while open does nothing.

        Raises:
            SourceError: the input is missing or unreadable, is not media, has no video stream,
                or ``close()`` was already called. The message names the input and the reason.
        """
        with self._state_lock:
            if self._closed:
                msg = f"source {self.source_id!r} is closed: {self.label}"
                raise SourceError(msg)
            if self._container is not None:
                return
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
        self.total_frames = None if self.live else (int(stream.frames) or None)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.width = int(stream.codec_context.width)
        self.height = int(stream.codec_context.height)
        self._opened_at_s = time.monotonic()
        with self._state_lock:
            self._container, self._stream = container, stream

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
                _LOG.debug("closing %s failed: %s", self.label, exc)

    def _decode(self, packet: Any, stream: Any, first_index: int) -> list[Frame]:
        """Decode one packet (``None`` = flush) into frames; a refused packet counts as corrupt."""
        try:
            video_frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except av.error.EOFError:  # decoder already flushed
            return []
        except av.error.FFmpegError as exc:
            self.corrupt += 1
            pts = None if packet is None else packet.pts
            _LOG.debug("%s: skipped undecodable packet (pts=%s): %s", self.label, pts, _reason(exc))
            return []
        out: list[Frame] = []
        for vf in video_frames:
            index = first_index + len(out)
            if vf.pts is not None:
                time_base = vf.time_base or stream.time_base
                pts_s = float(vf.pts * time_base)
            else:
                pts_s = self._fallback_pts_s(index)
            image = vf.to_ndarray(format="bgr24")
            out.append(Frame(self.source_id, index, pts_s, time.time_ns(), image))
        return out

    def frames(self) -> Iterator[Frame]:
        """Yield the decoded frames of the video stream, in decode order (reader thread only).

        Each :class:`~engine.types.Frame` has ``frame_index`` 0, 1, 2, ..., ``pts_s = pts * time_base``
        in seconds (or the fallback of the class when the frame has no PTS), ``capture_time_ns`` from
        ``time.time_ns()`` and ``image`` ``uint8 [H, W, 3]`` BGR. Packets the demuxer or decoder refuse
        are skipped and counted in ``corrupt``. The container is closed when the generator ends.

        Raises:
            SourceError: ``open()`` was not called; a read failed or timed out; more than
                ``MAX_CONSECUTIVE_DEMUX_ERRORS`` demux errors in a row; the input ended without one
                decodable frame although packets were refused; a live input ended (no reconnect).
        """
        with self._state_lock:
            container, stream, closed = self._container, self._stream, self._closed
        if closed:
            return
        if container is None:
            msg = f"frames() called before open() on source {self.source_id!r} ({self.label})"
            raise SourceError(msg)
        index = 0
        try:
            demux = container.demux(stream)
            flushed = False
            demux_errors = 0
            while True:
                if not self._enter():
                    return
                ended = False
                try:
                    try:
                        packet = next(demux, None)
                    except av.error.InvalidDataError as exc:
                        self.corrupt += 1
                        demux_errors += 1
                        if demux_errors > MAX_CONSECUTIVE_DEMUX_ERRORS:
                            msg = f"cannot read {self.label}: {demux_errors} demux errors in a row ({_reason(exc)})"
                            raise SourceError(msg) from exc
                        demux = container.demux(stream)
                        continue
                    except (av.error.FFmpegError, OSError) as exc:  # TimeoutError, ExitError, I/O errors
                        with self._state_lock:
                            closed = self._closed
                        if closed:
                            return
                        msg = f"cannot read {self.label}: {_reason(exc)}"
                        raise SourceError(msg) from exc
                    demux_errors = 0
                    if packet is None:
                        ended = True
                        batch = [] if flushed else self._decode(None, stream, index)
                    else:
                        flushed = flushed or packet.size == 0
                        batch = self._decode(packet, stream, index)
                finally:
                    self._leave()
                for frame in batch:
                    yield frame
                    index += 1
                if ended:
                    break
            if index == 0 and self.corrupt:
                msg = f"no decodable frame in {self.label}: {self.corrupt} packets could not be decoded"
                raise SourceError(msg)
            if self.live:
                with self._state_lock:
                    closed = self._closed
                if not closed:
                    msg = f"stream ended: {self.label} (after {index} frames)"
                    raise SourceError(msg)
        finally:
            self._release()

    def close(self) -> None:
        """Stop ``frames()`` before its next packet and release the container; idempotent, any thread.

        When ``frames()`` is inside a PyAV call, only the flag is set here and ``frames()`` closes the
        container itself when the call returns, so a container is never closed under a running read.
        """
        with self._state_lock:
            self._closed = True
            busy = self._busy
        if not busy:
            self._release()


class FileSource(PyAVSource):
    """A video file (mp4, avi, mov, mkv, gif, ...) read with PyAV; not live, every frame in order.

    ``total_frames`` is the container's frame count (``stream.frames``) or ``None`` when the
    container does not say. Frames without PTS get ``pts_s = frame_index / fps``.
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


class UrlSource(PyAVSource):
    """A network stream (``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``srt://`` ...).

    Live: opened with ``timeout=(open_timeout_s, read_timeout_s)``; RTSP uses ``rtsp_transport``.
    Frames without PTS get ``pts_s`` = wall-clock seconds since ``open()``. When the stream ends or a
    read times out, ``frames()`` raises :class:`SourceError` (reconnecting is the caller's job).
    Every message shows the URL through :func:`redact_url`.
    """

    live = True

    @property
    def label(self) -> str:
        """The URL with credentials masked."""
        return redact_url(self.spec)

    def _fallback_pts_s(self, frame_index: int) -> float:
        return time.monotonic() - self._opened_at_s

    def _open_container(self) -> Any:
        """Open the URL.

        Raises:
            SourceError: ``cannot open <redacted url>: <reason>`` (refused, unreachable, timeout, 4xx ...).
        """
        options: dict[str, str] = {}
        if self.spec.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.config.rtsp_transport
        timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
        try:
            return av.open(self.spec, mode="r", options=options, timeout=timeout, metadata_errors="replace")
        except (av.error.FFmpegError, OSError) as exc:
            # str(exc) may repeat the URL with its password: use only the reason.
            msg = f"cannot open {self.label}: {_reason(exc)}"
            raise SourceError(msg) from None


class WebcamSource(PyAVSource):
    """A V4L2 camera (``/dev/videoN``), opened with ``format="v4l2"``; live.

    Frames without PTS get ``pts_s`` = wall-clock seconds since ``open()``.
    """

    live = True

    def _fallback_pts_s(self, frame_index: int) -> float:
        return time.monotonic() - self._opened_at_s

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
