"""Soak run (a script, not a test): a live RTSP camera with an outage every minute beside a looping file.

    python -m tests.soak --minutes 60 [--window-min 10] [--outage-every-s 60] [--outage-s 5]
                         [--imgsz 640] [--model yolo|fake]

Starts a real RTSP server on 127.0.0.1 (Debian ``rtsp-server-perl`` fed by ``ffmpeg``, see
``tests/rtsp_server.py``) as source ``cam``, a file source ``nets`` made of a real nets clip looped
with ``ffmpeg -stream_loop`` (longer than the run), and the whole pipeline with an independent
subscriber. Every ``--window-min`` minutes it prints the camera's capture-to-publish latency p50 / p99
over that window and the process's resident memory; at the end it checks (exit status 1 when one fails):

* RSS drift: resident memory at the end within 5 % of the memory after the warm-up;
* reconnects = outages: the camera reconnected once per outage of its publisher;
* file frames lost = 0: every frame the ``nets`` reader took was published, and the subscriber got
  ``pose/nets/`` for frame indices 0, 1, 2, ... without a gap up to the source's ``eos/`` count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from engine.config import Config, load_config
from engine.messages import EndOfStream, Health, Pose
from engine.models.base import KeypointModel
from engine.models.ultralytics_pose import UltralyticsPose
from engine.pipeline import Pipeline
from engine.testing import FakeKeypointModel
from sinks.runtime import Subscriber
from stream.pyav import FileSource, UrlSource
from stream.pyav_base import PyAVSource
from tests.helpers import ANY_PORT
from tests.rtsp_server import RtspServer

CLIP = Path(__file__).resolve().parents[2] / "shared/data/real/clips/cricket/cover_drive_04_nets.mp4"
#: Largest accepted growth of resident memory from the end of the warm-up to the end, fraction.
MAX_RSS_DRIFT = 0.05


def _looped_clip(workdir: Path, minutes: float) -> Path:
    """``CLIP`` repeated (stream copy) to last longer than ``minutes`` of decoding at any speed."""
    out = workdir / "long_nets.mp4"
    loops = int(minutes * 60 / 4.5) + 2  # the clip is ~4.5 s of media; decoding is faster than real time
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", str(loops), "-i", str(CLIP), "-c", "copy", str(out)],
        check=True, timeout=300,
    )
    return out


@dataclass
class _Watcher:
    """Independent subscriber: camera latency per window, the file source's frame indices, last health."""

    endpoint: str
    latency_s: list[float] = field(default_factory=list)
    health: Health | None = None
    eos: dict[str, EndOfStream] = field(default_factory=dict)
    nets_next_frame: int = 0
    nets_frame_gaps: int = 0

    def start(self) -> None:
        self.sub = Subscriber(self.endpoint, ("pose/", "health/", "eos/"))
        self.sub.open()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.sub.recv(200)
            if isinstance(message, Health):
                self.health = message
            elif isinstance(message, EndOfStream):
                self.eos[message.source_id] = message
            elif isinstance(message, Pose) and message.source_id == "cam" and message.capture_time_ns is not None:
                self.latency_s.append((message.publish_time_ns - message.capture_time_ns) / 1e9)
            elif isinstance(message, Pose) and message.source_id == "nets":
                if message.frame_index != self.nets_next_frame:
                    self.nets_frame_gaps += 1
                self.nets_next_frame = (message.frame_index or 0) + 1

    def take_latencies(self) -> np.ndarray:
        out, self.latency_s = np.array(self.latency_s), []
        return out

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sub.close()


def _percentiles_ms(latencies: np.ndarray) -> str:
    if not len(latencies):
        return "p50 - p99 - (n=0)"
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return f"p50 {p50:.0f} ms p99 {p99:.0f} ms (n={len(latencies)})"


def _window_line(label: str, watcher: _Watcher, latencies: np.ndarray, rss_mib: float) -> str:
    sources = watcher.health.sources if watcher.health is not None else {}
    cam, nets = sources.get("cam"), sources.get("nets")
    return (
        f"{label}: cam latency {_percentiles_ms(latencies)} | cam {cam and cam.state}, reconnects "
        f"{cam and cam.reconnects}, frames {cam and cam.frames_out}, dropped {cam and cam.dropped} | "
        f"nets frames {nets and nets.frames_out} | rss {rss_mib:.0f} MiB"
    )


def _build(args: argparse.Namespace, server_url: str, clip: Path) -> tuple[Pipeline, PyAVSource]:
    config: Config = load_config(
        None,
        [
            f"publisher.endpoint={ANY_PORT}", "publisher.min_subscribers=3",  # the watcher's 3 topics: from frame 0
            "publisher.health_period_s=1.0", f"model.imgsz={args.imgsz}",
            "model.device=cpu", "source.rtsp_transport=udp", "source.read_timeout_s=2.0",
            "source.reconnect_initial_s=0.5", "source.reconnect_max_s=4.0",
        ],
    )
    model: KeypointModel = (
        UltralyticsPose.from_config(config.model) if args.model == "yolo" else FakeKeypointModel(delay_s=0.03)
    )
    model.build()
    cam = UrlSource.from_spec(server_url, "cam", config.source)
    nets = FileSource.from_spec(str(clip), "nets", config.source)
    return Pipeline(config, [cam, nets], model), cam


