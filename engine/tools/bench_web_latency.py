"""Browser latency of the ``web`` sink: capture -> skeleton drawn in Chromium vs capture -> engine publish.

A live-like source: ffmpeg serves a clip as an MPEG-TS stream over HTTP paced at its frame rate
(``-re -stream_loop -1 ... -listen 1 http://127.0.0.1:PORT/``), so batsight reads it as a live URL
(drop-oldest queue, wall-clock capture times). ``batsight run URL --sink web:port=0`` serves the
pages; headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright) opens the overlay,
which records for each skeleton it draws ``Date.now() - capture_time_ns / 1e6`` (capture -> drawn)
and ``(publish_time_ns - capture_time_ns) / 1e6`` (capture -> publish), ``window.batsightLatency``.
Both clocks are this machine's Unix clock. Prints p50 / p99 of both and of their per-frame
difference (what the sink, the WebSocket and the page add), against one frame interval.

    python -m engine.tools.bench_web_latency [CLIP] [--frames 150] [--set model.imgsz=320]
        [--screenshots docs/]

``--screenshots DIR`` also saves ``web_coach.png`` (the coach's view) and ``web_overlay.png`` (the
overlay with ``preview=1``, the video under it) once a shot was labelled (or at the end).
This tool runs batsight as a subprocess and imports nothing from ``sinks``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

DEFAULT_CLIP = Path(__file__).resolve().parents[2].parent / "shared/data/real/clips/cricket/cover_drive_04_nets.mp4"
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clip_fps(clip: Path) -> float:
    import av

    with av.open(str(clip)) as container:
        return float(container.streams.video[0].average_rate or 30)


def _serve_clip(clip: Path, port: int) -> subprocess.Popen:
    """ffmpeg: the clip looped, paced at its frame rate, as MPEG-TS on one HTTP connection."""
    return subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-an", "-c:v", "libx264",
         "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-f", "mpegts", "-listen", "1",
         f"http://127.0.0.1:{port}/"],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )


def _start_batsight(url: str, sets: list[str]) -> tuple[subprocess.Popen, list[str], threading.Event]:
    args = [sys.executable, "-m", "engine.cli", "run", f"live={url}", "--no-progress", "--sink", "web:port=0",
            "--set", "publisher.endpoint=tcp://127.0.0.1:0"]
    for item in sets:
        args += ["--set", item]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert process.stderr is not None  # noqa: S101 - piped above
        for line in process.stderr:
            lines.append(line)
            if "coach view" in line:
                seen.set()
        seen.set()

    threading.Thread(target=read, daemon=True).start()
    return process, lines, seen


def _percentiles(values: np.ndarray) -> str:
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the latency table. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--frames", type=int, default=150, help="skeletons drawn to measure")
    parser.add_argument("--warmup", type=int, default=20, help="first drawn skeletons left out")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="batsight config override")
    parser.add_argument("--screenshots", type=Path, help="save web_coach.png and web_overlay.png here")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    fps = _clip_fps(args.clip)
    port = _free_port()
    ffmpeg = _serve_clip(args.clip, port)
    engine, lines, seen = _start_batsight(f"http://127.0.0.1:{port}/", args.sets)
    try:
        if not seen.wait(args.timeout_s) or not any("coach view" in line for line in lines):
            sys.stderr.write("".join(lines))
            return 1
        base = next(line for line in lines if "coach view" in line).split("coach view ", 1)[1].strip().rstrip("/")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            overlay = browser.new_page(viewport={"width": 1920, "height": 1080})
            overlay.goto(f"{base}/overlay?source=live")
            coach = browser.new_page(viewport={"width": 1600, "height": 1000}) if args.screenshots else None
            if coach is not None:
                coach.goto(f"{base}/")
            overlay.wait_for_function(f"window.batsightLatency.drawn_ms.length >= {args.frames + args.warmup}",
                                      timeout=args.timeout_s * 1000, polling=200)
            latency = overlay.evaluate("window.batsightLatency")
            if coach is not None:
                _screenshots(browser, coach, base, args.screenshots, args.timeout_s)
            browser.close()
    finally:
        for process in (engine, ffmpeg):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in (engine, ffmpeg):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    _report(latency, args, fps)
    return 0


def _screenshots(browser, coach, base: str, folder: Path, timeout_s: float) -> None:
    """The coach's view once a shot is listed (or after ``timeout_s``), and the overlay in preview mode."""
    folder.mkdir(parents=True, exist_ok=True)
    preview = browser.new_page(viewport={"width": 1280, "height": 720})
    preview.goto(f"{base}/overlay?source=live&width=1280&height=720&preview=1&label_s=3600")
    try:
        coach.wait_for_function("document.querySelectorAll('#shots tbody tr').length >= 1",
                                timeout=timeout_s * 1000, polling=500)
        preview.wait_for_function("(window.batsight.labelShown || 0) >= 1", timeout=timeout_s * 1000, polling=500)
    except Exception as exc:  # noqa: BLE001 - a clip without a shot still gets its pictures
        sys.stderr.write(f"no shot labelled in time ({type(exc).__name__}); screenshots without one\n")
    preview.wait_for_function("(window.batsight.draws.skeleton || 0) >= 1", timeout=timeout_s * 1000)
    coach.screenshot(path=str(folder / "web_coach.png"))
    preview.screenshot(path=str(folder / "web_overlay.png"))


def _report(latency: dict, args: argparse.Namespace, fps: float) -> None:
    keep = slice(args.warmup, None)
    drawn = np.array(latency["drawn_ms"][keep], float)
    publish = np.array(latency["publish_ms"][keep], float)
    received = np.array(latency["received_ms"][keep], float)
    interval_ms = 1000.0 / fps
    added = drawn - publish
    out = {
        "frames": len(drawn), "frame_interval_ms": interval_ms,
        "capture_to_publish_ms": np.percentile(publish, [50, 99]).tolist(),
        "capture_to_received_ms": np.percentile(received, [50, 99]).tolist(),
        "capture_to_drawn_ms": np.percentile(drawn, [50, 99]).tolist(),
        "publish_to_drawn_ms": np.percentile(added, [50, 99]).tolist(),
    }
    print(f"clip {args.clip.name} at {fps:g} fps (frame interval {interval_ms:.1f} ms), {len(drawn)} skeletons drawn")
    print(f"capture -> engine publish   {_percentiles(publish)}")
    print(f"capture -> page received    {_percentiles(received)}")
    print(f"capture -> skeleton drawn   {_percentiles(drawn)}")
    print(f"added by sink + page        {_percentiles(added)}   (budget: one frame interval, {interval_ms:.1f} ms)")
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
