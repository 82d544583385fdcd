"""PyAV building blocks of the sources: pick the video stream, read its frame rate, decode a packet.

Stateless helpers around one open container, used by :class:`~stream.pyav_base.PyAVSource`; the
source's lifecycle (open, reconnect, close, health) stays there.

References (PyAV docs): ``Container.streams.best("video")``, ``VideoStream.thread_type = "SLICE"``,
``VideoStream.average_rate`` / ``guessed_rate`` / ``base_rate``, ``Packet.decode``, ``Packet.is_corrupt``,
``CodecContext.decode(None)`` (flush), ``VideoFrame.to_ndarray(format="bgr24")``, ``Frame.pts`` (in
``Frame.time_base`` units) and the ``av.error`` hierarchy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import av
import av.error

from engine.errors import SourceError

__all__ = [
    "AVFMT_NOTIMESTAMPS", "PtsCorrection", "codec_name", "decode_packet", "describe_stream", "frame_time_s",
    "has_no_timestamps", "is_stall", "select_video_stream", "stream_choice", "stream_fps", "stream_rate",
]

#: ``AVInputFormat.flags`` bit of a demuxer without timestamps of its own (libavformat/avformat.h),
#: e.g. raw ``.h264`` / ``.hevc``: its ``average_rate`` is only its ``framerate`` option (default 25).
AVFMT_NOTIMESTAMPS = 0x0080
#: Rate fields read by :func:`stream_rate`, in order, for demuxers with and without timestamps.
RATE_FIELDS = ("average_rate", "guessed_rate", "base_rate")
RATE_FIELDS_NO_TIMESTAMPS = ("guessed_rate", "codec_context.framerate", "average_rate", "base_rate")


def is_stall(exc: BaseException) -> bool:
    """Whether a read error is PyAV's read timeout (its interrupt callback) or a socket timeout."""
    return isinstance(exc, (av.error.ExitError, av.error.TimeoutError, TimeoutError))


def has_no_timestamps(container: Any) -> bool:
    """Whether ``container``'s demuxer has no timestamps of its own (``AVFMT_NOTIMESTAMPS``: raw .h264 ...)."""
    flags = getattr(getattr(container, "format", None), "flags", 0)
    return isinstance(flags, int) and bool(flags & AVFMT_NOTIMESTAMPS)


def stream_rate(stream: Any, container: Any = None) -> tuple[float | None, str | None]:
    """Nominal frame rate of a PyAV video stream, frames per second, and the field it was read from.

    Of the usable (positive, finite) values of ``stream.average_rate`` (FFmpeg's ``avg_frame_rate``),
    ``stream.guessed_rate`` (``av_guess_frame_rate``) and ``stream.base_rate`` (``r_frame_rate``), the
    one nearest the mean rate of the frames' timestamps, ``stream.frames / (stream.duration *
    stream.time_base)``, the first of equals in that order; the first usable one when the container
    announces no frame count or duration. FFmpeg estimates ``avg_frame_rate`` from the packets it
    probes, which for a GIF (delays in 1/100 s: a 12 fps GIF alternates 8 and 9) says 12.5, while
    ``r_frame_rate`` (``ff_rfps_calculate``, fitted to the timestamp deltas) says 12.
    When the container's demuxer has no timestamps (``AVFMT_NOTIMESTAMPS``: raw
    ``.h264``, ``.hevc`` ...), its ``average_rate`` is just its ``framerate`` option (25 by default, whatever
    the stream says), so the stream's own rate comes first: ``guessed_rate`` (which weighs the
    bitstream's timing info), then ``stream.codec_context.framerate``, then the others. PyAV gives each
    as a ``Fraction``, or ``None`` for an unset ``0/0`` rate.

    Args:
        stream: An ``av.video.stream.VideoStream`` (anything with those attributes).
        container: Its ``av.container.InputContainer`` (``None``: treated as having timestamps).

    Returns:
        ``(fps, field)``, e.g. ``(60.0, "guessed_rate")``; ``(None, None)`` when no field is usable.
    """
    if has_no_timestamps(container):
        return next(_usable_rates(stream, RATE_FIELDS_NO_TIMESTAMPS), (None, None))
    candidates = list(_usable_rates(stream, RATE_FIELDS))
    measured = _timestamp_rate(stream)
    if not candidates or measured is None:
        return candidates[0] if candidates else (None, None)
    # the field nearest the timestamps' own mean rate; min() keeps the first of equals (average_rate)
    return min(candidates, key=lambda c: abs(math.log(c[0] / measured)))


def _usable_rates(stream: Any, names: tuple[str, ...]) -> Iterator[tuple[float, str]]:
    """``(fps, field)`` of each field in ``names`` that is set, positive and finite, in order."""
    for name in names:
        owner, _, attr = name.rpartition(".")
        rate = getattr(getattr(stream, owner, None) if owner else stream, attr, None)
        if rate is None:
            continue
        try:
            fps = float(rate)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if math.isfinite(fps) and fps > 0:
            yield fps, name


def _timestamp_rate(stream: Any) -> float | None:
    """``stream.frames / (stream.duration * stream.time_base)``: the mean rate of the frames' timestamps.

    ``None`` unless the container announces at least 2 frames and a positive duration.
    """
    frames: Any = getattr(stream, "frames", None)
    duration: Any = getattr(stream, "duration", None)
    time_base: Any = getattr(stream, "time_base", None)
    try:
        duration_s = float(duration * time_base)
        count = int(frames)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return count / duration_s if count >= 2 and math.isfinite(duration_s) and duration_s > 0 else None


