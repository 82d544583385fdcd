"""The ``video`` sink: typed messages in, an H.264 file out, checked by decoding it with PyAV.

Expectations come from the inputs (the times given, the keypoint positions published, the colour
painted), never from the sink's output. Colour checks: the file is H.264 4:2:0 (chroma at half
resolution, lossy), so a pixel is compared by which channels dominate, not by value: a saturated
cyan / magenta / yellow dot of radius >= 3 px keeps its two strong channels at least
:data:`CHANNEL_MARGIN` above the weak one at its centre (measured margins are ~150-250 of 255 at
the default crf 23), while footage, skin and the grey background have margins far below it.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from engine.config import ModelConfig, PublisherConfig, SourceConfig
from engine.errors import SinkError, SinkOptionError
from engine.messages import FrameImage, Pose, Shot, Similarity
from engine.publisher import Publisher
from engine.sources import build_sources
from engine.testing import make_eos, make_fit, make_health
from engine.types import COCO_KEYPOINT_NAMES, NUM_KEYPOINTS
from sinks.video import VideoSink
from sinks.video.draw import CENTRE_BGR, LEFT_BGR, MIN_KEYPOINT_CONF, RIGHT_BGR, Layout, Style, batter_sizes
from tests.conftest import shared_file
from tests.helpers import ANY_PORT, by_kind, run_cli, run_pipeline

pytestmark = pytest.mark.timeout(60)

#: Smallest (strong channels - weak channel) accepted at a skeleton dot; see the module docstring.
CHANNEL_MARGIN = 80
#: Largest per-channel difference from the source colour far from any drawing (JPEG + H.264 on a flat colour).
BACKGROUND_TOLERANCE = 12
#: Background colour of the synthetic frames (BGR), a grass-like green.
BACKGROUND_BGR = (60, 120, 70)
#: Irregular frame times (seconds): a variable frame rate must survive.
PTS_S = (0.0, 0.033, 0.1, 0.133)
#: Source frame size (pose/ coordinates) and JPEG size (scaled by half, as publisher.frame_max_width does).
FRAME_W, FRAME_H = 640, 480
JPEG_W, JPEG_H = 320, 240


# --- helpers ----------------------------------------------------------------------------------


def frame_image(
    source_id: str, frame_index: int, pts_s: float, size: tuple[int, int] = (JPEG_W, JPEG_H),
    frame_size: tuple[int, int] = (FRAME_W, FRAME_H), bgr: tuple[int, int, int] = BACKGROUND_BGR,
) -> FrameImage:
    """A ``frame/`` message whose JPEG is a flat ``bgr`` image of ``size = (w, h)``."""
    image = np.empty((size[1], size[0], 3), np.uint8)
    image[:] = bgr
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return FrameImage(
        source_id=source_id, frame_index=frame_index, pts_s=pts_s, capture_time_ns=1, frame_width=frame_size[0],
        frame_height=frame_size[1], width=size[0], height=size[1], quality=95, jpeg=jpeg.reshape(-1),
    )


def grid_keypoints(frame_index: int = 0) -> np.ndarray:
    """17 keypoints on a 5-column grid in source-frame pixels, well apart and away from the insets."""
    k = np.arange(NUM_KEYPOINTS)
    xs = 80 + 90 * (k % 5) + 4 * frame_index
    ys = 120 + 80 * (k // 5)
    return np.stack([xs, ys], axis=1).astype(np.float32)


def pose(
    source_id: str, frame_index: int, pts_s: float, keypoints: np.ndarray | None = None,
    frame_size: tuple[int, int] = (FRAME_W, FRAME_H),
) -> Pose:
    """A ``pose/`` message with a batter (track 7) at ``keypoints`` and one other person's box."""
    kp = grid_keypoints(frame_index) if keypoints is None else keypoints
    batter_box = np.array([kp[:, 0].min() - 20, kp[:, 1].min() - 20, kp[:, 0].max() + 20, kp[:, 1].max() + 20],
                          np.float32)
    other_box = np.array([5, 5, 40, 60], np.float32)
    return Pose(
        source_id=source_id, frame_index=frame_index, pts_s=pts_s, capture_time_ns=1, frame_width=frame_size[0],
        frame_height=frame_size[1], n_persons=2, batter_found=True, track_id=7, heatmap_source="rendered",
        inference_ms=1.0, raw_pts_s=pts_s, timeline_break=False, scene_cut=False,
        persons_xyxy=np.stack([batter_box, other_box]), persons_track_id=np.array([7, 8], np.int64),
        xyxy=batter_box, keypoints_xy=kp, keypoints_conf=np.full(NUM_KEYPOINTS, 0.9, np.float32),
    )


