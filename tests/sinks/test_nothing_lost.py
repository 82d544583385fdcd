"""Nothing lost silently (issue 12 item 6).

End markers reach a slow subscriber, ``eos/`` says how much was published, and a sink that did not
write everything makes the run (or ``batsight sink``) exit 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import zmq

from engine.config import PublisherConfig
from engine.errors import SinkError
from engine.messages import EndOfStream, Pose
from engine.publisher import Publisher
from engine.testing import make_eos, make_health, make_pose, make_source_health
from sinks.jsonl import JsonlSink
from sinks.runtime import SinkRunner, serve
from sinks.runtime.subscriber import Subscriber
from tests.helpers import ANY_PORT, FAKE_MODEL, subprocess_env


def test_a_paused_subscriber_with_a_full_queue_still_gets_eos_with_last_seq():
    """Queues of 5 + 5 messages (inproc: no kernel buffers) filled by 10 poses; eos while the subscriber is paused.

    Without the wait the full queue would drop eos/ (the first message it has no room for), and the
    subscriber would see 10 poses and no end. ZeroMQ can wait only while no message was dropped for
    that subscriber yet: after a drop, the end markers are lost too (README wire section).
    """
    context = zmq.Context()
    config = PublisherConfig(endpoint="inproc://paused", sndhwm=5, linger_ms=60_000)
    publisher = Publisher(config, context=context)
    publisher.open()
    sub = Subscriber("inproc://paused", ("",), context=context, rcvhwm=5)
    sub.open()
    try:
        publisher.wait_for_subscribers(1, timeout_s=10)
        for i in range(10):
            publisher.publish(make_pose(frame_index=i))
        resume = threading.Event()
        received: list = []

        def read() -> None:
            resume.wait(30)
            while (message := sub.recv(30_000)) is not None:
                received.append(message)
                if isinstance(message, EndOfStream):
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        timer = threading.Timer(0.3, resume.set)  # the subscriber resumes while eos/ is being published
        timer.start()
        publisher.publish(make_eos(frames=10))
        reader.join(60)
        timer.cancel()
    finally:
        sub.close()
        publisher.close()
        context.term()
    assert [m.seq for m in received if isinstance(m, Pose)] == list(range(10))
    (eos,) = [m for m in received if isinstance(m, EndOfStream)]
    assert eos.last_seq == {"pose": 9}  # 10 poses were published for cam1: the run is complete
    assert publisher.markers_dropped == 0


def test_eos_last_seq_counts_each_kind_of_the_source_only():
    publisher = Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=0))
    with publisher:
        for i in range(3):
            publisher.publish(make_pose("a", frame_index=i))
        publisher.publish(make_pose("b"))
        publisher.publish(make_health(sources={"a": make_source_health()}))
        assert publisher.last_seq("a") == {"pose": 2}
        assert publisher.published == {("pose", "a"): 3, ("pose", "b"): 1, ("health", ""): 1}


def test_runner_counts_a_lost_tail_and_a_missing_eos():
    runner = SinkRunner(JsonlSink(path="-"), "tcp://127.0.0.1:1")
    poses: list = [make_pose("a", frame_index=i, seq=i) for i in range(10)] + [make_pose("b")]
    eos = EndOfStream(source_id="a", frames=15, dropped=0, corrupt=0, error=None, reason="end",
                      last_seq={"pose": 14, "sim": 3})  # sim never reached this runner: nothing to compare
    sources = {"a": make_source_health(), "b": make_source_health(), "late": make_source_health(state="ended")}
    final = make_health(engine_state="stopped", sources=sources)
    runner._track([*poses, eos, final])
    assert runner.missing == 0  # no gap inside what arrived
    # pose seq 10..14, and b's eos never came; "late" ended before this runner heard of it: not counted
    assert runner.missing_at_end == 5 + 1
    assert runner.lost == 6


def _serve_in_thread(sink: JsonlSink, endpoint: str) -> tuple[threading.Thread, list[BaseException]]:
    """``serve(sink, endpoint)`` in a started daemon thread; the SinkError it ends with lands in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(sink, endpoint)
        except SinkError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_standalone_sink_that_lost_the_tail_exits_with_one_line(tmp_path):
    publisher = Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=1000))
    publisher.open()
    thread, errors = _serve_in_thread(JsonlSink(path=str(tmp_path / "out.jsonl")), publisher.endpoint)
    try:
        assert publisher.wait_for_subscribers(1, timeout_s=30)[1] >= 1
        for i in range(3):
            publisher.publish(make_pose(frame_index=i))
        for i in range(3, 7):  # published with seqs the sink never gets (as if dropped at the high-water mark)
            publisher._seq[("pose", "cam1")] = i + 1
        publisher.publish(make_eos(frames=7))
        publisher.publish(make_health(engine_state="stopped", sources={"cam1": make_source_health()}))
        thread.join(60)
    finally:
        publisher.close()
    assert not thread.is_alive()
    (error,) = errors
    assert str(error).startswith("sink jsonl: 4 messages lost (0 in seq gaps, 4 at the end of a source)")
    assert "\n" not in str(error)


