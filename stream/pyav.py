"""PyAV source plugins: video files, network streams (RTSP/HTTP/RTMP/...) and V4L2 webcams.

Entry points (group ``batsight.sources``): ``file`` -> :class:`FileSource`, ``url`` ->
:class:`UrlSource`, ``webcam`` -> :class:`WebcamSource`. Each says only how to open its input and
which command-line specs it claims (:meth:`claims`); the demux/decode loop, timeline, stall state and
reconnects they share are :class:`~stream.pyav_base.PyAVSource`.

References (PyAV docs): ``av.open(file, options=..., timeout=(open_s, read_s), format="v4l2")``;
FFmpeg protocol options ``rtsp_transport``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import av
import av.error

from engine.errors import SourceError, safe_text
from stream.decode import is_stall
from stream.pyav_base import PyAVSource, SourceRefusedError
from stream.redact import error_reason, redact_url

__all__ = ["FileSource", "UrlSource", "WebcamSource"]

#: Smallest ``pts_s`` step of a live frame without PTS (frames decoded from one packet), seconds.
MIN_WALL_STEP_S = 1e-3
#: Specs :class:`UrlSource` claims: these schemes, any letter case.
URL_SPEC_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)
#: Specs :class:`WebcamSource` claims (whole spec).
WEBCAM_SPEC_RE = re.compile(r"/dev/video\d+")
#: Claim strengths (see ``Source.claims``): the engine picks the source that claims a spec highest.
SPECIFIC_CLAIM = 10
FALLBACK_CLAIM = 1


class FileSource(PyAVSource):
    """A video file (mp4, avi, mov, mkv, gif, ts ...) read with PyAV; not live, every frame in order.

    ``total_frames`` is the container's frame count (``stream.frames``) or ``None`` when the
    container does not say. Frames without PTS get ``pts_s = frame_index / fps``. A file whose PTS
    restart or jump (concatenated recordings) still gets a strictly increasing ``pts_s`` and a
    ``timeline_break`` where its raw timeline breaks. Never reconnects.
    """

    live = False

    @classmethod
    def claims(cls, spec: str) -> int:
        """Claim every non-empty spec, weakly: a path is what no more specific source claims.

        Returns:
            ``FALLBACK_CLAIM`` (1) for a non-empty ``spec``, 0 for ``""``.
        """
        return FALLBACK_CLAIM if spec else 0

    def _is_finite(self, container: Any) -> bool:
        """A file ends at its end, also when read as live (mode ``live``: not paced, the newest frame wins)."""
        return True

    def _open_container(self) -> Any:
        """Open the file.

        Raises:
            SourceError: ``file not found: <path>``; a directory or an empty file; a file FFmpeg
                cannot read (``cannot open <path>: <reason>``).
        """
        path = Path(self.spec)
        if not path.exists():
            msg = f"file not found: {self.label}"
            raise SourceError(msg)
        if path.is_dir():
            msg = f"cannot open {self.label}: expected a video file, got a directory"
            raise SourceError(msg)
        try:
            size = path.stat().st_size
        except OSError as exc:
            msg = f"cannot open {self.label}: {error_reason(exc)}"
            raise SourceError(msg) from exc
        if size == 0 and path.is_file():
            msg = f"cannot open {self.label}: file is empty (0 bytes)"
            raise SourceError(msg)
        try:
            return av.open(os.fspath(path), mode="r", metadata_errors="replace")
        except av.error.InvalidDataError as exc:
            msg = f"cannot open {self.label}: not a readable media file ({error_reason(exc)})"
            raise SourceError(msg) from exc
        except (av.error.FFmpegError, OSError) as exc:
            msg = f"cannot open {self.label}: {error_reason(exc)}"
            raise SourceError(msg) from exc


class _LiveSource(PyAVSource):
    """Live PyAV input: frames without PTS are timed by the wall clock (by the frame rate when read as a file)."""

    live = True

    def _missing_pts_step_s(self) -> float:
        """Wall-clock seconds since the previous frame (at least ``MIN_WALL_STEP_S``)."""
        if not self.live:
            return super()._missing_pts_step_s()
        return max(MIN_WALL_STEP_S, time.monotonic() - self._last_frame_mono)

    def _first_missing_pts_s(self) -> float:
        """Wall-clock seconds since ``open()``."""
        if not self.live:
            return super()._first_missing_pts_s()
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

    remote = True

    @classmethod
    def claims(cls, spec: str) -> int:
        """Claim a spec that starts with ``rtsp|rtsps|rtmp|http|https|udp|tcp|srt://`` (any case).

        Returns:
            ``SPECIFIC_CLAIM`` (10) for such a URL, else 0.
        """
        return SPECIFIC_CLAIM if URL_SPEC_RE.match(spec) else 0

    @property
    def label(self) -> str:
        """The URL with credentials masked."""
        return redact_url(safe_text(self.spec))

    def _is_finite(self, container: Any) -> bool:
        """An ``http(s)://`` file with a known duration ends at its end instead of being replayed."""
        duration = getattr(container, "duration", None)
        return self.spec.lower().startswith(("http://", "https://")) and bool(duration and duration > 0)

    def _open_container(self) -> Any:
        """Open the URL.

        Raises:
            SourceRefusedError: the server answered ``400 Bad Request``; for RTSP the message names
                ``source.rtsp_transport`` (a server that only speaks the other transport).
            SourceError: ``cannot open <redacted url>: <reason>`` (refused, unreachable, timeout ...).
        """
        options: dict[str, str] = {}
        if self.spec.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.config.rtsp_transport
        timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
        started = time.monotonic()
        try:
            return av.open(self.spec, mode="r", options=options, timeout=timeout, metadata_errors="replace")
        except av.error.HTTPBadRequestError as exc:
            # 400: the server cannot parse or will not serve this request, and it will not change by
            # itself (unlike 404 / 503, which an RTSP server answers while its publisher is away).
            msg = f"cannot open {self.label}: {error_reason(exc)}"
            if "rtsp_transport" in options:
                other = "udp" if options["rtsp_transport"] == "tcp" else "tcp"
                msg += (
                    f" (the server may not support source.rtsp_transport={options['rtsp_transport']}; "
                    f"try --set source.rtsp_transport={other})"
                )
            raise SourceRefusedError(self._redact(msg)) from self._safe_cause(exc)
        except (av.error.FFmpegError, OSError) as exc:
            # An open cut by the timeout surfaces as ExitError or, from some demuxers (RTSP), as
            # InvalidDataError: judge by the clock.
            if is_stall(exc) or time.monotonic() - started >= 0.95 * self.config.open_timeout_s:
                wait_s = self.config.open_timeout_s
                msg = f"cannot open {self.label}: no answer within {wait_s:g} s ({error_reason(exc)})"
            else:
                msg = f"cannot open {self.label}: {error_reason(exc)}"
            raise self._error(msg) from self._safe_cause(exc)


