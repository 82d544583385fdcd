"""Publisher, subscriber runtime and the jsonl / console sinks, over real ZeroMQ on loopback TCP."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from engine.config import PublisherConfig
from engine.errors import PluginError, PublishError, SinkError, SinkOptionError
from engine.messages import Health, Pose, SourceHealth
from engine.publisher import Publisher
from engine.testing import FakeClock, make_eos, make_fit, make_health, make_pose, make_source_health
from engine.wire import decode, encode_message
from sinks.base import Sink, create_sink, option_names, parse_sink_spec
from sinks.console import ConsoleSink
from sinks.jsonl import JsonlSink
from sinks.report import ReportSink
from sinks.runtime import SinkRunner, SinkThread, Subscriber, run_standalone
from tests.helpers import ANY_PORT, RecordingSink

pytestmark = pytest.mark.timeout(30)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    # Every socket is closed by the code under test; term() would hang otherwise (timeout fails it).
    ctx.term()


@pytest.fixture
def publisher(context: zmq.Context) -> Iterator[Publisher]:
    with Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=500), context=context) as pub:
        yield pub


def _pose_arrays(source_index: int, frame_index: int) -> dict[str, np.ndarray]:
    """Batter arrays unique to ``(source_index, frame_index)``; ``keypoints_conf[3]`` is NaN."""
    base = float(source_index * 1000 + frame_index)
    kp = (np.arange(34, dtype=np.float32).reshape(17, 2) + base).astype(np.float32)
    conf = np.linspace(0.0, 1.0, 17, dtype=np.float32)
    conf[3] = np.nan
    return {
        "xyxy": np.array([base, base + 1, base + 100, base + 200], dtype=np.float32),
        "keypoints_xy": kp,
        "keypoints_conf": conf,
    }


def _start(runner: SinkRunner, publisher: Publisher, subscriptions: int = 1) -> SinkThread:
    runner.connect()
    assert publisher.wait_for_subscribers(subscriptions, timeout_s=5.0) == (0, subscriptions)
    thread = SinkThread(runner)
    thread.start()
    return thread


def _finish(thread: SinkThread, timeout_s: float = 10.0) -> None:
    thread.join(timeout_s)
    if thread.is_alive():
        thread.stop()
        thread.join(5.0)
        pytest.fail("sink thread did not stop by itself")
    if thread.error is not None:
        raise thread.error


# --- end to end -------------------------------------------------------------------------------


def test_publisher_runner_jsonl_end_to_end(tmp_path: Path, context: zmq.Context, publisher: Publisher) -> None:
    n = 40
    sources = ("cam1", "cam2")
    out = tmp_path / "out.jsonl"
    runner = SinkRunner(JsonlSink(str(out)), publisher.endpoint, expected_sources=set(sources), context=context)
    thread = _start(runner, publisher)

    sent: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for frame_index in range(n):
        for source_index, source_id in enumerate(sources):
            arrays = _pose_arrays(source_index, frame_index)
            sent[(source_id, frame_index)] = arrays
            seq = publisher.publish(replace(make_pose(source_id, frame_index), **arrays))
            assert seq == frame_index
    for source_id in sources:
        assert publisher.publish(make_eos(source_id, frames=n, reason="end")) == 0
    _finish(thread)

    assert runner.stop_reason == "eos from every expected source"
    assert runner.eos_sources == set(sources)
    assert runner.gaps == 0
    assert runner.malformed == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == n * 2 + 2
    records = [json.loads(line) for line in lines]
    for source_id in sources:
        poses = [r for r in records if r["kind"] == "pose" and r["source_id"] == source_id]
        assert [r["seq"] for r in poses] == list(range(n))
        assert [r["frame_index"] for r in poses] == list(range(n))
        for record in poses:
            assert record["topic"] == f"pose/{source_id}/"
            assert record["batter_found"] is True
            assert "arrays" in record
            want = sent[(source_id, record["frame_index"])]
            np.testing.assert_array_equal(np.array(record["arrays"]["xyxy"], dtype=np.float32), want["xyxy"])
            np.testing.assert_array_equal(
                np.array(record["arrays"]["keypoints_xy"], dtype=np.float32), want["keypoints_xy"]
            )
            conf = record["arrays"]["keypoints_conf"]
            assert conf[3] is None  # NaN -> null
            np.testing.assert_allclose(np.array(conf[4:], dtype=np.float32), want["keypoints_conf"][4:])
        eos = [r for r in records if r["kind"] == "eos" and r["source_id"] == source_id]
        assert len(eos) == 1
        assert eos[0]["frames"] == n
        assert eos[0]["topic"] == f"eos/{source_id}/"


def test_runner_stops_on_engine_stopped_health(context: zmq.Context, publisher: Publisher) -> None:
    sink = RecordingSink()
    runner = SinkRunner(sink, publisher.endpoint, context=context)
    thread = _start(runner, publisher)
    for i in range(5):
        publisher.publish(make_pose("cam1", i))
    publisher.publish(make_health("running", uptime_s=1.0))
    publisher.publish(make_health("stopped", uptime_s=2.0))
    _finish(thread)

    assert runner.stop_reason == "engine stopped"
    assert [m.kind for m in sink.messages] == ["pose"] * 5 + ["health", "health"]
    assert sink.messages[-1].topic == "health/"
    assert (sink.opened, sink.closed) == (1, 1)
    assert sink.thread_ids == {thread.ident}


def test_runner_eos_of_some_sources_does_not_stop(context: zmq.Context, publisher: Publisher) -> None:
    sink = RecordingSink()
    runner = SinkRunner(sink, publisher.endpoint, expected_sources={"cam1", "cam2"}, context=context)
    thread = _start(runner, publisher)
    publisher.publish(make_eos("cam1", frames=0, reason="end"))
    assert sink.written.wait(5.0), "the first eos did not reach the sink"
    thread.join(0.3)  # the runner has seen cam1's eos: it must keep running for cam2
    assert thread.is_alive()
    publisher.publish(make_eos("cam2", frames=0, reason="end"))
    _finish(thread)
    assert [m.source_id for m in sink.messages] == ["cam1", "cam2"]


def test_stop_event_drains_queued_messages(context: zmq.Context, publisher: Publisher) -> None:
    sink = RecordingSink()
    runner = SinkRunner(sink, publisher.endpoint, context=context, max_batch=4)
    runner.connect()
    assert publisher.wait_for_subscribers(1, timeout_s=5.0) == (0, 1)
    for i in range(10):
        publisher.publish(make_pose("cam1", i))
    time.sleep(0.3)  # let them cross loopback into the SUB queue (its length is not observable)
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    runner.run(stop)
    assert time.monotonic() - started < 2.0
    assert runner.stop_reason == "stop requested"
    assert [m.frame_index for m in sink.messages] == list(range(10))
    assert max(len(b) for b in sink.batches) <= 4
    assert (sink.opened, sink.closed) == (1, 1)


def test_runner_counts_seq_gaps(context: zmq.Context) -> None:
    xpub = context.socket(zmq.XPUB)
    try:
        xpub.setsockopt(zmq.LINGER, 0)
        xpub.bind(ANY_PORT)
        sink = RecordingSink()
        runner = SinkRunner(sink, xpub.getsockopt_string(zmq.LAST_ENDPOINT), context=context)
        runner.connect()
        assert xpub.poll(5000), "subscription did not arrive"
        assert xpub.recv()[:1] == b"\x01"
        thread = SinkThread(runner)
        thread.start()
        for seq in (0, 1, 5, 6, 9):
            xpub.send_multipart(encode_message(make_pose("cam1", seq), seq))
        xpub.send_multipart(encode_message(make_pose("cam2", 0), 3))  # first of a stream: not a gap
        xpub.send_multipart(encode_message(make_health("stopped"), 0))
        _finish(thread)
    finally:
        xpub.close(linger=0)
    assert runner.gaps == 2
    assert runner.missing == 3 + 2
    assert len(sink.messages) == 7


def test_a_message_that_does_not_fit_its_schema_is_counted_and_skipped(
    context: zmq.Context, publisher: Publisher
) -> None:
    """Valid wire frames whose header the kind's schema refuses: counted as malformed, never seen by the sink."""
    sink = RecordingSink()
    runner = SinkRunner(sink, publisher.endpoint, expected_sources={"cam1"}, context=context)
    thread = _start(runner, publisher)
    assert publisher.publish(make_pose("cam1", 0)) == 0
    assert publisher.publish_raw("pose", "cam1", {"frame_index": 1}) == 1  # no frame_width ... : refused
    assert publisher.publish(make_pose("cam1", 2)) == 2
    assert publisher.publish_raw("eos", "cam1", {"frames": 3}) == 0  # no reason: refused, so it cannot end the run
    assert publisher.publish(make_eos("cam1", frames=3, reason="end")) == 1
    _finish(thread)

    assert runner.malformed == 2
    assert runner.stop_reason == "eos from every expected source"
    assert [(m.kind, m.seq) for m in sink.messages] == [("pose", 0), ("pose", 2), ("eos", 1)]
    assert (runner.gaps, runner.missing) == (1, 1)  # the skipped pose shows as a seq gap; the eos was a first
    assert runner.received == 3


