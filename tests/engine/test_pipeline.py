"""The pipeline with test doubles (in-memory sources, deterministic model).

Tests whose point is threads, queues, stop and shutdown, late subscribers or sink error policies
run the threaded :class:`Pipeline` over real ZeroMQ (bound to ``tcp://127.0.0.1:*``, the port read
back from the publisher). Tests of the values the steps compute (similarity, fits, window restarts)
run the same steps inline with :func:`engine.pipeline.run_inline`: no threads, no sockets.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from engine.config import load_config
from engine.errors import ModelError
from engine.pipeline import Pipeline, run_inline
from engine.testing import FakeClock, FakeKeypointModel, ListSource
from engine.wire import decode
from sinks.jsonl import JsonlSink
from sinks.runtime import Subscriber
from tests.helpers import ANY_PORT, by_kind, open_pipeline, pipeline_config, run_pipeline, wait_until


def test_two_file_sources_are_lossless_ordered_and_batched_together(tmp_path):
    sources = [ListSource("a", n_frames=40), ListSource("b", n_frames=25, fps=25.0, size=(40, 80))]
    model = FakeKeypointModel(no_person_every=7)
    jsonl = tmp_path / "out.jsonl"
    pipeline, messages, error = run_pipeline(sources, model, tmp_path, ["batch.max_batch=4"], [JsonlSink(str(jsonl))])
    assert error is None
    for source_id, n, fps in (("a", 40, 30.0), ("b", 25, 25.0)):
        poses = by_kind(messages, "pose", source_id)
        assert [m.frame_index for m in poses] == list(range(n))
        assert [m.seq for m in poses] == list(range(n))
        np.testing.assert_allclose([m.pts_s for m in poses], np.arange(n) / fps)
        found = [m.batter_found for m in poses]
        assert found == [i % 7 != 0 for i in range(n)]  # FakeKeypointModel: no person every 7th frame
        assert all(m.keypoints_xy is None for m in poses if not m.batter_found)
        assert all(m.keypoints_xy.shape == (17, 2) for m in poses if m.batter_found)
        sims = by_kind(messages, "sim", source_id)
        assert len(sims) == sum(found)
        eos = by_kind(messages, "eos", source_id)
        assert len(eos) == 1 and eos[0].frames == n and eos[0].error is None
    assert max(model.calls) == 4 and sum(model.calls) == 65
    assert any(len(shapes) == 2 for shapes in model.batch_shapes)  # one forward pass, both sources
    health = by_kind(messages, "health")
    assert health[-1].engine_state == "stopped"
    assert health[-1].sources["a"].frames_out == 40
    # the in-process jsonl sink saw exactly what the independent subscriber saw
    lines = jsonl.read_text().splitlines()
    assert len(lines) == len(messages)
    summary = pipeline.summary()
    assert summary.frames == 65 and summary.per_source["b"].batter_frames == sum(i % 7 != 0 for i in range(25))


def test_similarity_and_fit_messages_hold_valid_values():
    messages = run_inline(load_config(None, []), [ListSource("a", n_frames=30)], FakeKeypointModel())
    assert [(m.reason, m.error) for m in by_kind(messages, "eos")] == [("end", None)]
    for m in by_kind(messages, "sim"):
        sim = m.cosine_similarity
        assert sim.shape == (17, 17) and sim.dtype == np.float32
        assert np.all((sim >= 0) & (sim <= 1)) and np.allclose(np.diag(sim), 1) and np.allclose(sim, sim.T)
        assert m.pairs["left_wrist/left_shoulder"] == pytest.approx(float(sim[9, 5]), abs=1e-6)
        assert np.all((m.window_mean >= 0) & (m.window_mean <= 1))
    fits = by_kind(messages, "fit")
    assert len(fits) == 29  # the first frame alone cannot be fitted
    last = fits[-1]
    assert last.n_points == 30 and last.degree_xy == 10
    assert last.dx_coef.shape == (11,) and last.r_coef.shape == (3,)


def test_a_failing_source_ends_alone_and_the_other_finishes(tmp_path):
    sources = [ListSource("ok", n_frames=30), ListSource("bad", n_frames=30, fail_after=5)]
    pipeline, messages, error = run_pipeline(sources, FakeKeypointModel(), tmp_path)
    assert error is None
    assert len(by_kind(messages, "pose", "ok")) == 30
    assert [m.frame_index for m in by_kind(messages, "pose", "bad")] == [0, 1, 2, 3, 4]
    (eos,) = by_kind(messages, "eos", "bad")
    assert eos.reason == "error" and "simulated failure" in eos.error
    assert pipeline.summary().per_source["bad"].error


class _ExplodingModel(FakeKeypointModel):
    def infer(self, images):
        if len(self.calls) >= 2:
            msg = "simulated CUDA out of memory"
            raise ModelError(msg)
        return super().infer(images)


def test_a_model_failure_is_re_raised_and_every_source_gets_eos(tmp_path):
    sources = [ListSource("a", n_frames=200), ListSource("b", n_frames=200)]
    pipeline, messages, error = run_pipeline(sources, _ExplodingModel(), tmp_path, ["batch.max_batch=2"])
    assert isinstance(error, ModelError) and "out of memory" in str(error)
    published = by_kind(messages, "pose")
    assert 0 < len(published) <= 4
    for source_id in ("a", "b"):
        (eos,) = by_kind(messages, "eos", source_id)
        assert eos.reason == "error"
    assert by_kind(messages, "health")[-1].engine_state == "stopped"


def test_stop_finishes_in_flight_frames_and_sends_eos(tmp_path):
    source = ListSource("cam", n_frames=100_000, delay_s=0.001)
    pipeline, collector = open_pipeline(pipeline_config(), [source], FakeKeypointModel())
    pipeline.start()
    wait_until(lambda: pipeline.stats["cam"].frames_out >= 20, what="20 frames out")  # mid-run, then stop
    threading.Thread(target=pipeline.stop).start()
    assert pipeline.join(timeout_s=20)
    messages = collector.join()
    poses = by_kind(messages, "pose", "cam")
    assert 0 < len(poses) < 100_000
    assert [m.frame_index for m in poses] == list(range(len(poses)))
    (eos,) = by_kind(messages, "eos", "cam")
    assert eos.frames == len(poses) and eos.reason == "stopped"


def test_wire_messages_decode_with_the_public_decoder(tmp_path):
    """Raw multipart frames from the publisher decode with engine.wire.decode (header keys of DESIGN §5)."""
    import zmq

    pipeline = Pipeline(pipeline_config(), [ListSource("x", n_frames=3)], FakeKeypointModel())
    pipeline.publisher.open()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(pipeline.publisher.endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"pose/")
    pipeline.start()
    parts = [sub.recv_multipart() for _ in range(3)]
    assert pipeline.join(timeout_s=20)
    sub.close(0)
    ctx.term()
    for i, frames in enumerate(parts):
        assert frames[0] == b"pose/x/"
        message = decode(frames)
        for key in ("v", "kind", "source_id", "seq", "frame_index", "pts_s", "capture_time_ns", "arrays"):
            assert key in message.header
        assert message.frame_index == i


def test_a_timeline_break_restarts_rolling_windows_but_not_the_cumulative_mean():
    messages = run_inline(load_config(None, []), [ListSource("cam", n_frames=40, break_at=(25,))], FakeKeypointModel())
    assert [(m.reason, m.error) for m in by_kind(messages, "eos")] == [("end", None)]
    poses = by_kind(messages, "pose")
    assert [m.timeline_break for m in poses] == [i == 25 for i in range(40)]
    sims = {m.frame_index: m for m in by_kind(messages, "sim")}
    assert sims[24].window_frames == 25 and sims[25].window_frames == 1
    assert sims[39].window_frames == 15
    fits = {m.frame_index: m for m in by_kind(messages, "fit")}
    assert 25 not in fits  # one point after the break: nothing to fit yet
    assert fits[39].n_points == 15 and fits[39].t_start_s == pytest.approx(25 / 30)
    expected = np.mean([sims[i].cosine_similarity for i in range(40)], axis=0)
    np.testing.assert_allclose(sims[39].cumulative_mean, expected, atol=1e-6)


class _CuttingSource(ListSource):
    """Frames of one textured view, then (from ``cut_at``) another: a camera cut."""

    def __init__(self, cut_at: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cut_at = cut_at

    def frames(self):
        rng = np.random.default_rng(0)
        h, w = self.size
        views = [np.kron(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
                 for _ in range(2)]
        for frame in super().frames():
            yield replace(frame, image=views[int(frame.frame_index >= self.cut_at)].copy())


@pytest.mark.parametrize("threshold", [27.0, 0.0])
def test_a_camera_cut_restarts_tracks_and_windows_unless_detection_is_off(threshold):
    source = _CuttingSource(cut_at=20, source_id="cam", n_frames=36, size=(96, 128))
    messages = run_inline(load_config(None, [f"batter.scene_cut_threshold={threshold}"]), [source], FakeKeypointModel())
    assert [(m.reason, m.error) for m in by_kind(messages, "eos")] == [("end", None)]
    poses = by_kind(messages, "pose")
    assert [m.scene_cut for m in poses] == [threshold > 0 and i == 20 for i in range(36)]
    assert not any(m.timeline_break for m in poses)
    sims = {m.frame_index: m for m in by_kind(messages, "sim")}
    assert sims[19].window_frames == 20
    assert sims[20].window_frames == (1 if threshold else 21)
    expected = np.mean([sims[i].cosine_similarity for i in range(36)], axis=0)
    np.testing.assert_allclose(sims[35].cumulative_mean, expected, atol=1e-6)  # kept across the cut
    track_ids = [m.track_id for m in poses]
    if threshold:  # ByteTrack starts over after the cut: the batter's track is a new one
        assert track_ids[19] is not None and track_ids[-1] is not None and track_ids[-1] != track_ids[19]
    else:
        assert track_ids[19] == track_ids[-1] is not None


def test_live_latency_stays_bounded_when_inference_is_slower_than_the_camera(tmp_path):
    """A 200 fps camera, a model at ~40 fps: the newest frame wins, drops are counted."""
    source = ListSource("cam", n_frames=800, live=True, delay_s=0.005)
    model = FakeKeypointModel(delay_s=0.025)
    pipeline, messages, error = run_pipeline([source], model, tmp_path, ["batch.max_batch=1"])
    assert error is None
    poses = by_kind(messages, "pose")
    latency_s = np.array([(m.publish_time_ns - m.capture_time_ns) / 1e9 for m in poses])
    (eos,) = by_kind(messages, "eos")
    assert eos.dropped > 0 and eos.frames + eos.dropped == 800
    assert len(poses) == eos.frames
    # latency bounded by the queue (2 frames) plus one model call, and not growing over the run
    third = len(latency_s) // 3
    assert np.median(latency_s[-third:]) < 0.25
    assert np.median(latency_s[-third:]) < np.median(latency_s[:third]) + 0.1
    assert [m.frame_index for m in poses] == sorted(m.frame_index for m in poses)


def test_a_stuck_source_does_not_block_the_others(tmp_path):
    stuck = ListSource("stuck", n_frames=5, live=True, delay_s=30.0)  # first frame after 30 s
    fast = ListSource("fast", n_frames=60)
    pipeline, collector = open_pipeline(pipeline_config(), [stuck, fast], FakeKeypointModel())
    pipeline.start()
    wait_until(lambda: pipeline.stats["fast"].frames_out >= 60, timeout_s=20, what="the fast source's 60 frames")
    assert pipeline.stats["fast"].frames_out == 60
    assert pipeline.stats["stuck"].frames_out == 0  # still waiting for its first frame
    pipeline.stop()
    assert pipeline.join(timeout_s=5)
    messages = collector.join()
    assert len(by_kind(messages, "pose", "fast")) == 60 and len(by_kind(messages, "eos", "stuck")) == 1


def test_a_late_subscriber_gets_the_state_within_one_health_period(tmp_path):
    """Health goes out every ``health_period_s`` of the engine's clock, so a late subscriber hears it within one.

    The engine runs on a :class:`FakeClock` that moves only when the test says: the subscriber's
    ``health/`` subscription is in place once it receives a ``pose/`` message (subscriptions of one
    socket arrive in order), and then one period of the engine's clock is enough for a ``health/``.
    """
    clock = FakeClock()
    config = load_config(None, [f"publisher.endpoint={ANY_PORT}", "publisher.health_period_s=0.5"])
    source = ListSource("cam", n_frames=100_000, live=True, delay_s=0.01)
    pipeline = Pipeline(config, [source], FakeKeypointModel(), clock=clock)
    pipeline.publisher.open()
    pipeline.start()
    received = []
    try:
        wait_until(lambda: pipeline.stats["cam"].frames_out > 0, what="the first frame out")  # a late subscriber
        late = Subscriber(pipeline.publisher.endpoint, ("health/", "pose/"))
        late.open()
        try:
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                first = late.recv(200)
            assert first is not None and first.kind == "pose"  # the engine clock has not moved: no health yet
            clock.advance(0.5)  # one health period of the engine's clock
            message = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (message is None or message.kind != "health"):
                message = late.recv(200)
                if message is not None:
                    received.append(message.kind)
        finally:
            late.close()
    finally:
        pipeline.stop()
        pipeline.join(timeout_s=10)
    assert message is not None and message.kind == "health"
    assert message.uptime_s == pytest.approx(0.5)  # the health of the first period after it subscribed
    assert set(received) <= {"pose", "health"} and received.count("health") == 1
    cam = message.sources["cam"]
    assert cam.state == "live" and cam.frames_out > 0 and cam.reconnects >= 0 and cam.queue_depth >= 0


class _DeafSource(ListSource):
    """A source stuck in I/O that ignores close() (like a driver call without a timeout)."""

    def frames(self):
        time.sleep(60)
        yield from ()


def test_shutdown_is_bounded_even_when_a_source_ignores_close(tmp_path):
    """The engine's clock bounds shutdown: a deaf source gets its ``eos/`` read timeout + 2 s after ``stop``."""
    clock = FakeClock()
    config = pipeline_config(["source.read_timeout_s=0.5"])
    sources = [_DeafSource("deaf", live=True), ListSource("ok", n_frames=5)]
    pipeline, collector = open_pipeline(config, sources, FakeKeypointModel(), clock=clock)
    pipeline.start()
    wait_until(lambda: by_kind(collector.messages, "eos", "ok"), what="the ok source's eos/")  # it ended first
    pipeline.stop()
    clock.advance(0.5 + 2.0 - 0.1)  # just before the deadline: the deaf source is still waited for
    assert not pipeline.join(timeout_s=0.5)
    clock.advance(0.2)  # past read timeout + grace
    assert pipeline.join(timeout_s=30)  # a safety bound: the reasons below say why it ended
    messages = collector.join()
    reasons = {m.source_id: m.reason for m in by_kind(messages, "eos")}
    assert reasons == {"deaf": "timeout", "ok": "end"}


