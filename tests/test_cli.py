"""The command line: one-line errors with the right exit status, no tracebacks, no hangs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers import free_endpoint


def batsight(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def _one_error_line(stderr: str, fragment: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("batsight: error:")]
    assert len(errors) == 1, stderr
    assert fragment in errors[0], stderr


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        (["run", "--sink", "nosuch"], 2, "unknown sink 'nosuch'; available: console, jsonl"),
        (["run", "--set", "model.imgsz=100"], 2, "model.imgsz: must be a multiple of 32"),
        (["run", "--set", "analytics.wrist=kp9"], 2, "analytics.wrist"),
        (["run", "--config", "nothere.yaml"], 2, "cannot read config file nothere.yaml"),
        (["run", "--set", "model.weights=nothere-pose.pt"], 1, "cannot load YOLO weights 'nothere-pose.pt'"),
        (["run", "--sink", "jsonl:no/such/dir/out.jsonl"], 1, "no/such/dir"),
        (["run", "--set", "publisher.curve_secret_key_file=nothere.key_secret"], 2, "nothere.key_secret"),
        (["sink", "jsonl", "--path", "x.jsonl", "--curve-key", "k.key_secret"], 2, "--curve-key needs"),
    ],
)
def test_bad_usage_gives_one_clear_line(tmp_path, args, status, fragment):
    if args[0] == "run":
        args = [*args, "--set", f"publisher.endpoint={free_endpoint()}"]
    result = batsight(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == status, result.stderr
    _one_error_line(result.stderr, fragment)


def test_missing_and_unreadable_files_fail_cleanly(tmp_path):
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    result = batsight(
        "run", "missing.mp4", str(text_file), str(empty), "--no-progress", "--sink", f"jsonl:{out}",
        "--set", f"publisher.endpoint={free_endpoint()}", cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.search(r"^batsight: no frames in \d+\.\d s of running, dropped 0, corrupt \d+$", result.stdout, re.M)
    assert "  missing: 0 frames, batter found -, shots 0" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("batsight: error:")]
    assert len(errors) == 3
    assert any("missing: file not found: missing.mp4" in e for e in errors)
    assert any("notes:" in e and "notes.mp4" in e for e in errors)
    assert any("empty:" in e and "empty.mp4" in e for e in errors)
    eos = [json.loads(line) for line in out.read_text().splitlines() if '"kind":"eos"' in line]
    assert sorted(e["source_id"] for e in eos) == ["empty", "missing", "notes"]
    assert all(e["reason"] == "error" and e["error"] for e in eos)


def _blank_video(path: Path, n: int = 12) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(n):
            image = np.full((240, 320, 3), 90 + i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_no_person_gives_explicit_no_batter_results(tmp_path):
    clip = tmp_path / "empty_nets.mp4"
    _blank_video(clip)
    out = tmp_path / "out.jsonl"
    result = batsight(
        "run", str(clip), "--no-progress", "--sink", f"jsonl:{out}",
        "--set", f"publisher.endpoint={free_endpoint()}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    poses = [r for r in records if r["kind"] == "pose"]
    assert [r["frame_index"] for r in poses] == list(range(12))
    assert all(r["batter_found"] is False and r["track_id"] is None and r["n_persons"] == 0 for r in poses)
    assert not [r for r in records if r["kind"] in ("sim", "fit")]
    assert "batter found 0.0%" in result.stdout


def test_default_source_runs_end_to_end(tmp_path):
    out = tmp_path / "out.jsonl"
    result = batsight(
        "run", "--no-progress", "--sink", f"jsonl:{out}", "--set", "source.default_frames=12",
        "--set", f"publisher.endpoint={free_endpoint()}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    poses = [json.loads(line) for line in out.read_text().splitlines() if '"kind":"pose"' in line]
    assert len(poses) == 12 and all(p["source_id"] == "default" for p in poses)
    assert sum(p["batter_found"] for p in poses) == 12  # real photos of people
    assert "default: 12 frames, batter found 100.0%" in result.stdout


def test_standalone_sink_process_receives_the_run_and_exits_when_the_engine_stops(tmp_path):
    endpoint = free_endpoint()
    out = tmp_path / "separate.jsonl"
    sink = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sink", "jsonl", "--connect", endpoint, "--path", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        result = batsight(
            "run", "--no-progress", "--sink", "console", "--set", "source.default_frames=6",
            "--set", f"publisher.endpoint={endpoint}", "--set", "publisher.min_subscribers=1", cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        _, sink_err = sink.communicate(timeout=30)
    finally:
        sink.kill()
    assert sink.returncode == 0, sink_err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame_index"] for r in records if r["kind"] == "pose"] == list(range(6))
    assert records[-1]["kind"] == "health" and records[-1]["engine_state"] == "stopped"


def _wait_for_lines(path: Path, n: int, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for _ in path.open()) >= n:
            return
        time.sleep(0.1)
    msg = f"{path} did not reach {n} lines"
    raise AssertionError(msg)


def _long_run(out: Path, cwd: Path) -> subprocess.Popen:
    """`batsight run` on a long default input, writing jsonl to ``out``."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "engine.cli", "run", "--no-progress", "--sink", f"jsonl:{out}",
            "--set", "source.default_frames=100000", "--set", f"publisher.endpoint={free_endpoint()}",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_with_eos_and_a_complete_jsonl(tmp_path, signum):
    import signal
    import time

    out = tmp_path / "out.jsonl"
    proc = _long_run(out, tmp_path)
    try:
        _wait_for_lines(out, 20, timeout_s=120)
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signum))
        stdout, stderr = proc.communicate(timeout=30)
        exit_s = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert exit_s < 15
    assert "Traceback" not in stderr and f"{signum} received" in stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]  # every line is valid JSON
    poses = [r for r in records if r["kind"] == "pose"]
    assert [r["frame_index"] for r in poses] == list(range(len(poses)))
    (eos,) = [r for r in records if r["kind"] == "eos"]
    assert eos["frames"] == len(poses) and eos["reason"] == "stopped"
    assert records[-1]["kind"] == "health" and records[-1]["engine_state"] == "stopped"
    assert f"default: {len(poses)} frames" in stdout