def test_sink_open_failure_is_stored_and_close_not_called(context: zmq.Context, publisher: Publisher) -> None:
    sink = RecordingSink(fail_on_open=True)
    runner = SinkRunner(sink, publisher.endpoint, context=context)
    thread = SinkThread(runner)
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive()
    assert isinstance(thread.error, SinkError)
    assert "cannot open recording sink" in str(thread.error)
    assert sink.closed == 0


def test_sink_write_failure_closes_sink_once(context: zmq.Context, publisher: Publisher) -> None:
    sink = RecordingSink(fail_on_write=True)
    runner = SinkRunner(sink, publisher.endpoint, context=context)
    thread = _start(runner, publisher)
    publisher.publish(make_pose("cam1", 0))
    thread.join(5.0)
    assert not thread.is_alive()
    assert isinstance(thread.error, SinkError)
    assert (sink.opened, sink.closed) == (1, 1)


def test_the_write_error_is_reported_when_close_fails_after_it(
    context: zmq.Context, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    class FullDisk(RecordingSink):
        def close(self) -> None:
            super().close()
            msg = "cannot close: disk full"
            raise SinkError(msg)

    sink = FullDisk(fail_on_write=True)
    runner = SinkRunner(sink, publisher.endpoint, context=context)
    thread = _start(runner, publisher)
    publisher.publish(make_pose("cam1", 0))
    thread.join(5.0)
    assert not thread.is_alive() and sink.closed == 1
    assert str(thread.error) == "disk full"  # the first error, not the close's
    assert "also failed to close" in caplog.text and "cannot close: disk full" in caplog.text


def test_run_standalone_until_engine_stop(tmp_path: Path, context: zmq.Context, publisher: Publisher) -> None:
    out = tmp_path / "standalone.jsonl"
    result: dict[str, Any] = {}

    def target() -> None:
        result["rc"] = run_standalone("jsonl", {"path": str(out)}, publisher.endpoint, ("pose/", "health/"))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert publisher.wait_for_subscribers(2, timeout_s=5.0) == (0, 2)
    publisher.publish(make_pose("cam1", 0))
    publisher.publish(make_fit("cam1", 0))  # not subscribed
    publisher.publish(make_health("stopped"))
    thread.join(10.0)
    assert not thread.is_alive()
    assert result["rc"] == 0
    kinds = [json.loads(line)["kind"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert kinds == ["pose", "health"]


def test_standalone_sink_with_a_topic_filter_still_ends_on_engine_stop(tmp_path: Path, publisher: Publisher) -> None:
    """``batsight sink jsonl --topic pose/``: health/ is subscribed for the runner, kept from the file."""
    out = tmp_path / "pose_only.jsonl"
    result: dict[str, Any] = {}

    def target() -> None:
        result["rc"] = run_standalone("jsonl", {"path": str(out)}, publisher.endpoint, ("pose/",))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert publisher.wait_for_subscribers(2, timeout_s=5.0) == (0, 2)  # pose/ and the runner's health/
    publisher.publish(make_pose("cam1", 0))
    publisher.publish(make_fit("cam1", 0))  # not subscribed at all
    publisher.publish(make_health("running"))
    publisher.publish(make_pose("cam1", 1))
    publisher.publish(make_eos("cam1", frames=2, reason="end"))  # not subscribed: no expected sources
    publisher.publish(make_health("stopped"))
    thread.join(10.0)
    assert not thread.is_alive(), "the sink did not end on the engine's stop"
    assert result["rc"] == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["kind"], r["frame_index"]) for r in records] == [("pose", 0), ("pose", 1)]


def test_runner_with_a_topic_filter_ends_on_eos_and_passes_only_matching_messages(
    context: zmq.Context, publisher: Publisher
) -> None:
    sink = RecordingSink()
    runner = SinkRunner(sink, publisher.endpoint, ("pose/cam1/",), expected_sources={"cam1", "cam2"}, context=context)
    assert runner.control_topics == ("health/", "eos/")
    thread = _start(runner, publisher, subscriptions=3)
    for i in range(3):
        publisher.publish(make_pose("cam1", i))
        publisher.publish(make_pose("cam2", i))
    publisher.publish(make_health("running"))
    publisher.publish(make_eos("cam1", frames=3, reason="end"))
    publisher.publish(make_eos("cam2", frames=3, reason="end"))
    _finish(thread)  # no final health/: ends EOS_GRACE_S after the last eos

    assert runner.stop_reason == "eos from every expected source"
    assert runner.eos_sources == {"cam1", "cam2"}
    assert [(m.topic, m.frame_index) for m in sink.messages] == [("pose/cam1/", i) for i in range(3)]
    assert runner.received == 3
    assert (sink.opened, sink.closed) == (1, 1)


@pytest.mark.parametrize(
    ("topics", "expected_sources", "stop_on_engine_stop", "control"),
    [
        (("",), {"cam1"}, True, ()),  # everything subscribed already: no extra subscription
        (("pose/", "health/"), None, True, ()),
        (("pose/",), None, True, ("health/",)),
        (("pose/",), None, False, ()),  # --keep-running without expected sources needs no control topic
        (("pose/", "eos/cam1/"), {"cam1"}, False, ("eos/",)),
    ],
)
def test_runner_adds_only_the_control_topics_the_filter_leaves_out(
    topics: tuple[str, ...], expected_sources: set[str] | None, stop_on_engine_stop: bool, control: tuple[str, ...]
) -> None:
    runner = SinkRunner(
        RecordingSink(), "tcp://127.0.0.1:1", topics, expected_sources, stop_on_engine_stop=stop_on_engine_stop
    )
    assert runner.topics == topics
    assert runner.control_topics == control
    assert runner._subscriber.topics == topics + control


def test_run_standalone_stops_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "sig.jsonl"
    installed = threading.Event()
    real_signal = signal.signal

    def recording_signal(signum: int, handler: Any) -> Any:
        previous = real_signal(signum, handler)
        if signum == signal.SIGTERM and handler is not original:
            installed.set()
        return previous

    monkeypatch.setattr(signal, "signal", recording_signal)

    def send_sigterm() -> None:
        installed.wait(5.0)
        if signal.getsignal(signal.SIGTERM) is not original:  # never kill pytest itself
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=send_sigterm, daemon=True)
    killer.start()
    started = time.monotonic()
    rc = run_standalone("jsonl", {"path": str(out)}, "tcp://127.0.0.1:1", exit_on_stop=True)
    killer.join(5.0)
    assert rc == 0
    assert time.monotonic() - started < 5.0
    assert signal.getsignal(signal.SIGTERM) is original
    assert out.read_text(encoding="utf-8") == ""


