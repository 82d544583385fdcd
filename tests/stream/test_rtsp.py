"""Reconnecting live sources and trustworthy timestamps (``stream/reconnect.py``, ``stream/timeline.py``).

The sources under test are ``stream/pyav.py`` on their shared base ``stream/pyav_base.py``.

The RTSP test runs a real server on 127.0.0.1 (``tests/rtsp_server.py``: Debian's rtsp-server-perl fed
by ffmpeg); without those programs it skips, except under ``BATSIGHT_REQUIRE_RTSP=1`` (``.ci/run``),
where it fails. Everything else needs only PyAV and loopback sockets.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import logging
import os
import queue
import random
import socket
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from engine.config import SourceConfig
from engine.errors import ConfigError, SourceError
from engine.messages import Health, Pose
from engine.testing import FakeClock
from engine.types import Frame
from stream.pyav import FileSource, UrlSource
from stream.pyav_base import SOURCE_STATES
from stream.reconnect import WAIT_SLICE_S, ReconnectPolicy
from stream.redact import redact_text
from stream.timeline import PtsTimeline
from tests.helpers import open_pipeline, pipeline_config, write_video
from tests.rtsp_server import RtspServer, free_tcp_port

USER, SECRET = "viewer", "s3cr3t-Pw"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, f"password leaked: {text!r}"
        assert f"{USER}:" not in text, f"user name leaked: {text!r}"


def error_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` would print (message, causes, contexts)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class SourceRunner:
    """Reads ``source.frames()`` on a thread like ``SourceReader`` and samples ``source.state``."""

    def __init__(self, source) -> None:
        self.source = source
        self.frames: list[tuple[float, Frame]] = []  # (monotonic time received, frame)
        self.states: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self.live_sampled = threading.Event()  # set once the sampler has recorded "live"
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> None:
        try:
            self.source.open()
            for frame in self.source.frames():
                self.frames.append((time.monotonic(), frame))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self._done.set()

    def _sample(self) -> None:
        while not self._done.is_set():
            state = self.source.state
            if not self.states or self.states[-1][1] != state:
                self.states.append((time.monotonic(), state))
            if state == "live":
                self.live_sampled.set()
            time.sleep(0.01)

    def start(self) -> SourceRunner:
        self._reader.start()
        self._sampler.start()
        return self

    def wait_for(self, what: str, condition, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.error is not None:
                msg = f"source failed while waiting for {what}"
                raise AssertionError(msg) from self.error
            if self._done.is_set():
                msg = f"source ended while waiting for {what}"
                raise AssertionError(msg)
            if time.monotonic() > deadline:
                msg = f"no {what} after {timeout_s} s; states {self.states[-8:]}"
                raise AssertionError(msg)
            time.sleep(0.01)

    def frames_after(self, t: float) -> list[Frame]:
        return [f for when, f in self.frames if when > t]

    def stop(self, timeout_s: float) -> float:
        """Close the source, join both threads; return the seconds ``frames()`` took to end."""
        t0 = time.monotonic()
        self.source.close()
        self._reader.join(timeout_s)
        elapsed = time.monotonic() - t0
        self._done.set()
        self._sampler.join(1.0)
        assert not self._reader.is_alive(), f"frames() still running {timeout_s} s after close()"
        return elapsed


def check_timeline(frames: list[Frame]) -> None:
    assert [f.frame_index for f in frames] == list(range(len(frames))), "frame_index must count 0, 1, 2 ..."
    pts = np.array([f.pts_s for f in frames])
    assert np.all(np.diff(pts) > 0), "pts_s must increase strictly"


# -- ReconnectPolicy ------------------------------------------------------------------------------


def test_delays_are_capped_exponential_without_jitter() -> None:
    policy = ReconnectPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0, jitter=0.0, max_attempts=7)
    np.testing.assert_allclose(list(policy.delays()), [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_delays_jitter_stays_in_bounds_and_is_seeded() -> None:
    def make(seed: int) -> ReconnectPolicy:
        return ReconnectPolicy(initial_backoff_s=0.5, max_backoff_s=8.0, jitter=0.3, max_attempts=200,
                               rng=random.Random(seed))

    delays = list(make(7).delays())
    bases = [min(8.0, 0.5 * 2.0**k) for k in range(200)]
    assert all((1 - 0.3) * b - 1e-12 <= d <= b for d, b in zip(delays, bases, strict=True))
    assert max(delays) <= 8.0
    assert len({round(d / b, 6) for d, b in zip(delays, bases, strict=True)}) > 100, "jitter must vary"
    assert list(make(7).delays()) == delays, "same seed, same delays"
    assert list(make(8).delays()) != delays


def test_delays_forever_by_default_and_max_attempts() -> None:
    assert len(list(itertools.islice(ReconnectPolicy().delays(), 1000))) == 1000
    assert len(list(ReconnectPolicy(max_attempts=3).delays())) == 3
    assert list(ReconnectPolicy(max_attempts=0).delays()) == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"initial_backoff_s": 0}, "initial_backoff_s must be > 0, got 0"),
        ({"initial_backoff_s": 2.0, "max_backoff_s": 1.0}, "max_backoff_s must be >= initial_backoff_s = 2.0, got 1.0"),
        ({"multiplier": 0.5}, "multiplier must be >= 1, got 0.5"),
        ({"jitter": 1.0}, "jitter must be in [0, 1), got 1.0"),
        ({"max_attempts": -1}, "max_attempts must be >= 0 or None"),
    ],
)
def test_policy_validation(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReconnectPolicy(**kwargs)
    assert fragment in str(info.value)


def test_policy_from_config() -> None:
    config = SourceConfig(reconnect_initial_s=0.25, reconnect_max_s=4, reconnect_jitter=0.1, reconnect_max_attempts=5)
    policy = ReconnectPolicy.from_config(config)
    assert (policy.initial_backoff_s, policy.max_backoff_s, policy.jitter, policy.max_attempts) == (0.25, 4, 0.1, 5)
    with pytest.raises(ConfigError, match=r"source.reconnect_max_s: must be >= reconnect_initial_s = 5.0, got 1.0"):
        from engine.config import load_config

        load_config(None, ["source.reconnect_initial_s=5", "source.reconnect_max_s=1"])


def test_wait_sleeps_in_slices_and_stops_early() -> None:
    slept: list[float] = []
    policy = ReconnectPolicy(sleep=slept.append)
    stop = threading.Event()
    assert policy.wait(0.32, stop) is False
    assert max(slept) <= WAIT_SLICE_S and sum(slept) == pytest.approx(0.32)

    slept.clear()

    def sleep_then_stop(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            stop.set()

    assert ReconnectPolicy(sleep=sleep_then_stop).wait(100.0, stop) is True
    assert len(slept) == 3


# -- PtsTimeline ----------------------------------------------------------------------------------

_F = 0.04  # 25 fps


@pytest.mark.parametrize(
    ("raw", "expected_pts", "expected_breaks"),
    [
        pytest.param([1.0, 1.04, 1.08], [1.0, 1.04, 1.08], [], id="clean-keeps-raw"),
        pytest.param([5.0, 5.04, 0.0, 0.04], [5.0, 5.04, 5.08, 5.12], [2], id="reset-to-zero"),
        pytest.param([2.0, 2.04, 2.04, 2.08], [2.0, 2.04, 2.08, 2.12], [2], id="repeated-pts"),
        pytest.param([2.0, 2.04, 1.5, 1.54, 1.58], [2.0, 2.04, 2.08, 2.12, 2.16], [2], id="jump-back"),
        pytest.param([0.0, 0.04, 500.0, 500.04], [0.0, 0.04, 0.08, 0.12], [2], id="huge-jump-forward"),
        pytest.param([0.0, 0.04, 3.0, 3.04], [0.0, 0.04, 3.0, 3.04], [], id="gap-below-limit-kept"),
        pytest.param([0.0, 0.1, 0.15, 0.35], [0.0, 0.1, 0.15, 0.35], [], id="variable-frame-rate"),
        pytest.param([0.0, None, None, 0.12], [0.0, 0.04, 0.08, 0.12], [], id="missing-pts-bridged"),
        pytest.param([None, None, 7.0, 7.04], [0.0, 0.04, 0.08, 0.12], [], id="pts-appear-later"),
    ],
)
def test_pts_timeline(raw: list, expected_pts: list[float], expected_breaks: list[int]) -> None:
    timeline = PtsTimeline(max_jump_s=10.0, nominal_interval_s=_F)
    out = [timeline.update(r) if r is not None else timeline.extrapolate(_F, 0.0) for r in raw]
    np.testing.assert_allclose([p for p, _ in out], expected_pts, atol=1e-9)
    assert [i for i, (_, b) in enumerate(out) if b] == expected_breaks
    assert timeline.breaks == len(expected_breaks)


def test_pts_timeline_mark_break_and_reset() -> None:
    timeline = PtsTimeline(max_jump_s=10.0)
    timeline.mark_break()  # before any frame: nothing to break
    assert timeline.update(3.0) == (3.0, False)
    assert timeline.update(3.5) == (3.5, False)
    timeline.mark_break()  # a reconnect: the new stream restarts near 0, or plausibly continues
    pts, brk = timeline.update(3.6)
    assert brk and pts == pytest.approx(4.0)  # last + last good step (no nominal rate)
    assert timeline.update(3.7) == (pytest.approx(4.1), False)
    timeline.reset()
    assert timeline.update(0.5) == (0.5, False)
    with pytest.raises(ConfigError):
        PtsTimeline(max_jump_s=0)


def test_pts_timeline_break_on_a_frame_without_pts_flags_once() -> None:
    # Seen on RTSP: the first frame after a reconnect has no PTS, the next has a negative one.
    timeline = PtsTimeline(max_jump_s=10.0, nominal_interval_s=0.1)
    assert timeline.update(5.0) == (5.0, False)
    timeline.mark_break()
    assert timeline.extrapolate(0.1, 0.0) == (pytest.approx(5.1), True)
    assert timeline.update(-0.1) == (pytest.approx(5.2), False)
    assert timeline.update(0.0) == (pytest.approx(5.3), False)
    assert timeline.breaks == 1


# -- files whose PTS break --------------------------------------------------------------------------

W, H = 64, 48


def write_ts_segment(path: Path, n: int, fps: int, first_pts: int, level0: int) -> None:
    """An MPEG-TS file of ``n`` mpeg4 frames at ``fps`` with PTS ``first_pts, first_pts + 1, ...`` (1/fps units)."""
    texture = np.random.default_rng(1).integers(-20, 21, (H, W, 1)).astype(np.int16)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 4_000_000
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(n):
            image = np.clip(level0 + 4 * i + texture, 0, 255).astype(np.uint8).repeat(3, axis=2)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = first_pts + i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize(("second_first_pts", "kind"), [(0, "reset"), (25 * 600, "jump-forward")])
def test_file_with_pts_break_gets_monotonic_pts(tmp_path: Path, second_first_pts: int, kind: str) -> None:
    n, fps = 20, 25
    write_ts_segment(tmp_path / "a.ts", n, fps, first_pts=0, level0=30)
    write_ts_segment(tmp_path / "b.ts", n, fps, first_pts=second_first_pts, level0=130)
    joined = tmp_path / "joined.ts"  # like `cat a.ts b.ts`: the second recording's clock restarts
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())

    source = FileSource.from_spec(str(joined), "joined", SourceConfig())
    source.open()
    frames = list(source.frames())
    source.close()

    assert len(frames) == 2 * n
    check_timeline(frames)
    raw = np.array([f.raw_pts_s for f in frames])
    assert raw[n] - raw[n - 1] == pytest.approx(-(n - 1) / fps if kind == "reset" else 600 - (n - 1) / fps)
    np.testing.assert_allclose(np.diff([f.pts_s for f in frames]), 1 / fps, atol=1e-6)  # bridged by one interval
    assert [f.frame_index for f in frames if f.timeline_break] == [n]
    assert frames[n].image.mean() > frames[n - 1].image.mean() + 20  # the break frame is the second segment's first
    np.testing.assert_allclose(raw[n:] - raw[n], np.arange(n) / fps, atol=1e-6)  # raw values kept
    assert source.timeline.breaks == 1


# -- the stalled state, driven by a fake clock and a scripted container --------------------------------


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Stands in for the ``time`` module of ``stream.pyav(_base)``: ``monotonic()`` moves only when told.

    Replaces the clock of the PyAV sources only: backoff waits (``stream.reconnect``) stay real. The
    sources also stamp ``capture_time_ns`` from ``time_ns()``, which then reads the fake wall clock;
    no test here checks it.
    """
    import stream.pyav
    import stream.pyav_base

    clock = FakeClock(start_s=1000.0)
    monkeypatch.setattr(stream.pyav, "time", clock)
    monkeypatch.setattr(stream.pyav_base, "time", clock)
    return clock