def similarity(source_id: str, frame_index: int, pts_s: float) -> Similarity:
    """A ``sim/`` message with an identity-like matrix."""
    matrix = np.eye(NUM_KEYPOINTS, dtype=np.float32)
    return Similarity(
        source_id=source_id, frame_index=frame_index, pts_s=pts_s, capture_time_ns=1, window_s=2.0, window_frames=3,
        pairs={"left_wrist/left_shoulder": 0.6}, heatmap_source="rendered", cosine_similarity=matrix,
        window_mean=matrix, cumulative_mean=matrix,
    )


def decode_video(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of ``path`` as ``(time in seconds, BGR uint8 [h, w, 3])``, decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in container.decode(stream)]


def median_bgr(image: np.ndarray, xy: tuple[float, float], half: int = 1) -> np.ndarray:
    """Median BGR of the ``(2 half + 1)^2`` pixels around ``xy`` (image pixels), int."""
    x, y = round(xy[0]), round(xy[1])
    patch = image[y - half:y + half + 1, x - half:x + half + 1].reshape(-1, 3)
    return np.median(patch, axis=0).astype(int)


def dominant_match(pixel: np.ndarray, expected_bgr: tuple[int, int, int]) -> int:
    """How far ``pixel``'s two strong channels (those 255 in ``expected_bgr``) stand above its weak one."""
    strong = [c for c in range(3) if expected_bgr[c] == 255]
    weak = [c for c in range(3) if expected_bgr[c] == 0]
    return int(min(pixel[c] for c in strong) - max(pixel[c] for c in weak))


def expected_colour(k: int) -> tuple[int, int, int]:
    """The colour the README / draw module documents for keypoint ``k``, chosen here from its name."""
    name = COCO_KEYPOINT_NAMES[k]
    return LEFT_BGR if name.startswith("left_") else RIGHT_BGR if name.startswith("right_") else CENTRE_BGR


def run_sink(sink: VideoSink, batches: list[list]) -> None:
    sink.open()
    try:
        for batch in batches:
            sink.write_batch(batch)
    finally:
        sink.close()


# --- tests ------------------------------------------------------------------------------------


def test_vfr_times_frame_count_and_skeleton_colours_at_the_keypoints(tmp_path: Path) -> None:
    messages = []
    for i, t in enumerate(PTS_S):
        messages += [frame_image("cam1", i, t), pose("cam1", i, t), similarity("cam1", i, t)]
        if i:
            messages.append(replace(make_fit("cam1", i), pts_s=t, t_start_s=0.0, t_end_s=t))
    sink = VideoSink(out_dir=str(tmp_path / "out"))
    run_sink(sink, [messages[:5], messages[5:]])  # batch borders fall inside a frame's messages

    path = tmp_path / "out" / "cam1.mp4"
    assert sink.written == [path]
    frames = decode_video(path)
    assert len(frames) == len(PTS_S)
    for (time_s, image), t, i in zip(frames, PTS_S, range(len(PTS_S)), strict=True):
        assert time_s == pytest.approx(t, abs=1e-3)
        assert image.shape == (JPEG_H, JPEG_W, 3)
        for k, (x, y) in enumerate(grid_keypoints(i) * [JPEG_W / FRAME_W, JPEG_H / FRAME_H]):
            pixel = median_bgr(image, (x, y))
            margin = dominant_match(pixel, expected_colour(k))
            assert margin >= CHANNEL_MARGIN, (i, COCO_KEYPOINT_NAMES[k], pixel.tolist())
        for far in [(300, 160), (20, 130), (160, 225)]:  # right of the grid, left of it, under it
            assert np.abs(median_bgr(image, far) - BACKGROUND_BGR).max() <= BACKGROUND_TOLERANCE, far