# --- plugin lookup and options ----------------------------------------------------------------


def test_unknown_sink_name_lists_available() -> None:
    with pytest.raises(PluginError, match="nope") as info:
        create_sink("nope", {})
    assert "jsonl" in str(info.value)
    assert "console" in str(info.value)
    with pytest.raises(PluginError, match="available: .*console.*jsonl"):
        parse_sink_spec("nope:out.jsonl")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("jsonl:out.jsonl", ("jsonl", {"path": "out.jsonl"})),
        ("jsonl:/tmp/a:b.jsonl", ("jsonl", {"path": "/tmp/a:b.jsonl"})),
        ("console", ("console", {})),
        ("console:0.5", ("console", {"interval_s": "0.5"})),
        # OPTION=VALUE pieces
        ("jsonl:path=-", ("jsonl", {"path": "-"})),
        (" jsonl : path = out.jsonl ", ("jsonl", {"path": "out.jsonl"})),
        ("console:interval_s=0.5", ("console", {"interval_s": "0.5"})),
        ("report:out_dir=figs,dpi=80", ("report", {"out_dir": "figs", "dpi": "80"})),
        (
            "report:out_dir=figs,video=nets=a.mp4,cam2=b.mp4,labels=nets=pull",
            ("report", {"out_dir": "figs", "video": "nets=a.mp4,cam2=b.mp4", "labels": "nets=pull"}),
        ),
        # bare values: whitespace dropped; ':' ',' '=' kept when not led by OPTION=
        ("jsonl: -", ("jsonl", {"path": "-"})),
        ("jsonl:out=1.jsonl", ("jsonl", {"path": "out=1.jsonl"})),
        ("report:/tmp/w/rr:video=x", ("report", {"out_dir": "/tmp/w/rr:video=x"})),
        ("report:figs,2024", ("report", {"out_dir": "figs,2024"})),
        ("console:stream=x", ("console", {"interval_s": "stream=x"})),  # not an option: refused by the sink
    ],
)
def test_parse_sink_spec(spec: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_sink_spec(spec) == expected


def test_parse_sink_spec_errors_are_configuration_errors() -> None:
    with pytest.raises(SinkOptionError, match="sink spec must be NAME"):
        parse_sink_spec(" :x")
    with pytest.raises(SinkOptionError, match="unknown option 'bogus'"):
        parse_sink_spec("jsonl:path=a,bogus=b")


def test_a_bare_value_that_hides_options_is_kept_whole_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="sinks.base"):
        assert parse_sink_spec("report:figs,dpi=80") == ("report", {"out_dir": "figs,dpi=80"})
    assert "write report:out_dir=figs,dpi=80 to set several options" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="sinks.base"):
        assert parse_sink_spec("jsonl:a,b=c.jsonl") == ("jsonl", {"path": "a,b=c.jsonl"})  # b is no option
    assert caplog.text == ""


