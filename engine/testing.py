"""Public test doubles: a source, a keypoint model, a clock, a publisher and message factories.

An in-memory source, a deterministic keypoint model, a fake clock, an in-memory publisher and
factories of valid typed messages.

Pattern: bytewax ``testing.py`` (``TestingSource``, ``TestingSink``). They let pipeline tests run in
milliseconds without decoding video, running a network or opening sockets. Doubles of sinks live in
``tests/helpers.py`` (the engine never imports ``sinks``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import fields, replace

import numpy as np

from engine.config import ModelConfig, PublisherConfig, SourceConfig
from engine.errors import SourceError
from engine.messages import EndOfStream, Fit, FitStats, Health, Message, Pose, Shot, SourceHealth
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
        self.fps: float = fps  # known from the start (the base allows None until open())
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


class FakeClock:
    """A :class:`engine.clock.Clock` that moves only when told (thread-safe reads).

    Args:
        start_s: Initial monotonic reading, seconds.
        start_ns: Initial wall-clock reading, Unix epoch ns.
    """

    def __init__(self, start_s: float = 1000.0, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self.now_s = start_s
        self.now_ns = start_ns

    def monotonic(self) -> float:
        """The monotonic reading, seconds."""
        return self.now_s

    def time_ns(self) -> int:
        """The wall-clock reading, Unix epoch ns."""
        return self.now_ns

    def __call__(self) -> float:
        """Same as :meth:`monotonic` (for collaborators that take a ``now_fn`` callable)."""
        return self.now_s

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``."""
        self.now_s += seconds
        self.now_ns += int(round(seconds * 1e9))


class MemoryPublisher:
    """Stands in for :class:`engine.publisher.Publisher` without ZeroMQ: keeps every message.

    ``messages`` holds what was published, each with the ``seq`` the real publisher would give it
    (per ``(kind, source_id)``); ``published`` is set after every message so tests can wait on it.
    """

    def __init__(self, config: PublisherConfig | None = None) -> None:
        self.config = config or PublisherConfig()
        self.messages: list[Message] = []
        self.published = threading.Event()
        self._seq: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.is_open = False
        self.endpoint = "inproc://memory"

    def open(self) -> None:
        """Mark open."""
        self.is_open = True

    def close(self) -> None:
        """Mark closed."""
        self.is_open = False

    def wait_for_subscribers(self, count: int, timeout_s: float, ready_topics: int = 0) -> tuple[int, int]:
        """Everyone is already here: ``(ready_topics, count)``."""
        return ready_topics, count

    def publish(self, message: Message) -> int:
        """Keep ``message`` (with its ``seq`` set) and return that ``seq``."""
        with self._lock:
            key = (message.kind, message.source_id)
            seq = self._seq.get(key, 0)
            self._seq[key] = seq + 1
            self.messages.append(replace(message, seq=seq))
        self.published.set()
        return seq

    def of_kind(self, kind: str, source_id: str | None = None) -> list[Message]:
        """The messages of ``kind`` (and ``source_id`` when given), in publishing order."""
        with self._lock:
            return [m for m in self.messages if m.kind == kind and (source_id is None or m.source_id == source_id)]


def make_pose(
    source_id: str = "cam1", frame_index: int = 0, batter_found: bool = True, fps: float = 30.0, seq: int = 0,
    n_persons: int = 2, frame_size: tuple[int, int] = (1280, 720),
) -> Pose:
    """A valid ``pose/`` message with deterministic values derived from ``frame_index``.

    The batter (when found) is person 0: box ``[100 + i, 50, 300 + i, 650]`` with keypoint ``k`` at
    ``(150 + i + 5 k, 60 + 30 k)`` and confidence ``0.5 + k / 40`` (``i = frame_index``).
    """
    width, height = frame_size
    i = float(frame_index)
    xyxy = np.array([[100 + i, 50, 300 + i, 650]] + [[700, 60, 800, 500]] * (n_persons - 1), np.float32)
    k = np.arange(NUM_KEYPOINTS, dtype=np.float32)
    return Pose(
        source_id=source_id, frame_index=frame_index, pts_s=frame_index / fps, capture_time_ns=1_000 + frame_index,
        seq=seq, frame_width=width, frame_height=height, n_persons=n_persons, batter_found=batter_found,
        track_id=1 if batter_found else None, heatmap_source="rendered" if batter_found else "none",
        inference_ms=10.0, raw_pts_s=frame_index / fps, timeline_break=False, scene_cut=False,
        persons_xyxy=xyxy[:n_persons], persons_track_id=np.arange(1, n_persons + 1, dtype=np.int64),
        xyxy=xyxy[0].copy() if batter_found else None,
        keypoints_xy=np.stack([150 + i + 5 * k, 60 + 30 * k], axis=1).astype(np.float32) if batter_found else None,
        keypoints_conf=(0.5 + k / 40).astype(np.float32) if batter_found else None,
    )


