"""Typed messages (engine/messages.py): schema, validation, wire and JSON round trips, README tables."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace

import numpy as np
import pytest

from engine import messages, wire
from engine.config import Config
from engine.errors import WireFormatError
from engine.messages import EndOfStream, Fit, Health, Pose, Shot, Similarity, SourceHealth
from engine.pipeline import run_inline
from engine.testing import FakeKeypointModel, ListSource, make_eos, make_health, make_pose, make_source_health
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"


def _readme_rows() -> dict[str, tuple[str, str]]:
    """``kind -> (header fields column, arrays column)`` of the README's topic table."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(\w+)/(?:<source_id>/)?` \|([^|]*)\|([^|]*)\|([^|]*)\|$", line)
        if m:
            rows[m.group(1)] = (m.group(3), m.group(4))
    return rows


def _header_names_in(text: str) -> list[str]:
    text = re.sub(r"\{[^}]*\}", "", text)  # the health sources' inner map is checked separately
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\([^()]*\)", "", text)
    return re.findall(r"`([a-z_]+)`", text)


def _arrays_in(text: str) -> dict[str, str]:
    out = {}
    for names, dtype in re.findall(r"((?:`[a-z_]+`(?:, )?)+): (float32|float64|int64|int32|uint8|bool)", text):
        for name in re.findall(r"`([a-z_]+)`", names):
            out[name] = dtype
    return out


def test_readme_topic_table_matches_the_message_classes() -> None:
    rows = _readme_rows()
    assert sorted(rows) == sorted(messages.KINDS)
    for kind, cls in messages.MESSAGE_TYPES.items():
        header_col, arrays_col = rows[kind]
        assert _header_names_in(header_col) == list(messages.header_names(cls)), kind
        documented = _arrays_in(arrays_col)
        specs = messages.array_specs(cls)
        assert list(documented) == list(specs), kind
        assert documented == {name: spec.dtype.name for name, spec in specs.items()}, kind
    inner = re.search(r"\{([^}]*)\}", rows["health"][0]).group(1)
    inner = re.sub(r"\([^()]*\)", "", inner)
    assert re.findall(r"`([a-z_]+)`", inner) == [f.name for f in fields(SourceHealth)]


def test_readme_envelope_table_lists_the_envelope_keys() -> None:
    text = README.read_text(encoding="utf-8")
    envelope = re.findall(r"^\| `(\w+)` \| (?:int|str|float|list)", text, flags=re.M)
    assert envelope == ["v", "kind", "source_id", "seq", *messages.FRAME_KEYS, "publish_time_ns", "arrays"]


@pytest.mark.parametrize(
    "message",
    [
        make_pose(),
        make_pose("cam2", 7, batter_found=False, n_persons=0),
        make_eos("cam1", frames=3, reason="error", error="boom"),
        make_health("stopped", {"a": make_source_health("failed", 4), "b.c-1": make_source_health()}),
    ],
    ids=["pose", "pose-no-batter", "eos", "health"],
)
def test_wire_and_json_round_trips_keep_every_field(message: messages.Message) -> None:
    parts = wire.encode_message(message, seq=5, publish_time_ns=123)
    typed = wire.decode_message(parts)
    assert type(typed) is type(message) and typed.seq == 5 and typed.publish_time_ns == 123
    raw = wire.decode(parts)
    # the typed JSON is exactly what the raw header gives, key order included
    assert list(typed.to_json_dict().items()) == list(raw.to_json_dict().items())
    back = messages.from_json_dict(json.loads(json.dumps(typed.to_json_dict(), allow_nan=False)))
    assert back.to_json_dict() == typed.to_json_dict()
    for name, array in typed.array_fields().items():
        np.testing.assert_array_equal(array, message.array_fields()[name])
        assert array.dtype == message.array_fields()[name].dtype


def test_inline_run_messages_survive_the_wire_and_json() -> None:
    config = Config()
    out = run_inline(config, [ListSource("a", n_frames=40), ListSource("b", n_frames=9)], FakeKeypointModel())
    kinds = {m.kind for m in out}
    assert {"pose", "sim", "fit", "eos", "health"} <= kinds
    for message in out:
        typed = wire.decode_message(wire.encode_message(message, seq=0, publish_time_ns=0))
        assert typed.to_json_dict() == replace(message, publish_time_ns=0).to_json_dict()
        # a NaN in a fit statistic is null in JSON and NaN again on the way back
        again = messages.from_json_dict(json.loads(json.dumps(typed.to_json_dict(), allow_nan=False)))
        assert again.to_json_dict() == typed.to_json_dict()