def test_jsonl_path_option_in_spec_writes_to_stdout(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for spec in ("jsonl:path=-", "jsonl: -"):
        sink = Sink.from_spec(spec)
        assert isinstance(sink, JsonlSink)
        assert sink.path == "-"
        sink.open()
        sink.write_batch([make_pose("cam1", 0)])
        sink.close()
        assert json.loads(capsys.readouterr().out)["topic"] == "pose/cam1/"
    assert list(tmp_path.iterdir()) == []


def test_only_declared_user_options_are_accepted() -> None:
    assert option_names(ConsoleSink) == ["interval_s"]
    assert option_names(JsonlSink) == ["path"]
    assert option_names(ReportSink) == [
        "out_dir",
        "video",
        "labels",
        "dpi",
        "min_keypoint_conf",
        "max_frames",
        "max_shots",
    ]
    for option, value in (("stream", "foo"), ("now_fn", 1)):
        expected = rf"^unknown option {option!r} for sink 'console'; expected one of: interval_s$"
        with pytest.raises(SinkOptionError, match=expected):
            create_sink("console", {option: value})
    with pytest.raises(SinkError, match="expected one of: interval_s$"):
        ConsoleSink(bogus=1)
    # code may still pass its own parameters
    stream = io.StringIO()
    assert ConsoleSink(stream=stream)._stream_option is stream


def test_user_options_default_to_parameters_without_leading_underscore() -> None:
    class ClockSink(RecordingSink):
        def __init__(self, rate: str = "1", _clock: Any = None, **options: Any) -> None:
            super().__init__(**options)
            self.rate, self.clock = rate, _clock

    assert option_names(ClockSink) == ["rate"]
    with pytest.raises(SinkOptionError, match="unknown option '_clock' for sink 'clock'"):
        ClockSink.from_options({"_clock": 1}, name="clock")

    class BrokenSink(RecordingSink):
        user_options = ("rate",)

    with pytest.raises(SinkError, match="sink class BrokenSink lists user option 'rate' that its __init__ does not"):
        option_names(BrokenSink)


def test_sink_is_labelled_by_its_plugin_name(tmp_path: Path) -> None:
    created = create_sink("jsonl", {"path": str(tmp_path / "missing" / "out.jsonl")})
    assert created.plugin_name == "jsonl"
    assert JsonlSink("x.jsonl").plugin_name == "jsonl"  # constructed directly: found by its entry point
    assert ConsoleSink().plugin_name == "console"
    assert RecordingSink().plugin_name == "RecordingSink"  # not registered: its class name
    assert RecordingSink.from_options({}, name="rec").plugin_name == "rec"
    thread = SinkThread(SinkRunner(created, "tcp://127.0.0.1:1"))
    assert thread.name == "jsonl"
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive()
    assert isinstance(thread.error, SinkError)
    assert f"{thread.name}: {thread.error}".startswith("jsonl: cannot open jsonl output")
    assert SinkThread(SinkRunner(created, "tcp://127.0.0.1:1"), name="custom").name == "custom"


def test_create_sink_from_spec() -> None:
    name, options = parse_sink_spec("console:0.25")
    sink = create_sink(name, options)
    assert isinstance(sink, ConsoleSink)
    assert sink.interval_s == 0.25
    jsonl = create_sink(*parse_sink_spec("jsonl:x.jsonl"))
    assert isinstance(jsonl, JsonlSink)
    assert jsonl.path == "x.jsonl"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: parse_sink_spec(":x"), "sink spec must be NAME or NAME:ARG"),
        (lambda: parse_sink_spec("jsonl:path=a,path=b"), "sink 'jsonl' option 'path' is given twice"),
        (
            lambda: parse_sink_spec("report:out_dir=figs,vidoe=x.mp4"),
            "unknown option 'vidoe' for sink 'report' in 'report:out_dir=figs,vidoe=x.mp4'; expected one of: out_dir,",
        ),
        (lambda: create_sink(*parse_sink_spec("console:stream=x")), "got 'stream=x'"),
        (lambda: create_sink("jsonl", {}), "sink 'jsonl' requires option 'path'"),
        (lambda: create_sink("jsonl", {"path": "a", "bogus": 1}), "unknown option 'bogus' for sink 'jsonl'"),
        (lambda: JsonlSink("a", bogus=1), "unknown option 'bogus' for sink JsonlSink; expected one of: path"),
        (lambda: JsonlSink(""), "jsonl option 'path' must be a file path"),
        (lambda: ConsoleSink(interval_s="abc"), "interval_s' must be a positive number of seconds, got 'abc'"),
        (lambda: ConsoleSink(interval_s=0), "must be a positive number"),
        (lambda: ConsoleSink(interval_s=-1.0), "must be a positive number"),
    ],
)
def test_bad_sink_options(make: Any, fragment: str) -> None:
    with pytest.raises(SinkError, match=fragment):
        make()