def test_frame_without_pose_is_plain_and_a_pose_without_frame_adds_nothing(tmp_path: Path) -> None:
    batches = [[
        frame_image("cam1", 0, 0.0), pose("cam1", 0, 0.0),
        frame_image("cam1", 1, 0.04),  # no pose for frame 1: drawn plain
        pose("cam1", 2, 0.08),  # no frame/ for frame 2 (rate-limited): nothing written
        frame_image("cam1", 3, 0.12), pose("cam1", 3, 0.12), make_health(),
        make_eos("cam1", frames=4),
    ]]
    sink = VideoSink(out_dir=str(tmp_path))
    run_sink(sink, batches)
    frames = decode_video(tmp_path / "cam1.mp4")
    assert [t for t, _ in frames] == pytest.approx([0.0, 0.04, 0.12], abs=1e-3)
    plain = frames[1][1]
    for x, y in grid_keypoints(1) * 0.5:
        assert np.abs(median_bgr(plain, (x, y)) - BACKGROUND_BGR).max() <= BACKGROUND_TOLERANCE
    assert dominant_match(median_bgr(frames[2][1], tuple(grid_keypoints(3)[0] * 0.5)), CENTRE_BGR) >= CHANNEL_MARGIN


def test_several_sources_and_a_source_that_changes_size(tmp_path: Path) -> None:
    # cam "a-1" goes from a 320x240 JPEG of a 640x480 source to a 160x120 JPEG of a 320x240 source:
    # the file keeps its first size and scales the smaller frame up by 2 (letterbox with no border).
    small_kp = grid_keypoints(0) / 2  # same place in the picture, in the smaller source's pixels
    batches = [
        [frame_image("a-1", 0, 0.0), pose("a-1", 0, 0.0), frame_image("b", 0, 0.5), pose("b", 0, 0.5)],
        [frame_image("a-1", 1, 0.05, size=(160, 120), frame_size=(320, 240)),
         pose("a-1", 1, 0.05, keypoints=small_kp, frame_size=(320, 240)), frame_image("b", 1, 0.7)],
    ]
    sink = VideoSink(out_dir=str(tmp_path))
    run_sink(sink, batches)  # no eos/: close() finishes both files

    a, b = decode_video(tmp_path / "a-1.mp4"), decode_video(tmp_path / "b.mp4")
    assert [t for t, _ in a] == pytest.approx([0.0, 0.05], abs=1e-3)
    assert [t for t, _ in b] == pytest.approx([0.5, 0.7], abs=1e-3)
    image = a[1][1]
    assert image.shape == (JPEG_H, JPEG_W, 3)
    for k, (x, y) in enumerate(small_kp * [160 / 320 * 2, 120 / 240 * 2]):
        assert dominant_match(median_bgr(image, (x, y)), expected_colour(k)) >= CHANNEL_MARGIN - 20, k  # upscaled 2x


def test_shot_banner_is_held_for_two_seconds_of_media_time(tmp_path: Path) -> None:
    times = [0.0, 0.5, 1.0, 2.4, 3.1]
    messages = []
    for i, t in enumerate(times):
        messages += [frame_image("cam1", i, t), pose("cam1", i, t)]
        if i == 1:
            messages.append(_shot("cam1", i, t))
    sink = VideoSink(out_dir=str(tmp_path))
    run_sink(sink, [messages])
    frames = decode_video(tmp_path / "cam1.mp4")
    band = [image[-8:, :].reshape(-1, 3).mean(axis=0) for _, image in frames]  # bottom rows: banner strip
    darkened = [bool(np.all(m < np.array(BACKGROUND_BGR) * 0.7)) for m in band]
    assert darkened == [False, True, True, True, False]  # shot ends at 0.5 s: banner until 2.5 s


