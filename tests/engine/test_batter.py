"""Batter choice: the score's factors, a stable identity, and the striker on real broadcast footage.

The broadcast expectations are points on the striker read by eye from the frames (a 5 % grid drawn
over each frame), not from the program's output.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import BatterConfig, ModelConfig, load_config
from engine.messages import Pose
from engine.pipeline import run_inline
from engine.testing import ListSource
from engine.tracking import BatterSelector, batter_scores, hands_together
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS, Persons
from stream.pyav import FileSource
from tests.conftest import shared_file

K = KEYPOINT_INDEX


def _person(box, face_conf=0.9, wrist_gap=0.2, conf=0.9) -> dict:
    """A standing person in ``box`` (x1, y1, x2, y2): torso = 0.3 x box height, wrists ``wrist_gap`` torsos apart."""
    x1, y1, x2, y2 = box
    cx, h = (x1 + x2) / 2, y2 - y1
    kxy = np.zeros((NUM_KEYPOINTS, 2), np.float32)
    kxy[:] = (cx, y1 + 0.5 * h)
    kxy[K["left_shoulder"]] = kxy[K["right_shoulder"]] = (cx, y1 + 0.2 * h)
    kxy[K["left_hip"]] = kxy[K["right_hip"]] = (cx, y1 + 0.5 * h)
    torso = 0.3 * h
    kxy[K["left_wrist"]] = (cx - wrist_gap * torso / 2, y1 + 0.45 * h)
    kxy[K["right_wrist"]] = (cx + wrist_gap * torso / 2, y1 + 0.45 * h)
    kconf = np.full((NUM_KEYPOINTS,), 0.9, np.float32)
    kconf[[K["nose"], K["left_eye"], K["right_eye"]]] = face_conf
    return {"box": box, "conf": conf, "kxy": kxy, "kconf": kconf}


def _persons(people: list[dict], track_ids: list[int]) -> Persons:
    n = len(people)
    return Persons(
        xyxy=np.asarray([p["box"] for p in people], np.float32).reshape(n, 4),
        conf=np.asarray([p["conf"] for p in people], np.float32),
        track_id=np.asarray(track_ids, np.int64),
        keypoints_xy=np.stack([p["kxy"] for p in people]) if n else np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
        keypoints_conf=np.stack([p["kconf"] for p in people]) if n else np.zeros((0, NUM_KEYPOINTS), np.float32),
    )


@pytest.mark.parametrize(
    ("wrist_gap", "expected"),
    [(0.0, 1.0), (0.5, 1.0), (1.0, 0.5), (1.25, 0.25), (1.5, 0.0), (3.0, 0.0)],
)
def test_hands_together_is_one_for_a_grip_and_zero_for_arms_apart(wrist_gap, expected):
    persons = _persons([_person((100, 100, 200, 400), wrist_gap=wrist_gap)], [1])
    assert hands_together(persons, 0.3)[0] == pytest.approx(expected, abs=1e-6)


def test_hands_together_is_unknown_without_wrists():
    person = _person((100, 100, 200, 400))
    person["kconf"][K["left_wrist"]] = 0.1
    assert hands_together(_persons([person], [1]), 0.3).tolist() == [0.5]


def test_batter_score_is_the_documented_product():
    config = BatterConfig(facing_weight=0.75, grip_weight=0.5, far_end_weight=0.7)
    tall = _person((300, 40, 340, 440), face_conf=0.9, wrist_gap=0.2, conf=0.8)  # 400 px tall, feet at 440
    other = _person((100, 150, 140, 350), face_conf=0.1, wrist_gap=1.25, conf=0.9)  # 200 px, feet at 350
    scores = batter_scores(_persons([tall, other], [1, 2]), 640, 480, config)
    # tall: relative height 1, centred, all keypoints visible, face 0.9, grip 1, feet at 440/480
    expected_tall = 0.8 * 1.0 * 1.0 * 1.0 * (0.25 + 0.75 * 0.9) * 1.0 * (1 - 0.7 * 440 / 480)
    cx = 120 / 640 - 0.5
    expected_other = (  # nose and eyes at 0.1 are below min_keypoint_conf: 14 of 17 keypoints visible
        0.9 * np.sqrt(0.5) * np.exp(-(cx**2) / (2 * 0.25**2)) * 14 / 17 * (0.25 + 0.75 * 0.1) * (0.5 + 0.5 * 0.25)
        * (1 - 0.7 * 350 / 480)
    )
    np.testing.assert_allclose(scores, [expected_tall, expected_other], rtol=1e-5)


def _front_on_wide_view() -> Persons:
    """A broadcast wide view from the bowler's end (640 x 480): the striker far up the pitch."""
    striker = _person((305, 60, 335, 170), face_conf=0.7, wrist_gap=0.3, conf=0.6)  # small, faces us, grips the bat
    keeper = _person((270, 70, 300, 140), face_conf=0.7, wrist_gap=1.2, conf=0.5)  # crouched behind, hands apart
    umpire = _person((300, 250, 350, 440), face_conf=0.05, wrist_gap=0.9)  # near, central, back to us
    non_striker = _person((380, 240, 425, 420), face_conf=0.1, wrist_gap=0.3)  # near, holds his bat
    bowler = _person((200, 230, 250, 430), face_conf=0.1, wrist_gap=1.4)
    return _persons([umpire, non_striker, bowler, keeper, striker], [1, 2, 3, 4, 5])


