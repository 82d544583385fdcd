"""Every input right (issue 12): non-UTF-8 names, phone rotation, size limit, raw H.264 rates, damage counts, probe.

All media is made here with PyAV, a few tiny frames each. Expected values come from the geometry of
the frames written, from the rates they were written at, or from a plain PyAV decode loop written
in the test (not from batsight's own code).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from engine.config import SourceConfig
from engine.errors import SourceError, safe_text
from engine.testing import FakeKeypointModel
from stream.decode import AVFMT_NOTIMESTAMPS, stream_rate
from stream.display import orientation_from_matrix
from stream.pyav import FileSource, UrlSource
from tests.helpers import ANY_PORT, FAKE_MODEL, by_kind, run_pipeline, write_video

FAKE = ("--set", f"model.name={FAKE_MODEL}")
ANY = ("--set", f"publisher.endpoint={ANY_PORT}")


def _read(source: FileSource) -> list:
    source.open()
    try:
        return list(source.frames())
    finally:
        source.close()


def _random_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB frames of a random texture moving right 3 px per frame (P-frames carry real data)."""
    base = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def _encode(path: Path, images: list[np.ndarray], fps: int, fmt: str | None = None, *,
            rotation: int | None = None, hflip: bool = False, options: dict | None = None,
            codec_options: dict | None = None) -> Path:
    """Write ``images`` (RGB) as H.264 at ``fps`` (PTS 0, 1, 2 ... in 1/fps), optionally with a display matrix."""
    height, width = images[0].shape[:2]
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=fps, options={"bf": "0", **(codec_options or {})})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None or hflip:
            if not hasattr(stream, "set_display_rotation"):
                pytest.skip("this PyAV cannot write a display matrix")
            stream.set_display_rotation(rotation or 0, hflip=hflip)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- 1. names that are not UTF-8 ----------------------------------------------------------------


def test_safe_text_escapes_undecodable_bytes_only():
    assert safe_text("clipé.mp4") == "clipé.mp4"
    assert safe_text(b"junk\xe9.mp4".decode("utf-8", "surrogateescape")) == "junk\\xe9.mp4"
    assert safe_text("a\ud800b") == "a\\ud800b"


def test_a_name_that_is_not_utf8_fails_alone_and_the_other_sources_publish(cli, fake_model, tmp_path):
    good = write_video(tmp_path / "good.mp4", "libx264", 10)
    readable = Path((bytes(tmp_path) + b"/ok\xe9.mp4").decode("utf-8", "surrogateescape"))  # as argv gives it
    readable.write_bytes(good.read_bytes())
    missing = (bytes(tmp_path) + b"/junk\xe9.mp4").decode("utf-8", "surrogateescape")
    out = tmp_path / "out.jsonl"
    result = cli("run", missing, str(good), str(readable), "--no-progress", "--sink", f"jsonl:{out}", *ANY, *FAKE)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("batsight: error:")]
    assert errors == [f"batsight: error: source junk: file not found: {tmp_path}/junk\\xe9.mp4"]
    messages = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    poses = [m for m in messages if m["kind"] == "pose"]
    assert sorted({m["source_id"] for m in poses}) == ["good", "ok"]
    assert len(poses) == 20
    eos = {m["source_id"]: m for m in messages if m["kind"] == "eos"}
    assert eos["junk"]["reason"] == "error" and eos["junk"]["error"].endswith("junk\\xe9.mp4")
    assert eos["good"]["reason"] == eos["ok"]["reason"] == "end"
    assert eos["good"]["frames"] == eos["ok"]["frames"] == 10


# --- 2. rotation --------------------------------------------------------------------------------

# A 64x32 (W x H) landscape frame with a white 16x8 block in its top-left corner. Where the block
# must be once upright, per display matrix (FFmpeg's -autorotate):
#   rotation -90 (phones): turn 90 degrees clockwise  -> 32x64, block at the top right;
#   rotation  90:          turn 90 degrees counter-clockwise -> 32x64, block at the bottom left;
#   rotation 180:          turn half way -> 64x32, block at the bottom right;
#   rotation 0 + hflip:    mirror left-right -> 64x32, block at the top right.
ROTATIONS = [
    (-90, False, (64, 32), (slice(0, 16), slice(24, 32))),
    (90, False, (64, 32), (slice(48, 64), slice(0, 8))),
    (180, False, (32, 64), (slice(24, 32), slice(48, 64))),
    (0, True, (32, 64), (slice(0, 8), slice(48, 64))),
]


