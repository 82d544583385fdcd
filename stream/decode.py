"""PyAV building blocks of the sources: pick the video stream, read its frame rate, decode a packet.

Stateless helpers around one open container, used by :class:`~stream.pyav_base.PyAVSource`; the
source's lifecycle (open, reconnect, close, health) stays there.

References (PyAV docs): ``Container.streams.best("video")``, ``VideoStream.thread_type = "AUTO"``,
``VideoStream.average_rate`` / ``guessed_rate`` / ``base_rate``, ``Packet.decode``,
``CodecContext.decode(None)`` (flush), ``VideoFrame.to_ndarray(format="bgr24")``, ``Frame.pts`` (in
``Frame.time_base`` units) and the ``av.error`` hierarchy.
"""

from __future__ import annotations

import math
from typing import Any

import av
import av.error

from engine.errors import SourceError

__all__ = ["decode_packet", "frame_time_s", "is_stall", "select_video_stream", "stream_fps"]


def is_stall(exc: BaseException) -> bool:
    """Whether a read error is PyAV's read timeout (its interrupt callback) or a socket timeout."""
    return isinstance(exc, (av.error.ExitError, av.error.TimeoutError, TimeoutError))


def stream_fps(stream: Any) -> float | None:
    """Nominal frame rate of a PyAV video stream in frames per second, ``None`` when unknown.

    The first usable (positive, finite) value of ``stream.average_rate`` (FFmpeg's ``avg_frame_rate``),
    ``stream.guessed_rate`` (``av_guess_frame_rate``) and ``stream.base_rate`` (``r_frame_rate``);
    PyAV gives each as a ``Fraction``, or ``None`` for an unset ``0/0`` rate.

    Args:
        stream: An ``av.video.stream.VideoStream`` (anything with those three attributes).
    """
    for name in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, name, None)
        if rate is None:
            continue
        try:
            fps = float(rate)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if math.isfinite(fps) and fps > 0:
            return fps
    return None


def select_video_stream(container: Any, label: str) -> Any:
    """Return the best video stream of an open container, with frame threading on.

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
            msg = f"no decoder for the video stream ({stream.codec_name}) in {label}"
            raise SourceError(msg)
        stream.thread_type = "AUTO"
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


def frame_time_s(frame: Any, stream: Any) -> float | None:
    """Raw time of a decoded frame: ``frame.pts * time_base`` in seconds, ``None`` without PTS.

    The frame's own ``time_base`` is used, else the stream's; ``None`` also when neither is set.
    """
    if frame.pts is None:
        return None
    time_base = frame.time_base or stream.time_base
    return float(frame.pts * time_base) if time_base else None
