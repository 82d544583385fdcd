"""Tests of the source plugins in ``stream/``: PyAV files, URLs, webcams and the default source.

Synthetic videos are written with PyAV into ``tmp_path`` at test time (pattern: PyAV
``examples/numpy/generate_video.py``); real clips are read in place through ``shared_file``.
"""

from __future__ import annotations

import functools
import http.server
import re
import socket
import threading
import time
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from engine.config import SourceConfig
from engine.errors import SourceError
from engine.sources import Source, build_sources, source_plugin
from stream.decode import stream_fps, stream_rate
from stream.default import DefaultSource
from stream.pyav import FileSource, UrlSource, WebcamSource
from stream.redact import redact_url
from tests.conftest import shared_file
from tests.helpers import H, W, gray_level, write_video


def read_all(source) -> list:
    """Open ``source``, return every frame it yields, close it."""
    source.open()
    try:
        return list(source.frames())
    finally:
        source.close()


def file_source(path: Path, source_id: str = "clip") -> FileSource:
    return FileSource.from_spec(str(path), source_id, SourceConfig())


# -- files: synthetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "ext", "fmt"),
    [("mpeg4", "mp4", None), ("libx264", "mp4", None), ("mpeg4", "avi", None), ("libx264", "mov", None),
     ("gif", "gif", None), ("mpeg4", "ts", "mpegts")],
)
def test_synthetic_file_frames_in_order(tmp_path: Path, codec: str, ext: str, fmt: str | None) -> None:
    n, fps = 24, 25
    path = write_video(tmp_path / f"v.{ext}", codec, n, fps, fmt)
    source = file_source(path)
    assert source.live is False
    source.open()
    assert (source.width, source.height) == (W, H)
    if ext != "ts":  # MPEG-TS carries no frame count
        assert source.total_frames == n
    frames = list(source.frames())
    source.close()

    assert len(frames) == n
    assert [f.frame_index for f in frames] == list(range(n))
    assert all(f.source_id == "clip" for f in frames)
    pts = np.array([f.pts_s for f in frames])
    np.testing.assert_allclose(pts - pts[0], np.arange(n) / fps, atol=1e-3)
    for i, f in enumerate(frames):
        assert f.image.shape == (H, W, 3)
        assert f.image.dtype == np.uint8
        assert abs(float(f.image.mean()) - gray_level(i, n)) < 4, f"frame {i} out of order"
    assert all(f.capture_time_ns > 0 for f in frames)
    assert source.corrupt == 0


def test_missing_pts_falls_back_to_index_over_fps(tmp_path: Path) -> None:
    # A raw H.264 elementary stream has no PTS and no frame count.
    n, fps = 12, 25
    path = write_video(tmp_path / "v.h264", "libx264", n, fps, fmt="h264")
    source = file_source(path)
    source.open()
    assert source.total_frames is None
    frames = list(source.frames())
    assert len(frames) == n
    np.testing.assert_allclose([f.pts_s for f in frames], np.arange(n) / fps, atol=1e-9)


# -- files: real clips ----------------------------------------------------------------------------


def independent_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize(
    ("relative", "expected_frames", "hw"),
    [("clips/cricket/cover_drive_04_nets.mp4", 272, (1280, 720)), ("clips/cricket/pull_03.gif", 25, (240, 320))],
)
def test_real_clips(relative: str, expected_frames: int, hw: tuple[int, int]) -> None:
    path = shared_file(relative)
    frames = read_all(file_source(path, "real"))
    assert len(frames) == independent_count(path) == expected_frames  # expected: SOURCES.md
    assert [f.frame_index for f in frames] == list(range(expected_frames))
    assert {f.image.shape for f in frames} == {(*hw, 3)}
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in pairwise(pts)), "pts_s must increase"


# -- nominal frame rate (fps) --------------------------------------------------------------------


def mean_pts_rate(path: Path) -> float:
    """Independent reference: 1 / the mean step of the decoded frames' PTS, frames per second.

    The mean, not the median: a 12 fps GIF (delays in 1/100 s) steps 8, 9, 8, 8, 9 ... cs, whose
    median step says 12.5 fps although the clip runs at 12.
    """
    with av.open(str(path)) as container:
        times = [float(f.pts * f.time_base) for f in container.decode(video=0) if f.pts is not None]
    return (len(times) - 1) / (times[-1] - times[0])


