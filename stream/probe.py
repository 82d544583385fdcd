"""What a PyAV source would read from an open container, without running the model (``batsight probe``).

The same choices as :class:`~stream.pyav_base.PyAVSource` makes when it reads (stream selection,
frame rate and the field it comes from, display orientation, ``source.max_pixels``), gathered into
one plain ``dict`` for :mod:`engine.probe` to print. At most :data:`MAX_PROBE_PACKETS` packets are
decoded, to see the first frame's display matrix and whether frames carry PTS.

References (PyAV docs): ``InputContainer.format`` (``name``, ``long_name``, ``flags``),
``InputContainer.duration`` (microseconds), ``Stream.duration`` (``time_base`` units),
``VideoStream.frames``, ``VideoFrame.side_data``; ffprobe's ``-show_streams`` fields.
"""

from __future__ import annotations

from typing import Any

import av.error

from stream.decode import (
    codec_name,
    decode_packet,
    describe_stream,
    has_no_timestamps,
    select_video_stream,
    stream_choice,
    stream_rate,
)
from stream.display import Orientation, frame_orientation
from stream.redact import error_reason
from stream.timeline import FALLBACK_FPS

__all__ = ["MAX_PROBE_PACKETS", "probe_container"]

#: Packets decoded at most while looking for the first frame.
MAX_PROBE_PACKETS = 64


def _stream_entry(stream: Any) -> dict[str, Any]:
    """``{"index", "type", "codec"}`` (+ ``width``, ``height``, ``fps`` for video) of one stream."""
    entry: dict[str, Any] = {
        "index": int(getattr(stream, "index", 0)),
        "type": str(getattr(stream, "type", "unknown")),
        "codec": codec_name(stream),
    }
    if entry["type"] == "video":
        codec = stream.codec_context
        entry.update(width=int(codec.width), height=int(codec.height), fps=stream_rate(stream)[0])
    return entry


def _duration_s(container: Any, stream: Any) -> float | None:
    """The stream's duration in seconds, else the container's, else ``None``."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return float(container.duration) / 1e6  # AV_TIME_BASE
    return None


def _first_frame(container: Any, stream: Any) -> tuple[Any, str | None]:
    """The first decoded frame (``None`` if none within :data:`MAX_PROBE_PACKETS` packets) and a problem, if any."""
    try:
        for n, packet in enumerate(container.demux(stream)):
            if n >= MAX_PROBE_PACKETS:
                return None, f"no frame decoded from the first {MAX_PROBE_PACKETS} packets"
            try:
                frames = decode_packet(packet if packet.size else None, stream)
            except av.error.FFmpegError:
                continue
            if frames:
                return frames[0], None
    except (av.error.FFmpegError, OSError) as exc:
        return None, f"reading the first frame failed: {error_reason(exc)}"
    return None, "no decodable frame"


def probe_container(container: Any, label: str, live: bool, max_pixels: int) -> dict[str, Any]:
    """Describe what a source reads from ``container`` (closed by the caller).

    Args:
        container: An open ``av.container.InputContainer``.
        label: How the input is named in messages (credentials masked, UTF-8 safe).
        live: Whether the source is live (``mode: live``) or a file (``mode: file``).
        max_pixels: ``source.max_pixels``: a larger stream is reported as ``error`` and not decoded.

    Returns:
        A JSON-ready ``dict``: ``container`` (format name), ``format_long_name``, ``streams`` (every
        stream's ``index``, ``type``, ``codec``; video also ``width``, ``height``, ``fps``),
        ``video_stream`` (index used) and ``choice`` (why), ``codec``, ``coded_width`` /
        ``coded_height`` (pixels as coded), ``rotation_deg`` (display matrix angle, counter-clockwise,
        as ffprobe shows it), ``transform`` (the FFmpeg filter applied, ``""`` if none), ``width`` /
        ``height`` (pixels after rotation: what the model sees); these four are ``None`` when no
        frame was decoded (a refused stream: the matrix comes with the first frame); ``fps`` and
        ``rate_field`` (the PyAV field it came from), ``timestamps`` (whether frames carry PTS),
        ``duration_s`` and ``frames`` (``None`` when unknown), ``mode``, ``warnings`` (list of text)
        and ``error`` (what makes ``batsight run`` refuse the source, else ``None``).

    Raises:
        SourceError: the container has no video stream or no decoder for it.
    """
    stream = select_video_stream(container, label)
    warnings: list[str] = []
    fps, rate_field = stream_rate(stream, container)
    coded_w, coded_h = int(stream.codec_context.width), int(stream.codec_context.height)
    info: dict[str, Any] = {
        "mode": "live" if live else "file",
        "container": container.format.name,
        "format_long_name": container.format.long_name,
        "streams": [_stream_entry(s) for s in container.streams],
        "video_stream": int(stream.index),
        "choice": stream_choice(container, stream),
        "codec": codec_name(stream),
        "coded_width": coded_w,
        "coded_height": coded_h,
        "fps": fps,
        "rate_field": rate_field,
        "timestamps": not has_no_timestamps(container),
        "duration_s": _duration_s(container, stream),
        "frames": None if live else (int(stream.frames) or None),
        "error": None,
    }
    if len(container.streams.video) > 1:
        warnings.append(f"{len(container.streams.video)} video streams: reading {describe_stream(stream)}")
    # the display matrix comes with a decoded frame (PyAV reads no stream side data): None until one is
    orientation: Orientation | None = None
    if coded_w * coded_h > max_pixels:
        info["error"] = (
            f"video is {coded_w}x{coded_h} = {coded_w * coded_h} pixels, above source.max_pixels = {max_pixels}: "
            "batsight run refuses it"
        )
    else:
        frame, problem = _first_frame(container, stream)
        if problem:
            warnings.append(problem)
        if frame is not None:
            orientation = frame_orientation(frame)
            info["timestamps"] = info["timestamps"] and frame.pts is not None
    if not info["timestamps"]:
        warnings.append(
            "frames have no timestamps: timed by the wall clock" if live else
            f"frames have no timestamps: timed at {fps or FALLBACK_FPS:g} fps ({rate_field or 'fallback'})"
        )
    if orientation is None:  # not read, so not claimed to be none
        info.update(rotation_deg=None, transform=None, width=None, height=None)
    else:
        if orientation.unsupported:
            angle = orientation.rotation_deg
            warnings.append(f"display rotation {angle:g} degrees is no multiple of 90: left as coded")
        info["rotation_deg"] = orientation.rotation_deg
        info["transform"] = orientation.transform
        info["width"], info["height"] = orientation.display_size(coded_w, coded_h)
    if not live and info["frames"] is None:
        warnings.append("the container does not announce a frame count")
    info["warnings"] = warnings
    return info
