"""``frame/`` messages: the decoded frames as JPEG, rate-limited per source (README wire table).

Opt-in: :class:`engine.pipeline.Pipeline` publishes them while ``publisher.frames`` is ``on``, or
``auto`` and some subscriber asked for a ``frame/...`` prefix (:meth:`engine.publisher.Publisher.wants_frames`).
Encoding runs on the publisher thread, so its cost is off the inference thread; it is counted in
:attr:`FrameEncoder.encode_s` (``engine/tools/bench_frames.py`` reports it per frame).
"""

from __future__ import annotations

import time

import cv2

from engine.config import PublisherConfig
from engine.messages import FrameImage
from engine.types import Frame


class FrameEncoder:
    """Scales and JPEG-encodes frames, at most ``config.frame_fps`` per source.

    Rate: frames are due on a grid of ``1 / frame_fps`` seconds of ``pts_s`` (the source's own time,
    so a file read faster than real time still gets ``frame_fps`` per media second). A frame is due
    when its ``pts_s`` reaches the next grid point; a source slower than ``frame_fps`` gets every
    frame. Scaling: :func:`cv2.resize` with ``INTER_AREA`` to at most ``frame_max_width`` pixels wide,
    aspect ratio kept (never enlarged); encoding: :func:`cv2.imencode` baseline JPEG at
    ``frame_quality``.

    Args:
        config: ``frame_fps``, ``frame_max_width`` and ``frame_quality`` are read.

    Attributes:
        encoded: Frames encoded so far.
        encode_s: Seconds spent scaling and encoding them (``time.perf_counter``).
    """

    def __init__(self, config: PublisherConfig) -> None:
        self._interval_s = 1.0 / config.frame_fps
        self._max_width = config.frame_max_width
        self._quality = config.frame_quality
        self._next_s: dict[str, float] = {}
        self.encoded = 0
        self.encode_s = 0.0

    def due(self, frame: Frame) -> bool:
        """Whether ``frame`` is to be published under the per-source rate limit (and book it if so)."""
        next_s = self._next_s.get(frame.source_id)
        tolerance_s = 1e-3 * self._interval_s
        if next_s is not None and frame.pts_s < next_s - tolerance_s:
            return False
        # on the grid, or restart it from this frame when first or a whole interval behind (a gap)
        grid_s = frame.pts_s if next_s is None or frame.pts_s - next_s >= self._interval_s else next_s
        self._next_s[frame.source_id] = grid_s + self._interval_s
        return True

    def encode(self, frame: Frame) -> FrameImage:
        """The ``frame/`` message of ``frame`` (scaled, JPEG), whatever the rate limit says.

        Raises:
            RuntimeError: OpenCV cannot encode the image (it never should for a ``uint8 [H, W, 3]``).
        """
        start = time.perf_counter()
        image = frame.image
        if frame.width > self._max_width:
            height = max(1, round(frame.height * self._max_width / frame.width))
            image = cv2.resize(image, (self._max_width, height), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            msg = f"cannot JPEG-encode frame {frame.frame_index} of {frame.source_id!r} ({image.shape})"
            raise RuntimeError(msg)
        message = FrameImage.from_image(frame, image, jpeg.reshape(-1), self._quality)
        self.encode_s += time.perf_counter() - start
        self.encoded += 1
        return message

    @property
    def encode_ms(self) -> float:
        """Mean milliseconds per encoded frame (0 before the first)."""
        return 1000.0 * self.encode_s / self.encoded if self.encoded else 0.0