@pytest.mark.parametrize(
    ("relative", "expected_fps"),
    [
        ("clips/cricket/cover_drive_04_nets.mp4", 60.0),  # SOURCES.md: 60 fps
        ("clips/cricket/nets_short_ball_01.mp4", 30.0),  # SOURCES.md: 30 fps
        ("clips/cricket/pull_02.mp4", 25.0),
        ("clips/cricket/pull_03.gif", 12.0),  # FFmpeg's guessed rate; its average rate (25/2) is off
    ],
)
def test_real_clip_fps_is_the_stream_rate(relative: str, expected_fps: float) -> None:
    path = shared_file(relative)
    source = file_source(path, "real")
    assert source.fps is None  # unknown before open()
    source.open()
    try:
        assert source.fps == pytest.approx(expected_fps)
        assert source.fps == pytest.approx(mean_pts_rate(path), rel=1e-3)
        assert source.timeline.nominal_interval_s == pytest.approx(1.0 / expected_fps)  # one value for both
    finally:
        source.close()
    assert source.fps == pytest.approx(expected_fps)  # still readable after close()


@pytest.mark.parametrize(
    ("codec", "ext", "fmt", "fps"),
    [
        ("mpeg4", "mp4", None, 50),
        ("mpeg4", "mkv", None, 24),
        ("libx264", "ts", "mpegts", 60),
        ("libx264", "mkv", None, 15),
    ],
)
def test_synthetic_clip_fps_is_the_rate_it_was_written_at(
    tmp_path: Path, codec: str, ext: str, fmt: str | None, fps: int
) -> None:
    source = file_source(write_video(tmp_path / f"v.{ext}", codec, 12, fps, fmt))
    source.open()
    try:
        assert source.fps == pytest.approx(fps)
    finally:
        source.close()


def test_a_12_fps_gif_reads_as_12_fps_not_its_average_rate(tmp_path: Path) -> None:
    """GIF delays are in 1/100 s, so PyAV writes a 12 fps GIF with steps of 8, 9, 8 ... cs.

    FFmpeg's ``average_rate`` (from the first packets) says 12.5; 24 frames over 2.00 s are 12 fps.
    """
    path = write_video(tmp_path / "v.gif", "gif", 24, 12)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(25, 2)  # what the source must not take
    source = file_source(path)
    source.open()
    try:
        assert source.fps == pytest.approx(12.0)
        # each PTS is rounded to 1/100 s: over the 1.92 s from first to last frame, 0.5% (12.5 is 4% off)
        assert source.fps == pytest.approx(mean_pts_rate(path), rel=5e-3)
    finally:
        source.close()
    assert source.probe()["fps"] == pytest.approx(12.0)
    assert source.probe()["rate_field"] == "guessed_rate"


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ((Fraction(60), Fraction(60), Fraction(60)), 60.0),
        ((Fraction(25, 2), Fraction(12), Fraction(12)), 12.5),  # without frames and duration the average rate wins
        ((None, Fraction(30000, 1001), Fraction(30)), 30000 / 1001),
        ((Fraction(0), None, Fraction(24)), 24.0),  # 0 is no rate
        ((Fraction(-5), Fraction(0), None), None),
        ((float("nan"), float("inf"), Fraction(10)), 10.0),
        ((None, None, None), None),
    ],
)
def test_stream_fps_takes_the_first_usable_rate(rates: tuple, expected: float | None) -> None:
    stream = SimpleNamespace(average_rate=rates[0], guessed_rate=rates[1], base_rate=rates[2])
    assert stream_fps(stream) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("frames", "duration", "expected"),
    [
        (24, 200, (12.0, "guessed_rate")),  # 24 frames in 2.00 s: 12 fps, not the average rate's 12.5
        (25, 200, (12.5, "average_rate")),  # 25 frames in 2.00 s: the average rate is right
        (1, 200, (12.5, "average_rate")),  # one frame has no rate: the first usable field
        (24, 0, (12.5, "average_rate")),  # no duration: likewise
    ],
)
def test_stream_rate_takes_the_field_nearest_the_timestamps_mean_rate(frames, duration, expected) -> None:
    stream = SimpleNamespace(average_rate=Fraction(25, 2), guessed_rate=Fraction(12), base_rate=Fraction(12),
                             frames=frames, duration=duration, time_base=Fraction(1, 100))
    assert stream_rate(stream) == expected


def test_default_source_fps_matches_its_timestamps() -> None:
    source = DefaultSource.from_spec("default", "default", SourceConfig(default_frames=5))
    frames = read_all(source)
    assert source.fps == 30.0
    np.testing.assert_allclose(np.diff([f.pts_s for f in frames]), 1.0 / source.fps)


