"""``batsight bench``: one JSON object whose ratios are the quotients of its fps figures."""

from __future__ import annotations

import json

import pytest

KEYS = {
    "source", "frames", "frame_width", "frame_height", "source_fps", "imgsz", "max_batch", "device", "backend",
    "ultralytics_fps", "model_fps", "pipeline_fps", "pipeline_vs_ultralytics", "pipeline_vs_model",
    "latency_p50_ms", "latency_p99_ms", "live_published", "live_dropped", "peak_rss_mib", "decode",
}


def test_bench_json_on_a_tiny_default_input(cli):
    result = cli(
        "bench", "--json", "--set", "source.default_frames=3", "--set", "model.backend=torch",
        "--set", "model.imgsz=160", "--set", "model.device=cpu", "--set", "batch.max_batch=2",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == KEYS
    assert (report["source"], report["frames"]) == ("default", 3)
    assert (report["frame_width"], report["frame_height"]) == (640, 480)
    assert (report["imgsz"], report["max_batch"], report["backend"], report["device"]) == (160, 2, "torch", "cpu")
    a, b, c = report["ultralytics_fps"], report["model_fps"], report["pipeline_fps"]
    assert min(a, b, c) > 0
    assert report["pipeline_vs_ultralytics"] == pytest.approx(c / a, rel=1e-9)
    assert report["pipeline_vs_model"] == pytest.approx(c / b, rel=1e-9)
    assert report["live_published"] + report["live_dropped"] == 3
    assert 0 <= report["latency_p50_ms"] <= report["latency_p99_ms"]
    assert report["peak_rss_mib"] > 0
    assert "bench: (b)" in result.stderr  # progress lines go to stderr, stdout is the JSON alone