class _FlakySink(JsonlSink):
    """A jsonl sink whose second write raises (a bug in third-party sink code)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.writes = 0

    def write_batch(self, messages):
        self.writes += 1
        if self.writes == 2:
            msg = "disk on fire"
            raise OSError(msg)
        super().write_batch(messages)


@pytest.mark.parametrize("policy", ["stop", "skip", "fail"])
def test_sink_error_policies(tmp_path, policy):
    source = ListSource("cam", n_frames=100_000 if policy == "fail" else 200, delay_s=0.002)
    pipeline, collector = open_pipeline(pipeline_config(), [source], FakeKeypointModel())
    sink = _FlakySink(str(tmp_path / "out.jsonl"))
    endpoint = pipeline.publisher.endpoint
    thread = sink.run_in_thread(endpoint, expected_sources={"cam"}, on_error=policy, on_fail=pipeline.stop)
    pipeline.start(expected_subscribers=1)
    assert pipeline.join(timeout_s=60)
    thread.join(10)
    messages = collector.join()
    poses = by_kind(messages, "pose")
    if policy == "fail":  # the run stopped early and cleanly
        assert 0 < len(poses) < 100_000 and by_kind(messages, "eos")[0].reason == "stopped"
        assert isinstance(thread.error, OSError)
    else:  # the engine (and the independent subscriber) never noticed
        assert len(poses) == 200
    if policy == "stop":
        assert isinstance(thread.error, OSError) and "disk on fire" in str(thread.error)
        assert sink.writes == 2
    if policy == "skip":
        assert thread.error is None and thread.runner.errors == 1 and sink.writes > 2
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert 0 < len(lines) < len(messages)  # only the skipped batch is missing
        assert '"kind":"eos"' in lines[-2] or '"kind":"eos"' in lines[-1]
        # the run reports it (exit 1): the independent subscriber's count is what the sink was meant to write
        unwritten = len(messages) - len(lines)
        assert thread.runner.shortfall(pipeline.publisher.published) == (
            f"{unwritten} of {len(messages)} messages not written (1 batch raised (sink_error_policy skip))"
        )


def test_health_rates_use_a_window_not_the_time_since_the_last_call():
    from engine.pipeline import SourceStats

    stats = SourceStats("cam", None)
    assert stats.rates(100.0, 0, window_s=1.0) == (0.0, 0.0)
    for k in range(1, 6):  # steady 10 fps in and 8 fps out, health every second
        stats.frames_out = 8 * k
        fps_in, fps_out = stats.rates(100.0 + k, 10 * k, window_s=1.0)
        assert (fps_in, fps_out) == pytest.approx((10.0, 8.0))
    stats.frames_out += 4  # the final health 0.05 s later, after a burst of 4 frames
    fps_in, fps_out = stats.rates(105.05, 54, window_s=1.0)
    assert fps_in == pytest.approx(14 / 1.05) and fps_out == pytest.approx(12 / 1.05)  # not 4 / 0.05 = 80
    assert len(stats._rate_samples) <= 3  # bounded memory


class _GatedModel(FakeKeypointModel):
    """:class:`FakeKeypointModel` whose ``infer`` waits for ``gate`` (set by the test), so queues fill."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def infer(self, images):
        self.gate.wait(60)
        return super().infer(images)


