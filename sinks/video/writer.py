"""One variable-frame-rate video file written with PyAV: each frame keeps its own ``pts_s``.

The stream's time base is :data:`TIME_BASE` (the MPEG 90 kHz clock), and every frame's ``pts`` is
``round(pts_s * 90000)``, so no constant rate is assumed and a VFR source stays VFR (PyAV docs,
"Frame.pts" / "Frame.time_base"; example ``examples/numpy/generate_video.py``). The output size is
the first image's size rounded up to even numbers (4:2:0 chroma needs even sides); an image of
another size is scaled to fit and centred on black (letterbox), so a source that changes size
mid-stream still gives one file.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.errors import SinkError

_LOG = logging.getLogger(__name__)

#: Time base of the output stream and its frames: 1/90000 s (the MPEG system clock).
TIME_BASE = Fraction(1, 90_000)
#: x264 / x265 presets (``-preset``), fastest first: faster ones write bigger files for the same quality.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def encoder_name(codec: str) -> str:
    """The FFmpeg encoder PyAV uses for ``codec`` (``"h264"`` -> ``"libx264"`` when built in).

    Raises:
        SinkError: PyAV has no encoder of that name, or it is not a video encoder.
    """
    import av

    try:
        encoder = av.codec.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError) as exc:
        known = sorted(name for name in ("h264", "hevc", "libx264", "libx265") if name in av.codecs_available)
        msg = f"video option 'codec': PyAV has no encoder {codec!r}; expected e.g. one of: {', '.join(known)}"
        raise SinkError(msg) from exc
    if encoder.type != "video":
        msg = f"video option 'codec': {codec!r} is a {encoder.type} encoder, expected a video encoder"
        raise SinkError(msg)
    return str(encoder.name)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (uint8 ``[h, w, 3]``) fitted to ``size = (width, height)``.

    The same size: returned as is. At most one column / row short (an odd side rounded up to even):
    padded with black on the right / bottom, so pixel coordinates stay. Otherwise scaled to fit
    (``cv2.INTER_AREA``, aspect ratio kept) and centred on black.
    """
    width, height = size
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if 0 <= width - w <= 1 and 0 <= height - h <= 1:
        return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    scale = min(width / w, height / h)
    sw, sh = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - sh) // 2, (width - sw) // 2
    out[top:top + sh, left:left + sw] = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    return out


class VideoWriter:
    """Writes BGR images with their own times to one video file (container chosen by its suffix).

    The container is created at the first :meth:`write` (the size is known then); :meth:`close`
    flushes the encoder and finishes the file. One thread only (the sink's runner thread).

    Args:
        path: Output file (``.mp4``: MP4 with the encoder's stream).
        encoder: FFmpeg encoder name (:func:`encoder_name`).
        crf: Constant rate factor for x264 / x265 (0 = lossless .. 51; 23 is their default); other
            encoders ignore it.
        preset: x264 / x265 preset (one of :data:`PRESETS`); other encoders ignore it.

    Attributes:
        frames: Frames written so far.
        size: Output ``(width, height)``, or ``None`` before the first frame.
    """

    def __init__(self, path: Path, encoder: str, crf: int, preset: str = "superfast") -> None:
        self.path = path
        self.encoder = encoder
        self.crf = crf
        self.preset = preset
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self._container: Any = None
        self._stream: Any = None
        self._last_pts: int | None = None

    def _open(self, width: int, height: int) -> tuple[Any, Any]:
        """Create the container and its stream for ``width x height`` images (rounded up to even)."""
        import av

        self.size = (width + width % 2, height + height % 2)
        try:
            container = av.open(str(self.path), "w")
        except (av.error.FFmpegError, OSError) as exc:
            msg = f"cannot create video file {str(self.path)!r}: {exc}"
            raise SinkError(msg) from exc
        try:
            stream: Any = container.add_stream(self.encoder, options={"crf": str(self.crf), "preset": self.preset})
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
        except (av.error.FFmpegError, ValueError) as exc:
            container.close()
            msg = f"cannot add a {self.encoder} stream to {str(self.path)!r}: {exc}"
            raise SinkError(msg) from exc
        self._container, self._stream = container, stream
        return container, stream

    def write(self, image: np.ndarray, pts_s: float) -> None:
        """Encode BGR uint8 ``image`` ``[h, w, 3]`` shown from ``pts_s`` seconds on.

        A time that rounds to the previous frame's tick or earlier is moved one tick (1/90000 s)
        after it: MP4 needs strictly increasing times.

        Raises:
            SinkError: the file cannot be created or the encoder or muxer fails.
        """
        import av

        container, stream = self._container, self._stream
        if container is None:
            container, stream = self._open(image.shape[1], image.shape[0])
        size = self.size or (image.shape[1], image.shape[0])
        pts = round(pts_s / TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(letterbox(image, size)), format="bgr24")
        frame.pts, frame.time_base = pts, TIME_BASE
        try:
            container.mux(stream.encode(frame))
        except av.error.FFmpegError as exc:
            msg = f"cannot encode frame {self.frames} of {str(self.path)!r} with {self.encoder}: {exc}"
            raise SinkError(msg) from exc
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (nothing when no frame was written). Idempotent.

        Raises:
            SinkError: flushing or finishing the file fails (the container is closed anyway).
        """
        import av

        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.mux(self._stream.encode(None))
        except av.error.FFmpegError as exc:
            msg = f"cannot finish video file {str(self.path)!r}: {exc}"
            raise SinkError(msg) from exc
        finally:
            container.close()
        _LOG.info("video: wrote %d frame(s) to %s", self.frames, self.path)