class _FakeVideoFrame:
    time_base = Fraction(1, 25)

    def __init__(self, pts: int) -> None:
        self.pts = pts

    def to_ndarray(self, format: str) -> np.ndarray:  # noqa: A002 - PyAV's signature
        assert format == "bgr24"
        return np.zeros((4, 6, 3), np.uint8)


class _FakePacket:
    size = 1

    def __init__(self, pts: int) -> None:
        self.pts = pts

    def decode(self) -> list[_FakeVideoFrame]:
        return [_FakeVideoFrame(self.pts)]


class _FakeContainer:
    """One connection of a live input: ``demux`` blocks on ``feed`` like a network read.

    Put a PTS (int) to deliver a packet, an exception to make the read raise it, ``None`` to end.
    """

    def __init__(self) -> None:
        self.feed: queue.Queue = queue.Queue()
        codec = SimpleNamespace(width=6, height=4, decode=lambda packet: [])
        self.stream = SimpleNamespace(codec_context=codec, codec_name="fake", frames=0, average_rate=Fraction(25),
                                      guessed_rate=None, time_base=Fraction(1, 25), thread_type=None)
        self.streams = SimpleNamespace(best=lambda kind: self.stream)
        self.closed = False

    def demux(self, stream):
        while True:
            item = self.feed.get(timeout=30)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield _FakePacket(item)

    def close(self) -> None:
        self.closed = True