def test_jsonl_bad_directory_raises_sink_error(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "missing" / "out.jsonl"))  # constructing touches nothing
    with pytest.raises(SinkError, match="expected an existing directory"):
        sink.open()


def test_jsonl_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonlSink("-")
    sink.open()
    sink.write_batch([replace(make_pose("cam1", 0), inference_ms=float("nan"))])
    sink.close()
    sink.close()
    record = json.loads(capsys.readouterr().out)
    assert record["inference_ms"] is None
    assert record["topic"] == "pose/cam1/"


# --- publisher --------------------------------------------------------------------------------


def test_publisher_bind_conflict_raises_publish_error(context: zmq.Context, publisher: Publisher) -> None:
    endpoint = publisher.endpoint
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith("*")
    second = Publisher(PublisherConfig(endpoint=endpoint), context=context)
    with pytest.raises(PublishError, match="cannot bind publisher to") as info:
        second.open()
    assert endpoint in str(info.value)
    assert "in use" in str(info.value).lower()
    second.close()


def test_publisher_bad_endpoint_and_lifecycle() -> None:
    with pytest.raises(PublishError, match="cannot bind publisher to .tcp://127.0.0.1:abc."):
        Publisher(PublisherConfig(endpoint="tcp://127.0.0.1:abc")).open()
    pub = Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=0))
    with pytest.raises(PublishError, match="publisher must be open, got not opened"):
        pub.publish(make_pose("cam1", 0))
    with pub:
        assert pub.publish(make_pose("cam1", 0)) == 0
        assert pub.publish(make_pose("cam1", 1)) == 1
        assert pub.publish(make_pose("cam2", 0)) == 0
        assert pub.publish(make_fit("cam1", 0)) == 0
        assert pub.wait_for_subscribers(1, timeout_s=0.05) == (0, 0)
    pub.close()  # idempotent
    with pytest.raises(PublishError, match="got closed"):
        pub.publish(make_pose("cam1", 2))