def test_a_stdout_reader_that_never_reads_makes_the_run_exit_1(tmp_path, fake_model_site):
    """``batsight run --sink jsonl:- | slow_reader``: the sink is abandoned at sink_close_timeout_s."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "engine.cli", "run", "--no-progress", "--sink", "jsonl:-",
            "--set", "source.default_frames=600", "--set", f"publisher.endpoint={ANY_PORT}",
            "--set", f"model.name={FAKE_MODEL}", "--set", "sink_close_timeout_s=0.5",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(fake_model_site), cwd=tmp_path,
    )
    try:
        returncode = proc.wait(300)  # nobody reads stdout until the process has ended
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = stderr.decode()
    assert returncode == 1, text
    errors = [line for line in text.splitlines() if line.startswith("batsight: error:")]
    assert len(errors) == 1, text
    match = re.fullmatch(
        r"batsight: error: sink jsonl: (\d+) of (\d+) messages not written \(abandoned after "
        r"sink_close_timeout_s = 0.5 s, still writing\)",
        errors[0],
    )
    assert match is not None, errors[0]
    unwritten, meant = int(match.group(1)), int(match.group(2))
    assert meant > 600 * 2  # at least a pose and a sim per frame, and health
    assert meant - unwritten <= len(stdout.splitlines())  # what it counts as written did reach the pipe


def test_shortfall_names_drops_and_skipped_batches():
    from tests.helpers import RecordingSink

    published = {("pose", "cam1"): 10, ("health", ""): 1, ("frame", "cam1"): 4}  # frames: not asked for
    dropped = SinkRunner(RecordingSink(), "tcp://127.0.0.1:1")
    dropped._write([make_pose(frame_index=i, seq=i) for i in (0, 1, 2, 6, 7, 8, 9)])  # 3..5 lost on the way
    dropped._write([make_health(engine_state="stopped", sources={"cam1": make_source_health()})])
    assert dropped.shortfall(published) == (
        "3 of 11 messages not written (dropped: the sink fell behind the publisher's queue (publisher.sndhwm))"
    )

    class Failing(RecordingSink):
        def write_batch(self, messages: list) -> None:
            if any(m.frame_index == 3 for m in messages):
                msg = "disk full"
                raise OSError(msg)
            super().write_batch(messages)

    skipping = SinkRunner(Failing(), "tcp://127.0.0.1:1", on_error="skip")
    for i in range(10):
        skipping._write([make_pose(frame_index=i, seq=i)])
    skipping._write([make_health(engine_state="stopped")])
    assert skipping.shortfall(published) == "1 of 11 messages not written (1 batch raised (sink_error_policy skip))"
    complete = SinkRunner(RecordingSink(), "tcp://127.0.0.1:1")
    complete._write([make_pose(frame_index=i, seq=i) for i in range(10)] + [make_health(engine_state="stopped")])
    assert complete.shortfall(published) is None
    assert complete.shortfall(published, abandoned_after_s=2.0) == (
        "0 of 11 messages not written (abandoned after sink_close_timeout_s = 2 s, still writing)"
    )


def test_standalone_sink_whose_engine_went_away_without_its_end_exits_with_one_line(tmp_path):
    """A subscriber paused past the engine's linger loses the tail, eos/ and the final health/: it says so."""
    publisher = Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=1000))
    publisher.open()
    out = tmp_path / "out.jsonl"
    thread, errors = _serve_in_thread(JsonlSink(path=str(out)), publisher.endpoint)
    try:
        assert publisher.wait_for_subscribers(1, timeout_s=30)[1] >= 1
        for i in range(3):
            publisher.publish(make_pose(frame_index=i))
    finally:
        publisher.close()  # no eos/, no final health/: as if they were dropped at a full queue
    thread.join(60)
    assert not thread.is_alive()  # it did not wait forever for an end that will never come
    (error,) = errors
    assert str(error) == (
        "sink jsonl: the publisher went away before the engine's final health/, so the run is truncated "
        "(it wrote 3 messages; 0 more known lost)"
    )
    assert len(out.read_text().splitlines()) == 3  # what arrived is kept
