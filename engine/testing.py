"""Public test doubles: an in-memory source and a deterministic keypoint model.

Pattern: bytewax ``testing.py`` (``TestingSource``). They let pipeline tests run in milliseconds
without decoding video or running a network, while exercising the real threads and queues.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np

from engine.config import ModelConfig, SourceConfig
from engine.errors import SourceError
from engine.models.base import KeypointModel
from engine.sources import Source
from engine.types import NUM_KEYPOINTS, Frame, Persons


class ListSource(Source):
    """Yields ``n_frames`` small frames whose pixel value encodes ``frame_index % 256``.

    Args:
        source_id: Id of the source.
        n_frames: Frames to yield.
        fps: Frame rate; ``pts_s = frame_index / fps``.
        live: Queue policy the engine applies (drop-oldest when ``True``).
        size: ``(height, width)`` of the frames.
        delay_s: Sleep before each frame (simulates a camera's frame interval).
        fail_after: Raise :class:`SourceError` after this many frames (``None``: never).
        break_at: Frame indices flagged ``timeline_break`` (as a source does after a reconnect).
    """

    def __init__(
        self,
        source_id: str = "test",
        n_frames: int = 10,
        fps: float = 30.0,
        live: bool = False,
        size: tuple[int, int] = (48, 64),
        delay_s: float = 0.0,
        fail_after: int | None = None,
        break_at: tuple[int, ...] = (),
    ) -> None:
        self.source_id = source_id
        self.n_frames = n_frames
        self.fps = fps
        self.live = live
        self.size = size
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.break_at = set(break_at)
        self.total_frames = None if live else n_frames
        self.corrupt = 0
        self.opened = False
        self.closed = threading.Event()

    @classmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> ListSource:
        """``spec`` is the frame count."""
        return cls(source_id=source_id, n_frames=int(spec))

    def open(self) -> None:
        """Mark opened."""
        self.opened = True

    def frames(self) -> Iterator[Frame]:
        """Yield the frames; ``image[..., :] == frame_index % 256``."""
        h, w = self.size
        for i in range(self.n_frames):
            if self.closed.is_set():
                return
            if self.fail_after is not None and i >= self.fail_after:
                msg = f"{self.source_id}: simulated failure after {i} frames"
                raise SourceError(msg)
            if self.delay_s and self.closed.wait(self.delay_s):
                return
            image = np.full((h, w, 3), i % 256, np.uint8)
            yield Frame(
                self.source_id, i, i / self.fps, time.time_ns(), image, raw_pts_s=i / self.fps,
                timeline_break=i in self.break_at,
            )

    def close(self) -> None:
        """Stop yielding."""
        self.closed.set()


class FakeKeypointModel(KeypointModel):
    """One person per frame whose keypoints move with the frame's pixel value (deterministic).

    The box is the central half of the frame; keypoint ``k`` sits at a fixed offset that drifts
    right by ``value / 255`` of the box width, so wrist-vs-shoulder offsets change over time.
    ``delay_s`` sleeps per call to simulate a slow model. ``calls`` records batch sizes and
    ``batch_shapes`` the set of image shapes of each call.
    """

    heatmap_source = "rendered"

    def __init__(self, delay_s: float = 0.0, no_person_every: int = 0) -> None:
        self.delay_s = delay_s
        self.no_person_every = no_person_every
        self.calls: list[int] = []
        self.batch_shapes: list[set[tuple[int, ...]]] = []
        self.built = False

    @classmethod
    def from_config(cls, config: ModelConfig) -> FakeKeypointModel:
        """Ignore the config."""
        return cls()

    def build(self) -> None:
        """Nothing to load."""
        self.built = True

    def infer(self, images: list[np.ndarray]) -> list[Persons]:
        """See :meth:`KeypointModel.infer`."""
        self.calls.append(len(images))
        self.batch_shapes.append({image.shape for image in images})
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for image in images:
            h, w = image.shape[:2]
            value = float(image[0, 0, 0])
            if self.no_person_every and int(value) % self.no_person_every == 0:
                out.append(Persons.empty())
                continue
            x1, y1, x2, y2 = w * 0.25, h * 0.25, w * 0.75, h * 0.75
            k = np.arange(NUM_KEYPOINTS, dtype=np.float32)
            xs = x1 + (x2 - x1) * ((k % 4) / 4 + 0.1 * value / 255)
            ys = y1 + (y2 - y1) * (k / NUM_KEYPOINTS)
            out.append(
                Persons(
                    xyxy=np.array([[x1, y1, x2, y2]], np.float32),
                    conf=np.array([0.9], np.float32),
                    track_id=np.array([-1], np.int64),
                    keypoints_xy=np.stack([xs, ys], axis=1)[None].astype(np.float32),
                    keypoints_conf=np.full((1, NUM_KEYPOINTS), 0.9, np.float32),
                )
            )
        return out