def test_a_stalled_subscriber_costs_nothing_to_the_engine_or_other_subscribers(context: zmq.Context) -> None:
    """One subscriber never reads; publishing never blocks and a healthy subscriber loses nothing."""
    config = PublisherConfig(endpoint=ANY_PORT, sndhwm=1000, linger_ms=0)
    total, chunk = 20_000, 500
    with Publisher(config, context=context) as pub:
        stalled = context.socket(zmq.SUB)
        healthy = context.socket(zmq.SUB)
        try:
            for sock in (stalled, healthy):
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RCVHWM, 10)
                sock.connect(pub.endpoint)
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            stalled.setsockopt(zmq.RCVBUF, 4096)
            assert pub.wait_for_subscribers(2, timeout_s=5.0) == (0, 2)
            received = []
            publish_s = 0.0
            pad = {"pad": np.zeros(1024, np.float32)}  # 4 KiB a message: 80 MB overflows socket buffers
            for start in range(0, total, chunk):
                t = time.monotonic()
                for i in range(start, start + chunk):
                    pub.publish_raw("pose", "cam1", {"frame_index": i}, pad)  # wire level: no schema
                publish_s += time.monotonic() - t
                while len(received) < start + chunk:  # the healthy subscriber keeps up
                    assert healthy.poll(5000), f"healthy subscriber starved after {len(received)} messages"
                    received.append(decode(healthy.recv_multipart()).seq)
            stalled_got = 0
            while stalled.poll(50):
                stalled.recv_multipart()
                stalled_got += 1
        finally:
            stalled.close(linger=0)
            healthy.close(linger=0)
    assert received == list(range(total))
    assert pub.sent == total
    assert stalled_got < total  # the stalled one lost messages (its seq shows the gap) ...
    assert publish_s < 15.0  # ... and publishing never waited for it