def _block_frames(n: int = 3) -> list[np.ndarray]:
    frames = []
    for _ in range(n):
        image = np.full((32, 64, 3), 16, np.uint8)
        image[:8, :16] = 235
        frames.append(image)
    return frames


@pytest.mark.parametrize(("rotation", "hflip", "shape", "block"), ROTATIONS)
def test_frames_are_turned_upright_from_the_display_matrix(tmp_path, rotation, hflip, shape, block):
    clip = _encode(tmp_path / "phone.mp4", _block_frames(), 30, rotation=rotation, hflip=hflip)
    frames = _read(FileSource.from_spec(str(clip), "phone", SourceConfig()))
    assert len(frames) == 3
    for frame in frames:
        assert frame.image.shape == (*shape, 3)
        bright = frame.image.mean(axis=2) > 128
        expected = np.zeros(shape, bool)
        expected[block] = True
        assert np.mean(bright == expected) > 0.97  # chroma bleeds a pixel or two at the block's edge


def test_a_rotated_clip_is_published_in_display_orientation(tmp_path):
    clip = _encode(tmp_path / "phone.mp4", _block_frames(4), 30, rotation=-90)
    model = FakeKeypointModel()
    _, messages, error = run_pipeline([FileSource.from_spec(str(clip), "phone", SourceConfig())], model, tmp_path)
    assert error is None
    poses = by_kind(messages, "pose")
    assert [(m.frame_width, m.frame_height) for m in poses] == [(32, 64)] * 4
    assert set().union(*model.batch_shapes) == {(64, 32, 3)}  # the model saw upright frames
    for m in poses:
        assert np.all(m.keypoints_xy[:, 0] <= 32) and np.all(m.keypoints_xy[:, 1] <= 64)


@pytest.mark.parametrize(
    ("matrix", "transform"),
    [
        ([65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30], ""),
        ([0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30], "transpose=clock"),  # av_display_rotation_set(-90)
        ([0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30], "transpose=cclock"),  # av_display_rotation_set(90)
        ([-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30], "hflip,vflip"),
        ([65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30], "vflip"),
        ([0, 65536, 0, 65536, 0, 0, 0, 0, 1 << 30], "transpose=cclock_flip"),  # -90 then mirrored
        ([46341, 46341, 0, -46341, 46341, 0, 0, 0, 1 << 30], ""),  # 45 degrees: not applied
    ],
)
def test_orientation_follows_ffmpeg_autorotate(matrix, transform):
    orientation = orientation_from_matrix(np.array(matrix, np.int32))
    assert orientation.transform == transform
    assert orientation.unsupported == (matrix[0] == 46341)


# --- 3. size limit --------------------------------------------------------------------------------


def _y4m_claiming(path: Path, width: int, height: int) -> Path:
    """A 200-byte YUV4MPEG2 file whose header claims ``width x height`` frames (the frame data is missing)."""
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(150))
    return path


def test_a_stream_above_max_pixels_is_refused_before_decoding(tmp_path):
    huge = _y4m_claiming(tmp_path / "huge.y4m", 8192, 8192)
    source = FileSource.from_spec(str(huge), "huge", SourceConfig())
    with pytest.raises(SourceError, match=r"huge\.y4m: video is 8192x8192 = 67108864 pixels, above source\.max_pixels"):
        source.open()
    clip = write_video(tmp_path / "small.mp4", "libx264", 3)  # 64x48 = 3072 pixels
    with pytest.raises(SourceError, match="above source.max_pixels = 3000"):
        FileSource.from_spec(str(clip), "small", SourceConfig(max_pixels=3000)).open()
    assert len(_read(FileSource.from_spec(str(clip), "small", SourceConfig(max_pixels=3072)))) == 3


