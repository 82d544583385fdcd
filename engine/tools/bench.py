"""``batsight bench [SOURCE]``: Ultralytics' own loop, the model alone and the whole pipeline, on the same frames.

One process, one run (issue 9). The source (default: the built-in input, as ``batsight run``) is
decoded once into memory, then the same frames go through:

(a) ``ultralytics``: Ultralytics' own ``YOLO(weights).predict(source=frame, stream=True, imgsz=...)``
    loop with PyTorch, one frame per call as its video loop does (``batch=1``), same ``model.imgsz``,
    ``model.device``, ``model.half``;
(b) ``model``: batsight's model alone (``model.backend``, e.g. OpenVINO on CPU), its batch call
    ``KeypointModel.infer`` on batches of ``batch.max_batch`` frames;
(c) ``pipeline``: the threaded :class:`~engine.pipeline.Pipeline` as users run it (reader thread,
    batcher, tracking, analytics, shots, publishing on a free loopback port, no sinks), fed from a
    file-like in-memory source (blocking queue, every frame processed);
(d) ``latency``: the pipeline again with a simulated live source releasing each frame at its PTS
    (the clip's frame rate, drop-oldest queue): capture -> ``pose/`` publish latency per frame.

Decoding is excluded from every figure (frames are in memory before any timing starts). Each phase
gets one untimed warm-up call first. Timings are wall clock (``time.perf_counter``); fps = frames /
seconds. Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the whole process (KiB on
Linux), in MiB.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from engine.config import Config, SourceConfig
from engine.errors import ConfigError, ModelError
from engine.messages import Message
from engine.models.base import KeypointModel, load_model_class
from engine.publisher import Publisher
from engine.sources import Source, build_sources
from engine.types import Frame

log = logging.getLogger(__name__)

#: Frame rate assumed for the live simulation when the source knows none, frames per second.
DEFAULT_FPS = 30.0


class ReplaySource(Source):
    """Frames decoded earlier, replayed from memory; ``paced`` releases each at its PTS like a camera.

    Args:
        frames: Decoded frames (``image`` ``uint8 [H, W, 3]`` BGR, ``pts_s`` increasing).
        source_id: Id of the replayed source.
        fps: Nominal frame rate, frames per second (given to the tracker).
        paced: ``False``: a file (blocking queue, frames as fast as the pipeline takes them).
            ``True``: a live source (drop-oldest queue); frame ``i`` is released at
            ``start + pts_s[i] - pts_s[0]`` on the monotonic clock, ``capture_time_ns`` = release time.
    """

    def __init__(self, frames: list[Frame], source_id: str, fps: float, paced: bool = False) -> None:
        self._frames = frames
        self.source_id = source_id
        self.fps = fps
        self.live = paced
        self.total_frames = None if paced else len(frames)
        self.corrupt = 0
        self._closed = threading.Event()

    @classmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> ReplaySource:
        """Not built from a spec: :func:`run_bench` constructs it. Raises ``ConfigError``."""
        msg = "ReplaySource is built by batsight bench, not from a spec"
        raise ConfigError(msg)

    def open(self) -> None:
        """Nothing to open (the frames are in memory)."""

    def frames(self) -> Iterator[Frame]:
        """Yield the frames (``frame_index`` 0..n-1, their own ``pts_s``), paced when ``live``."""
        start_s = time.monotonic()
        pts0 = self._frames[0].pts_s if self._frames else 0.0
        for i, frame in enumerate(self._frames):
            if self.live and self._closed.wait(max(0.0, start_s + frame.pts_s - pts0 - time.monotonic())):
                return
            if self._closed.is_set():
                return
            yield Frame(self.source_id, i, frame.pts_s, time.time_ns(), frame.image, raw_pts_s=frame.raw_pts_s)

    def close(self) -> None:
        """Stop yielding; idempotent, any thread."""
        self._closed.set()


class _LatencyPublisher(Publisher):
    """A :class:`Publisher` that also records ``publish time - capture_time_ns`` of every ``pose/``, ns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies_ns: list[int] = []

    def publish(self, message: Message) -> int:
        """Publish, then record the latency of a ``pose/`` message."""
        seq = super().publish(message)
        if message.KIND == "pose" and message.capture_time_ns is not None:
            self.latencies_ns.append(time.time_ns() - message.capture_time_ns)
        return seq