# --- console ----------------------------------------------------------------------------------


def _health(sources: dict[str, SourceHealth]) -> Health:
    return make_health("running", sources, uptime_s=1.0)


def _pose(source_id: str, seq: int, batter_found: bool) -> Pose:
    return make_pose(source_id, seq, batter_found=batter_found, seq=seq)


def test_console_sink_status_line_and_summary() -> None:
    stream = io.StringIO()
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=1.0, stream=stream, now_fn=clock)
    sink.open()
    clock.now_s = 100.5
    sink.write_batch([_pose("cam1", i, batter_found=i % 4 != 0) for i in range(15)])
    assert stream.getvalue() == ""  # interval not yet passed
    clock.now_s = 101.0
    sink.write_batch([_pose("cam1", i, batter_found=i % 4 != 0) for i in range(15, 30)] + [_pose("cam2", 0, False)])
    first = stream.getvalue().splitlines()
    assert len(first) == 1
    assert "cam1: 30 frames, 30.0 fps, batter 73%, dropped 0" in first[0]
    assert "cam2: 1 frames, 1.0 fps, batter 0%, dropped 0" in first[0]

    sources = {"cam1": make_source_health("live", frames=38, dropped=7, corrupt=1)}
    health = make_health("running", sources, uptime_s=2.0)
    clock.now_s = 103.0
    sink.write_batch([health, *[_pose("cam1", i, batter_found=True) for i in range(30, 40)]])
    second = stream.getvalue().splitlines()[1]
    # 40 arrivals within the 5 s rate window, 3 s after open
    assert f"cam1: 40 frames, {40 / 3.0:.1f} fps, batter 80%, dropped 7" in second

    eos = make_eos("cam1", frames=40, dropped=8, corrupt=1, error=None, reason="end")
    sink.write_batch([eos])
    sink.close()
    summary = stream.getvalue().splitlines()[-2:]
    assert summary[0].startswith("cam1: 40 frames, ")
    assert "batter found 80.0%" in summary[0]
    assert "dropped 8, corrupt 1 (end)" in summary[0]
    assert summary[1].startswith("cam2: 1 frames")
    assert "(no eos)" in summary[1]
    sink.close()  # idempotent


def test_console_sink_fps_is_steady_under_batched_delivery() -> None:
    """8 frames every 0.8 s (10 fps in batches), a status line every 0.5 s: never 0.0, settles at 10."""
    stream = io.StringIO()
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=0.5, stream=stream, now_fn=clock)
    sink.open()
    seq = 0
    for tick in range(1, 201):  # 20 s in 0.1 s steps
        clock.now_s = 100.0 + tick / 10
        batch = []
        if tick % 8 == 0:
            batch = [_pose("cam1", seq + i, True) for i in range(8)]
            seq += 8
        sink.write_batch(batch)
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("cam1:")]  # not "waiting"
    rates = [float(line.split(", ")[1].removesuffix(" fps")) for line in lines]
    assert len(rates) >= 30
    assert min(rates) > 0.0
    # after the first window (3 s) each rate counts 3 or 4 whole batches in 3 s
    settled = rates[len(rates) // 3 :]
    assert all(abs(rate - 10.0) <= 8 / 3.0 + 1e-6 for rate in settled), settled
    assert abs(sum(settled) / len(settled) - 10.0) < 1.0
    sink.close()


def test_console_status_names_a_source_that_is_not_live() -> None:
    stream = io.StringIO()
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=1.0, stream=stream, now_fn=clock)
    sink.open()
    sources = {"cam": make_source_health("reconnecting", dropped=3), "nets": make_source_health("live", dropped=0)}
    health = _health(sources)
    clock.now_s = 101.0
    sink.write_batch([_pose("cam", 0, True), _pose("nets", 0, True), health])
    line = stream.getvalue().splitlines()[0]
    assert line.startswith("cam [reconnecting]: 1 frames, 1.0 fps, batter 100%, dropped 3 | nets: 1 frames")
    sink.close()