def test_the_striker_far_up_the_pitch_beats_the_umpire_and_non_striker_nearer_the_camera():
    persons = _front_on_wide_view()
    selector = BatterSelector(BatterConfig())
    for _ in range(5):
        persons_out, index = selector.update(persons, 640, 480)
        assert index == 4 and persons_out.track_id[index] == 5
    # without facing, grip and far end the umpire wins: the largest and most central
    plain = BatterConfig(facing_weight=0, grip_weight=0, far_end_weight=0)
    assert int(np.argmax(batter_scores(persons, 640, 480, plain))) == 0


def test_the_batter_keeps_its_id_when_a_new_track_takes_over_its_box():
    """nets_mixed_01: a second box on the batter (with the bat) briefly wins ByteTrack's match."""
    selector = BatterSelector(BatterConfig())
    body = _person((273, 400, 412, 700))
    with_bat = _person((273, 395, 448, 702))  # IoU 0.79 with the body box
    bystander = _person((560, 420, 620, 640), face_conf=0.1)
    ids = []
    for track_ids, people in (
        ([1, 9], [body, bystander]), ([1, 9], [body, bystander]), ([15, 9], [with_bat, bystander]),
        ([1, 9], [body, bystander]), ([15, 9], [with_bat, bystander]),
    ):
        persons, index = selector.update(_persons(people, track_ids), 720, 1280)
        ids.append(int(persons.track_id[index]))
        assert persons.track_id.tolist()[1] == 9  # other ids are left alone
    assert ids == [1, 1, 1, 1, 1]


def test_a_box_that_barely_overlaps_the_batter_does_not_inherit_its_id():
    selector = BatterSelector(BatterConfig(handover_iou=0.5))
    selector.update(_persons([_person((100, 100, 200, 400))], [1]), 640, 480)
    persons, index = selector.update(_persons([_person((180, 100, 280, 400))], [7]), 640, 480)  # IoU 0.11
    assert index == 0 and persons.track_id.tolist() == [7] and selector.batter_track_id == 7
    selector.reset()
    persons, index = selector.update(_persons([_person((110, 100, 210, 400))], [8]), 640, 480)
    assert persons.track_id.tolist() == [8]  # after reset there is no batter to hand over from
    assert selector.update(Persons.empty(), 640, 480)[1] is None


# ---------------------------------------------------------------------------------------- real clips
@pytest.fixture(scope="module")
def yolo():
    from engine.models.ultralytics_pose import UltralyticsPose

    model = UltralyticsPose.from_config(ModelConfig(device="cpu"))
    model.build()
    return model


class _Frames(ListSource):
    """Frames ``[start, stop)`` of a real file, decoded once and replayed at the file's rate."""

    def __init__(self, name: str, start: int, stop: int) -> None:
        config = load_config(None, [])
        source = FileSource(str(shared_file(f"clips/cricket/{name}")), "clip", config.source)
        source.open()
        try:
            self._frames = [f for i, f in zip(range(stop), source.frames(), strict=False) if i >= start]
            fps = source.fps or 30.0
        finally:
            source.close()
        super().__init__("clip", n_frames=len(self._frames), fps=fps)

    def frames(self):  # noqa: D102 - replay
        yield from self._frames


