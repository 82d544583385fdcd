"""The command line: one-line errors with the right exit status, no tracebacks, no hangs.

Most tests run ``engine.cli.main`` in this process (the ``cli`` fixture) with the ``test_fake`` model
backend (the ``fake_model`` fixture), so neither a new interpreter nor YOLO is loaded. A subprocess
is kept where the process itself is the point: exit statuses as a shell sees them, signals, a
stdout that carries only data, the standalone ``batsight sink`` process, and one end-to-end run of
the default input with the real model.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers import ANY_PORT, FAKE_MODEL, port_taken, retry_if_port_taken, subprocess_env, wait_until

#: ``--set`` arguments selecting the fake model backend (needs the ``fake_model`` fixture, or
#: ``subprocess_env(fake_model_site)`` for a subprocess).
FAKE = ("--set", f"model.name={FAKE_MODEL}")
#: ``--set`` arguments binding the publisher to any free loopback port.
ANY = ("--set", f"publisher.endpoint={ANY_PORT}")


def batsight(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``batsight ARGS`` as a subprocess (this checkout's code, ``env`` or :func:`subprocess_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env=env or subprocess_env(),
    )


def _one_error_line(stderr: str, fragment: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("batsight: error:")]
    assert len(errors) == 1, stderr
    assert fragment in errors[0], stderr


_INSTALLED_SINKS = sorted({e.name for e in importlib.metadata.entry_points(group="batsight.sinks")})

BAD_USAGE = [
    # the installed batsight.sinks entry points, read with importlib.metadata
    (["run", "--sink", "nosuch"], 2, f"unknown sink 'nosuch'; available: {', '.join(_INSTALLED_SINKS)}"),
    (["run", "--set", "model.imgsz=100"], 2, "model.imgsz: must be a multiple of 32"),
    (["run", "--set", "analytics.wrist=kp9"], 2, "analytics.wrist"),
    (["run", "--config", "nothere.yaml"], 2, "cannot read config file nothere.yaml"),
    (["run", "--set", "model.weights=nothere-pose.pt"], 1, "cannot load YOLO weights 'nothere-pose.pt'"),
    (["run", "--sink", "jsonl:no/such/dir/out.jsonl"], 1, "no/such/dir"),
    (["run", "--set", "publisher.curve_secret_key_file=nothere.key_secret"], 2, "nothere.key_secret"),
    (["sink", "jsonl", "--path", "x.jsonl", "--curve-key", "k.key_secret"], 2, "--curve-key needs"),
]


@pytest.mark.parametrize(("args", "status", "fragment"), BAD_USAGE)
def test_bad_usage_gives_one_clear_line(cli, args, status, fragment):
    if args[0] == "run":
        args = [*args, *ANY]
    result = cli(*args)
    assert result.returncode == status, result.stderr
    _one_error_line(result.stderr, fragment)


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        BAD_USAGE[0],  # main() returns 2
        BAD_USAGE[5],  # main() returns 1
        (["report", "x.jsonl", "--out", "figs", "--dpi", "0"], 2, "--dpi: must be >= 1, got 0"),  # argparse exits
        (["--version"], 0, ""),
    ],
)
def test_the_shell_sees_the_exit_status(tmp_path, args, status, fragment):
    if args[0] == "run":
        args = [*args, *ANY]
    result = batsight(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    if args[0] == "run":
        _one_error_line(result.stderr, fragment)
    elif status:
        assert fragment in result.stderr
    else:
        assert result.stdout.startswith("batsight ")


def test_missing_and_unreadable_files_fail_cleanly(cli, fake_model, tmp_path):
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    result = cli(
        "run", "missing.mp4", str(text_file), str(empty), "--no-progress", "--sink", f"jsonl:{out}", *ANY, *FAKE
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
    # each failure is also said when it happens (a live run beside it may go on for hours)
    logged = [line for line in result.stderr.splitlines() if "failed:" in line and "(the other sources go on)" in line]
    assert len(logged) == 3 and any("source missing failed: file not found: missing.mp4" in line for line in logged)
    eos = [json.loads(line) for line in out.read_text().splitlines() if '"kind":"eos"' in line]
    assert sorted(e["source_id"] for e in eos) == ["empty", "missing", "notes"]
    assert all(e["reason"] == "error" and e["error"] for e in eos)


def test_two_servers_on_free_ports_are_not_the_same_sink(cli, fake_model, tmp_path):
    clip = tmp_path / "clip.mp4"
    _blank_video(clip, n=4)
    args = ("run", str(clip), "--no-progress", *ANY, *FAKE)
    assert cli(*args, "--sink", "metrics:0", "--sink", "metrics:0").returncode == 0  # two free ports
    refused = cli(*args, "--sink", "metrics:9", "--sink", "metrics:9")
    assert refused.returncode == 2 and "is given twice" in refused.stderr


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


def test_no_person_gives_explicit_no_batter_results(cli, tmp_path):
    """The real model (YOLO) on blank frames finds nobody; every frame still gets its pose record."""
    clip = tmp_path / "empty_nets.mp4"
    _blank_video(clip)
    out = tmp_path / "out.jsonl"
    result = cli("run", str(clip), "--no-progress", "--sink", f"jsonl:{out}", *ANY)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    poses = [r for r in records if r["kind"] == "pose"]
    assert [r["frame_index"] for r in poses] == list(range(12))
    assert all(r["batter_found"] is False and r["track_id"] is None and r["n_persons"] == 0 for r in poses)
    assert not [r for r in records if r["kind"] in ("sim", "fit")]
    assert "batter found 0.0%" in result.stdout


def test_default_source_runs_end_to_end(tmp_path):
    """The console script, the built-in default input and the real model, once, as a user runs them."""
    out = tmp_path / "out.jsonl"
    result = batsight(
        "run", "--no-progress", "--sink", f"jsonl:{out}", "--set", "source.default_frames=12", *ANY, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    poses = [json.loads(line) for line in out.read_text().splitlines() if '"kind":"pose"' in line]
    assert len(poses) == 12 and all(p["source_id"] == "default" for p in poses)
    assert sum(p["batter_found"] for p in poses) == 12  # real photos of people
    assert "default: 12 frames, batter found 100.0%" in result.stdout


def test_standalone_sink_process_receives_the_run_and_exits_when_the_engine_stops(tmp_path, fake_model_site):
    env = subprocess_env(fake_model_site)

    def attempt(endpoint: str) -> tuple[subprocess.CompletedProcess, int | None, str, Path]:
        out = tmp_path / f"separate-{endpoint.rsplit(':', 1)[1]}.jsonl"
        sink = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "sink", "jsonl", "--connect", endpoint, "--path", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
        )
        sink_err = ""
        try:
            result = batsight(
                "run", "--no-progress", "--sink", "console", "--set", "source.default_frames=6", *FAKE,
                "--set", f"publisher.endpoint={endpoint}", "--set", "publisher.min_subscribers=1",
                cwd=tmp_path, env=env,
            )
            if result.returncode == 0:
                _, sink_err = sink.communicate(timeout=60)
        finally:
            sink.kill()
            sink.wait(10)
        return result, sink.returncode, sink_err, out

    result, sink_status, sink_err, out = retry_if_port_taken(attempt, lambda r: port_taken(r[0]))
    assert result.returncode == 0, result.stderr
    assert sink_status == 0, sink_err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame_index"] for r in records if r["kind"] == "pose"] == list(range(6))
    assert records[-1]["kind"] == "health" and records[-1]["engine_state"] == "stopped"


class _Process:
    """A ``batsight`` subprocess whose stdout and stderr are read line by line as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for_stderr(self, fragment: str, timeout_s: float) -> None:
        """Wait until a stderr line contains ``fragment`` (a generous safety bound, not a speed check)."""
        wait_until(lambda: any(fragment in line for line in self.err), timeout_s, f"stderr line with {fragment!r}")

    def finish(self, timeout_s: float) -> tuple[str, str]:
        """Wait for the exit (raises ``TimeoutExpired`` after the generous ``timeout_s``); ``(stdout, stderr)``."""
        self.proc.wait(timeout_s)
        for reader in self.readers:
            reader.join(10)
        return "".join(self.out), "".join(self.err)

    def kill(self) -> None:
        """Kill the process if it is still running."""
        self.proc.kill()
        self.proc.wait(10)


