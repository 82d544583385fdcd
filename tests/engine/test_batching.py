"""Reader queue policies (lossless files, drop-oldest live) and the fair cross-source batcher."""

from __future__ import annotations

import threading
import time

from engine.batching import Batcher, SourceReader
from engine.errors import SourceError
from engine.testing import ListSource
from engine.types import EndOfStream, Frame


def _drain(reader: SourceReader, timeout_s: float = 5.0) -> list:
    items = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        item = reader.queue.get(timeout=timeout_s)
        items.append(item)
        if isinstance(item, EndOfStream):
            return items
    msg = "no EndOfStream"
    raise AssertionError(msg)


def test_file_reader_is_lossless_and_ordered_with_a_tiny_queue():
    reader = SourceReader(ListSource("f", n_frames=200), queue_size=1)
    reader.start()
    items = []
    while not items or not isinstance(items[-1], EndOfStream):
        items.append(reader.queue.get(timeout=5))
        time.sleep(0.0005)  # slower consumer: backpressure, not drops
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.frame_index for f in frames] == list(range(200))
    assert items[-1].frames == 200 and items[-1].dropped == 0 and items[-1].error is None
    assert reader.dropped == 0


def test_live_reader_drops_oldest_and_counts():
    reader = SourceReader(ListSource("cam", n_frames=100, live=True), queue_size=2)
    reader.start()
    reader.join(5)
    items = _drain(reader)
    frames = [i for i in items if isinstance(i, Frame)]
    eos = items[-1]
    assert len(frames) + eos.dropped == 100
    assert eos.dropped >= 97  # nobody consumed: only the newest frames survive
    assert frames[-1].frame_index == 99  # the newest frame wins


def test_source_failure_reaches_the_consumer_as_end_of_stream():
    reader = SourceReader(ListSource("bad", n_frames=10, fail_after=3), queue_size=8)
    reader.start()
    items = _drain(reader)
    assert [f.frame_index for f in items if isinstance(f, Frame)] == [0, 1, 2]
    assert isinstance(items[-1].error, SourceError) and "simulated failure" in str(items[-1].error)
    assert reader.state == "failed"


def test_stop_on_a_full_file_queue_ends_promptly_without_dropping_queued_frames():
    source = ListSource("f", n_frames=10_000)
    reader = SourceReader(source, queue_size=2)
    reader.start()
    time.sleep(0.05)
    t = time.monotonic()
    reader.stop()
    items = _drain(reader)  # the consumer keeps draining until the end marker, as the batcher does
    reader.join(2)
    assert not reader.is_alive() and time.monotonic() - t < 1.0
    assert source.closed.is_set()
    frames = [f.frame_index for f in items if isinstance(f, Frame)]
    assert frames == list(range(len(frames))) and len(frames) >= 2
    assert items[-1].dropped == 0 and reader.dropped == 0


def test_batcher_is_fair_across_sources_and_respects_max_batch():
    notify = threading.Event()
    fast = SourceReader(ListSource("fast", n_frames=50), queue_size=50, notify=notify)
    slow = SourceReader(ListSource("slow", n_frames=5), queue_size=50, notify=notify)
    for r in (fast, slow):
        r.start()
        r.join(5)
    batcher = Batcher([fast, slow], max_batch=4, max_wait_ms=1, notify=notify)
    first = batcher.next_batch(1.0)
    assert len(first) == 4
    assert sum(1 for f in first if isinstance(f, Frame) and f.source_id == "slow") == 2
    seen = list(first)
    while True:
        batch = batcher.next_batch(0.05)
        if not batch:
            break
        assert len(batch) <= 4
        seen.extend(batch)
    for sid, n in (("fast", 50), ("slow", 5)):
        frames = [f.frame_index for f in seen if isinstance(f, Frame) and f.source_id == sid]
        assert frames == list(range(n))
        assert any(isinstance(f, EndOfStream) and f.source_id == sid for f in seen)


def test_batcher_waits_at_most_max_wait_ms_for_a_partial_batch():
    notify = threading.Event()
    reader = SourceReader(ListSource("one", n_frames=1), queue_size=4, notify=notify)
    batcher = Batcher([reader], max_batch=8, max_wait_ms=50, notify=notify)
    assert batcher.next_batch(0.01) == []
    reader.start()
    t = time.monotonic()
    batch = batcher.next_batch(2.0)
    waited = time.monotonic() - t
    assert [type(i) for i in batch][0] is Frame
    assert waited < 1.0


def test_end_marker_never_drops_a_file_frame_however_slow_the_consumer():
    reader = SourceReader(ListSource("f", n_frames=3), queue_size=1)
    reader.start()
    time.sleep(1.5)  # the consumer is late: the reader holds frame 1 and waits with the end marker
    items = _drain(reader)
    assert [i.frame_index for i in items if isinstance(i, Frame)] == [0, 1, 2]
    assert items[-1].dropped == 0


def test_abandon_releases_a_reader_blocked_on_its_end_marker():
    reader = SourceReader(ListSource("f", n_frames=2), queue_size=1)
    reader.start()
    time.sleep(0.3)
    assert reader.is_alive()  # blocked: the queue is full and nobody reads
    reader.abandon()
    reader.join(2)
    assert not reader.is_alive()