def make_fit(source_id: str = "cam1", frame_index: int = 0, fps: float = 30.0, seq: int = 0) -> Fit:
    """A valid ``fit/`` message: a degree-1 fit of two points ending at ``frame_index`` (values made up)."""
    zeros = {f.name: 0.0 for f in fields(FitStats)}
    return Fit(
        source_id=source_id, frame_index=frame_index, pts_s=frame_index / fps, capture_time_ns=1_000 + frame_index,
        seq=seq, window_s=2.0, wrist="left_wrist", shoulder="left_shoulder", basis="legendre", dx=0.1, dy=-0.2,
        n_points=2, t_start_s=max(0, frame_index - 1) / fps, t_end_s=frame_index / fps, degree_xy=1,
        stats=FitStats(**zeros), dx_coef=np.zeros(2), dy_coef=np.zeros(2), r_coef=np.zeros(3),
    )


def make_shot(source_id: str = "cam1", shot_index: int = 0, seq: int = 0) -> Shot:
    """A valid ``shot/`` message without a fit: frames ``10 i .. 10 i + 9`` at 30 fps, label ``pull`` (made up)."""
    empty = np.zeros((0,), np.float64)
    start, end = 10 * shot_index, 10 * shot_index + 9
    return Shot(
        source_id=source_id, frame_index=end, pts_s=end / 30, capture_time_ns=1_000 + end, seq=seq,
        shot_index=shot_index, start_frame=start, end_frame=end, start_s=start / 30, end_s=end / 30,
        duration_s=9 / 30, label="pull", confidence=None, probabilities=None, handedness="right",
        handedness_source="config", wrist="left_wrist", shoulder="left_shoulder", n_points=0, degree_xy=None,
        basis="legendre", t_start_s=None, t_end_s=None, stats=None, classifier_version="test", dx_coef=empty,
        dy_coef=empty, r_coef=empty, t_s=empty, dx=empty, dy=empty, pair_similarity=np.zeros((0,), np.float32),
    )


def make_eos(
    source_id: str = "cam1", frames: int = 0, reason: str = "end", dropped: int = 0, corrupt: int = 0,
    error: str | None = None, seq: int = 0,
) -> EndOfStream:
    """A valid ``eos/`` message."""
    return EndOfStream(source_id=source_id, seq=seq, frames=frames, dropped=dropped, corrupt=corrupt, error=error,
                       reason=reason)  # type: ignore[arg-type]


def make_source_health(state: str = "live", frames: int = 0, dropped: int = 0, corrupt: int = 0) -> SourceHealth:
    """A valid ``health/`` entry of one source (``frames`` in and out)."""
    return SourceHealth(state=state, reconnects=0, frames_in=frames, frames_out=frames,  # type: ignore[arg-type]
                        dropped=dropped, corrupt=corrupt, queue_depth=0, fps_in=0.0, fps_out=0.0, batter_frames=0)


def make_health(
    engine_state: str = "running", sources: dict[str, SourceHealth] | None = None, uptime_s: float = 1.0,
    seq: int = 0,
) -> Health:
    """A valid ``health/`` message."""
    return Health(seq=seq, engine_state=engine_state, uptime_s=uptime_s, model="FakeKeypointModel",  # type: ignore[arg-type]
                  device="cpu", sources=sources or {})