def _wait_for_lines(path: Path, n: int, timeout_s: float) -> None:
    wait_until(lambda: path.exists() and sum(1 for _ in path.open()) >= n, timeout_s, f"{path} with {n} lines")


def _long_run(out: Path, cwd: Path, site: Path, model_delay_s: float) -> _Process:
    """``batsight run`` on a long default input with the fake model (``model_delay_s`` per call), jsonl to ``out``."""
    return _Process(
        [
            "run", "--no-progress", "--sink", f"jsonl:{out}", "--set", "source.default_frames=100000", *ANY,
            *FAKE, "--set", f"model.fake_delay_s={model_delay_s}",
        ],
        cwd, subprocess_env(site),
    )


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_with_eos_and_a_complete_jsonl(tmp_path, fake_model_site, signum):
    import signal

    out = tmp_path / "out.jsonl"
    proc = _long_run(out, tmp_path, fake_model_site, model_delay_s=0.02)
    try:
        _wait_for_lines(out, 20, timeout_s=120)
        proc.proc.send_signal(getattr(signal, signum))
        stdout, stderr = proc.finish(timeout_s=120)  # a safety bound: the events below are the checks
    finally:
        proc.kill()
    assert proc.proc.returncode == 0, stderr
    assert "Traceback" not in stderr and f"{signum} received" in stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]  # every line is valid JSON
    poses = [r for r in records if r["kind"] == "pose"]
    assert [r["frame_index"] for r in poses] == list(range(len(poses)))
    assert 0 < len(poses) < 100_000  # stopped by the signal, not by the end of the input
    (eos,) = [r for r in records if r["kind"] == "eos"]
    assert eos["frames"] == len(poses) and eos["reason"] == "stopped"
    assert records[-1]["kind"] == "health" and records[-1]["engine_state"] == "stopped"
    assert f"default: {len(poses)} frames" in stdout