class ScriptedUrlSource(UrlSource):
    """A live URL source whose connections are :class:`_FakeContainer` objects (one per open)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.containers: list[_FakeContainer] = []
        self.states_at_open: list[str] = []

    def _open_container(self) -> _FakeContainer:
        self.states_at_open.append(self.state)
        self.containers.append(_FakeContainer())
        return self.containers[-1]


def test_a_live_source_without_frames_is_stalled_until_a_frame_or_the_read_timeout(fake_clock: FakeClock) -> None:
    config = SourceConfig(read_timeout_s=3.0, stall_after_s=0.5, reconnect_initial_s=0.01, reconnect_max_s=0.01,
                          reconnect_jitter=0.0)
    source = ScriptedUrlSource.from_spec("rtsp://cam.local/stream", "cam", config)
    assert source.stall_after_s == 0.5
    runner = SourceRunner(source).start()

    def sampled(state: str) -> None:  # let the sampler thread (every 10 ms) record the state too
        runner.wait_for(f"{state} sampled", lambda: runner.states[-1][1] == state, 10.0)

    runner.wait_for("the first connection", lambda: len(source.containers) == 1, 10.0)
    first = source.containers[0]
    fake_clock.advance(10.0)  # no frame yet: connecting, however long it takes
    assert source.state == "connecting"

    first.feed.put(0)
    runner.wait_for("frame 0", lambda: len(runner.frames) == 1, 10.0)
    assert source.state == "live"
    sampled("live")
    fake_clock.advance(0.5)  # exactly stall_after_s: not yet
    assert source.state == "live"
    fake_clock.advance(0.01)  # the reader thread is blocked in the read; other threads see the stall
    assert source.state == "stalled"
    sampled("stalled")

    first.feed.put(1)
    runner.wait_for("frame 1", lambda: len(runner.frames) == 2, 10.0)
    assert source.state == "live"  # a frame ends the stall
    sampled("live")
    fake_clock.advance(2.9)
    assert source.state == "stalled"  # still stalled up to the read timeout ...
    sampled("stalled")

    first.feed.put(TimeoutError("read timed out"))  # ... where the read gives up: reconnect
    runner.wait_for("the second connection", lambda: len(source.containers) == 2, 10.0)
    assert source.states_at_open == ["connecting", "reconnecting"]
    assert first.closed
    fake_clock.advance(10.0)  # reopened but no frame yet: reconnecting, never stalled
    assert source.state == "reconnecting"
    sampled("reconnecting")

    source.containers[1].feed.put(0)
    runner.wait_for("a frame after the reconnect", lambda: len(runner.frames) == 3, 10.0)
    assert source.state == "live"
    fake_clock.advance(0.6)
    assert source.state == "stalled"

    source.close()
    assert source.state == "ended"
    source.containers[1].feed.put(None)  # let the blocked read return, as PyAV's timeout would
    runner.stop(timeout_s=10.0)
    assert runner.error is None, error_text(runner.error) if runner.error else ""
    assert source.state == "ended"
    assert source.reconnects == 1 and "stalled: no packet" in str(source.last_error)
    frames = [f for _, f in runner.frames]
    check_timeline(frames)
    assert [f.timeline_break for f in frames] == [False, False, True]
    states = [s for _, s in runner.states]
    assert states[:6] == ["connecting", "live", "stalled", "live", "stalled", "reconnecting"], runner.states


def test_a_packet_that_comes_a_read_timeout_late_is_stale_and_reconnects(fake_clock: FakeClock) -> None:
    """FFmpeg answers a timed-out RTSP read with a queued packet from before the outage: drop it, reconnect."""
    config = SourceConfig(read_timeout_s=3.0, stall_after_s=0.5, reconnect_initial_s=0.01, reconnect_max_s=0.01,
                          reconnect_jitter=0.0)
    source = ScriptedUrlSource.from_spec("rtsp://cam.local/stream", "cam", config)
    runner = SourceRunner(source).start()
    runner.wait_for("the first connection", lambda: len(source.containers) == 1, 10.0)
    first = source.containers[0]
    first.feed.put(0)
    runner.wait_for("frame 0", lambda: len(runner.frames) == 1, 10.0)
    fake_clock.advance(2.0)  # a slow but live camera: 2 s < 0.9 x read timeout
    first.feed.put(1)
    runner.wait_for("frame 1", lambda: len(runner.frames) == 2, 10.0)
    fake_clock.advance(3.0)  # the read took the whole timeout and then returned a packet
    first.feed.put(2)
    runner.wait_for("the second connection", lambda: len(source.containers) == 2, 10.0)
    assert len(runner.frames) == 2  # the stale frame was not published
    source.containers[1].feed.put(0)
    runner.wait_for("a frame after the reconnect", lambda: len(runner.frames) == 3, 10.0)
    source.close()
    source.containers[1].feed.put(None)
    runner.stop(timeout_s=10.0)
    assert runner.error is None, error_text(runner.error) if runner.error else ""
    assert "stalled: no packet from rtsp://cam.local/stream for 3.0 s" in str(source.last_error)
    frames = [f for _, f in runner.frames]
    assert [f.timeline_break for f in frames] == [False, False, True]
    assert source.reconnects == 1


def test_stall_after_s_above_the_read_timeout_means_stalled_from_the_timeout_on(fake_clock: FakeClock) -> None:
    config = SourceConfig(read_timeout_s=1.0, stall_after_s=5.0, reconnect=False)
    source = ScriptedUrlSource.from_spec("rtsp://cam.local/stream", "cam", config)
    assert source.stall_after_s == 1.0  # accepted, capped at the read timeout
    source.open()
    frames = source.frames()
    source.containers[0].feed.put(0)
    next(frames)
    fake_clock.advance(0.9)
    assert source.state == "live"
    fake_clock.advance(0.2)  # past the read timeout: a read still returning packets but no frame shows it
    assert source.state == "stalled"
    source.containers[0].feed.put(TimeoutError("read timed out"))
    with pytest.raises(SourceError, match="stalled: no packet"):
        next(frames)
    assert source.state == "ended"  # reconnect off: the timeout ends the source
    source.close()


# -- URLs that never answer, close during backoff, credentials --------------------------------------


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_silent_url_without_reconnect_fails_within_open_timeout(silent_server: int, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://{USER}:{SECRET}@127.0.0.1:{silent_server}/live"
    source = UrlSource.from_spec(url, "cam", SourceConfig(open_timeout_s=0.5, read_timeout_s=0.5, reconnect=False))
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open rtsp://\*\*\*@127\.0\.0\.1:\d+/live: no answer within 0\.5 s"
                       ) as info:
        source.open()
    assert time.monotonic() - t0 < 0.5 + 2.0
    assert source.state == "ended"
    assert_no_secret(error_text(info.value), caplog.text, repr(source), str(source.last_error))


def test_a_source_that_stays_away_logs_the_first_attempts_and_then_every_tenth(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as closed:  # a port with nobody listening: every open is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = SourceConfig(open_timeout_s=0.3, read_timeout_s=0.3, reconnect_initial_s=0.001, reconnect_max_s=0.001,
                          reconnect_max_attempts=21)
    source = UrlSource.from_spec(f"http://127.0.0.1:{port}/cam.mp4", "cam", config)
    with pytest.raises(SourceError, match=r"gave up after 21 reconnect attempts"):
        source.open()
    attempts = [r for r in caplog.records if "(reconnect attempt" in r.getMessage()]
    assert len(attempts) == 21  # every attempt is logged, at DEBUG when not shown
    shown = [int(r.getMessage().split("(reconnect attempt ")[1].split(";")[0].rstrip(")"))
             for r in attempts if r.levelno == logging.WARNING]
    assert shown == [1, 2, 3, 10, 20]


def test_silent_url_with_reconnect_gives_up_after_max_attempts(silent_server: int, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://{USER}:{SECRET}@127.0.0.1:{silent_server}/live?token=abc"
    config = SourceConfig(open_timeout_s=0.3, read_timeout_s=0.3, reconnect_initial_s=0.05, reconnect_max_s=0.1,
                          reconnect_max_attempts=2)
    source = UrlSource.from_spec(url, "cam", config)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"gave up after 2 reconnect attempts \(last error: cannot open") as info:
        source.open()
    assert time.monotonic() - t0 < 3 * 0.3 + 0.2 + 3.0  # three opens of 0.3 s plus the backoff
    assert (source.reconnect_attempts, source.reconnects, source.state) == (2, 0, "ended")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("rtsp://***@127.0.0.1" in w for w in warnings), warnings
    assert_no_secret(error_text(info.value), caplog.text)
    assert "abc" not in caplog.text + error_text(info.value)


def test_close_during_backoff_returns_quickly(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://{USER}:{SECRET}@127.0.0.1:{free_tcp_port()}/live"  # nothing listens: refused at once
    config = SourceConfig(open_timeout_s=1, read_timeout_s=1, reconnect_initial_s=30, reconnect_max_s=60)
    runner = SourceRunner(UrlSource.from_spec(url, "cam", config)).start()
    runner.wait_for("backoff", lambda: runner.source.state == "reconnecting", 5.0)
    assert runner.stop(timeout_s=2.0) < 0.3
    assert runner.error is None, "close() during the backoff is a normal end"
    assert runner.frames == []
    assert runner.source.state == "ended"
    assert runner.source.reconnect_attempts == 0, "closed before the first reopen attempt"
    assert_no_secret(caplog.text)


def test_redact_text_masks_urls_inside_messages() -> None:
    text = f"Immediate exit requested: 'rtsp://{USER}:{SECRET}@10.0.0.1/x' and http://a@b/c?password=p1&x=2"
    out = redact_text(text)
    assert out == "Immediate exit requested: 'rtsp://***@10.0.0.1/x' and http://***@b/c?password=***&x=2"


# -- a live HTTP stream that ends and comes back --------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def http_dir(tmp_path: Path):
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_http_stream_end_reconnects_with_monotonic_pts(http_dir, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    directory, port = http_dir
    n, fps = 12, 25
    write_ts_segment(directory / "live.ts", n, fps, first_pts=0, level0=40)
    url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/live.ts"
    config = SourceConfig(open_timeout_s=5, read_timeout_s=5, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    runner = SourceRunner(UrlSource.from_spec(url, "cam", config)).start()
    runner.wait_for("three plays of the stream", lambda: len(runner.frames) >= 3 * n, 30.0)
    runner.stop(timeout_s=5.0)
    assert runner.error is None

    frames = [f for _, f in runner.frames]
    check_timeline(frames)
    assert runner.source.reconnects >= 2
    breaks = [f.frame_index for f in frames if f.timeline_break]
    assert breaks[:2] == [n, 2 * n], "the first frame of each replay is a timeline break"
    raw = [f.raw_pts_s for f in frames[: 3 * n]]
    assert raw[:n] == raw[n: 2 * n] == raw[2 * n:], "raw PTS restart with every replay and are kept"
    np.testing.assert_allclose(np.diff([f.pts_s for f in frames[: 3 * n]]), 1 / fps, atol=1e-6)
    assert "reconnecting" in [s for _, s in runner.states] or runner.source.reconnect_attempts >= 2
    assert_no_secret(caplog.text, *(str(r.args) for r in caplog.records))


def test_http_stream_without_pts_uses_wall_clock(http_dir) -> None:
    directory, port = http_dir
    n, fps = 10, 25
    # A raw H.264 elementary stream carries no PTS at all.
    with av.open(str(directory / "live.h264"), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    config = SourceConfig(reconnect=False)
    source = UrlSource.from_spec(f"http://127.0.0.1:{port}/live.h264", "cam", config)
    source.open()
    frames = []
    with pytest.raises(SourceError, match="stream ended"):
        for frame in source.frames():
            frames.append(frame)
    source.close()
    assert len(frames) == n
    check_timeline(frames)
    assert all(f.raw_pts_s is None for f in frames) and not any(f.timeline_break for f in frames)


# -- a real RTSP server: kill the publisher, bring it back ---------------------------------------------


@pytest.fixture
def rtsp_server(tmp_path: Path):
    missing = RtspServer.missing_tools()
    if missing:
        reason = f"RTSP test tools not installed: {', '.join(missing)} (apt-get install ffmpeg rtsp-server-perl)"
        if os.environ.get("BATSIGHT_REQUIRE_RTSP") == "1":
            pytest.fail(reason + " (BATSIGHT_REQUIRE_RTSP=1)")
        pytest.skip(reason)
    server = RtspServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        print(server.log_tail())  # shown by pytest only when the test failed


@pytest.mark.timeout(120)
@pytest.mark.parametrize("outage", ["publisher", "server"])
def test_rtsp_outage_reconnects_and_resumes(rtsp_server: RtspServer, outage: str, caplog) -> None:
    """Kill the publisher (or the whole server) until the source reconnects, bring it back: it resumes.

    Publisher gone: the RTSP session stays up but no RTP comes, so the source shows ``stalled`` after
    ``stall_after_s``, well before its read times out (``read_timeout_s``) and it goes
    ``reconnecting`` after one read timeout. (FFmpeg answers the timed-out read with the last packet
    of its reorder queue, a frame from before the outage; the source drops it and reconnects, so no
    stale frame and no ``live`` blip come between.) Server gone: the closed RTSP connection is an
    error at once, straight to ``reconnecting``.
    """
    caplog.set_level(logging.DEBUG)
    read_timeout_s = 3.0
    stall_after_s = 0.5
    config = SourceConfig(
        rtsp_transport="udp",  # rtsp-server-perl relays RTP over UDP only
        open_timeout_s=5.0,
        read_timeout_s=read_timeout_s,
        stall_after_s=stall_after_s,
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
    )
    source = UrlSource.from_spec(rtsp_server.url_with_credentials(USER, SECRET), "cam", config)
    runner = SourceRunner(source).start()
    try:
        runner.wait_for("first frames", lambda: len(runner.frames) >= 15, 20.0)
        assert source.state == "live"
        assert (source.width, source.height) == (320, 240)
        # the sampler thread must have recorded "live" before the outage (asserted below); on a
        # loaded machine it may not have run yet when the frames are in
        assert runner.live_sampled.wait(10.0), f"state 'live' never sampled; states {runner.states}"

        t_kill = time.monotonic()
        if outage == "server":
            rtsp_server.kill_server()  # the server vanishes abruptly, then its publisher
        rtsp_server.stop_publisher()
        t_killed = time.monotonic()  # stop_publisher() itself may take a while

        def first_after_kill(state: str) -> float | None:
            return next((t for t, s in list(runner.states) if t >= t_kill and s == state), None)

        # the outage lasts until the read timed out and the source went reconnecting (at least ~3 s)
        runner.wait_for("reconnecting", lambda: first_after_kill("reconnecting") is not None, read_timeout_s + 15.0)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - t_kill)))
        assert source.state in ("stalled", "reconnecting")

        t_back = time.monotonic()
        if outage == "server":
            rtsp_server.start_server()  # same ports
        rtsp_server.start_publisher()
        runner.wait_for("frames after the outage", lambda: len(runner.frames_after(t_back)) >= 15, 40.0)
        assert source.state == "live"
        # the sampler thread polls every 10 ms; on a loaded machine let it record the new state
        runner.wait_for(
            "live sampled after the outage", lambda: any(s == "live" and t > t_back for t, s in runner.states), 10.0
        )
    finally:
        close_s = runner.stop(timeout_s=read_timeout_s + config.open_timeout_s + 2.0)
        print(f"states {runner.states}\nreconnects {source.reconnects}, attempts {source.reconnect_attempts}")
    assert close_s < 2 * read_timeout_s + 1.0  # a blocked RTP read ends within about twice the timeout
    assert runner.error is None, error_text(runner.error) if runner.error else ""

    frames = [f for _, f in runner.frames]
    check_timeline(frames)
    assert source.reconnects >= 1
    after = runner.frames_after(t_kill)
    assert any(f.timeline_break for f in after), "the first frame after the reconnect must be a timeline break"
    assert sum(f.timeline_break for f in after) <= source.reconnects, "one break per reconnect at most"
    states = [s for _, s in runner.states]
    assert set(states) <= set(SOURCE_STATES)
    # the first connection may itself need a retry while the server warms up; judge around the outage only
    before_kill = [s for t, s in runner.states if t < t_kill]
    after_kill = [s for t, s in runner.states if t >= t_kill]
    i_down = next(i for i, s in enumerate(after_kill) if s in ("stalled", "reconnecting"))
    assert "live" in before_kill and "live" in after_kill[i_down:], runner.states
    t_stalled, t_reconnecting = first_after_kill("stalled"), first_after_kill("reconnecting")
    timing = (f"kill {t_kill:.2f} (done {t_killed:.2f}), stalled {t_stalled}, reconnecting {t_reconnecting};"
              f" states {runner.states}")
    assert t_reconnecting is not None and t_reconnecting - t_kill < read_timeout_s + 3.0, timing
    down = [s for t, s in runner.states if t_kill + 1.0 < t < t_back]
    assert "live" not in down, timing  # no stale frame revived the source during the outage
    stale = [f.frame_index for t, f in runner.frames if t_kill + 1.0 < t < t_back]
    assert not stale, f"frames published during the outage: {stale}; {timing}"
    if outage == "publisher":  # stalled is seen by other threads from stall_after_s on, before the reconnect
        assert t_stalled is not None and t_stalled < t_reconnecting, timing
        assert after_kill[i_down] == "stalled", timing  # the first sign of the outage
        # generous for a loaded 2-core machine; before stall_after_s existed it took read_timeout_s (3 s)
        assert t_stalled - t_kill < stall_after_s + 1.5, timing
    assert_no_secret(caplog.text, *(str(r.args) for r in caplog.records), str(source.last_error), repr(source))


@pytest.mark.timeout(60)
def test_rtsp_test_server_keeps_to_its_own_rtp_ports(rtsp_server: RtspServer) -> None:
    """With UDP 20000 (rtsp-server-perl's built-in RTP base) taken, the helper's server still streams.

    Guards the test helper itself: the stock server falls back to 20000 after any connection while
    nothing is mounted, so a second server (or anything else on 20000) broke the RTSP tests.
    """
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        squatter.bind(("0.0.0.0", 20000))  # noqa: S104 - the server's RTP listener binds the wildcard address
    except OSError:
        squatter.close()
        pytest.skip("UDP 20000 is already taken by something else")
    try:
        rtsp_server.stop_publisher()  # remount: the publisher's RTP ports are chosen now, with 20000 taken
        rtsp_server.start_publisher()
        config = SourceConfig(rtsp_transport="udp", open_timeout_s=5.0, read_timeout_s=2.0, reconnect=False)
        source = UrlSource.from_spec(rtsp_server.url, "cam", config)
        source.open()
        try:
            frames = list(itertools.islice(source.frames(), 5))
        finally:
            source.close()
    finally:
        squatter.close()
    assert [f.frame_index for f in frames] == list(range(5))
    assert "20000" not in rtsp_server.log_tail()


def test_http_file_with_a_known_duration_ends_instead_of_replaying(http_dir) -> None:
    directory, port = http_dir
    write_video(directory / "clip.mp4", "mpeg4", 10)
    config = SourceConfig(open_timeout_s=5, read_timeout_s=5, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    source = UrlSource.from_spec(f"http://127.0.0.1:{port}/clip.mp4", "web", config)
    source.open()
    frames = list(source.frames())
    source.close()
    assert [f.frame_index for f in frames] == list(range(10))
    assert source.reconnects == 0 and source.state == "ended"


@pytest.mark.timeout(150)
def test_engine_recovers_from_an_rtsp_outage_without_restarting(rtsp_server: RtspServer, tmp_path: Path) -> None:
    """The whole pipeline: an RTSP camera drops for ~3 s beside a file source; nothing restarts."""
    from engine.testing import FakeKeypointModel, ListSource

    config = pipeline_config(
        [
            "publisher.health_period_s=0.5",
            "source.rtsp_transport=udp", "source.read_timeout_s=1.0", "source.open_timeout_s=5.0",
            "source.reconnect_initial_s=0.2", "source.reconnect_max_s=1.0",
        ],
    )
    cam = UrlSource.from_spec(rtsp_server.url_with_credentials(USER, SECRET), "cam", config.source)
    nets = ListSource("nets", n_frames=100_000, delay_s=0.02)  # a lossless source running alongside
    pipeline, collector = open_pipeline(config, [cam, nets], FakeKeypointModel())
    pipeline.start()
    try:
        deadline = time.monotonic() + 30
        while pipeline.stats["cam"].frames_out < 15 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pipeline.stats["cam"].frames_out >= 15
        rtsp_server.stop_publisher()
        time.sleep(3.0)
        nets_during = pipeline.stats["nets"].frames_out
        cam_during = pipeline.stats["cam"].frames_out
        rtsp_server.start_publisher()
        deadline = time.monotonic() + 40
        while pipeline.stats["cam"].frames_out < cam_during + 15 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pipeline.stats["cam"].frames_out >= cam_during + 15, "frames did not resume after the outage"
        assert pipeline.stats["nets"].frames_out > nets_during  # the other source never waited
    finally:
        pipeline.stop()
        assert pipeline.join(timeout_s=15)
    messages = collector.join()
    poses = [m for m in messages if isinstance(m, Pose) and m.source_id == "cam"]
    assert [m.frame_index for m in poses] == sorted(m.frame_index for m in poses)
    assert np.all(np.diff([m.pts_s for m in poses]) > 0)
    assert any(m.timeline_break for m in poses)
    health = [m for m in messages if isinstance(m, Health)]
    states = [m.sources["cam"].state for m in health]
    assert {"stalled", "reconnecting"} & set(states) and "live" in states
    assert max(m.sources["cam"].reconnects for m in health) >= 1
    for m in messages:  # credentials never published
        assert SECRET not in str(m.to_json_dict())