def test_pose_arrays_are_validated_with_named_shapes() -> None:
    good = make_pose()
    with pytest.raises(WireFormatError, match=r"`persons_track_id` must have shape \(N,\) = \(2,\), got \(3,\)"):
        replace(good, persons_track_id=np.zeros(3, np.int64))
    with pytest.raises(WireFormatError, match="`keypoints_xy` must have dtype float32, got float64"):
        replace(good, keypoints_xy=good.keypoints_xy.astype(np.float64))
    with pytest.raises(WireFormatError, match="exactly when batter_found"):
        replace(good, batter_found=False)
    with pytest.raises(WireFormatError, match="field heatmap_source must be one of"):
        replace(good, heatmap_source="keypoints")
    with pytest.raises(WireFormatError, match="field n_persons must be int, got str"):
        replace(good, n_persons="2")
    with pytest.raises(WireFormatError, match="source_id must match"):
        replace(good, source_id="bad id")


def test_scalar_fields_are_typed_and_ints_widen_to_floats() -> None:
    eos = make_eos()
    assert isinstance(replace(make_pose(), inference_ms=3).inference_ms, float)
    with pytest.raises(WireFormatError, match="field reason must be one of"):
        replace(eos, reason="end of file")
    with pytest.raises(WireFormatError, match="field frames must not be null"):
        replace(eos, frames=None)
    with pytest.raises(WireFormatError, match="source_id of a health message must be ''"):
        Health(source_id="x", engine_state="running", uptime_s=0.0, model="m", device="cpu", sources={})
    with pytest.raises(WireFormatError, match="field sources.a must have keys"):
        messages.from_parts(
            {"kind": "health", "source_id": "", "engine_state": "running", "uptime_s": 1.0, "model": "m",
             "device": "cpu", "sources": {"a": {"state": "live"}}},
            {},
        )


def test_decoding_refuses_missing_and_unexpected_fields() -> None:
    parts = wire.encode("eos", "cam1", 0, {"frames": 1, "dropped": 0, "corrupt": 0, "error": None})
    with pytest.raises(WireFormatError, match="eos header is missing field reason"):
        wire.decode_message(parts)
    parts = wire.encode(
        "eos", "cam1", 0,
        {"frames": 1, "dropped": 0, "corrupt": 0, "error": None, "reason": "end", "concealed": 0, "last_seq": {},
         "extra": 1},
    )
    with pytest.raises(WireFormatError, match="eos header has unexpected fields: extra"):
        wire.decode_message(parts)
    pose = make_pose()
    parts = wire.encode("pose", "cam1", 0, pose.header_fields(), {**pose.array_fields(), "junk": np.zeros(1)})
    with pytest.raises(WireFormatError, match="pose message has unexpected arrays: junk"):
        wire.decode_message(parts)


def test_json_decoding_refuses_bad_input() -> None:
    good = make_eos().to_json_dict()
    with pytest.raises(WireFormatError, match="unsupported wire version: expected 1, got 2"):
        messages.from_json_dict({**good, "v": 2})
    with pytest.raises(WireFormatError, match="topic must match"):
        messages.from_json_dict({**good, "topic": "eos/other/"})
    with pytest.raises(WireFormatError, match="a message must be a JSON object"):
        messages.from_json_dict([good])  # type: ignore[arg-type]


def test_fit_and_shot_share_one_statistics_group() -> None:
    names_fit, names_shot = messages.header_names(Fit), messages.header_names(Shot)
    stats = [f.name for f in fields(messages.FitStats)]
    assert names_fit[-len(stats):] == tuple(stats)
    i = names_shot.index(stats[0])
    assert names_shot[i:i + len(stats)] == tuple(stats)
    # every kind-specific header of sim is listed and no envelope key is repeated
    assert set(messages.header_names(Similarity)).isdisjoint({"seq", "pts_s", "frame_index"})
    assert set(messages.header_names(EndOfStream)) == {
        "frames", "dropped", "corrupt", "error", "reason", "concealed", "last_seq",
    }
    assert Pose.KIND == "pose" and make_pose().topic == "pose/cam1/"


def test_an_eos_written_before_last_seq_existed_still_reads() -> None:
    """Files of earlier runs have eos/ lines without ``last_seq`` (issue 12): it reads as ``{}``."""
    old_line = {"v": 1, "kind": "eos", "source_id": "cam1", "seq": 0, "frame_index": None, "pts_s": None,
                "capture_time_ns": None, "publish_time_ns": 1, "frames": 3, "dropped": 0, "corrupt": 0,
                "error": None, "reason": "end", "topic": "eos/cam1/"}
    eos = messages.from_json_dict(old_line)
    assert isinstance(eos, EndOfStream) and eos.frames == 3 and eos.last_seq == {}