def test_a_second_signal_exits_at_once(tmp_path, fake_model_site):
    import signal

    out = tmp_path / "out.jsonl"
    # A model call takes 2 s, so the graceful stop after the first signal (the call in flight and the
    # queued frames) is still going on when the second signal comes.
    proc = _long_run(out, tmp_path, fake_model_site, model_delay_s=2.0)
    try:
        _wait_for_lines(out, 5, timeout_s=120)
        proc.proc.send_signal(signal.SIGINT)
        proc.wait_for_stderr("SIGINT received", timeout_s=60)  # handled: a second one is not coalesced with it
        proc.proc.send_signal(signal.SIGINT)
        _, stderr = proc.finish(timeout_s=60)
    finally:
        proc.kill()
    assert proc.proc.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    eos = [line for line in out.read_text().splitlines() if '"kind":"eos"' in line]
    assert not eos  # it exited at once: the graceful stop never finished


def test_report_sink_live_and_report_command_offline_write_the_same_figures(cli, fake_model, tmp_path):
    out = tmp_path / "out.jsonl"
    live = tmp_path / "live"
    result = cli(
        "run", "--no-progress", "--sink", f"jsonl:{out}", "--sink", f"report:{live}",
        "--set", "source.default_frames=12", *ANY, *FAKE,
    )
    assert result.returncode == 0, result.stderr
    offline = tmp_path / "offline"
    report = cli("report", str(out), "--out", str(offline), "--label", "default=other")
    assert report.returncode == 0, report.stderr
    names = {p.name for p in live.glob("*.png")}
    assert names == {"default_dependency_matrix.png", "default_wrist.png", "pair_similarity.png"}
    assert {p.name for p in offline.glob("*.png")} == names
    assert sorted(report.stdout.split()) == sorted(str(offline / n) for n in names)
    import matplotlib.image

    image = matplotlib.image.imread(live / "default_dependency_matrix.png")
    assert image.shape[0] > 500 and image.shape[1] > 500
    missing = cli("report", "nothere.jsonl", "--out", str(offline))
    assert missing.returncode == 1
    _one_error_line(missing.stderr, "nothere.jsonl")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sink", "jsonl"], "sink 'jsonl' requires option 'path'"),
        (["sink", "console", "-o", "interval_s=0"], "interval_s"),
        (["run", "--sink", "jsonl"], "requires option 'path'"),
        (["run", "a=x.mp4", "a=y.mp4"], "source id 'a' is given twice"),
        (["run", "bad id=x.mp4"], "'bad id' is not a valid source id"),
        (["run", "--sink", "jsonl:a.jsonl", "--sink", "jsonl:a.jsonl"], "sink 'jsonl:a.jsonl' is given twice"),
        (["run", "--sink", "jsonl:a.jsonl", "--sink", "jsonl:path= a.jsonl"], "(also as 'jsonl:a.jsonl')"),
        (["run", "--set", "sink_error_policies={jsnl: skip}"], "unknown sink 'jsnl'"),
        (["report", "x.jsonl", "--out", "figs", "--label", "nets"], "--label must be SOURCE_ID=VALUE, got 'nets'"),
    ],
)
def test_sink_options_and_duplicate_ids_are_configuration_errors(cli, args, fragment):
    if args[0] == "run":
        args = [*args, *ANY]  # refused before the publisher binds; never the default port, should it not be
    result = cli(*args)
    assert result.returncode == 2, (args, result.stderr)
    _one_error_line(result.stderr, fragment)


