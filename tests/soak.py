"""Soak run (not a unit test): a looping RTSP camera with periodic outages plus a long file source.

    python -m tests.soak --minutes 20 [--outage-every-s 60] [--outage-s 5] [--imgsz 640] [--model yolo|fake]

Starts a real RTSP server on 127.0.0.1 (Debian ``rtsp-server-perl`` fed by ``ffmpeg``, see
``tests/rtsp_server.py``), a file source made of a real nets clip looped with ``ffmpeg -stream_loop``,
and the whole pipeline with an independent subscriber. Every minute, and at the end, it prints the
camera's reconnects, drops, capture-to-publish latency p50 / p99 and the process's resident memory;
at the end it compares memory at the start and the end (after warm-up).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from engine.config import load_config
from engine.messages import Health
from engine.models.ultralytics_pose import UltralyticsPose
from engine.pipeline import Pipeline
from engine.testing import FakeKeypointModel
from sinks.runtime import Subscriber
from stream.pyav import FileSource, UrlSource
from tests.helpers import ANY_PORT
from tests.rtsp_server import RtspServer

CLIP = Path(__file__).resolve().parents[2] / "shared/data/real/clips/cricket/cover_drive_04_nets.mp4"


def _looped_clip(workdir: Path, minutes: float) -> Path:
    out = workdir / "long_nets.mp4"
    loops = int(minutes * 60 / 4.5) + 2
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", str(loops), "-i", str(CLIP), "-c", "copy", str(out)],
        check=True,
        timeout=300,
    )
    return out


class _Watcher:
    """Independent subscriber: latency of camera pose messages, last health, seq gaps."""

    def __init__(self, endpoint: str) -> None:
        self.sub = Subscriber(endpoint, ("pose/cam/", "health/"))
        self.sub.open()
        self.latency_s: list[float] = []
        self.health: Health | None = None
        self.gaps = 0
        self._next_seq: int | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.sub.recv(200)
            if m is None:
                continue
            if m.kind == "health":
                self.health = m
                continue
            if self._next_seq is not None and m.seq != self._next_seq:
                self.gaps += 1
            self._next_seq = m.seq + 1
            self.latency_s.append((m.publish_time_ns - m.capture_time_ns) / 1e9)

    def take_latencies(self) -> np.ndarray:
        out, self.latency_s = np.array(self.latency_s), []
        return out

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sub.close()


def _line(label: str, watcher: _Watcher, latencies: np.ndarray, rss_mb: float) -> str:
    sources = watcher.health.sources if watcher.health is not None else {}
    cam, nets = sources.get("cam"), sources.get("nets")
    p50, p99 = (np.percentile(latencies, [50, 99]) * 1000) if len(latencies) else (float("nan"),) * 2
    return (
        f"{label}: cam state {cam and cam.state}, reconnects {cam and cam.reconnects}, "
        f"frames {cam and cam.frames_out}, dropped {cam and cam.dropped} | latency p50 {p50:.0f} ms "
        f"p99 {p99:.0f} ms (n={len(latencies)}) | nets frames {nets and nets.frames_out} | rss {rss_mb:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its figures; exit status 0 when it ran to the end."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--outage-every-s", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--model", choices=("yolo", "fake"), default="yolo")
    args = parser.parse_args(argv)
    missing = RtspServer.missing_tools()
    if missing:
        sys.stderr.write(f"soak needs {', '.join(missing)} (apt-get install ffmpeg rtsp-server-perl)\n")
        return 2
    process = psutil.Process(os.getpid())
    with tempfile.TemporaryDirectory() as tmp, RtspServer(Path(tmp)) as server:
        clip = _looped_clip(Path(tmp), args.minutes)
        config = load_config(
            None,
            [
                f"publisher.endpoint={ANY_PORT}", "publisher.health_period_s=1.0", f"model.imgsz={args.imgsz}",
                "model.device=cpu", "source.rtsp_transport=udp", "source.read_timeout_s=2.0",
                "source.reconnect_initial_s=0.5", "source.reconnect_max_s=4.0",
            ],
        )
        model = UltralyticsPose.from_config(config.model) if args.model == "yolo" else FakeKeypointModel(delay_s=0.03)
        model.build()
        cam = UrlSource.from_spec(server.url, "cam", config.source)
        nets = FileSource.from_spec(str(clip), "nets", config.source)
        pipeline = Pipeline(config, [cam, nets], model)
        pipeline.publisher.open()  # binds a free port: the watcher connects to the one it got
        watcher = _Watcher(pipeline.publisher.endpoint)
        pipeline.start()
        started = time.monotonic()
        time.sleep(min(30.0, args.minutes * 60 / 4))  # warm-up: allocator, model caches, queues
        watcher.take_latencies()
        rss_start = process.memory_info().rss / 2**20
        print(_line("warm-up done", watcher, np.array([]), rss_start), flush=True)
        all_latencies: list[np.ndarray] = []
        next_outage = time.monotonic() + args.outage_every_s
        next_report = time.monotonic() + 60.0
        outages = 0
        while time.monotonic() - started < args.minutes * 60:
            now = time.monotonic()
            if now >= next_outage:
                server.stop_publisher()
                time.sleep(args.outage_s)
                server.start_publisher()
                outages += 1
                next_outage = time.monotonic() + args.outage_every_s
            if now >= next_report:
                lat = watcher.take_latencies()
                all_latencies.append(lat)
                elapsed_min = (now - started) / 60
                print(_line(f"t={elapsed_min:5.1f} min", watcher, lat, process.memory_info().rss / 2**20), flush=True)
                next_report = now + 60.0
            if not pipeline.readers[0].is_alive():
                print("camera reader thread ended unexpectedly", flush=True)
                break
            time.sleep(0.2)
        all_latencies.append(watcher.take_latencies())
        rss_end = process.memory_info().rss / 2**20
        pipeline.stop()
        pipeline.join(timeout_s=30)
        watcher.close()
        latencies = np.concatenate(all_latencies) if all_latencies else np.array([])
        summary = pipeline.summary()
        print(_line("end", watcher, latencies, rss_end))
        print(
            f"soak {args.minutes:g} min, {outages} outages of {args.outage_s:g} s: "
            f"cam reconnects {cam.reconnects}, cam frames {summary.per_source['cam'].frames}, "
            f"cam dropped {summary.per_source['cam'].dropped}, nets frames {summary.per_source['nets'].frames} "
            f"(lossless, dropped {summary.per_source['nets'].dropped}), subscriber seq gaps {watcher.gaps}, "
            f"latency p50 {np.percentile(latencies, 50) * 1000:.0f} ms "
            f"p99 {np.percentile(latencies, 99) * 1000:.0f} ms, "
            f"rss start {rss_start:.0f} MB end {rss_end:.0f} MB ({rss_end - rss_start:+.0f} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
