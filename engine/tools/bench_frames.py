"""Cost of the ``frame/`` topic on the engine: pipeline fps with frames off and on, JPEG encode ms per frame.

Run ``python -m engine.tools.bench_frames [SOURCE ...] [--repeats 2] [--set KEY=VALUE ...]``
(default source: the built-in input). Each repeat runs the whole threaded pipeline (the configured
model, tracking, analytics, publishing) over the same sources twice, once with ``publisher.frames=off``
and once with ``on`` while a subscriber drains every message (so the JPEGs are really sent); the
two modes alternate so background load hits both alike. Prints the pipeline fps of each mode and
their ratio, and the scaling + JPEG encoding time per published frame (``FrameEncoder.encode_ms``,
on the publisher thread), the mean JPEG size and the frame/ bytes per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from collections.abc import Sequence

import zmq

from engine.config import load_config
from engine.models.base import load_model_class
from engine.pipeline import Pipeline
from engine.sources import build_sources


def _drain(endpoint: str, stop: threading.Event, sizes: list[int]) -> None:
    """Subscribe to everything (and ask for frames) and count the JPEG bytes until ``stop``."""
    socket: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
    socket.connect(endpoint)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.SUBSCRIBE, b"frame/")
    try:
        while not stop.is_set():
            if socket.poll(50):
                parts = socket.recv_multipart()
                if parts[0].startswith(b"frame/"):
                    sizes.append(len(parts[-1]))
    finally:
        socket.close(linger=0)


def _run(overrides: list[str], sources: list[str], model: object, frames: str) -> tuple[float, float, float, list[int]]:
    """One pipeline run; ``(fps, encode_ms, share of frames encoded, jpeg sizes)``."""
    config = load_config(None, [*overrides, "publisher.endpoint=tcp://127.0.0.1:*", f"publisher.frames={frames}",
                                "publisher.wait_subscribers_s=2", "publisher.min_subscribers=1"])
    config = config.model_copy(update={"sources": sources})
    pipeline = Pipeline(config, build_sources(sources, config.source), model)  # type: ignore[arg-type]
    pipeline.publisher.open()
    stop, sizes = threading.Event(), list[int]()
    drain = threading.Thread(target=_drain, args=(pipeline.publisher.endpoint, stop, sizes), daemon=True)
    drain.start()
    pipeline.start()
    pipeline.join()
    stop.set()
    drain.join(5)
    summary = pipeline.summary()
    encoded = pipeline.frame_encoder.encoded
    return summary.fps, pipeline.frame_encoder.encode_ms, encoded / max(1, summary.frames), sizes


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run both modes ``--repeats`` times, print the table; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m engine.tools.bench_frames", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="*", default=["default"], help="sources (default: the built-in input)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, alternating (default 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    overrides = [*args.set, "shots.enabled=true"]
    config = load_config(None, overrides)
    model = load_model_class(config.model.name).from_config(config.model)
    model.build()
    _run(overrides, args.sources, model, "off")  # warm-up (first model calls are slow)
    fps: dict[str, list[float]] = {"off": [], "on": []}
    encode_ms: list[float] = []
    shares: list[float] = []
    sizes: list[int] = []
    for repeat in range(args.repeats):
        for mode in ("off", "on"):
            run_fps, run_encode_ms, share, run_sizes = _run(overrides, args.sources, model, mode)
            fps[mode].append(run_fps)
            print(f"repeat {repeat + 1} frames={mode:3s}: {run_fps:6.2f} fps, {share:.0%} of frames encoded",
                  file=sys.stderr)
            if mode == "on":
                encode_ms.append(run_encode_ms)
                shares.append(share)
                sizes.extend(run_sizes)
    off, on = statistics.mean(fps["off"]), statistics.mean(fps["on"])
    mean_kb = statistics.mean(sizes) / 1024 if sizes else 0.0
    print(f"pipeline fps, frames off: {off:.2f}")
    print(f"pipeline fps, frames on:  {on:.2f}  (on/off = {on / off:.3f})")
    print(f"scale + JPEG encode: {statistics.mean(encode_ms):.2f} ms per published frame "
          f"(publisher thread; frame_max_width {config.publisher.frame_max_width}, quality "
          f"{config.publisher.frame_quality})")
    rate_mib_s = mean_kb * on * statistics.mean(shares) / 1024
    print(f"JPEG size: {mean_kb:.1f} KiB mean, {rate_mib_s:.2f} MiB/s of frame/ at the measured fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
