"""What one camera costs the engine: decode, model, publish per frame, bytes per topic, memory per source.

Run ``python -m engine.tools.bench_camera SOURCE [--frames 90] [--set KEY=VALUE ...]`` (the inputs of
``docs/SCALING.md``). Three timed parts, on the calling process:

(a) ``decode``: the source plugin's ``frames()`` alone (PyAV demux + decode + conversion to an RGB
    ``uint8 [H, W, 3]`` array, as the reader thread does), ms per frame;
(b) ``pipeline``: the threaded pipeline with the configured model on ``--sources N`` copies of the
    source, ``publisher.frames`` as configured, a subscriber counting every message; from it the
    pipeline fps, the model ms per frame (``Pipeline.model_s``), and per topic the messages and bytes
    per frame (wire bytes: topic + header + buffers), scaled to bytes per second at the source's fps;
(c) ``publish``: the first ``pose/``, ``sim/`` and ``fit/`` messages of that run published again 2000
    times each on a publisher of their own, on one thread (no GIL waits), microseconds per message;
(d) ``memory``: resident set size after building the model, and its growth while the pipeline ran
    (compare ``--sources 1`` with ``--sources 4`` for the cost of a source with
    ``source.file_queue_size`` decoded frames queued).

Analytics cost: ``python -m engine.tools.bench_analytics``; JPEG ``frame/`` cost:
``python -m engine.tools.bench_frames``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import zmq

from engine.config import Config, load_config
from engine.models.base import load_model_class
from engine.pipeline import Pipeline
from engine.sources import build_sources


def _rss_mib() -> float:
    """Resident set size now, MiB (``/proc/self/statm``; peak RSS where that is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_ms(spec: str, config: Config, frames: int) -> tuple[float, float | None, tuple[int, int]]:
    """``(ms per decoded frame, the source's fps, (height, width))`` over the first ``frames`` frames."""
    [source] = build_sources([spec], config.source)
    source.open()
    n, shape = 0, (0, 0)
    t0 = time.perf_counter()
    try:
        for frame in source.frames():
            shape = frame.image.shape[:2]
            n += 1
            if n >= frames:
                break
    finally:
        dt = time.perf_counter() - t0
        source.close()
    return 1000.0 * dt / max(1, n), source.fps, shape


def _count(endpoint: str, stop: threading.Event, counts: Counter[str], sizes: Counter[str]) -> None:
    socket: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.connect(endpoint)
    try:
        while not stop.is_set() or socket.poll(200):
            if socket.poll(50):
                parts = socket.recv_multipart()
                kind = parts[0].split(b"/", 1)[0].decode("ascii")
                counts[kind] += 1
                sizes[kind] += sum(len(p) for p in parts)
    finally:
        socket.close(linger=0)


def pipeline_costs(specs: list[str], config: Config, model: Any) -> tuple[dict[str, Any], list[Any]]:
    """Run ``specs`` through the pipeline with ``model``; per-frame figures and the first message of each kind."""
    pipeline = Pipeline(config, build_sources(specs, config.source), model)
    samples: dict[str, Any] = {}
    inner = pipeline.publisher.publish

    def keep_first(message: Any) -> int:
        samples.setdefault(message.KIND, message)
        return inner(message)

    pipeline.publisher.publish = keep_first  # type: ignore[method-assign]
    pipeline.publisher.open()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    stop = threading.Event()
    counter = threading.Thread(target=_count, args=(pipeline.publisher.endpoint, stop, counts, sizes), daemon=True)
    counter.start()
    pipeline.publisher.wait_for_subscribers(1, 10.0)
    rss_before = _rss_mib()
    pipeline.start()
    peak = rss_before
    while not pipeline.join(timeout_s=0.1):
        peak = max(peak, _rss_mib())
    stop.set()
    counter.join(10)
    summary = pipeline.summary()
    frames = max(1, summary.frames)
    figures = {
        "frames": summary.frames, "pipeline_fps": summary.fps, "model_ms_per_frame": 1000 * pipeline.model_s / frames,
        "messages_per_frame": {k: counts[k] / frames for k in sorted(counts)},
        "bytes_per_frame": {k: sizes[k] / frames for k in sorted(sizes)},
        "rss_growth_while_running_mib": peak - rss_before,
    }
    return figures, [samples[k] for k in ("pose", "sim", "fit") if k in samples]


def publish_us(messages: list[Any], config: Config, repeats: int = 2000) -> dict[str, float]:
    """Microseconds per :meth:`Publisher.publish` of each message (encode + hand to ZeroMQ), one thread."""
    from engine.publisher import Publisher

    out = {}
    with Publisher(config.publisher) as publisher:
        for message in messages:
            t = time.perf_counter()
            for _ in range(repeats):
                publisher.publish(message)
            out[message.KIND] = 1e6 * (time.perf_counter() - t) / repeats
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints one JSON object with every figure."""
    parser = argparse.ArgumentParser(prog="python -m engine.tools.bench_camera", description=__doc__)
    parser.add_argument("source", metavar="SOURCE", help="a file (its first --frames frames are used)")
    parser.add_argument("--frames", type=int, default=90, help="frames decoded for (a)")
    parser.add_argument("--sources", type=int, default=1, help="copies of SOURCE in the pipeline run (b)")
    parser.add_argument("--set", "-s", action="append", metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    config = load_config(None, ["publisher.endpoint=tcp://127.0.0.1:*", "sinks=[]", *(args.set or [])])
    ms, fps, (height, width) = decode_ms(args.source, config, args.frames)
    rss0 = _rss_mib()
    model = load_model_class(config.model.name).from_config(config.model)
    model.build()
    rss_model = _rss_mib()
    figures, samples = pipeline_costs([f"cam{i}={args.source}" for i in range(args.sources)], config, model)
    out = {
        "source": args.source, "width": width, "height": height, "fps": fps, "decode_ms_per_frame": ms,
        "model": config.model.name, "device": model.device, "sources": args.sources, **figures,
        "bytes_per_s_at_source_fps": {k: v * (fps or 30.0) for k, v in figures["bytes_per_frame"].items()},
        "publish_us_per_message": publish_us(samples, config),
        "rss_before_model_mib": rss0, "rss_model_mib": rss_model - rss0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