# -- files: errors ------------------------------------------------------------------------------


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _bad_input(kind: str, d: Path) -> Path:
    """A path in ``d`` that cannot be read as video, of the given ``kind``."""
    if kind == "missing":
        return d / "missing.mp4"
    if kind == "zero-length":
        (d / "empty.mp4").write_bytes(b"")
        return d / "empty.mp4"
    if kind == "text":
        (d / "text.mp4").write_text("not a video\n" * 20)
        return d / "text.mp4"
    if kind == "audio-only":
        return _audio_only(d / "audio.wav")
    return d  # a directory


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing", "file not found: "),
        ("zero-length", "file is empty"),
        ("text", "not a readable media file"),
        ("audio-only", "no video stream in "),
        ("directory", "got a directory"),
    ],
)
def test_file_open_errors(tmp_path: Path, kind: str, fragment: str) -> None:
    path = _bad_input(kind, tmp_path)
    source = file_source(path)
    with pytest.raises(SourceError, match=fragment) as info:
        source.open()
    assert isinstance(info.value, OSError)
    assert str(path) in str(info.value)
    source.close()  # still fine after a failed open


def test_frames_before_open_raises(tmp_path: Path) -> None:
    source = file_source(tmp_path / "x.mp4")
    with pytest.raises(SourceError, match="before open"):
        next(source.frames())


def source_index(frame, n: int) -> int:
    """Index of the synthetic frame whose gray level is nearest to ``frame``'s mean."""
    return int(np.argmin([abs(float(frame.image.mean()) - gray_level(i, n)) for i in range(n)]))


@pytest.mark.parametrize("ext", ["mp4", "avi"])
@pytest.mark.parametrize("where", ["packet-payload", "file-middle"])
def test_corrupt_middle_is_skipped_and_rest_delivered(tmp_path: Path, ext: str, where: str) -> None:
    n = 60
    path = write_video(tmp_path / f"v.{ext}", "mpeg4", n)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    assert len(packets) == n
    data = bytearray(path.read_bytes())
    if where == "packet-payload":  # garbage inside one packet, container structure intact
        start, length = packets[n // 2][0] + 4, packets[n // 2][1] - 8
    else:  # 300 bytes at the middle of the file, whatever they hit
        start, length = len(data) // 2, 300
    data[start:start + length] = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    damaged = [i for i, (pos, size) in enumerate(packets) if pos < start + length and pos + size > start]
    assert damaged, "the garbage must hit at least one video packet"
    first_bad = min(damaged)

    source = file_source(path)
    frames = read_all(source)  # must not raise

    assert [f.frame_index for f in frames] == list(range(len(frames)))
    content = [source_index(f, n) for f in frames]
    assert content[:first_bad] == list(range(first_bad)), "frames before the damage come first, in order"
    after = len(frames) - first_bad
    assert after > (n - first_bad) // 2, f"only {after} frames delivered after the damage at frame {first_bad}"
    assert after > first_bad // 2
    assert content[-1] == n - 1, "decoding must recover and reach the last frame"
    assert source.corrupt >= 0


# -- close / threads ----------------------------------------------------------------------------


def test_close_from_another_thread_stops_frames(tmp_path: Path) -> None:
    n = 200
    source = file_source(write_video(tmp_path / "long.mp4", "mpeg4", n))
    source.open()
    got: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for frame in source.frames():
                got.append(frame.frame_index)
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.001)
    t0 = time.monotonic()
    source.close()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert errors == []
    assert 5 <= len(got) < n
    source.close()  # idempotent
    assert list(source.frames()) == []