def _shot(source_id: str, frame_index: int, pts_s: float) -> Shot:
    empty = np.zeros(0)
    return Shot(
        source_id=source_id, frame_index=frame_index, pts_s=pts_s, capture_time_ns=None, shot_index=0, start_frame=0,
        end_frame=frame_index, start_s=0.0, end_s=pts_s, duration_s=pts_s, label="cover_drive", confidence=0.87,
        probabilities={"cover_drive": 0.87, "pull": 0.1, "other": 0.03}, handedness="right",
        handedness_source="config", handedness_confidence=1.0, wrist="left_wrist", shoulder="left_shoulder", n_points=0,
        degree_xy=None,
        basis="legendre", t_start_s=None, t_end_s=None, stats=None, classifier_version="test", dx_coef=empty,
        dy_coef=empty, r_coef=empty, t_s=np.zeros(frame_index + 1), dx=np.zeros(frame_index + 1),
        dy=np.zeros(frame_index + 1), pair_similarity=np.zeros(frame_index + 1, np.float32),
    )


def test_eos_finishes_the_file_and_a_returning_source_gets_a_new_one(tmp_path: Path) -> None:
    sink = VideoSink(out_dir=str(tmp_path))
    sink.open()
    try:
        sink.write_batch([frame_image("cam1", 0, 0.0), pose("cam1", 0, 0.0), make_eos("cam1", frames=1)])
        assert len(decode_video(tmp_path / "cam1.mp4")) == 1  # readable before close()
        sink.write_batch([frame_image("cam1", 0, 0.0)])
    finally:
        sink.close()
    assert sink.written == [tmp_path / "cam1.mp4", tmp_path / "cam1-1.mp4"]


def test_unwritable_out_dir_is_a_sink_error_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sink = VideoSink(out_dir=str(blocker / "videos"))
    with pytest.raises(SinkError, match="video sink cannot write to folder"):
        sink.open()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [({"codec": "no_such_codec"}, "no encoder 'no_such_codec'"), ({"codec": "aac"}, "audio encoder"),
     ({"crf": "52"}, "crf"), ({"crf": "x"}, "crf"), ({"out_dir": ""}, "out_dir"), ({"preset": "quick"}, "preset")],
)
def test_bad_options(options: dict[str, str], fragment: str) -> None:
    with pytest.raises(SinkOptionError, match=fragment):
        VideoSink.from_options({"out_dir": "x", **options}, name="video")


def test_needs_frames() -> None:
    assert VideoSink.needs_frames is True