def decode_frames(spec: str, config: Config, max_frames: int | None) -> tuple[list[Frame], float, str]:
    """Decode up to ``max_frames`` frames of ``spec`` into memory with batsight's own source plugins.

    Returns:
        ``(frames, fps, source_id)``; ``fps`` is the source's nominal rate (``DEFAULT_FPS`` if unknown).

    Raises:
        SourceError: the source cannot be opened or read. ConfigError: no frame was decoded.
    """
    (source,) = build_sources([spec], config.source)
    frames: list[Frame] = []
    source.open()
    try:
        for frame in source.frames():
            frames.append(frame)
            if max_frames is not None and len(frames) >= max_frames:
                break
    finally:
        source.close()
    if not frames:
        msg = f"bench: no frame decoded from {spec!r}"
        raise ConfigError(msg)
    return frames, float(source.fps or DEFAULT_FPS), source.source_id


def _timed(call: Callable[[], object]) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


def ultralytics_fps(model: KeypointModel, config: Config, images: list[np.ndarray]) -> float:
    """(a) fps of Ultralytics' own ``predict(stream=True)`` loop with PyTorch, one frame per call."""
    from engine.models.ultralytics_pose import configure_ultralytics_offline, precision_kwargs, resolve_weights

    configure_ultralytics_offline()
    from ultralytics import YOLO

    weights = getattr(model, "weights_path", None) or resolve_weights(config.model.weights, config.model.weights_dir)
    if weights is None:  # never let Ultralytics download by name (README, Models)
        msg = f"cannot load YOLO weights {config.model.weights!r} for the Ultralytics loop: no such local file"
        raise ModelError(msg)
    yolo = YOLO(str(weights), task="pose")
    kwargs = {"imgsz": config.model.imgsz, "device": model.device, "verbose": False, **precision_kwargs(model.half)}

    def loop(frames: list[np.ndarray]) -> None:
        for image in frames:
            for _ in yolo.predict(source=image, stream=True, **kwargs):
                pass

    loop(images[:1])  # warm-up
    return len(images) / _timed(lambda: loop(images))


def model_fps(model: KeypointModel, images: list[np.ndarray], max_batch: int) -> float:
    """(b) fps of ``model.infer`` alone on batches of ``max_batch`` frames."""
    model.infer(images[:max_batch])  # warm-up at the batch shape

    def loop() -> None:
        for start in range(0, len(images), max_batch):
            model.infer(images[start : start + max_batch])

    return len(images) / _timed(loop)


def pipeline_run(
    model: KeypointModel, config: Config, frames: list[Frame], fps: float, source_id: str, paced: bool
) -> tuple[float, _LatencyPublisher, int]:
    """(c)/(d) Run the threaded pipeline on ``frames``; ``(wall seconds, publisher, frames dropped)``."""
    from engine.pipeline import Pipeline

    source = ReplaySource(frames, source_id, fps, paced=paced)
    publisher = _LatencyPublisher(config.publisher)
    pipeline = Pipeline(config, [source], model, publisher=publisher)
    t = time.perf_counter()
    pipeline.start()
    pipeline.join()
    wall_s = time.perf_counter() - t
    return wall_s, publisher, pipeline.summary().dropped