def test_a_file_is_never_stalled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused file consumer (or a slow model) is not a stall: files have no live clock."""
    import stream.pyav
    import stream.pyav_base

    clock = {"now": 1000.0}
    fake_time = SimpleNamespace(monotonic=lambda: clock["now"], time_ns=time.time_ns)
    monkeypatch.setattr(stream.pyav, "time", fake_time)
    monkeypatch.setattr(stream.pyav_base, "time", fake_time)
    source = FileSource.from_spec(
        str(write_video(tmp_path / "v.mp4", "mpeg4", 3)), "clip", SourceConfig(stall_after_s=0.1, read_timeout_s=0.2)
    )
    source.open()
    frames = source.frames()
    next(frames)
    assert source.state == "live"
    clock["now"] += 3600.0  # an hour without a frame
    assert source.state == "live"
    assert len(list(frames)) == 2
    assert source.state == "ended"
    source.close()


def test_close_before_frames_and_twice(tmp_path: Path) -> None:
    source = file_source(write_video(tmp_path / "v.mp4", "mpeg4", 5))
    source.close()  # never opened
    source.close()
    with pytest.raises(SourceError, match="closed"):
        source.open()
    other = file_source(tmp_path / "v.mp4")
    other.open()
    other.close()
    assert list(other.frames()) == []


# -- URLs and cameras -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:pw@10.0.0.1:554/x", "rtsp://***@10.0.0.1:554/x"),
        ("rtsp://admin@cam.local/stream", "rtsp://***@cam.local/stream"),
        ("http://u:p@ss@host/a.ts", "http://***@host/a.ts"),
        ("rtmp://host/live?token=abc123&x=1", "rtmp://host/live?token=***&x=1"),
        ("rtsp://10.0.0.1:554/x", "rtsp://10.0.0.1:554/x"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_hides_user_and_password() -> None:
    out = redact_url("rtsp://user:pw@10.0.0.1:554/x")
    assert "pw" not in out and "user" not in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_url_open_failure_is_redacted(scheme: str) -> None:
    url = f"{scheme}://user:secretpw@127.0.0.1:{_free_port()}/x"
    source = UrlSource.from_spec(url, "cam", SourceConfig(open_timeout_s=2, read_timeout_s=1, reconnect=False))
    assert source.live is True
    with pytest.raises(SourceError, match=r"cannot open .*://\*\*\*@127\.0\.0\.1") as info:
        source.open()
    assert "secretpw" not in str(info.value) and "user" not in str(info.value)
    assert "secretpw" not in repr(source)


def test_url_open_timeout() -> None:
    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/x.ts"
        source = UrlSource.from_spec(url, "cam", SourceConfig(open_timeout_s=0.5, read_timeout_s=0.5, reconnect=False))
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="cannot open http://127.0.0.1"):
            source.open()
        assert time.monotonic() - t0 < 5


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def test_url_stream_over_http_then_ends_with_error(tmp_path: Path) -> None:
    n = 20
    write_video(tmp_path / "live.ts", "mpeg4", n, fmt="mpegts")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://user:pw@127.0.0.1:{server.server_address[1]}/live.ts"
        source = UrlSource.from_spec(url, "cam", SourceConfig(open_timeout_s=5, read_timeout_s=5, reconnect=False))
        source.open()
        assert source.total_frames is None
        got = []
        with pytest.raises(SourceError, match=r"stream ended: http://\*\*\*@127") as info:
            for frame in source.frames():
                got.append(frame)
        assert ":pw@" not in str(info.value)
        assert len(got) == n
        assert [f.frame_index for f in got] == list(range(n))
        source.close()
    finally:
        server.shutdown()
        server.server_close()


def test_webcam_missing_device() -> None:
    source = WebcamSource.from_spec("/dev/video987", "video987", SourceConfig(reconnect=False))
    assert source.live is True
    with pytest.raises(SourceError, match="camera not found: /dev/video987"):
        source.open()


# -- default source -------------------------------------------------------------------------------


def test_default_source_frames() -> None:
    source = DefaultSource.from_spec("default", "default", SourceConfig())
    assert source.live is False and source.total_frames == 90
    frames = read_all(source)
    assert len(frames) == 90
    assert [f.frame_index for f in frames] == list(range(90))
    assert {f.image.shape for f in frames} == {(480, 640, 3)}
    assert all(f.image.dtype == np.uint8 for f in frames)
    np.testing.assert_allclose([f.pts_s for f in frames], np.arange(90) / 30)
    for a, b in pairwise(frames):
        assert np.abs(a.image.astype(np.int16) - b.image).mean() > 1.0, f"camera still at {a.frame_index}"
    again = read_all(DefaultSource.from_spec("default", "default", SourceConfig()))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))


@pytest.mark.parametrize("count", [1, 2, 7])
def test_default_source_frame_count_follows_config(count: int) -> None:
    frames = read_all(DefaultSource.from_spec("default", "d", SourceConfig(default_frames=count)))
    assert [f.frame_index for f in frames] == list(range(count))


def test_default_source_missing_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ultralytics.utils

    monkeypatch.setattr(ultralytics.utils, "ASSETS", tmp_path)
    source = DefaultSource.from_spec("default", "default", SourceConfig())
    with pytest.raises(SourceError, match=f"not found: {tmp_path / 'bus.jpg'}"):
        source.open()


def test_default_source_close_stops_and_before_open_raises() -> None:
    source = DefaultSource.from_spec("default", "default", SourceConfig())
    with pytest.raises(SourceError, match="before open"):
        next(source.frames())
    source.open()
    it = source.frames()
    next(it)
    source.close()
    assert list(it) == []
    source.close()


# -- which source claims a spec ------------------------------------------------------------------

#: The built-in plugins by entry-point name (pyproject ``batsight.sources``).
BUILT_IN: dict[str, type[Source]] = {
    "default": DefaultSource, "url": UrlSource, "webcam": WebcamSource, "file": FileSource,
}


def source_kind(spec: str) -> str:
    """The engine's spec-to-plugin rule before sources claimed specs themselves (the reference)."""
    if spec == "default":
        return "default"
    if re.match(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", spec, re.IGNORECASE):
        return "url"
    if re.fullmatch(r"/dev/video\d+", spec):
        return "webcam"
    return "file"


@pytest.mark.parametrize(
    "spec",
    [
        "default", "Default", "DEFAULT", "default ", "default.mp4",
        "rtsp://10.0.0.1:554/x", "rtsps://h/x", "rtsp://", "RTSP://user:pw@h/x", "HTTP://h/a.ts", "https://h/a.m3u8",
        "Rtmp://h/live", "udp://@:1234", "tcp://127.0.0.1:9000", "SRT://h:9000", "ftp://h/x.mp4", "file:///tmp/x.mp4",
        " rtsp://h/x", "rtsp:/h/x", "cam1=rtsp://h/x", "clips/a://b.mp4", "a/rtsp://b",
        "/dev/video0", "/dev/video12", "/dev/video", "/dev/video0x", "/dev/video0/", "/dev/video0\n", "dev/video0",
        "/dev/videoA", "/dev/video\u0663",  # an Arabic-Indic digit is a digit to both regexes
        "clip.mp4", "net session.mp4", "/tmp/x.avi", "video0",
    ],
)
def test_claims_reproduce_source_kind(spec: str) -> None:
    """The highest claim among the built-in sources picks the plugin ``source_kind`` names, uniquely."""
    claims = {name: cls.claims(spec) for name, cls in BUILT_IN.items()}
    best = max(claims.values())
    assert best > 0
    assert [name for name, value in claims.items() if value == best] == [source_kind(spec)]
    assert source_plugin(spec)[0] == source_kind(spec)  # the engine asks the installed plugins the same


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("default", {"default": 100, "url": 0, "webcam": 0, "file": 1}),
        ("rtsp://h/x", {"default": 0, "url": 10, "webcam": 0, "file": 1}),
        ("/dev/video0", {"default": 0, "url": 0, "webcam": 10, "file": 1}),
        ("clip.mp4", {"default": 0, "url": 0, "webcam": 0, "file": 1}),
        ("", {"default": 0, "url": 0, "webcam": 0, "file": 0}),  # nobody claims an empty spec
    ],
)
def test_claim_values(spec: str, expected: dict[str, int]) -> None:
    assert {name: cls.claims(spec) for name, cls in BUILT_IN.items()} == expected