@pytest.mark.parametrize("spec", ["jsonl:-", "jsonl:path= -"])
def test_jsonl_to_stdout_stays_pure_json(tmp_path, fake_model_site, spec):
    result = batsight(
        "run", "--no-progress", "--sink", spec, "--set", "source.default_frames=3", *ANY, *FAKE,
        cwd=tmp_path, env=subprocess_env(fake_model_site),
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]  # nothing else on stdout
    assert [r["frame_index"] for r in records if r["kind"] == "pose"] == [0, 1, 2]
    assert records[-1]["kind"] == "health" and records[-1]["engine_state"] == "stopped"
    assert "batsight: 3 frames" in result.stderr


def test_file_sources_get_a_progress_bar(cli, fake_model, tmp_path):
    clip = tmp_path / "clip.mp4"
    _blank_video(clip, n=12)
    # one frame per model call of at least 50 ms: the run lasts longer than the bar's first refresh
    result = cli(
        "run", str(clip), "--sink", "console", *ANY, *FAKE,
        "--set", "model.fake_delay_s=0.05", "--set", "batch.max_batch=1",
    )
    assert result.returncode == 0, result.stderr
    assert "12/12" in result.stderr and "frame" in result.stderr


def test_a_taken_port_fails_before_the_model_loads(cli, fake_model):
    import zmq

    ctx = zmq.Context()
    squatter = ctx.socket(zmq.PUB)
    squatter.bind(ANY_PORT)
    endpoint = squatter.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        result = cli("run", "--set", f"publisher.endpoint={endpoint}", *FAKE)
    finally:
        squatter.close(0)
        ctx.term()
    assert result.returncode == 1
    _one_error_line(result.stderr, "Address already in use")
    # no model load, no frames: the error comes first
    assert len(fake_model.instances) == 1 and not fake_model.instances[0].built
    assert fake_model.instances[0].calls == []


def test_report_dpi_must_be_positive_and_version_is_printed(cli, tmp_path):
    result = cli("report", "x.jsonl", "--out", "figs", "--dpi", "0")
    assert result.returncode == 2 and "--dpi: must be >= 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "figs").exists()
    from importlib.metadata import version

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"batsight {version('batsight')}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_failing_sink_still_gets_the_run_summary(cli, fake_model):
    result = cli("run", "--no-progress", "--sink", "jsonl:/dev/full", "--set", "source.default_frames=4", *ANY, *FAKE)
    assert result.returncode == 1
    assert "batsight: 4 frames in" in result.stdout  # the sources finished: their summary is printed
    _one_error_line(result.stderr, "sink jsonl: ")
    assert "No space left on device" in result.stderr