def test_a_stream_that_grows_past_max_pixels_stops_at_its_first_larger_frame(tmp_path):
    small = _encode(tmp_path / "small.ts", _random_frames(40, 64, 48), 25, fmt="mpegts")
    large = _encode(tmp_path / "large.ts", _random_frames(5, 96, 72), 25, fmt="mpegts")
    grows = tmp_path / "grows.ts"
    grows.write_bytes(small.read_bytes() + large.read_bytes())  # a new SPS: 64x48 -> 96x72
    source = FileSource.from_spec(str(grows), "grows", SourceConfig(max_pixels=64 * 48))
    source.open()
    frames = []
    with pytest.raises(SourceError, match=r"grows\.ts: a frame grew to 96x72 = 6912 pixels, above source\.max_pixels"):
        frames.extend(source.frames())
    assert [f.image.shape for f in frames] == [(48, 64, 3)] * 40


# --- 4. streams without PTS -----------------------------------------------------------------------


@pytest.mark.parametrize("fps", [60, 30])
def test_raw_h264_without_pts_is_timed_at_its_own_rate(tmp_path, fps, caplog):
    clip = _encode(tmp_path / "raw.h264", _random_frames(8, 64, 48), fps, fmt="h264")
    with av.open(str(clip)) as container:  # the premise: no PTS, and the demuxer's own rate is its default
        assert next(container.decode(video=0)).pts is None
        assert container.streams.video[0].average_rate == 25
    source = FileSource.from_spec(str(clip), "raw", SourceConfig())
    with caplog.at_level(logging.WARNING, logger="stream.pyav_base"):
        frames = _read(source)
    np.testing.assert_allclose(np.diff([f.pts_s for f in frames]), 1.0 / fps, rtol=1e-9)
    assert (source.fps, source.rate_field) == (fps, "guessed_rate")
    assert any("no timestamps" in r.getMessage() and f"{fps} fps (guessed_rate)" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_stream_rate_prefers_the_streams_own_rate_only_without_timestamps():
    stream = SimpleNamespace(average_rate=Fraction(25), guessed_rate=Fraction(60), base_rate=Fraction(120),
                             codec_context=SimpleNamespace(framerate=Fraction(60)))
    raw = SimpleNamespace(format=SimpleNamespace(flags=AVFMT_NOTIMESTAMPS | 0x100))
    mp4 = SimpleNamespace(format=SimpleNamespace(flags=0x100))
    assert stream_rate(stream, raw) == (60.0, "guessed_rate")
    assert stream_rate(stream, mp4) == (25.0, "average_rate")
    stream.guessed_rate = None
    assert stream_rate(stream, raw) == (60.0, "codec_context.framerate")


# --- 5. damage counted ------------------------------------------------------------------------------


def _plain_decode(path: Path) -> dict[str, int]:
    """Per-packet decode with PyAV's defaults: frames, refused packets, demuxer-flagged packets, corrupt frames."""
    counts = {"frames": 0, "refused": 0, "flagged": 0, "concealed": 0}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            counts["flagged"] += int(packet.is_corrupt)
            try:
                for frame in packet.decode():
                    counts["frames"] += 1
                    counts["concealed"] += int(frame.is_corrupt)
            except av.error.FFmpegError:
                counts["refused"] += 0 if packet.is_corrupt else 1
    return counts


def test_a_truncated_mp4_keeps_every_frame_counts_the_damage_and_ends_truncated(tmp_path):
    whole = _encode(tmp_path / "whole.mp4", _random_frames(60, 64, 48), 25, options={"movflags": "faststart"},
                    codec_options={"g": "10"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])  # the index (moov) is at the start: the rest plays
    expected = _plain_decode(cut)
    assert 10 < expected["frames"] < 60 and expected["refused"] + expected["flagged"] >= 1
    source = FileSource.from_spec(str(cut), "cut", SourceConfig())
    _, messages, error = run_pipeline([source], FakeKeypointModel(), tmp_path)
    assert error is None
    assert len(by_kind(messages, "pose")) == expected["frames"]
    (eos,) = by_kind(messages, "eos")
    assert eos.reason == "truncated" and eos.error is None
    assert eos.corrupt == expected["refused"] + expected["flagged"]


def _damaged_ts(path: Path) -> Path:
    """160x120 H.264 in MPEG-TS, 30 frames, with the tail of a few mid-frame TS packets zeroed (no packet lost)."""
    clean = _encode(path.with_name("clean.ts"), _random_frames(30, 160, 120), 25, fmt="mpegts",
                    codec_options={"g": "30"})
    data = bytearray(clean.read_bytes())
    packets = [data[k:k + 188] for k in range(0, len(data), 188)]
    video = [k for k, p in enumerate(packets) if ((p[1] & 0x1F) << 8 | p[2]) == 0x100 and not p[1] & 0x40]
    for k in video[len(video) // 2 :: 40]:
        data[k * 188 + 100 : (k + 1) * 188] = bytes(88)
    path.write_bytes(bytes(data))
    return path


def test_concealed_frames_of_a_damaged_ts_are_counted_on_health_eos_and_the_summary(tmp_path):
    damaged = _damaged_ts(tmp_path / "damaged.ts")
    expected = _plain_decode(damaged)
    assert expected["concealed"] >= 1 and expected["frames"] == 30
    source = FileSource.from_spec(str(damaged), "ts", SourceConfig())
    pipeline, messages, error = run_pipeline([source], FakeKeypointModel(), tmp_path)
    assert error is None
    assert len(by_kind(messages, "pose")) == 30
    (eos,) = by_kind(messages, "eos")
    assert eos.concealed == expected["concealed"] and eos.reason == "end"
    final = by_kind(messages, "health")[-1]
    assert final.sources["ts"].concealed == expected["concealed"]
    assert pipeline.summary().per_source["ts"].concealed == expected["concealed"]


# --- 6. decode-side errors --------------------------------------------------------------------------


class _BadRequestServer:
    """A TCP server that answers every RTSP request with ``400 Bad Request`` (as a server refusing a transport)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                cseq = re.search(rb"CSeq:\s*(\d+)", data)
                self.requests += 1
                conn.sendall(b"RTSP/1.0 400 Bad Request\r\nCSeq: " + (cseq.group(1) if cseq else b"1") + b"\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def test_rtsp_400_names_rtsp_transport_and_fails_after_max_refusals():
    server = _BadRequestServer()
    config = SourceConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02, max_refusals=3, open_timeout_s=5)
    source = UrlSource.from_spec(f"rtsp://user:pw@127.0.0.1:{server.port}/cam", "cam", config)
    outcome: list[BaseException | None] = []

    def open_it() -> None:
        try:
            source.open()
            outcome.append(None)
        except SourceError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    thread.join(60)
    source.close()
    server.close()
    assert not thread.is_alive(), "a 400 Bad Request was retried forever"
    (exc,) = outcome
    assert isinstance(exc, SourceError)
    text = str(exc)
    assert "400 Bad Request" in text and "source.rtsp_transport=tcp" in text and "rtsp_transport=udp" in text
    assert "refused 3 times in a row" in text and "pw" not in text
    assert server.requests == 3


def test_the_video_stream_used_of_a_multi_stream_file_is_said(tmp_path, caplog):
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as container:
        small = container.add_stream("libx264", rate=25)
        small.width, small.height, small.pix_fmt = 32, 24, "yuv420p"
        large = container.add_stream("libx264", rate=25)
        large.width, large.height, large.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            for stream, (w, h) in ((small, (32, 24)), (large, (64, 48))):
                frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 20 * i, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 25)
                for packet in stream.encode(frame):
                    container.mux(packet)
        for stream in (small, large):
            for packet in stream.encode():
                container.mux(packet)
    with av.open(str(path)) as container:
        best = container.streams.best("video")
        chosen, other = best.index, 1 - best.index
        chosen_size = f"{best.codec_context.width}x{best.codec_context.height}"
    source = FileSource.from_spec(str(path), "two", SourceConfig())
    with caplog.at_level(logging.WARNING, logger="stream.pyav_base"):
        frames = _read(source)
    assert frames[0].image.shape[1::-1] == tuple(int(v) for v in chosen_size.split("x"))
    said = [r.getMessage() for r in caplog.records if "reading video stream" in r.getMessage()]
    assert len(said) == 1
    assert f"#{chosen} h264 {chosen_size}" in said[0] and f"not used: #{other} h264" in said[0]
    assert source.stream_index == chosen


def _reset_ts(path: Path) -> Path:
    """Two MPEG-TS runs of 10 frames, each starting at PTS 0 (a concatenated recording)."""
    part = _encode(path.with_name("part.ts"), _random_frames(10, 64, 48), 25, fmt="mpegts")
    path.write_bytes(part.read_bytes() * 2)
    return path


def test_b_frames_in_avi_are_timed_by_the_best_effort_timestamp(tmp_path):
    clip = _encode(tmp_path / "bframes.avi", _random_frames(20, 64, 48), 25, codec_options={"bf": "2"})
    with av.open(str(clip)) as container:  # the premise: AVI hands out PTS in decode order, DTS increasing
        stamps = [(f.pts, f.dts) for f in container.decode(video=0)]
    pts = [p for p, _ in stamps]
    assert any(b < a for a, b in zip(pts, pts[1:], strict=False))
    frames = _read(FileSource.from_spec(str(clip), "bframes", SourceConfig()))
    assert len(frames) == 20
    # no break while frames carry a DTS (FFmpeg's best_effort_timestamp also falls back to the PTS without one)
    assert [f.frame_index for f in frames if f.timeline_break and stamps[f.frame_index][1] is not None] == []


def test_a_timeline_jump_is_logged_as_a_warning(tmp_path, caplog):
    clip = _reset_ts(tmp_path / "reset.ts")
    with caplog.at_level(logging.INFO, logger="stream.pyav_base"):
        frames = _read(FileSource.from_spec(str(clip), "reset", SourceConfig()))
    assert sum(f.timeline_break for f in frames) == 1
    breaks = [r for r in caplog.records if "timeline break" in r.getMessage()]
    assert [r.levelno for r in breaks] == [logging.WARNING]


# --- 7. probe -----------------------------------------------------------------------------------


def test_probe_says_what_run_will_do_as_json(cli, tmp_path):
    phone = _encode(tmp_path / "phone.mp4", _block_frames(3), 30, rotation=-90)
    raw = _encode(tmp_path / "raw.h264", _random_frames(4, 64, 48), 60, fmt="h264")
    huge = _y4m_claiming(tmp_path / "huge.y4m", 8192, 8192)
    result = cli("probe", "--json", str(phone), str(raw), str(huge), "gone=missing.mp4")
    assert result.returncode == 1
    reports = {r["source_id"]: r for r in json.loads(result.stdout)}
    assert list(reports) == ["phone", "raw", "huge", "gone"]
    p = reports["phone"]
    assert (p["container"], p["codec"], p["mode"], p["video_stream"]) == ("mov,mp4,m4a,3gp,3g2,mj2", "h264", "file", 0)
    assert (p["coded_width"], p["coded_height"], p["width"], p["height"]) == (64, 32, 32, 64)
    assert (p["rotation_deg"], p["transform"]) == (-90, "transpose=clock")
    assert (p["fps"], p["rate_field"], p["frames"], p["timestamps"]) == (30, "average_rate", 3, True)
    assert p["duration_s"] == pytest.approx(0.1) and p["error"] is None and p["warnings"] == []
    r = reports["raw"]
    assert (r["fps"], r["rate_field"], r["timestamps"], r["frames"]) == (60, "guessed_rate", False, None)
    assert any("timed at 60 fps (guessed_rate)" in w for w in r["warnings"])
    assert "above source.max_pixels" in reports["huge"]["error"]
    assert reports["gone"]["error"] == "file not found: missing.mp4"
    assert [line for line in result.stderr.splitlines() if line.startswith("batsight: error:")] == [
        f"batsight: error: source huge: {reports['huge']['error']}",
        "batsight: error: source gone: file not found: missing.mp4",
    ]


def test_probe_text_names_rotation_rate_field_and_chosen_stream(cli, tmp_path):
    phone = _encode(tmp_path / "phone.mp4", _block_frames(3), 30, rotation=-90)
    result = cli("probe", str(phone))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"phone: {phone} (FileSource, file mode)",
        "  container: mov,mp4,m4a,3gp,3g2,mj2 (QuickTime / MOV); streams: #0 video h264 64x32",
        "  video: stream #0 (the only video stream), h264, coded 64x32, rotation -90 (transpose=clock) -> 32x64",
        "  rate: 30 fps (average_rate); timestamps: yes; duration: 0.100 s; frames: 3",
    ]


def test_probe_of_a_refused_file_does_not_claim_it_has_no_rotation(cli, tmp_path):
    """A refused stream is not decoded, so its display matrix (-90 here) is not read: not "no rotation"."""
    phone = _encode(tmp_path / "phone.mp4", _block_frames(3), 30, rotation=-90)
    result = cli("probe", "--json", str(phone), "--set", "source.max_pixels=2000")  # 64 x 32 = 2048 pixels
    assert result.returncode == 1
    [p] = json.loads(result.stdout)
    assert p["error"].startswith("video is 64x32 = 2048 pixels, above source.max_pixels = 2000")
    assert (p["rotation_deg"], p["transform"], p["width"], p["height"]) == (None, None, None, None)
    text = cli("probe", str(phone), "--set", "source.max_pixels=2000")
    assert "  video: stream #0 (the only video stream), h264, 64x32, rotation not read (no frame decoded)" in (
        text.stdout.splitlines())


def test_probe_without_sources_describes_the_built_in_input(cli):
    result = cli("probe", "--set", "source.default_frames=12")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "default: default (DefaultSource, file mode)", "  width: 640", "  height: 480", "  fps: 30.0", "  frames: 12",
    ]


def test_the_summary_says_truncated_and_counts_the_damage(cli, fake_model, tmp_path):
    whole = _encode(tmp_path / "whole.mp4", _random_frames(40, 64, 48), 25, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    expected = _plain_decode(cut)
    result = cli("run", str(cut), "--no-progress", *ANY, *FAKE)
    assert result.returncode == 0, result.stderr
    damaged = expected["refused"] + expected["flagged"]
    assert re.search(
        rf"^  cut: {expected['frames']} frames, batter found 100\.0%, shots 0, dropped 0, corrupt {damaged}, "
        r"truncated$",
        result.stdout, re.M,
    ), result.stdout
    assert "truncated: the file announces 40 frames" in result.stderr


def test_the_report_draws_on_upright_frames_of_a_rotated_clip(tmp_path):
    from sinks.report.video import read_video_frames

    clip = _encode(tmp_path / "phone.mp4", _block_frames(3), 30, rotation=-90)
    frames = read_video_frames(clip, {0, 2})
    assert sorted(frames) == [0, 2]
    bright = frames[2].mean(axis=2) > 128
    assert bright.shape == (64, 32) and bright[:16, 24:].mean() > 0.9 and bright[16:, :].mean() < 0.05


def test_eos_and_health_from_before_the_concealed_count_still_decode():
    from engine.messages import from_json_dict

    eos = from_json_dict({"v": 1, "kind": "eos", "source_id": "cam", "seq": 0, "frame_index": None, "pts_s": None,
                          "capture_time_ns": None, "frames": 3, "dropped": 0, "corrupt": 1, "error": None,
                          "reason": "end", "publish_time_ns": 1, "arrays": {}})
    assert (eos.frames, eos.corrupt, eos.concealed) == (3, 1, 0)
    entry = {"state": "ended", "reconnects": 0, "frames_in": 3, "frames_out": 3, "dropped": 0, "corrupt": 1,
             "queue_depth": 0, "fps_in": 1.0, "fps_out": 1.0, "batter_frames": 3}
    health = from_json_dict({"v": 1, "kind": "health", "source_id": "", "seq": 0, "frame_index": None,
                             "pts_s": None, "capture_time_ns": None, "engine_state": "stopped", "uptime_s": 1.0,
                             "model": "m", "device": "cpu", "sources": {"cam": entry}, "publish_time_ns": 1,
                             "arrays": {}})
    assert health.sources["cam"].concealed == 0