def _poses(model, name: str, stop: int, start: int = 0) -> list[Pose]:
    config = load_config(None, ["shots.enabled=false"])
    messages = run_inline(config, [_Frames(name, start, stop)], model)
    return [m for m in messages if isinstance(m, Pose)]


def _inside(xyxy, x: float, y: float) -> bool:
    return bool(xyxy[0] <= x <= xyxy[2] and xyxy[1] <= y <= xyxy[3])


# Points on the striker (x, y in frame widths / heights), read by eye, for inclusive frame ranges.
STRIKER = {
    # close-up of the pull (0-9), then the wide view: striker small at the far end, the
    # non-striker (#5) larger and nearer the camera, the umpire at the bottom left
    "pull_01.mp4": [((0, 9), (0.40, 0.40)), ((10, 10), (0.12, 0.58))],
    # wide view from behind the bowler, zooming in: striker at the far end, bowler, umpire and
    # non-striker near the camera; cut to a wider view at 30
    "pull_02.mp4": [
        ((0, 10), (0.49, 0.30)), ((11, 20), (0.49, 0.34)), ((21, 29), (0.49, 0.39)), ((30, 31), (0.47, 0.52)),
    ],
    # Test close-up, one batter (and the crowd behind him)
    "cover_drive_01.mp4": [((0, 25), (0.50, 0.50))],
    # one continuous zoom from the wide view (bowler, umpire, non-striker #24 large and near the
    # camera, the striker and the keeper small at the far end) towards the stumps
    "bowled_01.mp4": [((0, 40), (0.54, 0.13)), ((50, 50), (0.52, 0.20)), ((56, 56), (0.52, 0.25))],
    # CricShot10 previews (broadcast, front-on): the wide view before the zoom, then the zoom
    "pull_03.gif": [((0, 0), (0.44, 0.20)), ((6, 6), (0.44, 0.20)), ((12, 12), (0.40, 0.45))],
    "sweep_02.gif": [((0, 0), (0.52, 0.11)), ((6, 6), (0.51, 0.12))],
    "square_cut_02.gif": [((0, 0), (0.45, 0.20)), ((6, 6), (0.45, 0.20)), ((12, 12), (0.43, 0.40))],
}
#: Frames the selector may take to switch to a striker who enters the detector's view after the
#: scene started (ByteTrack confirms a track on its 2nd frame; the moving average needs 1-2 more).
SWITCH_FRAMES = 3


@pytest.mark.parametrize("name", list(STRIKER))
def test_the_batter_box_is_on_the_striker_in_broadcast_footage(yolo, name):
    frames = [f for (a, b), _ in STRIKER[name] for f in range(a, b + 1)]
    poses = _poses(yolo, name, max(frames) + 1)
    checked, wrong = [], []
    first_seen = None
    for (a, b), (px, py) in STRIKER[name]:
        for f in range(a, b + 1):
            pose = poses[f]
            x, y = px * pose.frame_width, py * pose.frame_height
            if not any(_inside(box, x, y) for box in pose.persons_xyxy):
                continue  # the detector missed the striker here: nothing to choose
            scene_start = max(i for i in range(f + 1) if i == 0 or poses[i].scene_cut)
            if first_seen is None or first_seen < scene_start:
                first_seen = f
            if first_seen > scene_start and f - first_seen < SWITCH_FRAMES:
                continue
            checked.append(f)
            if pose.xyxy is None or not _inside(pose.xyxy, x, y):
                wrong.append(f)
    assert len(checked) >= len(frames) // 2
    assert wrong == []


def test_the_batter_id_does_not_flicker_on_a_nets_clip(yolo):
    """nets_mixed_01 frames 200-224: a second box with the bat took the batter's match for one frame."""
    poses = _poses(yolo, "nets_mixed_01.mp4", 225, start=200)
    assert all(p.batter_found for p in poses)
    assert len({p.track_id for p in poses}) == 1