def test_a_second_signal_exits_at_once(tmp_path):
    import signal
    import time

    out = tmp_path / "out.jsonl"
    proc = _long_run(out, tmp_path)
    try:
        _wait_for_lines(out, 5, timeout_s=120)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # signals sent together coalesce into one
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr


def test_report_sink_live_and_report_command_offline_write_the_same_figures(tmp_path):
    out = tmp_path / "out.jsonl"
    live = tmp_path / "live"
    result = batsight(
        "run", "--no-progress", "--sink", f"jsonl:{out}", "--sink", f"report:{live}",
        "--set", "source.default_frames=12", "--set", f"publisher.endpoint={free_endpoint()}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    offline = tmp_path / "offline"
    report = batsight("report", str(out), "--out", str(offline), "--label", "default=other", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    names = {p.name for p in live.glob("*.png")}
    assert names == {"default_dependency_matrix.png", "default_wrist.png", "pair_similarity.png"}
    assert {p.name for p in offline.glob("*.png")} == names
    assert sorted(report.stdout.split()) == sorted(str(offline / n) for n in names)
    import matplotlib.image

    image = matplotlib.image.imread(live / "default_dependency_matrix.png")
    assert image.shape[0] > 500 and image.shape[1] > 500
    missing = batsight("report", "nothere.jsonl", "--out", str(offline), cwd=tmp_path)
    assert missing.returncode == 1
    _one_error_line(missing.stderr, "nothere.jsonl")


def test_sink_options_and_duplicate_ids_are_configuration_errors(tmp_path):
    for args, fragment in (
        (["sink", "jsonl"], "sink 'jsonl' requires option 'path'"),
        (["sink", "console", "-o", "interval_s=0"], "interval_s"),
        (["run", "--sink", "jsonl"], "requires option 'path'"),
        (["run", "a=x.mp4", "a=y.mp4"], "source id 'a' is given twice"),
        (["run", "bad id=x.mp4"], "'bad id' is not a valid source id"),
        (["run", "--sink", "jsonl:a.jsonl", "--sink", "jsonl:a.jsonl"], "sink 'jsonl:a.jsonl' is given twice"),
        (["run", "--sink", "jsonl:a.jsonl", "--sink", "jsonl:path= a.jsonl"], "(also as 'jsonl:a.jsonl')"),
        (["run", "--set", "sink_error_policies={jsnl: skip}"], "unknown sink 'jsnl'"),
        (["report", "x.jsonl", "--out", "figs", "--label", "nets"], "--label must be SOURCE_ID=VALUE, got 'nets'"),
    ):
        result = batsight(*args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        _one_error_line(result.stderr, fragment)


@pytest.mark.parametrize("spec", ["jsonl:-", "jsonl:path= -"])
def test_jsonl_to_stdout_stays_pure_json(tmp_path, spec):
    result = batsight(
        "run", "--no-progress", "--sink", spec, "--set", "source.default_frames=3",
        "--set", f"publisher.endpoint={free_endpoint()}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]  # nothing else on stdout
    assert [r["frame_index"] for r in records if r["kind"] == "pose"] == [0, 1, 2]
    assert records[-1]["kind"] == "health" and records[-1]["engine_state"] == "stopped"
    assert "batsight: 3 frames" in result.stderr


def test_file_sources_get_a_progress_bar(tmp_path):
    clip = tmp_path / "clip.mp4"
    _blank_video(clip, n=12)
    endpoint = free_endpoint()
    result = batsight("run", str(clip), "--sink", "console", "--set", f"publisher.endpoint={endpoint}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "12/12" in result.stderr and "frame" in result.stderr


def test_a_taken_port_fails_before_the_model_loads(tmp_path):
    import time

    import zmq

    endpoint = free_endpoint()
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.PUB)
    squatter.bind(endpoint)
    try:
        t = time.monotonic()
        result = batsight("run", "--set", f"publisher.endpoint={endpoint}", cwd=tmp_path, timeout=60)
        elapsed_s = time.monotonic() - t
    finally:
        squatter.close(0)
        ctx.term()
    assert result.returncode == 1
    _one_error_line(result.stderr, "Address already in use")
    assert elapsed_s < 30  # no model load, no frames: the error comes first


def test_report_dpi_must_be_positive_and_version_is_printed(tmp_path):
    result = batsight("report", "x.jsonl", "--out", "figs", "--dpi", "0", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "--dpi: must be >= 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "figs").exists()
    from importlib.metadata import version

    result = batsight("--version", cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"batsight {version('batsight')}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_failing_sink_still_gets_the_run_summary(tmp_path):
    result = batsight(
        "run", "--no-progress", "--sink", "jsonl:/dev/full", "--set", "source.default_frames=4",
        "--set", f"publisher.endpoint={free_endpoint()}", cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "batsight: 4 frames in" in result.stdout  # the sources finished: their summary is printed
    _one_error_line(result.stderr, "sink jsonl: ")
    assert "No space left on device" in result.stderr