def _soak(args: argparse.Namespace, server: RtspServer, pipeline: Pipeline, watcher: _Watcher) -> tuple[int, float]:
    """Run for ``--minutes`` with the outages; print each window; return (outages, RSS after warm-up, MiB)."""
    process = psutil.Process(os.getpid())
    started = time.monotonic()
    # warm-up: allocator, model caches, queues, and the first outage + reconnect (the decoder's pools)
    warm_up_s = min(args.minutes * 60 / 2, args.outage_every_s + args.outage_s + 20.0)
    rss_start: float | None = None
    next_outage, next_report = started + args.outage_every_s, started + args.window_min * 60
    outages = 0
    while (now := time.monotonic()) - started < args.minutes * 60:
        if rss_start is None and now - started >= warm_up_s:
            rss_start = process.memory_info().rss / 2**20
            print(_window_line("warm-up done", watcher, watcher.take_latencies(), rss_start), flush=True)
        if now >= next_outage:
            server.stop_publisher()
            time.sleep(args.outage_s)
            server.start_publisher()
            outages += 1
            next_outage += args.outage_every_s
        if now >= next_report:
            rss, label = process.memory_info().rss / 2**20, f"t={(now - started) / 60:5.1f} min"
            print(_window_line(label, watcher, watcher.take_latencies(), rss), flush=True)
            next_report += args.window_min * 60
        if not pipeline.readers[0].is_alive():
            print("camera reader thread ended unexpectedly", flush=True)
            break
        time.sleep(0.2)
    rest, rss = watcher.take_latencies(), process.memory_info().rss / 2**20
    print(_window_line(f"t={(time.monotonic() - started) / 60:5.1f} min", watcher, rest, rss), flush=True)
    return outages, rss if rss_start is None else rss_start


def _checks(
    outages: int, cam: PyAVSource, rss_mib: tuple[float, float], pipeline: Pipeline, watcher: _Watcher
) -> list[str]:
    """One ``PASS``/``FAIL`` line per criterion of the module docstring (``rss_mib``: after warm-up, at the end)."""
    rss_start, rss_end = rss_mib
    summary = pipeline.summary().per_source
    nets_in = next(r for r in pipeline.readers if r.source_id == "nets").frames_in
    nets_out = summary["nets"].frames
    eos = watcher.eos.get("nets")
    drift = (rss_end - rss_start) / rss_start
    # The reader may hold one frame it read when the stop came, waiting for queue room; it is discarded
    # with the stop (batching.SourceReader), not lost from a running source.
    in_hand = 1 if eos is not None and eos.reason == "stopped" else 0
    unpublished = max(0, nets_in - nets_out - in_hand)
    lost = unpublished + summary["nets"].dropped + watcher.nets_frame_gaps
    lost += 0 if eos is None else eos.frames - watcher.nets_next_frame
    rows = [
        (abs(drift) < MAX_RSS_DRIFT, f"rss start {rss_start:.0f} MiB end {rss_end:.0f} MiB, drift {100 * drift:+.1f} % "
                                     f"(limit {100 * MAX_RSS_DRIFT:.0f} %)"),
        (cam.reconnects == outages, f"cam reconnects {cam.reconnects} = outages {outages}"),
        (lost == 0 and eos is not None, f"nets frames lost {lost}: read {nets_in} (at most 1 in hand at the stop), "
                                        f"published {nets_out}, subscriber got 0..{watcher.nets_next_frame - 1} with "
                                        f"{watcher.nets_frame_gaps} gaps, eos frames {eos and eos.frames}"),
    ]
    return [f"{'PASS' if ok else 'FAIL'} {text}" for ok, text in rows]


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print its windows and checks; exit status 0 when every check passes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--window-min", type=float, default=10.0, help="latency p50/p99 per this many minutes")
    parser.add_argument("--outage-every-s", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--model", choices=("yolo", "fake"), default="yolo")
    args = parser.parse_args(argv)
    missing = RtspServer.missing_tools()
    if missing or not CLIP.is_file():
        sys.stderr.write(f"soak needs {', '.join(missing) or CLIP} (apt-get install ffmpeg rtsp-server-perl)\n")
        return 2
    with tempfile.TemporaryDirectory() as tmp, RtspServer(Path(tmp)) as server:
        pipeline, cam = _build(args, server.url, _looped_clip(Path(tmp), args.minutes))
        pipeline.publisher.open()  # binds a free port: the watcher connects to the one it got
        watcher = _Watcher(pipeline.publisher.endpoint)
        watcher.start()
        pipeline.start()
        outages, rss_start = _soak(args, server, pipeline, watcher)
        deadline = time.monotonic() + 30.0  # the last outage's reconnect may still be on its way
        while cam.reconnects < outages and time.monotonic() < deadline:
            time.sleep(0.2)
        rss_end = psutil.Process(os.getpid()).memory_info().rss / 2**20
        pipeline.stop()
        pipeline.join(timeout_s=60)
        deadline = time.monotonic() + 30.0  # the subscriber takes the last eos/ (published before join returned)
        while "nets" not in watcher.eos and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher.close()
        checks = _checks(outages, cam, (rss_start, rss_end), pipeline, watcher)
    print(f"soak {args.minutes:g} min, model {args.model}, {outages} outages of {args.outage_s:g} s:")
    print("\n".join(checks), flush=True)
    return 0 if all(line.startswith("PASS") for line in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
