"""The opt-in ``frame/`` topic: rate limit, scaling, JPEG content, who asks for it, order on the wire."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import av
import cv2
import numpy as np
import pytest
import zmq

from engine.config import PublisherConfig, load_config
from engine.frames import FrameEncoder
from engine.messages import FrameImage, Pose
from engine.pipeline import run_inline
from engine.publisher import Publisher
from engine.testing import FakeKeypointModel, ListSource
from engine.types import Frame
from engine.wire import decode_message
from stream.pyav import FileSource
from tests.conftest import shared_file
from tests.helpers import ANY_PORT, RecordingSink, by_kind, run_pipeline, wait_until


class FrameSink(RecordingSink):
    """A recording sink that draws on the video."""

    needs_frames: ClassVar[bool] = True


def _frame(pts_s: float, index: int = 0, image: np.ndarray | None = None, source_id: str = "cam1") -> Frame:
    if image is None:
        image = np.zeros((36, 64, 3), np.uint8)
    return Frame(source_id, index, pts_s, 0, image)


# --- FrameEncoder ------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_fps", "frame_fps"), [(25.0, 10.0), (60.0, 25.0), (30.0, 30.0), (24.0, 60.0)])
def test_frames_are_limited_to_frame_fps_of_media_time(source_fps: float, frame_fps: float) -> None:
    encoder = FrameEncoder(PublisherConfig(frame_fps=frame_fps))
    duration_s = 4.0
    times = [i / source_fps for i in range(round(duration_s * source_fps))]
    due = [t for t in times if encoder.due(_frame(t))]
    # independent expectation: a grid of 1/frame_fps can pick at most one frame per grid cell
    expected = min(len(times), round(duration_s * frame_fps))
    assert abs(len(due) - expected) <= 1
    assert due[0] == 0.0
    if frame_fps >= source_fps:
        assert due == times  # a slower source gets every frame


def test_rate_limit_is_per_source_and_restarts_after_a_gap() -> None:
    encoder = FrameEncoder(PublisherConfig(frame_fps=10.0))
    assert encoder.due(_frame(0.0, source_id="a"))
    assert encoder.due(_frame(0.0, source_id="b"))  # another source has its own grid
    assert not encoder.due(_frame(0.05, source_id="a"))
    assert encoder.due(_frame(5.0, source_id="a"))  # after a 5 s gap: at once, not 49 late slots
    assert not encoder.due(_frame(5.05, source_id="a"))
    assert encoder.due(_frame(5.1, source_id="a"))


def test_encode_scales_to_max_width_and_keeps_the_picture() -> None:
    # four flat quadrants of known colours (BGR), 1280x720
    image = np.zeros((720, 1280, 3), np.uint8)
    colours = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 255)}
    for (row, col), bgr in colours.items():
        image[row * 360:(row + 1) * 360, col * 640:(col + 1) * 640] = bgr
    encoder = FrameEncoder(PublisherConfig(frame_max_width=320, frame_quality=90))
    message = encoder.encode(Frame("cam1", 7, 0.25, 123, image))
    assert (message.width, message.height) == (320, 180)
    assert (message.frame_width, message.frame_height) == (1280, 720)
    assert (message.frame_index, message.pts_s, message.capture_time_ns, message.quality) == (7, 0.25, 123, 90)
    decoded = cv2.imdecode(message.jpeg, cv2.IMREAD_COLOR)
    assert decoded.shape == (180, 320, 3)
    for (row, col), bgr in colours.items():
        centre = decoded[row * 90 + 45, col * 160 + 80].astype(int)
        assert np.abs(centre - np.array(bgr)).max() <= 8, ((row, col), centre)
    assert encoder.encoded == 1 and encoder.encode_ms > 0


def test_encode_never_enlarges_a_small_frame() -> None:
    message = FrameEncoder(PublisherConfig(frame_max_width=960)).encode(_frame(0.0))
    assert (message.width, message.height) == (64, 36)
    assert cv2.imdecode(message.jpeg, cv2.IMREAD_COLOR).shape == (36, 64, 3)


# --- who asks for frames --------------------------------------------------------------------------


def test_publisher_knows_which_sources_a_subscriber_asked_frames_for() -> None:
    with Publisher(PublisherConfig(endpoint=ANY_PORT)) as publisher:
        context = zmq.Context.instance()
        everything = context.socket(zmq.SUB)
        everything.connect(publisher.endpoint)
        everything.setsockopt(zmq.SUBSCRIBE, b"")
        one = context.socket(zmq.SUB)
        one.connect(publisher.endpoint)
        one.setsockopt(zmq.SUBSCRIBE, b"frame/cam1/")
        all_frames = context.socket(zmq.SUB)
        all_frames.connect(publisher.endpoint)
        all_frames.setsockopt(zmq.SUBSCRIBE, b"frame/")

        def poll(expected: tuple[bool, bool]) -> bool:
            publisher.poll_subscriptions()
            return (publisher.wants_frames("cam1"), publisher.wants_frames("cam10")) == expected

        wait_until(lambda: poll((True, True)), 10, "frame subscriptions seen")
        all_frames.close(linger=0)  # a subscriber that leaves withdraws its subscriptions
        wait_until(lambda: poll((True, False)), 10, "frame/ withdrawn, frame/cam1/ kept")
        one.setsockopt(zmq.UNSUBSCRIBE, b"frame/cam1/")
        wait_until(lambda: poll((False, False)), 10, "every frame subscription withdrawn")
        one.close(linger=0)
        everything.close(linger=0)  # "" alone never asked for frames


def _recording_run(tmp_path: Path, overrides: list[str], sinks: list[RecordingSink], n_frames: int = 12):
    sources = [ListSource("cam1", n_frames=n_frames, fps=30.0, size=(90, 160))]
    return run_pipeline(sources, FakeKeypointModel(), tmp_path, overrides, sinks)


def test_a_sink_that_needs_frames_gets_each_frame_just_before_its_pose(tmp_path: Path) -> None:
    drawing, plain = FrameSink(), RecordingSink()
    pipeline, collected, error = _recording_run(tmp_path, ["publisher.frame_max_width=80"], [drawing, plain])
    assert error is None
    frames = by_kind(drawing.messages, "frame")
    poses = by_kind(drawing.messages, "pose")
    assert [m.frame_index for m in frames] == [m.frame_index for m in poses] == list(range(12))
    # per source, the frame's message comes right before the pose of the same frame
    per_source = [m for m in drawing.messages if m.kind in ("frame", "pose")]
    assert [(m.kind, m.frame_index) for m in per_source[:4]] == [("frame", 0), ("pose", 0), ("frame", 1), ("pose", 1)]
    for frame_message in frames:
        assert isinstance(frame_message, FrameImage)
        assert (frame_message.width, frame_message.height) == (80, 45)
        picture = cv2.imdecode(frame_message.jpeg, cv2.IMREAD_COLOR)
        # ListSource paints every pixel with frame_index % 256
        assert abs(float(picture.mean()) - frame_message.frame_index) <= 2
    assert by_kind(plain.messages, "frame") == []  # a sink that did not ask never sees them
    assert len(by_kind(plain.messages, "pose")) == 12
    assert pipeline.frame_encoder.encoded == 12


def test_no_frames_are_encoded_when_nobody_asks_or_when_off(tmp_path: Path) -> None:
    plain = RecordingSink()
    pipeline, collected, error = _recording_run(tmp_path, [], [plain])
    assert error is None and pipeline.frame_encoder.encoded == 0
    assert by_kind(collected, "frame") == [] and len(by_kind(collected, "pose")) == 12

    drawing = FrameSink()
    pipeline, collected, error = _recording_run(tmp_path, ["publisher.frames=off"], [drawing])
    assert error is None and pipeline.frame_encoder.encoded == 0
    assert by_kind(drawing.messages, "frame") == [] and len(by_kind(drawing.messages, "pose")) == 12


def test_frames_on_reach_a_plain_subscriber_that_subscribes_to_frame_topic(tmp_path: Path) -> None:
    pipeline, collected, error = _recording_run(tmp_path, ["publisher.frames=on", "publisher.frame_fps=10"], [])
    assert error is None
    # the Collector subscribes to "" with a bare Subscriber, which delivers every topic
    frames = by_kind(collected, "frame")
    assert [m.frame_index for m in frames] == [0, 3, 6, 9]  # 30 fps source, 10 fps of frames
    assert frames[0].topic == "frame/cam1/"


def test_run_inline_produces_frames_only_when_on() -> None:
    config = load_config(None, ["publisher.frames=on", "publisher.frame_fps=15"])
    messages = run_inline(config, [ListSource("cam1", n_frames=6, fps=30.0)], FakeKeypointModel())
    assert [m.frame_index for m in messages if m.kind == "frame"] == [0, 2, 4]
    kinds = [m.kind for m in messages if m.frame_index == 2]
    assert kinds[:2] == ["frame", "pose"]
    off = run_inline(load_config(None, []), [ListSource("cam1", n_frames=6)], FakeKeypointModel())
    assert not [m for m in off if m.kind == "frame"]


def test_frame_messages_survive_the_wire() -> None:
    message = FrameEncoder(PublisherConfig()).encode(_frame(1.5, 3, np.full((36, 64, 3), 200, np.uint8)))
    with Publisher(PublisherConfig(endpoint=ANY_PORT)) as publisher:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(publisher.endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"frame/")
        wait_until(lambda: _subscribed(publisher), 10, "subscription")
        publisher.publish(message)
        assert sub.poll(5000)
        decoded = decode_message(sub.recv_multipart())
        sub.close(linger=0)
    assert isinstance(decoded, FrameImage)
    assert decoded.jpeg.tobytes() == message.jpeg.tobytes()
    assert (decoded.kind, decoded.source_id, decoded.frame_index, decoded.pts_s) == ("frame", "cam1", 3, 1.5)


def _subscribed(publisher: Publisher) -> bool:
    publisher.poll_subscriptions()
    return publisher.wants_frames("cam1")


# --- real footage -------------------------------------------------------------------------------


class _FirstFrames(ListSource):
    """The first ``n`` decoded frames of a real file source, replayed."""

    def __init__(self, source: FileSource, n: int) -> None:
        super().__init__(source.source_id, n_frames=n)
        source.open()
        try:
            self._frames = [f for f, _ in zip(source.frames(), range(n), strict=False)]
        finally:
            source.close()

    def frames(self):  # noqa: D102 - replay
        yield from self._frames


def test_frames_of_a_real_clip_match_the_decoded_video() -> None:
    clip = shared_file("clips/cricket/cover_drive_04_nets.mp4")  # 60 fps, 720x1280
    config = load_config(None, ["publisher.frames=on", "publisher.frame_max_width=360", "shots.enabled=false"])
    source = _FirstFrames(FileSource(str(clip), "nets", config.source), 12)
    messages = run_inline(config, [source], FakeKeypointModel())
    frames = [m for m in messages if isinstance(m, FrameImage)]
    assert len([m for m in messages if isinstance(m, Pose)]) == 12
    assert [m.frame_index for m in frames] == [0, 2, 4, 6, 8, 10]  # frame_fps 30 of a 60 fps clip
    # independent decode with PyAV: the JPEG is the same picture, scaled
    with av.open(str(clip)) as container:
        originals = [f.to_ndarray(format="bgr24") for f, _ in zip(container.decode(video=0), range(12), strict=False)]
    for message in frames:
        original = originals[message.frame_index]
        assert (message.frame_height, message.frame_width) == original.shape[:2]
        assert message.width == 360 and message.height == round(original.shape[0] * 360 / original.shape[1])
        expected = cv2.resize(original, (message.width, message.height), interpolation=cv2.INTER_AREA).astype(float)
        picture = cv2.imdecode(message.jpeg, cv2.IMREAD_COLOR).astype(float)
        psnr = 10 * np.log10(255.0**2 / np.mean((picture - expected) ** 2))
        assert psnr > 30, (message.frame_index, psnr)
