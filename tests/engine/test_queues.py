"""Memory and latency of the source queues: the run's frame budget, and live = newest frame (issue 12)."""

from __future__ import annotations

import platform
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.batching import Batcher, FrameBudget, SourceReader
from engine.config import load_config
from engine.testing import FakeKeypointModel, ListSource
from engine.types import DeferredFrame, EndOfStream, Frame
from tests.helpers import by_kind, run_pipeline


def test_frame_budget_bounds_the_frames_all_queues_hold_and_loses_nothing() -> None:
    """20 file sources with queues of 8: the queues together hold at most what the budget allows."""
    size = (50, 100)  # 15_000 bytes per BGR frame
    frame_bytes = size[0] * size[1] * 3
    budget = FrameBudget(3 * frame_bytes)
    notify = threading.Event()
    readers = [
        SourceReader(ListSource(f"s{i}", n_frames=30, size=size), 8, notify, budget=budget) for i in range(20)
    ]
    for reader in readers:
        reader.start()
    batcher = Batcher(readers, max_batch=4, max_wait_ms=1, notify=notify)
    seen: list[Frame | EndOfStream] = []
    most_held = 0
    while sum(isinstance(i, EndOfStream) for i in seen) < len(readers):
        # counted from the queues themselves, not from the budget's own bookkeeping
        held = 0
        for r in readers:
            with r.queue.mutex:
                held += sum(item.image.nbytes for item in r.queue.queue if isinstance(item, Frame))
        most_held = max(most_held, held)
        seen.extend(batcher.next_batch(5.0))
    assert most_held <= 3 * frame_bytes, most_held  # without a budget: up to 20 * 8 frames
    for i in range(20):
        frames = [f for f in seen if isinstance(f, Frame) and f.source_id == f"s{i}"]
        assert [f.frame_index for f in frames] == list(range(30))  # lossless, in order
        assert [int(f.image[0, 0, 0]) for f in frames] == list(range(30))
    assert budget.held_bytes == 0


def test_a_frame_larger_than_the_budget_still_passes_alone() -> None:
    budget = FrameBudget(10)
    reader = SourceReader(ListSource("big", n_frames=3, size=(20, 20)), 4, budget=budget)
    reader.start()
    batcher = Batcher([reader], max_batch=1, max_wait_ms=0, notify=reader.notify)
    items: list[Frame | EndOfStream] = []
    while not items or not isinstance(items[-1], EndOfStream):
        items.extend(batcher.next_batch(5.0))
    assert [f.frame_index for f in items if isinstance(f, Frame)] == [0, 1, 2]
    assert budget.held_bytes == 0


def test_a_live_source_gives_the_model_one_frame_per_call_its_newest(tmp_path) -> None:
    """Default config: a camera faster than the model; every model call gets one frame, the newest."""
    source = ListSource("cam", n_frames=100, live=True, delay_s=0.01)
    model = FakeKeypointModel(delay_s=0.05)
    captured: dict[int, float] = {}
    frames_of = source.frames

    def stamped():  # when each frame left the camera, independently of the engine's stamps
        for frame in frames_of():
            captured[frame.frame_index] = frame.capture_time_ns
            yield frame

    source.frames = stamped  # type: ignore[method-assign]
    calls: list[int] = []
    infer = model.infer

    def record(images: list[np.ndarray]):
        calls.append(max(captured))  # the newest frame captured when the model starts
        return infer(images)

    model.infer = record  # type: ignore[method-assign]
    pipeline, messages, error = run_pipeline([source], model, tmp_path, ["shots.enabled=false"])
    assert error is None
    assert model.calls and set(model.calls) == {1}, model.calls  # a queue of 2 gave the model pairs
    poses = by_kind(messages, "pose", "cam")
    eos = by_kind(messages, "eos", "cam")[0]
    assert len(poses) + eos.dropped == 100 and eos.dropped > 0
    # the processed frame was (nearly always) the newest one when the model started on it
    behind = [newest - pose.frame_index for pose, newest in zip(poses, calls, strict=True)]
    assert np.median(behind) == 0 and max(behind) <= 3, behind


def test_live_frames_wait_unconverted_and_only_taken_ones_are_converted() -> None:
    converted: list[int] = []

    finished = threading.Event()

    class Deferring(ListSource):
        def queued_frames(self):
            for frame in self.frames():
                def make(frame: Frame = frame) -> Frame:
                    converted.append(frame.frame_index)
                    return frame

                yield DeferredFrame(self.source_id, frame.image.nbytes, make)
            finished.set()  # the last frame is queued

    budget = FrameBudget(None)
    reader = SourceReader(Deferring("cam", n_frames=50, live=True), 1, budget=budget)
    reader.start()
    assert finished.wait(5.0)  # nobody took anything: 49 frames were replaced by newer ones
    assert budget.live_bytes == 48 * 64 * 3 and budget.held_bytes == 0  # live frames never hold files back
    item = reader.take_nowait()
    assert isinstance(item, Frame) and item.frame_index == 49
    assert converted == [49]
    reader.join(5.0)  # its end marker found room
    assert isinstance(reader.take_nowait(), EndOfStream)
    assert reader.dropped == 49 and budget.live_bytes == 0