def test_batsight_sink_video_connect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``batsight sink video --connect EP --path DIR`` (the generic runtime) writes the file and exits at the stop."""
    with Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=500)) as publisher:

        def publish() -> None:
            if publisher.wait_for_subscribers(1, timeout_s=20.0)[1] < 1:
                return  # the CLI failed before subscribing; its status says why
            for i, t in enumerate(PTS_S):
                publisher.publish(frame_image("cam1", i, t))
                publisher.publish(pose("cam1", i, t))
            publisher.publish(make_eos("cam1", frames=len(PTS_S)))
            publisher.publish(make_health("stopped"))

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        result = run_cli(["sink", "video", "--connect", publisher.endpoint, "--path", str(tmp_path / "v")], capsys)
        thread.join(10)
    assert result.returncode == 0, result.stderr
    frames = decode_video(tmp_path / "v" / "cam1.mp4")
    assert [t for t, _ in frames] == pytest.approx(PTS_S, abs=1e-3)


@pytest.mark.timeout(240)
def test_real_nets_clip_frames_times_and_skeleton_colours(tmp_path: Path) -> None:
    """A real nets clip (37 frames, 720x1280, irregular times) through YOLO-pose and the pipeline.

    The decoded video has one frame per ``pose/`` message, at its ``pts_s``, and the skeleton's
    documented colour at every confident keypoint that no other dot, inset, banner or label covers.
    """
    from engine.models.ultralytics_pose import UltralyticsPose

    clip = shared_file("clips/cricket/cover_drive_05_nets.mp4")
    sources = build_sources([f"nets={clip}"], SourceConfig())
    model = UltralyticsPose.from_config(ModelConfig(device="cpu"))
    sink = VideoSink(out_dir=str(tmp_path / "videos"))
    _, messages, error = run_pipeline(sources, model, tmp_path, ["publisher.frames=on"], sinks=[sink])
    assert error is None

    poses = by_kind(messages, "pose", "nets")
    jpegs = by_kind(messages, "frame", "nets")
    assert len(poses) == 37 and len(jpegs) == len(poses)  # the clip is under publisher.frame_fps
    frames = decode_video(tmp_path / "videos" / "nets.mp4")
    assert len(frames) == len(poses)
    assert [t for t, _ in frames] == pytest.approx([p.pts_s for p in poses], abs=1e-3)

    checked = candidates = 0
    for (_, image), p, jpeg in zip(frames, poses, jpegs, strict=True):
        if not p.batter_found:
            continue
        assert image.shape[:2] == (jpeg.height + jpeg.height % 2, jpeg.width + jpeg.width % 2)
        style = Style.for_image(image[:jpeg.height, :jpeg.width])
        layout = Layout.for_image(image[:jpeg.height, :jpeg.width], style)
        covered = [layout.matrix, layout.gauge, layout.banner, (0, 0, jpeg.width // 2, round(30 * style.unit))]
        xy = p.keypoints_xy * [jpeg.width / p.frame_width, jpeg.height / p.frame_height]
        visible = np.flatnonzero(p.keypoints_conf >= MIN_KEYPOINT_CONF)
        radius = batter_sizes(p, image[:jpeg.height, :jpeg.width], style)[1]  # the dots' size, to skip overlaps
        candidates += len(visible)
        for k in visible:
            others = xy[[j for j in visible if j != k]]
            if len(others) and np.hypot(*(others - xy[k]).T).min() <= 2 * (radius + 1) + 2:
                continue  # another dot overlaps this one
            if any(x1 - 12 <= xy[k, 0] < x2 + 12 and y1 - 12 <= xy[k, 1] < y2 + 12 for x1, y1, x2, y2 in covered):
                continue
            margin = dominant_match(median_bgr(image, tuple(xy[k])), expected_colour(int(k)))
            assert margin >= CHANNEL_MARGIN, (p.frame_index, COCO_KEYPOINT_NAMES[k], margin)
            checked += 1
    print(f"checked {checked} of {candidates} confident keypoints")
    assert checked >= 150 and checked >= candidates / 4  # the rest overlap another dot or an inset


@pytest.mark.parametrize("size", [(16, 9), (51, 90), (101, 57), (120, 68)])
def test_small_frames_are_written_without_insets_that_do_not_fit(tmp_path: Path, size: tuple[int, int]) -> None:
    messages = []
    for i, t in enumerate(PTS_S[:3]):
        messages += [frame_image("cam1", i, t, size=size), pose("cam1", i, t), similarity("cam1", i, t)]
    run_sink(VideoSink(out_dir=str(tmp_path / "out")), [messages])
    frames = decode_video(tmp_path / "out" / "cam1.mp4")
    assert [round(t, 3) for t, _ in frames] == [round(t, 3) for t in PTS_S[:3]]
    image = np.zeros((size[1], size[0], 3), np.uint8)
    layout = Layout.for_image(image, Style.for_image(image))
    if layout.insets:  # the matrix, when drawn, lies inside the image and above the banner
        x1, y1, x2, y2 = layout.matrix
        assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= layout.banner[1]