def run_bench(config: Config, spec: str, max_frames: int | None = None, latency: bool = True) -> dict[str, Any]:
    """Run phases (a)-(d) (module docstring) and return the figures as a JSON-ready dict.

    ``config.publisher.endpoint`` is replaced by ``tcp://127.0.0.1:*`` (a free loopback port) and
    ``config.sinks`` is ignored.

    Returns:
        Keys: ``source``, ``frames``, ``frame_width``, ``frame_height``, ``source_fps``, ``imgsz``,
        ``max_batch``, ``device``, ``backend``, ``ultralytics_fps``, ``model_fps``, ``pipeline_fps``,
        ``pipeline_vs_ultralytics`` (c/a), ``pipeline_vs_model`` (c/b), ``latency_p50_ms``,
        ``latency_p99_ms``, ``live_published``, ``live_dropped`` (``None`` for the last four without
        ``latency``), ``peak_rss_mib``, ``decode`` (how decoding was counted).

    Raises:
        BatsightError: the source, model or publisher fails (as in ``batsight run``).
    """
    from engine.models.ultralytics_pose import configure_ultralytics_offline

    configure_ultralytics_offline()  # before anything (the default source's photos) imports Ultralytics
    publisher_config = config.publisher.model_copy(update={"endpoint": "tcp://127.0.0.1:*", "min_subscribers": 0})
    config = config.model_copy(update={"publisher": publisher_config, "sinks": [], "progress": False})
    _say(f"decoding {spec} into memory")
    frames, fps, source_id = decode_frames(spec, config, max_frames)
    images = [f.image for f in frames]
    model = load_model_class(config.model.name).from_config(config.model)
    _say(f"{len(frames)} frames {frames[0].width}x{frames[0].height}; building model {config.model.name}")
    model.build()
    backend = str(getattr(model, "backend", config.model.name))
    _say("(a) Ultralytics predict(stream=True) loop, PyTorch")
    fps_a = ultralytics_fps(model, config, images)
    _say(f"(a) {fps_a:.2f} fps; (b) model alone ({backend}, batches of {config.batch.max_batch})")
    fps_b = model_fps(model, images, config.batch.max_batch)
    _say(f"(b) {fps_b:.2f} fps; (c) whole pipeline")
    wall_c, _, _ = pipeline_run(model, config, frames, fps, source_id, paced=False)
    fps_c = len(frames) / wall_c
    result: dict[str, Any] = {
        "source": spec, "frames": len(frames), "frame_width": frames[0].width, "frame_height": frames[0].height,
        "source_fps": fps, "imgsz": config.model.imgsz, "max_batch": config.batch.max_batch,
        "device": model.device, "backend": backend,
        "ultralytics_fps": fps_a, "model_fps": fps_b, "pipeline_fps": fps_c,
        "pipeline_vs_ultralytics": fps_c / fps_a, "pipeline_vs_model": fps_c / fps_b,
        "latency_p50_ms": None, "latency_p99_ms": None, "live_published": None, "live_dropped": None,
    }
    if latency:
        _say(f"(c) {fps_c:.2f} fps; (d) live latency at {fps:g} fps ({len(frames) / fps:.1f} s)")
        _, publisher, dropped = pipeline_run(model, config, frames, fps, source_id, paced=True)
        lat_ms = np.asarray(publisher.latencies_ns, np.float64) / 1e6
        result.update(
            latency_p50_ms=float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
            latency_p99_ms=float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
            live_published=int(lat_ms.size),
            live_dropped=int(dropped),
        )
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result["decode"] = "excluded: frames decoded into memory before timing"
    return result


def _say(text: str) -> None:
    """A progress line on stderr (stdout stays clean for ``--json``)."""
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def format_text(result: dict[str, Any]) -> str:
    """The human-readable report of :func:`run_bench`'s result."""
    lines = [
        f"source {result['source']}: {result['frames']} frames {result['frame_width']}x{result['frame_height']} "
        f"at {result['source_fps']:g} fps; imgsz {result['imgsz']}, batch {result['max_batch']}, "
        f"device {result['device']}, backend {result['backend']} ({result['decode']})",
        f"(a) Ultralytics predict(stream=True), PyTorch: {result['ultralytics_fps']:8.2f} fps",
        f"(b) model alone, {result['backend']:<25s} {result['model_fps']:8.2f} fps",
        f"(c) whole pipeline:                          {result['pipeline_fps']:8.2f} fps",
        f"c/a = {result['pipeline_vs_ultralytics']:.2f}   c/b = {result['pipeline_vs_model']:.2f}",
    ]
    if result["latency_p50_ms"] is not None:
        lines.append(
            f"live at {result['source_fps']:g} fps: capture->publish p50 {result['latency_p50_ms']:.1f} ms, "
            f"p99 {result['latency_p99_ms']:.1f} ms ({result['live_published']} published, "
            f"{result['live_dropped']} dropped)"
        )
    lines.append(f"peak RSS {result['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def main_bench(config: Config, spec: str | None, max_frames: int | None, as_json: bool, latency: bool) -> int:
    """``batsight bench``: run and print (text, or one JSON object with ``as_json``); exit status 0."""
    if spec is None:
        spec = config.sources[0] if config.sources else "default"
    result = run_bench(config, spec, max_frames=max_frames, latency=latency)
    sys.stdout.write((json.dumps(result) if as_json else format_text(result)) + "\n")
    sys.stdout.flush()
    return 0


__all__ = ["ReplaySource", "decode_frames", "format_text", "main_bench", "run_bench"]
