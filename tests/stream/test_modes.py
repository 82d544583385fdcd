"""Per-source mode (auto | live | file) and finite network inputs (issue 12 item 5).

An HTTP server on 127.0.0.1 (``http.server``, started and stopped here) serves videos written at test
time with PyAV: an mp4, an HLS VOD playlist, and an mp4 whose index (moov) follows its data, which
FFmpeg cannot read over a connection that does not seek (``http.server`` ignores ``Range``).
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from engine.batching import SourceReader
from engine.config import SourceConfig
from engine.errors import ConfigError
from engine.sources import build_sources
from engine.testing import FakeKeypointModel
from engine.types import EndOfStream, Frame
from stream.pyav import UrlSource
from tests.helpers import by_kind, gray_level, run_pipeline

N_FRAMES = 40
SIZE = (48, 64)  # height, width


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _CutFirst(_Quiet):
    """Sends only the first half of the first response (the connection drops), then whole files."""

    requests = 0

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        type(self).requests += 1
        data = source.read()
        outputfile.write(data[: len(data) // 2] if type(self).requests == 1 else data)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``(folder, base URL)``: a folder served over HTTP on 127.0.0.1 for the test's duration."""
    yield from _serve(tmp_path, _Quiet)


@pytest.fixture
def cut_http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Like ``http_dir``, but the first response breaks off halfway."""
    _CutFirst.requests = 0
    yield from _serve(tmp_path, _CutFirst)


def _serve(folder: Path, handler_class: type[_Quiet]) -> Iterator[tuple[Path, str]]:
    handler = functools.partial(handler_class, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _write(path: Path, fmt: str | None = None, options: dict[str, str] | None = None, noise: bool = False,
           n: int = N_FRAMES, size: tuple[int, int] = SIZE, grain: int = 0) -> Path:
    """``n`` frames of gray level ``gray_level(i, n)`` (or random noise), H.264 (MPEG-4 without it), 25 fps.

    ``grain``: random noise of at most this amplitude on the gray (bigger files, same mean).
    """
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 10
        for i in range(n):
            if noise:
                image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            else:
                level = gray_level(i, n) + rng.integers(-grain, grain + 1, (*size, 1))
                image = np.clip(level, 0, 255).astype(np.uint8).repeat(3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _read_slowly(reader: SourceReader, first_after: Callable[[], bool] = lambda: True) -> list[Frame | EndOfStream]:
    """Take every item as a consumer slower than the decoder (a model), until the end marker.

    The first item is taken once ``first_after()`` is true.
    """
    items: list[Frame | EndOfStream] = []
    reader.start()
    deadline = time.monotonic() + 60.0
    while not first_after():
        assert time.monotonic() < deadline, "first_after() never came true"
        time.sleep(0.01)
    while not items or not isinstance(items[-1], EndOfStream):
        assert time.monotonic() < deadline, "no end marker"
        try:
            items.append(reader.take_nowait())
        except Exception:  # noqa: BLE001 - queue.Empty: nothing yet
            reader.notify.wait(0.05)
            reader.notify.clear()
            continue
        time.sleep(0.005)
    return items


@pytest.mark.parametrize("name", ["clip.mp4", "list.m3u8"])
def test_auto_reads_a_finite_http_file_or_hls_playlist_as_a_file_every_frame(
    http_dir: tuple[Path, str], name: str
) -> None:
    folder, base = http_dir
    if name.endswith(".m3u8"):  # a VOD playlist of ~0.4 s segments: its duration is known
        _write(folder / name, fmt="hls", options={"hls_time": "0.4", "hls_list_size": "0", "hls_playlist_type": "vod"})
        assert len(list(folder.glob("list*.ts"))) >= 3
    else:
        _write(folder / name)
    (source,) = build_sources([f"clip={base}/{name}"], SourceConfig())
    assert isinstance(source, UrlSource)
    reader = SourceReader(source, 2, live_queue_size=1)
    items = _read_slowly(reader)
    frames = [i for i in items if isinstance(i, Frame)]
    eos = items[-1]
    assert isinstance(eos, EndOfStream) and eos.error is None and eos.dropped == 0
    assert source.live is False and reader.live is False
    assert [f.frame_index for f in frames] == list(range(N_FRAMES))  # all frames arrive, in order
    levels = [float(f.image.mean()) for f in frames]
    assert np.allclose(levels, [gray_level(i, N_FRAMES) for i in range(N_FRAMES)], atol=4), levels
    assert np.allclose(np.diff([f.pts_s for f in frames]), 1 / 25, atol=1e-3)


def test_mode_live_keeps_a_finite_http_file_live(http_dir: tuple[Path, str]) -> None:
    folder, base = http_dir
    _write(folder / "clip.mp4")
    (source,) = build_sources([f"clip:live={base}/clip.mp4"], SourceConfig())
    assert source.config.mode == "live"
    reader = SourceReader(source, 8, live_queue_size=1)
    items = _read_slowly(reader, first_after=lambda: reader.frames_in == N_FRAMES)  # all read before any taken
    frames = [i for i in items if isinstance(i, Frame)]
    assert source.live is True and reader.live is True
    assert [f.frame_index for f in frames] == [N_FRAMES - 1]  # a live source drops, never blocks: the newest
    assert items[-1].dropped == N_FRAMES - 1


def test_mode_file_and_bad_modes_on_the_command_line() -> None:
    sources = build_sources(["a:file=rtsp://127.0.0.1:1/x", "b:auto=clip.mp4", "c=rtsp://127.0.0.1:1/y"],
                            SourceConfig(mode="live"))
    assert [s.config.mode for s in sources] == ["file", "auto", "live"]
    assert [s.live for s in sources] == [False, False, True]  # auto: a file path is a file
    with pytest.raises(ConfigError, match=r"unknown mode 'fast'.*auto, live, file"):
        build_sources(["a:fast=clip.mp4"], SourceConfig())


def test_a_finite_http_file_failing_the_same_way_fails_after_max_same_failures(
    http_dir: tuple[Path, str], tmp_path: Path
) -> None:
    """An mp4 with its index at the end, on a server without Range: opens (duration known), never reads."""
    folder, base = http_dir
    _write(folder / "late_index.mp4", noise=True, n=30, size=(240, 320))
    with av.open(str(folder / "late_index.mp4")) as container:  # readable as a local file
        assert sum(1 for _ in container.decode(video=0)) == 30
    config = SourceConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02, max_same_failures=3)
    (source,) = build_sources([f"clip={base}/late_index.mp4"], config)
    _, messages, error = run_pipeline([source], FakeKeypointModel(), tmp_path, ["shots.enabled=false"])
    assert error is None
    (eos,) = by_kind(messages, "eos", "clip")
    assert eos.reason == "error" and eos.frames == 0
    assert "3 times in a row" in eos.error and "late_index.mp4" in eos.error, eos.error
    assert source.reconnect_attempts == 2  # the first failure and two reopened ones


def test_a_finite_http_file_cut_off_resumes_where_it_broke_without_repeating_frames(
    cut_http_dir: tuple[Path, str],
) -> None:
    folder, base = cut_http_dir
    _write(folder / "clip.mp4", options={"movflags": "faststart"}, size=(120, 160), grain=20)
    config = SourceConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02)
    (source,) = build_sources([f"clip={base}/clip.mp4"], config)
    items = _read_slowly(SourceReader(source, 2, live_queue_size=1))
    frames = [i for i in items if isinstance(i, Frame)]
    assert items[-1].error is None and source.reconnects == 1 and _CutFirst.requests == 2
    assert [f.frame_index for f in frames] == list(range(N_FRAMES))
    levels = [float(f.image.mean()) for f in frames]
    assert np.allclose(levels, [gray_level(i, N_FRAMES) for i in range(N_FRAMES)], atol=4), levels
    assert not any(f.timeline_break for f in frames)  # the same file, read on: no break


def test_mode_live_reads_a_local_file_once_keeping_the_newest_frame(tmp_path: Path) -> None:
    _write(tmp_path / "clip.mp4")
    (source,) = build_sources([f"clip:live={tmp_path / 'clip.mp4'}"], SourceConfig(reconnect_initial_s=0.01))
    reader = SourceReader(source, 8, live_queue_size=1)
    items = _read_slowly(reader, first_after=lambda: reader.frames_in == N_FRAMES)
    assert reader.live is True and source.reconnects == 0  # ends at its end, not replayed
    assert [f.frame_index for f in items if isinstance(f, Frame)] == [N_FRAMES - 1]
    assert isinstance(items[-1], EndOfStream) and items[-1].error is None