@pytest.mark.parametrize(
    ("sinks", "shared"),
    [
        (["csv:a.csv", "jsonl:./a.csv"], "a.csv"),  # two kinds of sink, one file written differently
        (["jsonl:dup.jsonl", "jsonl:./dup.jsonl"], "dup.jsonl"),  # one kind, one file spelt two ways (issue 12)
        (["csv:a.csv", "csv:path=a_shots.csv"], "a_shots.csv"),  # the first one's derived shots file
        (["video:out", "report:out_dir=./out"], "out"),  # two folders that are one
    ],
)
def test_two_sinks_that_would_write_one_path_are_refused(cli, tmp_path, monkeypatch, sinks, shared):
    monkeypatch.chdir(tmp_path)
    args = [arg for spec in sinks for arg in ("--sink", spec)]
    result = cli("run", "--no-progress", *args, *ANY)
    assert result.returncode == 2, result.stderr
    _one_error_line(result.stderr, f"would both write {str(tmp_path / shared)!r}")
    assert not list(tmp_path.iterdir())  # refused before anything was opened


def test_a_sink_that_draws_on_video_warns_when_frames_are_off(cli, fake_model, tmp_path):
    out = tmp_path / "video"
    result = cli("run", "--no-progress", "--sink", f"video:{out}", "--set", "publisher.frames=off",
                 "--set", "source.default_frames=3", *ANY, *FAKE)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "publisher.frames is off" in line]
    assert len(warnings) == 1 and f"video:{out}" in warnings[0]
    assert not list(out.glob("*.mp4"))  # what the warning announced: no frames, no video


# --- issue 12: errors that were tracebacks or wrong --------------------------------------------


def test_a_config_file_that_is_not_utf8_is_one_line_exit_2(cli, tmp_path):
    head = b"model:\n  imgsz: 320  # caf"
    (tmp_path / "latin1.yaml").write_bytes(head + "\xe9\n".encode("latin-1"))
    result = cli("run", "--config", "latin1.yaml", *ANY)
    assert result.returncode == 2, result.stderr
    _one_error_line(result.stderr, f"config file latin1.yaml is not UTF-8 text: byte 0xe9 at offset {len(head)}")


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:99999", "tcp://localhost:65536"])
def test_a_publisher_port_out_of_range_is_refused(cli, endpoint):
    result = cli("run", "--set", f"publisher.endpoint={endpoint}")
    assert result.returncode == 2, result.stderr
    _one_error_line(result.stderr, "publisher.endpoint: port must be 0-65535 or *")


def test_a_video_given_as_weights_is_a_clear_error(cli, tmp_path):
    _blank_video(tmp_path / "clip.mp4", n=2)
    result = cli("run", "clip.mp4", "--set", "model.weights=clip.mp4", *ANY)
    assert result.returncode == 1, result.stderr
    _one_error_line(result.stderr, "cannot load YOLO weights 'clip.mp4': expected a model file (.pt, ")


def test_weights_that_are_no_local_file_are_refused_without_a_download(cli, monkeypatch):
    import ultralytics

    def no_yolo(*args: object, **kwargs: object) -> None:
        msg = "Ultralytics must not be asked for weights that are not a local file"
        raise AssertionError(msg)

    monkeypatch.setattr(ultralytics, "YOLO", no_yolo)
    result = cli("run", "--set", "model.weights=yolo11s-pose.pt", *ANY)  # a name Ultralytics would download
    assert result.returncode == 1, result.stderr
    _one_error_line(result.stderr, "no such local file")
    assert "never downloads" in result.stderr


def test_a_report_folder_that_is_a_file_says_so(cli, fake_model, tmp_path):
    (tmp_path / "taken").write_text("x")
    result = cli("run", "--sink", "report:taken", *ANY, *FAKE)
    assert result.returncode == 1, result.stderr
    _one_error_line(result.stderr, "cannot create report folder 'taken': it exists and is not a folder")
    assert "File exists" not in result.stderr