def test_queue_budget_default_is_sized_for_the_machine() -> None:
    import os

    total_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    config = load_config()
    assert config.source.queue_budget_mib is None and config.source.live_queue_size == 1
    budget = FrameBudget.from_mib(config.source.queue_budget_mib)
    assert budget.limit_bytes == min(1024, max(256, total_mib // 32)) << 20


def test_file_sources_whose_decoders_overflow_the_budget_take_turns_and_lose_nothing() -> None:
    """Decoders count in the budget: of 10 file sources holding 1 MB each, 3 decode at once in 3.5 MB."""
    lock = threading.Lock()
    open_now: list[str] = []
    most_open = 0

    class Decoding(ListSource):
        decoder_bytes = 1_000_000

        def open(self) -> None:
            nonlocal most_open
            super().open()
            with lock:
                open_now.append(self.source_id)
                most_open = max(most_open, len(open_now))

        def close(self) -> None:
            with lock:
                if self.source_id in open_now:
                    open_now.remove(self.source_id)
            super().close()

    notify = threading.Event()
    budget = FrameBudget(3_500_000)
    readers = [SourceReader(Decoding(f"s{i}", n_frames=20), 8, notify, budget=budget) for i in range(10)]
    for reader in readers:
        reader.start()
    batcher = Batcher(readers, max_batch=4, max_wait_ms=1, notify=notify)
    seen: list[Frame | EndOfStream] = []
    while sum(isinstance(i, EndOfStream) for i in seen) < len(readers):
        seen.extend(batcher.next_batch(5.0))
    assert most_open == 3, most_open  # without decoders in the budget all 10 open at once
    for i in range(10):
        assert [f.frame_index for f in seen if isinstance(f, Frame) and f.source_id == f"s{i}"] == list(range(20))
    assert budget.held_bytes == 0


_FREED_FRAMES = """
import sys, numpy as np
from engine.batching import fix_mmap_threshold
if sys.argv[1] == "fix":
    assert fix_mmap_threshold()
def rss_mib(): return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
a = np.ones(8 << 20, np.uint8); del a  # glibc's dynamic threshold rises to 8 MiB
before = rss_mib()
frames, kept = [], []
for _ in range(30):
    frames.append(np.ones(6 << 20, np.uint8))  # a 1080x1920 BGR frame
    kept.append(np.ones(200_000, np.uint8))  # outlives it: the heap cannot be trimmed below it
del frames
print(rss_mib() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_frames_go_back_to_the_os_with_the_pinned_mmap_threshold() -> None:
    def grown_mib(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _FREED_FRAMES, mode], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[2])
        return int(done.stdout)

    assert grown_mib("default") > 120  # 180 MiB of frames freed, still resident
    assert grown_mib("fix") < 40


@pytest.mark.parametrize("deferred", [False, True])
def test_a_timeline_break_survives_the_drop_of_its_frame(deferred: bool) -> None:
    """Frame 5 starts a new timeline (a reconnect); it is dropped, the newest frame carries its break."""
    finished = threading.Event()

    class Camera(ListSource):
        def queued_frames(self):
            for frame in self.frames():
                yield DeferredFrame(self.source_id, 1, lambda f=frame: f, frame.timeline_break) if deferred else frame
            finished.set()

    reader = SourceReader(Camera("cam", n_frames=20, live=True, break_at=(5,)), 1)
    reader.start()
    assert finished.wait(5.0)
    frame = reader.take_nowait()
    assert isinstance(frame, Frame) and frame.frame_index == 19
    assert frame.timeline_break  # without it the rolling windows would run across the break


def test_live_sources_beyond_the_budget_never_keep_a_file_source_from_its_turn() -> None:
    class Camera(ListSource):
        decoder_bytes = 10_000  # alone more than the whole budget

    class Clip(ListSource):
        decoder_bytes = 500

    notify = threading.Event()
    budget = FrameBudget(1_000)
    camera = SourceReader(Camera("cam", n_frames=100_000, live=True, delay_s=0.01), 1, notify, budget=budget)
    clip = SourceReader(Clip("clip", n_frames=10), 2, notify, budget=budget)
    camera.start()
    while camera.frames_in == 0:  # the camera runs (its decoder charged) before the clip starts
        notify.wait(1.0)
    clip.start()
    batcher = Batcher([camera, clip], max_batch=2, max_wait_ms=1, notify=notify)
    seen: list[Frame | EndOfStream] = []
    try:
        while not any(isinstance(i, EndOfStream) and i.source_id == "clip" for i in seen):
            seen.extend(batcher.next_batch(5.0))
        assert camera.is_alive()  # the clip ended while the camera still ran
        assert [f.frame_index for f in seen if isinstance(f, Frame) and f.source_id == "clip"] == list(range(10))
    finally:
        camera.stop()
        while not any(isinstance(i, EndOfStream) and i.source_id == "cam" for i in seen):
            seen.extend(batcher.next_batch(5.0))
    assert budget.held_bytes == 0 and budget.live_bytes == 0
