"""The ``video`` sink's write speed on a real clip: ``python -m tests.bench_video CLIP [--out DIR]``.

The clip runs once through the engine on the calling thread (:func:`engine.pipeline.run_inline`,
the configured model, ``publisher.frames=on``); its messages are then fed to a
:class:`sinks.video.VideoSink` in batches of 64, as the runner would, and timed: the whole sink
(JPEG decode, drawing, H.264 encoding, muxing) and, on a second pass, the JPEG decode and drawing
alone. Prints frames written and frames per second for both; the difference is the encoder's share.
The model's time is not counted. Numbers depend on the machine's load: compare runs made together.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from engine.config import load_config
from engine.messages import AnyMessage, Fit, FrameImage, Pose, Similarity
from engine.models.base import load_model_class
from engine.pipeline import run_inline
from engine.sources import build_sources
from sinks.video import VideoSink
from sinks.video.draw import FrameOverlay, annotate, decode_jpeg

BATCH = 64


def engine_messages(clip: str, overrides: list[str]) -> list[AnyMessage]:
    """Every message of one inline run of ``clip`` with ``publisher.frames=on`` and ``overrides``."""
    config = load_config(None, [f"sources=[{clip!r}]", "publisher.frames=on", *overrides])
    model = load_model_class(config.model.name).from_config(config.model)
    model.build()
    return run_inline(config, build_sources(list(config.sources), config.source), model)  # type: ignore[return-value]


def time_sink(messages: list[AnyMessage], out_dir: Path) -> tuple[int, float]:
    """``(frames written, seconds)`` of a :class:`VideoSink` writing ``messages`` into ``out_dir``."""
    sink = VideoSink(out_dir=str(out_dir))
    start = time.perf_counter()
    sink.open()
    for i in range(0, len(messages), BATCH):
        sink.write_batch(messages[i:i + BATCH])
    sink.close()
    seconds = time.perf_counter() - start
    frames = sum(1 for m in messages if isinstance(m, FrameImage))
    return frames, seconds


def time_drawing(messages: list[AnyMessage]) -> tuple[int, float]:
    """``(frames, seconds)`` of decoding and annotating each frame (no encoding), with its own messages."""
    by_frame: dict[tuple[str, int | None], dict[str, AnyMessage]] = {}
    for m in messages:
        if isinstance(m, (FrameImage, Pose, Similarity, Fit)):
            by_frame.setdefault((m.source_id, m.frame_index), {})[m.kind] = m
    start = time.perf_counter()
    n = 0
    for parts in by_frame.values():
        frame = parts.get("frame")
        if not isinstance(frame, FrameImage):
            continue
        pose, sim, fit = parts.get("pose"), parts.get("sim"), parts.get("fit")
        overlay = FrameOverlay(
            pose=pose if isinstance(pose, Pose) else None,
            sim=sim if isinstance(sim, Similarity) else None,
            fit=fit if isinstance(fit, Fit) else None,
        )
        annotate(decode_jpeg(frame), frame, overlay)
        n += 1
    return n, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", help="video file")
    parser.add_argument("--out", help="folder for the video (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    messages = engine_messages(args.clip, args.set)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        frames, seconds = time_sink(messages, out)
        drawn, draw_seconds = time_drawing(messages)
        sizes = sorted({(m.width, m.height) for m in messages if isinstance(m, FrameImage)})
        files = sorted(p.name for p in out.iterdir())
        print(f"video sink: {frames} frames {sizes} in {seconds:.2f} s = {frames / seconds:.1f} frames/s "
              f"(decode + draw only: {drawn / draw_seconds:.1f} frames/s); files: {files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
