"""Wire format: encode/decode round trips, validation failures, topic prefix safety over real ZeroMQ."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from engine.config import PublisherConfig
from engine.errors import WireFormatError
from engine.publisher import Publisher
from engine.testing import make_pose
from engine.wire import DTYPES, KINDS, WIRE_VERSION, Message, decode, encode, encode_message, topic_for
from sinks.runtime import Subscriber

pytestmark = pytest.mark.timeout(20)


def _source_for(kind: str) -> str:
    return "" if kind == "health" else "cam1"


def _arrays_of_every_dtype(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "float32": rng.normal(size=(17, 2)).astype(np.float32),
        "float64": rng.normal(size=(3, 4, 5)),
        "int32": rng.integers(-(2**31), 2**31 - 1, size=(6,), dtype=np.int32),
        "int64": rng.integers(-(2**62), 2**62, size=(2, 3), dtype=np.int64),
        "uint8": rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8),
        "bool": rng.integers(0, 2, size=(17,)).astype(bool),
        "scalar": np.array(2.5, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def _raw_parts(header: dict[str, Any], buffers: list[bytes], topic: bytes | None = None) -> list[bytes]:
    if topic is None:
        topic = topic_for(header.get("kind", "pose"), header.get("source_id", "cam1"))
    return [topic, msgpack.packb(header, use_bin_type=True), *buffers]


def _good_header(**overrides: Any) -> dict[str, Any]:
    header = {
        "v": WIRE_VERSION,
        "kind": "pose",
        "source_id": "cam1",
        "seq": 0,
        "frame_index": 0,
        "pts_s": 0.0,
        "capture_time_ns": 1,
        "publish_time_ns": 2,
        "arrays": [{"name": "xyxy", "dtype": "float32", "shape": [4]}],
    }
    header.update(overrides)
    return header


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_every_kind_every_dtype(kind: str) -> None:
    rng = np.random.default_rng(0)
    arrays = _arrays_of_every_dtype(rng)
    assert {a.dtype.name for a in arrays.values()} == set(DTYPES)
    source_id = _source_for(kind)
    fields = {
        "frame_index": 12,
        "pts_s": 0.4,
        "capture_time_ns": 1_700_000_000_000_000_000,
        "batter_found": True,
        "track_id": None,
        "label": "cover drive",
        "nested": {"a": [1, 2.5, None, True], "b": {"c": "d"}},
        "np_scalar": np.float32(1.5),
    }
    parts = encode(kind, source_id, 7, fields, arrays, publish_time_ns=123)
    message = decode([bytes(p) for p in parts])

    assert message.kind == kind
    assert message.source_id == source_id
    assert message.seq == 7
    assert message.topic == topic_for(kind, source_id).decode()
    assert message.frame_index == 12
    assert message.pts_s == pytest.approx(0.4)
    assert message.capture_time_ns == 1_700_000_000_000_000_000
    assert message.publish_time_ns == 123
    assert message.header["v"] == WIRE_VERSION
    assert message.header["batter_found"] is True
    assert message.header["track_id"] is None
    assert message.header["label"] == "cover drive"
    assert message.header["nested"] == {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    assert message.header["np_scalar"] == 1.5
    assert list(message.arrays) == list(arrays)
    for name, sent in arrays.items():
        got = message.arrays[name]
        assert got.dtype == sent.dtype, name
        assert got.shape == sent.shape, name
        np.testing.assert_array_equal(got, sent)
        assert not got.flags.writeable


def test_decode_accepts_encode_output_directly_and_zmq_frames() -> None:
    arrays = {"keypoints_xy": np.arange(34, dtype=np.float32).reshape(17, 2)}
    parts = encode("pose", "cam1", 0, {"frame_index": 0}, arrays)
    assert isinstance(parts[2], memoryview)
    np.testing.assert_array_equal(decode(parts).arrays["keypoints_xy"], arrays["keypoints_xy"])
    frames = [zmq.Frame(bytes(p)) for p in parts]
    np.testing.assert_array_equal(decode(frames).arrays["keypoints_xy"], arrays["keypoints_xy"])


def test_empty_arrays_round_trip() -> None:
    arrays = {"xyxy": np.zeros((0, 4), dtype=np.float32), "ids": np.zeros((0,), dtype=np.int64)}
    parts = encode("pose", "cam1", 0, {}, arrays)
    assert [bytes(p) for p in parts[2:]] == [b"", b""]
    message = decode(parts)
    assert message.arrays["xyxy"].shape == (0, 4)
    assert message.arrays["xyxy"].dtype == np.float32
    assert message.arrays["ids"].shape == (0,)
    assert message.header["arrays"][0] == {"name": "xyxy", "dtype": "float32", "shape": [0, 4]}


def test_non_contiguous_and_big_endian_arrays_are_sent_as_little_endian_c_order() -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = {"t": base.T, "be": np.arange(5, dtype=">i4")}
    message = decode(encode("fit", "cam1", 0, {}, arrays))
    np.testing.assert_array_equal(message.arrays["t"], base.T)
    np.testing.assert_array_equal(message.arrays["be"], np.arange(5))
    assert message.arrays["be"].dtype == np.int32


def test_frame_fields_default_to_none() -> None:
    message = decode(encode("eos", "cam1", 3, {"frames": 10, "reason": "end of file"}))
    assert message.frame_index is None
    assert message.pts_s is None
    assert message.capture_time_ns is None
    assert message.arrays == {}
    assert message.header["frames"] == 10


def test_to_json_dict_converts_nan_to_none() -> None:
    arrays = {
        "kp": np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float32),
        "ids": np.array([1, 2], dtype=np.int32),
        "ok": np.array([True, False]),
    }
    fields = {"pts_s": 0.5, "score": float("nan"), "nested": {"x": [float("nan"), 1.0]}}
    message = decode(encode("sim", "cam2", 4, fields, arrays, publish_time_ns=9))
    out = message.to_json_dict()

    assert out["topic"] == "sim/cam2/"
    assert out["seq"] == 4
    assert out["kind"] == "sim"
    assert out["source_id"] == "cam2"
    assert out["publish_time_ns"] == 9
    assert out["score"] is None
    assert out["nested"] == {"x": [None, 1.0]}
    assert out["arrays"] == {"kp": [[1.0, None], [None, 2.0]], "ids": [1, 2], "ok": [True, False]}
    text = json.dumps(out, allow_nan=False)  # raises on NaN
    assert json.loads(text) == out


# --- topics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "source_id", "expected"),
    [
        ("pose", "cam1", b"pose/cam1/"),
        ("eos", "a_b.c-1", b"eos/a_b.c-1/"),
        ("health", "", b"health/"),
    ],
)
def test_topic_for(kind: str, source_id: str, expected: bytes) -> None:
    assert topic_for(kind, source_id) == expected


@pytest.mark.parametrize(
    ("kind", "source_id", "fragment"),
    [
        ("video", "cam1", "kind must be one of"),
        ("pose", "", "source_id must match"),
        ("pose", "cam/1", "source_id must match"),
        ("pose", "cam 1", "source_id must match"),
        ("health", "cam1", "source_id of a health message must be ''"),
    ],
)
def test_topic_for_rejects(kind: str, source_id: str, fragment: str) -> None:
    with pytest.raises(WireFormatError, match=fragment):
        topic_for(kind, source_id)


def test_topic_prefix_safety_over_real_zmq() -> None:
    """A SUB on ``pose/cam1/`` gets cam1 but never cam10."""
    context = zmq.Context()
    try:
        config = PublisherConfig(endpoint="tcp://127.0.0.1:*", linger_ms=0)
        with Publisher(config, context=context) as publisher:
            with Subscriber(publisher.endpoint, topics=("pose/cam1/",), context=context) as subscriber:
                assert publisher.wait_for_subscribers(1, timeout_s=5.0) == (0, 1)
                publisher.publish(make_pose("cam10", 0))
                publisher.publish(make_pose("cam1", 1))
                publisher.publish(make_pose("cam10", 2))
                received = subscriber.recv(timeout_ms=2000)
                assert received is not None
                assert received.source_id == "cam1"
                assert received.frame_index == 1
                assert subscriber.recv(timeout_ms=200) is None
    finally:
        context.term()


# --- encode failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "bogus"}, "kind must be one of"),
        ({"source_id": "cam 1"}, "source_id must match"),
        ({"seq": -1}, "seq must be an int >= 0"),
        ({"seq": True}, "seq must be an int >= 0"),
        ({"fields": {"seq": 3}}, "reserved header keys"),
        ({"fields": {"arrays": []}}, "reserved header keys"),
        ({"fields": {"v": 2}}, "reserved header keys"),
        ({"fields": {"topic": "x"}}, "reserved header keys"),
        ({"fields": {"frame_index": 1.5}}, "frame_index must be an int or None"),
        ({"fields": {"pts_s": "0.1"}}, "pts_s must be a float or None"),
        ({"fields": {"blob": b"raw"}}, "field blob must be"),
        ({"fields": {"obj": object()}}, "field obj must be"),
        ({"fields": {"m": {1: "x"}}}, "keys of field m must be str"),
        ({"fields": {"big": 2**70}}, "must fit in 64 bits"),
        ({"arrays": {"o": np.array([object()], dtype=object)}}, "dtype must be one of"),
        ({"arrays": {"h": np.zeros(3, dtype=np.float16)}}, "dtype must be one of"),
        ({"arrays": {"l": [1.0, 2.0]}}, "must be a numpy.ndarray"),
        ({"arrays": {"": np.zeros(3)}}, "array names must be non-empty str"),
    ],
)
def test_encode_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"kind": "pose", "source_id": "cam1", "seq": 0, "fields": {}, "arrays": None}
    args.update(kwargs)
    with pytest.raises(WireFormatError, match=fragment):
        encode(**args)


# --- decode failures --------------------------------------------------------------------------


def _xyxy() -> bytes:
    return np.zeros(4, dtype=np.float32).tobytes()


def _without(key: str) -> dict[str, Any]:
    header = _good_header()
    del header[key]
    return header


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        pytest.param([b"pose/cam1/"], "expected at least 2 message parts", id="one-part"),
        pytest.param([], "expected at least 2 message parts", id="no-parts"),
        pytest.param(_raw_parts(_good_header(v=2), [_xyxy()]), "unsupported wire version: expected 1, got 2", id="v2"),
        pytest.param(_raw_parts(_good_header(v="1"), [_xyxy()]), "unsupported wire version", id="v-str"),
        pytest.param(_raw_parts(_without("v"), [_xyxy()]), "unsupported wire version", id="no-v"),
        pytest.param(_raw_parts(_without("seq"), [_xyxy()]), "missing required keys: seq", id="no-seq"),
        pytest.param(_raw_parts(_without("arrays"), [_xyxy()]), "missing required keys: arrays", id="no-arrays"),
        pytest.param(
            _raw_parts(_without("publish_time_ns"), [_xyxy()]), "missing required keys: publish_time_ns", id="no-time"
        ),
        pytest.param(_raw_parts(_good_header(seq=-1), [_xyxy()]), "seq must be an int >= 0", id="neg-seq"),
        pytest.param(_raw_parts(_good_header(seq="0"), [_xyxy()]), "seq must be an int >= 0", id="str-seq"),
        pytest.param(
            _raw_parts(_good_header(kind="video"), [_xyxy()], b"pose/cam1/"), "kind must be one of", id="kind"
        ),
        pytest.param(
            _raw_parts(_good_header(frame_index="3"), [_xyxy()]), "frame_index must be an int or None", id="frame-index"
        ),
        pytest.param(_raw_parts(_good_header(pts_s="x"), [_xyxy()]), "pts_s must be a float or None", id="pts"),
        pytest.param(_raw_parts(_good_header(), [_xyxy()], b"pose/cam10/"), "topic must match", id="topic"),
        pytest.param(_raw_parts(_good_header(), []), "expected 1 array buffers", id="too-few-buffers"),
        pytest.param(_raw_parts(_good_header(), [_xyxy(), b"x"]), "expected 1 array buffers", id="too-many-buffers"),
        pytest.param(_raw_parts(_good_header(), [b"\x00" * 15]), "buffer size must be 16 bytes", id="size-mismatch"),
        pytest.param(
            _raw_parts(_good_header(arrays=[{"name": "o", "dtype": "object", "shape": [1]}]), [b"\x00" * 8]),
            "dtype must be one of float32, float64, int32, int64, uint8, bool, got 'object'",
            id="dtype-object",
        ),
        pytest.param(
            _raw_parts(_good_header(arrays=[{"name": "a", "dtype": "float32", "shape": [-1]}]), [b""]),
            "shape must be a list of non-negative ints",
            id="negative-shape",
        ),
        pytest.param(
            _raw_parts(_good_header(arrays=[{"name": "a", "dtype": "float32", "shape": "4"}]), [_xyxy()]),
            "shape must be a list of non-negative ints",
            id="shape-str",
        ),
        pytest.param(
            _raw_parts(_good_header(arrays=[{"name": "a", "dtype": "float32"}]), [_xyxy()]),
            "must be a map with keys dtype, name, shape",
            id="descriptor-keys",
        ),
        pytest.param(
            _raw_parts(_good_header(arrays=[{"name": "a", "dtype": "uint8", "shape": [1]}] * 2), [b"\x00", b"\x00"]),
            "array names must be unique",
            id="duplicate-name",
        ),
        pytest.param(
            _raw_parts(_good_header(arrays=[{"name": "b", "dtype": "bool", "shape": [2]}]), [b"\x01\x07"]),
            "bool must hold only bytes 0 and 1",
            id="bool-bytes",
        ),
        pytest.param([b"pose/cam1/", msgpack.packb([1, 2, 3])], "header must be a msgpack map, got list", id="list"),
        pytest.param([b"pose/cam1/", msgpack.packb(5)], "header must be a msgpack map, got int", id="int-header"),
        pytest.param([b"pose/cam1/", b"\xc1garbage"], "header is not valid msgpack", id="garbage"),
        pytest.param([b"pose/cam1/", msgpack.packb({1: 2})], "header is not valid msgpack", id="int-key"),
        pytest.param(_raw_parts(_good_header(blob=b"raw"), [_xyxy()]), "header values must be", id="bin-value"),
        pytest.param(
            _raw_parts(_good_header(ext=msgpack.ExtType(5, b"x")), [_xyxy()]), "header values must be", id="ext"
        ),
        pytest.param([b"pose/cam1/", object()], "must be bytes, memoryview or zmq.Frame", id="part-type"),
    ],
)
def test_decode_rejects(parts: list[Any], fragment: str) -> None:
    with pytest.raises(WireFormatError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        decode(parts)


def test_decode_rejects_oversize_message_and_header() -> None:
    arrays = {"big": np.zeros(1024, dtype=np.float64)}
    parts = encode("pose", "cam1", 0, {"pad": "x" * 2000}, arrays)
    with pytest.raises(WireFormatError, match="message too large: expected at most 4096 bytes, got"):
        decode(parts, max_message_bytes=4096)
    with pytest.raises(WireFormatError, match="header too large: expected at most 1000 bytes, got"):
        decode(parts, max_header_bytes=1000)
    assert isinstance(decode(parts), Message)


def test_wire_format_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported wire version"):
        decode(_raw_parts(_good_header(v=99), [_xyxy()]))


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.term()


def test_subscriber_skips_malformed_message(zmq_context: zmq.Context) -> None:
    pub = zmq_context.socket(zmq.PUB)
    try:
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind("tcp://127.0.0.1:*")
        endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        with Subscriber(endpoint, context=zmq_context) as subscriber:
            good = [bytes(p) for p in encode_message(make_pose("cam1", 5), 0)]
            bad = _raw_parts(_good_header(v=2), [_xyxy()])
            # valid on the wire, but not a pose/ message of the schema (no frame_width, ...)
            off_schema = [bytes(p) for p in encode("pose", "cam1", 0, {"frame_index": 4})]
            message = None
            for _ in range(100):  # PUB drops until the subscription has arrived: retry
                pub.send_multipart(bad)
                pub.send_multipart(off_schema)
                pub.send_multipart(good)
                message = subscriber.recv(timeout_ms=50)
                if message is not None:
                    break
            assert message is not None
            assert message.frame_index == 5
            assert subscriber.malformed >= 1
            before = subscriber.malformed  # subscribed now: the next three arrive in order
            pub.send_multipart(bad)
            pub.send_multipart(off_schema)
            pub.send_multipart(good)
            again = subscriber.recv(timeout_ms=5000)
            assert again is not None and again.frame_index == 5
            assert subscriber.malformed == before + 2  # the bad version and the off-schema pose, both skipped
    finally:
        pub.close(linger=0)