def test_console_sink_sums_many_sources_into_one_part() -> None:
    stream = io.StringIO()
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=1.0, stream=stream, now_fn=clock)
    sink.open()
    sources = {f"cam{k:02d}": make_source_health("live" if k % 3 else "reconnecting", dropped=k) for k in range(9)}
    health = _health(sources)
    clock.now_s = 102.0
    poses = [_pose(f"cam{k:02d}", i, batter_found=i % 2 == 0) for k in range(9) for i in range(k + 1)]
    sink.write_batch([health, *poses])
    line = stream.getvalue().splitlines()[0]
    frames = sum(k + 1 for k in range(9))  # 45
    batter = sum((k + 2) // 2 for k in range(9))  # even i of range(k + 1)
    assert line == (
        f"9 sources (6 live, 3 reconnecting): {frames} frames, {frames / 2.0:.1f} fps, "
        f"batter {100.0 * batter / frames:.0f}%, dropped {sum(range(9))}"
    )
    sink.close()


def test_console_sink_writes_whole_lines_on_tty_through_tqdm() -> None:
    class TtyStream(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = TtyStream()
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=0.5, stream=stream, now_fn=clock)
    sink.open()
    clock.now_s += 1.0
    sink.write_batch([_pose("cam1", 0, True)])
    assert stream.getvalue().startswith("cam1: 1 frames, 1.0 fps, batter 100%")
    assert stream.getvalue().endswith("\n")
    sink.close()
    assert "\ncam1: 1 frames" in stream.getvalue()


def test_console_lines_on_stderr_never_land_inside_a_progress_bar(monkeypatch) -> None:
    from tqdm import tqdm

    log = io.StringIO()  # stderr redirected to a file: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=0.5)
    sink._now_fn = clock
    sink.open()
    bar = tqdm(total=10, file=sys.stderr, desc="batsight", mininterval=0)
    bar.update(3)
    clock.now_s += 1.0
    sink.write_batch([_pose("cam1", 0, True)])
    bar.update(2)
    bar.close()
    text = log.getvalue()
    status = text.index("cam1: 1 frames")
    assert text[status - 1] in "\r\n"  # starts its own line: the bar line was cleared first
    assert text[text.index("\n", status) - 1] != "|"  # and the bar did not continue on the status line
    sink.close()


def test_subscriber_recv_requires_open() -> None:
    subscriber = Subscriber("tcp://127.0.0.1:1")
    with pytest.raises(SinkError, match="must be open"):
        subscriber.recv(0)
    with pytest.raises(SinkError, match="cannot connect subscriber to 'nope'"):
        Subscriber("nope").open()


def test_console_summary_gives_no_fps_for_a_run_that_arrived_at_once() -> None:
    stream = io.StringIO()
    clock = FakeClock(start_s=100.0)
    sink = ConsoleSink(interval_s=1.0, stream=stream, now_fn=clock)
    sink.open()
    clock.now_s = 100.2
    sink.write_batch([_pose("cam1", i, batter_found=True) for i in range(5)])  # one batch: no span
    for i in range(5):  # 0.2 s apart: a 0.8 s span, still too short for a mean rate
        clock.now_s = 100.5 + 0.2 * i
        sink.write_batch([_pose("cam2", i, batter_found=True)])
    for i in range(6):  # 0.25 s apart: 5 intervals in 1.25 s = 4.0 fps
        clock.now_s = 102.0 + 0.25 * i
        sink.write_batch([_pose("cam3", i, batter_found=True)])
    sink.close()
    lines = stream.getvalue().splitlines()[-3:]
    assert lines[0].startswith("cam1: 5 frames, - fps, batter found 100.0%")
    assert lines[1].startswith("cam2: 5 frames, - fps, ")
    assert lines[2].startswith("cam3: 6 frames, 4.0 fps, ")


@pytest.mark.parametrize(
    ("fields", "end"),
    [
        ({"reason": "error", "error": "file not found: x.mp4"}, "(error: file not found: x.mp4)"),
        ({"reason": "timeout", "error": "read timed out"}, "(timeout, error: read timed out)"),
        ({"reason": "end", "error": None}, "(end)"),
        ({"reason": "stopped", "error": "boom"}, "(stopped, error: boom)"),  # no eos lacks a reason now
    ],
)
def test_console_summary_end_reason(fields: dict[str, Any], end: str) -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream=stream, now_fn=FakeClock(start_s=100.0))
    sink.open()
    sink.write_batch([make_eos("cam1", frames=0, dropped=0, corrupt=0, **fields)])
    sink.close()
    (line,) = stream.getvalue().splitlines()
    assert line == f"cam1: 0 frames, - fps, batter found -, dropped 0, corrupt 0 {end}"