def test_a_frame_read_when_sigint_comes_is_published_not_lost(tmp_path):
    """SIGINT while the reader holds a decoded frame waiting for room: that frame is still published.

    With ``max_batch=1`` and the model held, the batcher takes frame 0, the queue holds frames 1-2
    (``file_queue_size=2``) and the reader has read frame 3 and waits to queue it: ``frames_in`` is
    then exactly 4. After SIGINT every frame read is published (the final ``health/`` ``frames_in``
    equals ``eos/`` ``frames + dropped``).
    """
    import signal

    from engine.cli import _install_signal_handlers
    from engine.sources import build_sources
    from tests.helpers import write_video

    clip = write_video(tmp_path / "clip.mp4", "h264", 30)
    config = pipeline_config(["batch.max_batch=1", "source.file_queue_size=2", "shots.enabled=false"])
    [source] = build_sources([f"clip={clip}"], config.source)
    model = _GatedModel()
    pipeline, collector = open_pipeline(config, [source], model)
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        _install_signal_handlers({"fn": pipeline.stop})
        pipeline.start()
        reader = pipeline.readers[0]
        wait_until(lambda: reader.frames_in == 4, what="frame 3 read, its queue full")
        signal.raise_signal(signal.SIGINT)  # the handler calls pipeline.stop() on this thread
        model.gate.set()
        assert pipeline.join(timeout_s=30)
    finally:
        model.gate.set()
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
    messages = collector.join()
    (eos,) = by_kind(messages, "eos", "clip")
    final = by_kind(messages, "health")[-1].sources["clip"]
    assert eos.reason == "stopped" and (eos.frames, eos.dropped) == (4, 0)
    assert (final.frames_in, final.frames_out) == (4, 4)
    assert [m.frame_index for m in by_kind(messages, "pose", "clip")] == [0, 1, 2, 3]