# -- build_sources ------------------------------------------------------------------------------


def test_build_sources_picks_plugins_and_ids(tmp_path: Path) -> None:
    clip = tmp_path / "net session.mp4"
    sources = build_sources([str(clip), "default", "cam1=rtsp://user:pw@10.0.0.1/x", "/dev/video3"], SourceConfig())
    assert [type(s) for s in sources] == [FileSource, DefaultSource, UrlSource, WebcamSource]
    assert [s.source_id for s in sources] == ["net_session", "default", "cam1", "video3"]
    assert sources[2].spec == "rtsp://user:pw@10.0.0.1/x"
    assert [s.live for s in sources] == [False, False, True, True]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("bad id=clip.mp4", "'bad id' is not a valid source id"),
        ("a/b=clip.mp4", "'a/b' is not a valid source id"),
        ("=clip.mp4", "'' is not a valid source id"),
        ("cam=", "nothing after 'cam='"),
    ],
)
def test_build_sources_refuses_malformed_id_prefixes(spec: str, fragment: str) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(fragment)):
        build_sources([spec], SourceConfig())


def test_an_existing_file_with_equals_in_its_name_is_still_a_file(tmp_path: Path) -> None:
    clip = tmp_path / "take 2=final.mp4"
    clip.touch()
    (source,) = build_sources([str(clip)], SourceConfig())
    assert isinstance(source, FileSource) and source.spec == str(clip) and source.source_id == "take_2_final"