class WebcamSource(_LiveSource):
    """A V4L2 camera (``/dev/videoN``), opened with ``format="v4l2"``; live.

    Frames without PTS are timed by the wall clock. With ``config.reconnect`` an unplugged or failing
    camera is reopened with backoff (see :class:`PyAVSource`).
    """

    @classmethod
    def claims(cls, spec: str) -> int:
        """Claim a V4L2 device path: the whole spec is ``/dev/video<digits>``.

        Returns:
            ``SPECIFIC_CLAIM`` (10) for such a device, else 0.
        """
        return SPECIFIC_CLAIM if WEBCAM_SPEC_RE.fullmatch(spec) else 0

    def _open_container(self) -> Any:
        """Open the device.

        Raises:
            SourceError: ``camera not found: /dev/videoN``; ``cannot open camera <dev>: <reason>``
                (busy, permission denied, timeout).
        """
        if not Path(self.spec).exists():
            msg = f"camera not found: {self.label}"
            raise SourceError(msg)
        timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
        try:
            return av.open(self.spec, mode="r", format="v4l2", timeout=timeout)
        except (av.error.FileNotFoundError, FileNotFoundError) as exc:
            msg = f"camera not found: {self.label}"
            raise SourceError(msg) from exc
        except (av.error.FFmpegError, OSError) as exc:
            msg = f"cannot open camera {self.label}: {error_reason(exc)}"
            raise SourceError(msg) from exc
