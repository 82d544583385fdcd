"""The built-in default input: a simulated camera panning over the photos shipped with Ultralytics.

Used when the user names no source (like Ultralytics' default source). It needs no camera and no
network: it reads ``bus.jpg`` and ``zidane.jpg`` from ``ultralytics.utils.ASSETS`` (both show people)
and moves a virtual 640x480 camera smoothly across each photo, half of the frames per photo, with a
slight zoom, so the output looks like a short deterministic 30 fps video with large, moving people.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.config import SOURCE_ID_RE, SourceConfig
from engine.errors import ConfigError, SourceError
from engine.sources import Source
from engine.types import Frame

__all__ = ["DefaultSource"]

#: Output frame size ``(width, height)`` in pixels (VGA, a common webcam size).
FRAME_SIZE: tuple[int, int] = (640, 480)
#: Frame rate of the simulated camera, frames per second.
FPS = 30.0
#: The spec this source claims, and how strongly (see ``Source.claims``).
DEFAULT_SPEC = "default"
DEFAULT_CLAIM = 100


@dataclass(frozen=True)
class _Shot:
    """Camera path over one photo: a window moving from ``start`` to ``end``.

    Each window is ``(x0, y0, width)`` in pixels of the photo; the height follows from the output
    aspect ratio. Windows are clamped inside the photo, so a photo of another size still works.
    """

    asset: str
    start: tuple[float, float, float]
    end: tuple[float, float, float]


# bus.jpg is 810x1080 (people stand at y ~ 400..890): pan right and up, whole bodies in view.
# zidane.jpg is 1280x720 (two men, upper bodies): pan right with a slow zoom in.
_SHOTS: tuple[_Shot, ...] = (
    _Shot("bus.jpg", start=(0.0, 360.0, 720.0), end=(90.0, 330.0, 720.0)),
    _Shot("zidane.jpg", start=(20.0, 0.0, 960.0), end=(340.0, 40.0, 900.0)),
)


def _window(shot: _Shot, t: float, image_wh: tuple[int, int]) -> tuple[float, float, float]:
    """Camera window ``(x0, y0, width)`` in photo pixels at progress ``t`` in [0, 1], inside the photo."""
    # Half linear, half cosine ease: smooth start and stop, but the camera never stands still.
    s = 0.5 * t + 0.5 * (1.0 - math.cos(math.pi * t)) / 2.0
    x0, y0, w = (a + (b - a) * s for a, b in zip(shot.start, shot.end, strict=True))
    img_w, img_h = image_wh
    aspect = FRAME_SIZE[0] / FRAME_SIZE[1]
    w = min(w, float(img_w), img_h * aspect)
    h = w / aspect
    x0 = min(max(x0, 0.0), img_w - w)
    y0 = min(max(y0, 0.0), img_h - h)
    return x0, y0, w


def _render(image: np.ndarray, window: tuple[float, float, float]) -> np.ndarray:
    """Resample the window of ``image`` (``uint8 [H, W, 3]`` BGR) to ``uint8 [480, 640, 3]``, sub-pixel exact."""
    x0, y0, w = window
    scale = FRAME_SIZE[0] / w
    matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, FRAME_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class DefaultSource(Source):
    """Deterministic simulated camera over Ultralytics' sample photos (no camera, no network).

    Yields ``config.default_frames`` frames: the first ``ceil(n / 2)`` pan over ``bus.jpg``, the rest
    over ``zidane.jpg``. Every frame is ``uint8 [480, 640, 3]`` BGR, ``pts_s = frame_index / 30``;
    two runs give identical images. Not live: ``total_frames`` is known in advance.

    Attributes:
        source_id: Name of the source (``[A-Za-z0-9_.-]+``), usually ``"default"``.
        live: Always ``False``.
        total_frames: ``config.default_frames``.
        corrupt: Always 0.
        fps: Frame rate of the stream, frames per second: always 30.0 (``FPS``), from construction on.
        width: 640 pixels.
        height: 480 pixels.
    """

    live = False

    def __init__(self, source_id: str, config: SourceConfig) -> None:
        if not isinstance(source_id, str) or not SOURCE_ID_RE.match(source_id):
            msg = f"source id must match [A-Za-z0-9_.-]+, got {source_id!r}"
            raise ConfigError(msg)
        self.source_id = source_id
        self.config = config
        self.total_frames: int | None = int(config.default_frames)
        self.corrupt = 0
        self.fps: float | None = FPS
        self.width, self.height = FRAME_SIZE
        self._images: list[np.ndarray] | None = None
        self._closed = threading.Event()

    @classmethod
    def claims(cls, spec: str) -> int:
        """Claim exactly the spec ``"default"`` (the input used when the user names none).

        Returns:
            ``DEFAULT_CLAIM`` (100) for ``"default"``, else 0.
        """
        return DEFAULT_CLAIM if spec == DEFAULT_SPEC else 0

    @classmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> DefaultSource:
        """Store the options; ``spec`` is ``"default"`` and carries nothing else.

        Raises:
            ConfigError: ``source_id`` is not ``[A-Za-z0-9_.-]+``.
        """
        return cls(source_id, config)

    def __repr__(self) -> str:
        return f"DefaultSource(source_id={self.source_id!r}, frames={self.total_frames})"

    @property
    def label(self) -> str:
        """How the input is named in messages: ``"default"``."""
        return DEFAULT_SPEC

    def probe(self) -> dict[str, Any]:
        """What this source yields (``batsight probe``): ``mode``, ``width``, ``height``, ``fps``, ``frames``."""
        return {"mode": "file", "width": self.width, "height": self.height, "fps": FPS, "frames": self.total_frames}

    def open(self) -> None:
        """Load the photos from ``ultralytics.utils.ASSETS`` (imported here: it is slow to import).

        Raises:
            SourceError: Ultralytics is not importable, or a photo is missing or unreadable (the
                message names the path); or ``close()`` was already called.
        """
        if self._closed.is_set():
            msg = f"source {self.source_id!r} is closed"
            raise SourceError(msg)
        try:
            from ultralytics.utils import ASSETS
        except ImportError as exc:
            msg = f"default source needs the ultralytics package for its sample photos: {exc}"
            raise SourceError(msg) from exc
        images = []
        for shot in _SHOTS:
            path = Path(ASSETS) / shot.asset
            if not path.is_file():
                msg = f"default source photo not found: {path}"
                raise SourceError(msg)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                msg = f"cannot read default source photo {path}: not a readable image"
                raise SourceError(msg)
            images.append(image)
        self._images = images

    def frames(self) -> Iterator[Frame]:
        """Yield ``default_frames`` frames, ``frame_index`` 0..n-1, ``pts_s = frame_index / 30``.

        Stops early (without error) after ``close()``.

        Raises:
            SourceError: called before ``open()``.
        """
        if self._closed.is_set():
            return
        if self._images is None:
            msg = f"frames() called before open() on source {self.source_id!r}"
            raise SourceError(msg)
        n = int(self.config.default_frames)
        first = (n + 1) // 2
        segments = [(0, first), (first, n - first)]
        for shot, image, (offset, count) in zip(_SHOTS, self._images, segments, strict=True):
            size = (int(image.shape[1]), int(image.shape[0]))
            for j in range(count):
                if self._closed.is_set():
                    return
                t = j / (count - 1) if count > 1 else 0.0
                index = offset + j
                rendered = _render(image, _window(shot, t, size))
                yield Frame(self.source_id, index, index / FPS, time.time_ns(), rendered)

    def close(self) -> None:
        """Stop ``frames()`` before its next frame and drop the photos; idempotent, any thread."""
        self._closed.set()
        self._images = None