def stream_fps(stream: Any) -> float | None:
    """Nominal frame rate of a stream with timestamps, frames per second (:func:`stream_rate`'s ``fps``)."""
    return stream_rate(stream)[0]


def codec_name(stream: Any) -> str:
    """The short name of a stream's codec (``"h264"``), ``"unknown"`` when PyAV has no decoder for it."""
    return str(getattr(getattr(stream, "codec_context", None), "name", None) or "unknown")


def describe_stream(stream: Any) -> str:
    """One-line description of a stream for logs: ``#1 h264 1280x720 30 fps``."""
    text = f"#{getattr(stream, 'index', 0)} {codec_name(stream)}"
    codec = getattr(stream, "codec_context", None)
    width, height = getattr(codec, "width", 0), getattr(codec, "height", 0)
    if width and height:
        text += f" {width}x{height}"
    fps = stream_fps(stream)
    return text + (f" {fps:.4g} fps" if fps else "")


def stream_choice(container: Any, stream: Any) -> str:
    """Why ``stream`` is the video stream read from ``container``, in words (for logs and ``probe``).

    PyAV's ``streams.best("video")`` is FFmpeg's ``av_find_best_stream`` (libavformat/avformat.c):
    it prefers a stream flagged default and not for the hearing or visually impaired, then the one
    with more frames seen while probing (counted up to 5; cover art has one), then the higher bit
    rate, then the first.
    """
    videos = list(getattr(getattr(container, "streams", None), "video", None) or [stream])
    if len(videos) <= 1:
        return "the only video stream"
    others = ", ".join(describe_stream(s) for s in videos if s is not stream)
    return (
        f"FFmpeg's best of {len(videos)} video streams (av_find_best_stream: default flag, then frames seen, "
        "then bit rate); "
        f"not used: {others}"
    )


def select_video_stream(container: Any, label: str) -> Any:
    """Return the best video stream of an open container, with slice threading on.

    The container is closed before any error leaves (it is of no use without a video stream).

    Args:
        container: An open ``av.container.InputContainer``.
        label: How the input is named in messages (credentials already masked).

    Raises:
        SourceError: ``no video stream in <label>``; ``no decoder for the video stream (<codec>) in <label>``.
    """
    try:
        stream = container.streams.best("video")
        if stream is None:
            msg = f"no video stream in {label}"
            raise SourceError(msg)
        if stream.codec_context is None:
            msg = f"no decoder for the video stream #{stream.index} in {label}"
            raise SourceError(msg)
        # Slice threading only: with frame threading FFmpeg reports a packet's error late or not at
        # all and drops the frames still in flight (a truncated mp4 lost 2 frames and its error).
        stream.thread_type = "SLICE"
    except BaseException:
        container.close()
        raise
    return stream


def decode_packet(packet: Any, stream: Any) -> list[Any]:
    """Decode one packet of ``stream`` (``None`` = flush the decoder) into its ``av.VideoFrame`` list.

    A decoder that was already flushed gives ``[]``.

    Raises:
        av.error.FFmpegError: the decoder refused the packet (the caller counts it as corrupt).
    """
    try:
        return list(packet.decode() if packet is not None else stream.codec_context.decode(None))
    except av.error.EOFError:  # decoder already flushed
        return []


class PtsCorrection:
    """The best-effort timestamp of decoded frames, FFmpeg's ``guess_correct_pts`` (libavcodec/decode.c).

    Some containers hand the decoder timestamps that are not in presentation order (H.264 with
    B-frames in AVI: frame PTS 1, 2, 4, 3, 6, 5 ...), while the frames' ``pkt_dts`` increase. Each
    frame's PTS and DTS (``VideoFrame.pts`` / ``.dts``, in ``time_base`` units) count as faulty when
    they do not increase; the PTS is used while it has had no more faults than the DTS (or there is
    no DTS), else the DTS -- as FFmpeg's ``best_effort_timestamp``, which ffprobe and the CLI use.
    One instance per decoder (per connection); reader thread only.
    """

    def __init__(self) -> None:
        self.faulty_pts = 0
        self.faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None

    def update(self, pts: int | None, dts: int | None) -> int | None:
        """The best-effort timestamp of the next frame, ``None`` when it has neither PTS nor DTS."""
        if dts is not None:
            self.faulty_dts += int(self._last_dts is not None and dts <= self._last_dts)
            self._last_dts = dts
        elif pts is not None:
            self._last_dts = pts
        if pts is not None:
            self.faulty_pts += int(self._last_pts is not None and pts <= self._last_pts)
            self._last_pts = pts
        elif dts is not None:
            self._last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


def frame_time_s(frame: Any, stream: Any, correction: PtsCorrection | None = None) -> float | None:
    """Raw time of a decoded frame in seconds (timestamp x ``time_base``), ``None`` without a timestamp.

    The timestamp is ``frame.pts``, or with ``correction`` the best-effort one of ``frame.pts`` and
    ``frame.dts`` (:class:`PtsCorrection`). The frame's own ``time_base`` is used, else the
    stream's; ``None`` also when neither is set.
    """
    pts = frame.pts if correction is None else correction.update(frame.pts, getattr(frame, "dts", None))
    if pts is None:
        return None
    time_base = frame.time_base or stream.time_base
    return float(pts * time_base) if time_base else None
