"""Keypoint R-CNN top-down backend: equivalence with torchvision's full forward, weights, edge cases.

Random-init weights (``torch.manual_seed(0)``, no download) at ``min_size=256`` keep this file fast
on CPU. ``box_score_thresh=0.0`` makes the random network output boxes at all.

Tolerances of the equivalence checks: the full model decodes keypoints from its boxes in resized-image
coordinates, the top-down path gets the same boxes in frame pixels (what ``postprocess`` returned) and
scales them back, so each box coordinate carries a float32 round-trip error of ~1 ulp (~6e-5 px at
x ~ 1000). RoIAlign then samples ~1e-5 px apart, which moves the logits (|logit| up to ~50) by ~1e-4
and the decoded keypoints by ~1e-4 px. A wrong box scale, a wrong feature level or a flipped argmax
cell would move a keypoint by at least one heatmap cell (>= 1 px), so 1e-2 px separates the two.
"""

from __future__ import annotations

import math
import socket
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.errors import ConfigError, ModelError
from engine.models.keypointrcnn import KeypointRCNNTopDown
from engine.models.keypointrcnn_weights import COCO_V1, coco_v1_checkpoint_path
from engine.types import HEATMAP_SIZE, NUM_KEYPOINTS
from tests.conftest import shared_file

KP_ATOL_PX = 1e-2
LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-4
SMALL = {"min_size": 256, "max_size": 448, "box_score_thresh": 0.0, "box_detections_per_img": 4}


@pytest.fixture(scope="module")
def kp() -> KeypointRCNNTopDown:
    torch.manual_seed(0)
    model = KeypointRCNNTopDown(weights=None, device="cpu", **SMALL)
    model.build()
    return model


@pytest.fixture(scope="module")
def coco_image() -> np.ndarray:
    return cv2.imread(str(shared_file("keypoints/coco17_gt/000000196141.jpg")))


@pytest.fixture(scope="module")
def nets_frame() -> np.ndarray:
    """Frame 100 of the nets clip (a batter mid cover drive), ``uint8 [1280, 720, 3]`` BGR."""
    import av

    path = shared_file("clips/cricket/cover_drive_04_nets.mp4")
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 100:
                return frame.to_ndarray(format="bgr24")
    pytest.fail(f"{path} has fewer than 101 frames")


def _full_forward(model, images: list[np.ndarray]) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """Torchvision's own forward on a batch of BGR frames: its detections and hooked logits per frame."""
    captured = []
    handle = model.roi_heads.keypoint_predictor.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        with torch.inference_mode():
            chw = [np.ascontiguousarray(im[:, :, ::-1].transpose(2, 0, 1)) for im in images]
            rgb = [torch.from_numpy(a).float() / 255 for a in chw]
            dets = model(rgb)
    finally:
        handle.remove()
    dets = [{k: v.numpy() for k, v in d.items()} for d in dets]
    logits = torch.cat(captured).numpy()
    splits = np.cumsum([len(d["boxes"]) for d in dets])[:-1]
    return dets, np.split(logits, splits)


def _resize_ratio(image: np.ndarray) -> float:
    """Torchvision's resize factor for ``image`` at SMALL's min_size / max_size (transformed px per frame px)."""
    h, w = image.shape[:2]
    return min(SMALL["min_size"] / min(h, w), SMALL["max_size"] / max(h, w))


@pytest.mark.parametrize("image_name", ["coco_image", "nets_frame"])
def test_topdown_equals_full_model_on_its_own_boxes(kp, image_name, request):
    image = request.getfixturevalue(image_name)
    (det,), (logits,) = _full_forward(kp.model, [image])
    assert len(det["boxes"]) == SMALL["box_detections_per_img"]

    out = kp.infer_boxes([image], [det["boxes"]])[0]

    np.testing.assert_allclose(out.keypoints_xy, det["keypoints"][:, :, :2], rtol=0, atol=KP_ATOL_PX)
    np.testing.assert_allclose(out.heatmaps, logits, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    np.testing.assert_allclose(out.keypoints_score, det["keypoints_scores"], rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    np.testing.assert_array_equal(out.heatmap_xyxy, det["boxes"])
    assert out.heatmaps.shape == (len(det["boxes"]), NUM_KEYPOINTS, HEATMAP_SIZE, HEATMAP_SIZE)
    np.testing.assert_allclose(out.keypoints_conf, 1 / (1 + np.exp(-out.keypoints_score)), rtol=1e-6)
    # keypoints are decoded inside their RoI; torchvision clamps RoIs to >= 1 resized px per side
    x, y = out.keypoints_xy[..., 0], out.keypoints_xy[..., 1]
    b = out.heatmap_xyxy[:, None, :]
    tol = 1.0 / _resize_ratio(image) + 1e-3
    assert ((x >= b[..., 0] - 1e-3) & (x <= np.maximum(b[..., 2], b[..., 0] + tol))).all()
    assert ((y >= b[..., 1] - 1e-3) & (y <= np.maximum(b[..., 3], b[..., 1] + tol))).all()


def test_batch_with_empty_and_differently_sized_frames(kp, coco_image, nets_frame):
    boxes = np.array([[200.0, 300.0, 520.0, 1100.0], [10.0, 20.0, 200.0, 400.0]], np.float32)
    single = kp.infer_boxes([nets_frame], [boxes])[0]
    out = kp.infer_boxes([coco_image, nets_frame, coco_image], [np.zeros((0, 4), np.float32), boxes, []])
    assert [len(r) for r in out] == [0, 2, 0]
    empty = out[0]
    assert empty.keypoints_xy.shape == (0, NUM_KEYPOINTS, 2)
    assert empty.keypoints_score.shape == empty.keypoints_conf.shape == (0, NUM_KEYPOINTS)
    assert empty.heatmaps.shape == (0, NUM_KEYPOINTS, HEATMAP_SIZE, HEATMAP_SIZE)
    assert empty.heatmap_xyxy.shape == (0, 4)
    # the empty frames are not run at all, so the batch equals the single-frame call
    np.testing.assert_allclose(out[1].keypoints_xy, single.keypoints_xy, atol=KP_ATOL_PX)
    x, y = out[1].keypoints_xy[..., 0], out[1].keypoints_xy[..., 1]
    assert ((x >= boxes[:, None, 0]) & (x <= boxes[:, None, 2])).all()
    assert ((y >= boxes[:, None, 1]) & (y <= boxes[:, None, 3])).all()
    assert kp.infer_boxes([coco_image], [np.zeros((0, 4), np.float32)])[0].heatmaps.shape[0] == 0
    assert kp.infer_boxes([], []) == []


def test_full_mode_keeps_the_best_detection_of_each_crop(kp, coco_image, nets_frame):
    """``infer_full`` equals torchvision's forward on the same batch of crops, mapped back to the frame.

    The crops go through the model as one batch, like torchvision's own batching, so the reference
    runs that same batch: padding to the batch's largest crop changes the (random-init) detections.
    """
    margin = kp.crop_margin
    frames = [coco_image, nets_frame]
    boxes = [
        np.zeros((0, 4), np.float32),
        np.array([[200.0, 300.0, 520.0, 1100.0], [0.0, 0.0, 300.0, 500.0]], np.float32),
    ]
    out = kp.infer_full(frames, boxes)
    assert [len(r) for r in out] == [0, 2]
    assert out[0].heatmaps.shape == (0, NUM_KEYPOINTS, HEATMAP_SIZE, HEATMAP_SIZE)
    crops, shifts, where = [], [], []
    for i, (frame, frame_boxes) in enumerate(zip(frames, boxes, strict=True)):
        h, w = frame.shape[:2]
        for row, (x1, y1, x2, y2) in enumerate(frame_boxes.astype(np.float64)):
            mx, my = margin * (x2 - x1), margin * (y2 - y1)
            cx1, cy1 = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
            cx2, cy2 = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
            crops.append(frame[cy1:cy2, cx1:cx2])
            shifts.append(np.array([cx1, cy1], np.float32))
            where.append((i, row))
    dets, logits = _full_forward(kp.model, crops)
    best_boxes = []
    for det, crop_logits, shift, (i, row) in zip(dets, logits, shifts, where, strict=True):
        best = int(np.argmax(det["scores"]))
        result = out[i]
        np.testing.assert_allclose(result.keypoints_xy[row], det["keypoints"][best, :, :2] + shift, atol=KP_ATOL_PX)
        np.testing.assert_allclose(result.heatmaps[row], crop_logits[best], rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
        np.testing.assert_allclose(result.heatmap_xyxy[row], det["boxes"][best] + np.tile(shift, 2), atol=1e-3)
        best_boxes.append(det["boxes"][best : best + 1])
    # the top-down path on those detection boxes (same batch of crops) reproduces them: checks the offsets
    again = kp.infer_boxes(crops, best_boxes)
    for result, shift, (i, row) in zip(again, shifts, where, strict=True):
        np.testing.assert_allclose(result.keypoints_xy[0] + shift, out[i].keypoints_xy[row], atol=KP_ATOL_PX)
        np.testing.assert_allclose(result.heatmaps[0], out[i].heatmaps[row], rtol=LOGIT_RTOL, atol=LOGIT_ATOL)


def test_full_mode_without_detection_gives_nan_and_zero_conf(kp, coco_image):
    heads = kp.model.roi_heads
    saved = heads.score_thresh
    heads.score_thresh = 1.0  # torchvision keeps scores > thresh: nothing passes
    try:
        out = kp.infer_full([coco_image], [np.array([[120.0, 60.0, 400.0, 429.0]], np.float32)])[0]
    finally:
        heads.score_thresh = saved
    assert len(out) == 1
    assert np.isnan(out.keypoints_xy).all() and np.isnan(out.heatmaps).all() and np.isnan(out.heatmap_xyxy).all()
    assert (out.keypoints_conf == 0).all()


def test_state_dict_round_trip(kp, coco_image, tmp_path):
    boxes = np.array([[120.0, 60.0, 400.0, 429.0], [500.0, 150.0, 630.0, 429.0]], np.float32)
    ref = kp.infer_boxes([coco_image], [boxes])[0]
    path = tmp_path / "kprcnn.pth"
    torch.save(kp.model.state_dict(), path)
    loaded = KeypointRCNNTopDown(weights=str(path), device="cpu", **SMALL)
    loaded.build()
    got = loaded.infer_boxes([coco_image], [boxes])[0]
    for name in ("keypoints_xy", "keypoints_score", "keypoints_conf", "heatmaps", "heatmap_xyxy"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)


def test_frozen_batchnorm_checkpoint_loads_like_torchvision_files(kp, coco_image, tmp_path):
    """Torchvision's COCO files come from FrozenBatchNorm2d models: no ``num_batches_tracked`` keys."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    state = {k: v for k, v in kp.model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = coco_v1_checkpoint_path().name  # the COCO_V1 file name selects torchvision's eps = 0
    torch.save(state, tmp_path / path)
    loaded = KeypointRCNNTopDown(weights=tmp_path / path, device="cpu", **SMALL)
    loaded.build()
    frozen = [m for m in loaded.model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 53 and all(m.eps == 0.0 for m in frozen)
    boxes = np.array([[120.0, 60.0, 400.0, 429.0]], np.float32)
    got = loaded.infer_boxes([coco_image], [boxes])[0]
    ref = kp.infer_boxes([coco_image], [boxes])[0]
    # eps 1e-5 -> 0 in 53 norm layers with running_var = 1: relative change ~5e-6 per layer
    np.testing.assert_allclose(got.heatmaps, ref.heatmaps, rtol=1e-2, atol=1e-2)


def test_missing_state_dict_path_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "kprcnn.pth"
    model = KeypointRCNNTopDown(weights=str(missing), device="cpu")
    with pytest.raises(ModelError, match="nowhere/kprcnn.pth") as info:
        model.build()
    assert "model.keypoint_weights" in str(info.value)


# "hello" makes torch's unpickler raise KeyError
@pytest.mark.parametrize("content", [b"not a torch file", b"hello\n"])
def test_not_a_state_dict_is_a_model_error(tmp_path, content):
    path = tmp_path / "yolo11n-pose.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="yolo11n-pose.pt.*as a state dict"):
        KeypointRCNNTopDown(weights=path, device="cpu").build()


def test_a_state_dict_of_another_model_names_what_differs(kp, tmp_path):
    state = dict(kp.model.state_dict())
    state.pop("roi_heads.keypoint_predictor.kps_score_lowres.bias")
    state["extra.weight"] = torch.zeros(3)
    state["roi_heads.keypoint_predictor.kps_score_lowres.weight"] = torch.zeros(512, 5, 4, 4)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as info:
        KeypointRCNNTopDown(weights=path, device="cpu").build()
    text = str(info.value)
    assert "1 missing keys (roi_heads.keypoint_predictor.kps_score_lowres.bias)" in text
    assert "1 unexpected keys (extra.weight)" in text
    shapes = "roi_heads.keypoint_predictor.kps_score_lowres.weight: file [512, 5, 4, 4] vs model [512, 17, 4, 4]"
    assert f"1 shape mismatches ({shapes})" in text


def _online(host: str = "download.pytorch.org") -> bool:
    if urllib.request.getproxies().get("https"):
        return True  # a download through the proxy might work: do not start one
    try:
        with socket.create_connection((host, 443), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_coco_v1_offline_names_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if _online():
        pytest.skip("online: COCO_V1 would really be downloaded (~226 MB)")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
    assert coco_v1_checkpoint_path() == expected
    with pytest.raises(ModelError) as info:
        KeypointRCNNTopDown(weights=COCO_V1, device="cpu").build()
    assert str(expected) in str(info.value)
    assert "model.keypoint_weights=/path/to/keypointrcnn.pth" in str(info.value)


def test_corrupt_coco_v1_cache_file_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = coco_v1_checkpoint_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"truncated download")
    with pytest.raises(ModelError, match="cannot load Keypoint R-CNN weights COCO_V1") as info:
        KeypointRCNNTopDown(weights=COCO_V1, device="cpu").build()
    assert str(cache) in str(info.value)


def test_from_config_maps_keypoint_keys_and_device(tmp_path):
    model = KeypointRCNNTopDown.from_config(ModelConfig(keypoint_weights="COCO_V1", device="cpu"))
    assert model.weights == COCO_V1 and model.requested_device == "cpu" and model.mode == "topdown"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mine.pth").write_bytes(b"")
    config = ModelConfig(
        keypoint_weights="mine.pth", weights_dir=str(tmp_path / "w"), keypoint_mode="full", keypoint_min_size=480
    )
    model = KeypointRCNNTopDown.from_config(config)
    assert model.weights == tmp_path / "w" / "mine.pth" and model.mode == "full" and model.min_size == 480
    assert KeypointRCNNTopDown.from_config(ModelConfig(keypoint_weights="gone.pth")).weights == Path("gone.pth")


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"mode": "bottomup"}, "mode"),
        ({"crop_margin": -0.1}, "crop_margin"),
        ({"min_size": 900, "max_size": 800}, "min_size"),
        ({"box_score_thresh": 1.5}, "box_score_thresh"),
        ({"num_keypoints": 0}, "num_keypoints"),
    ],
)
def test_bad_options_are_refused(kwargs, text):
    with pytest.raises(ConfigError, match=text):
        KeypointRCNNTopDown(weights=None, **kwargs)


def test_bad_inputs_and_use_before_build(kp, coco_image):
    with pytest.raises(ModelError, match="before build"):
        KeypointRCNNTopDown(weights=None).infer_boxes([coco_image], [np.zeros((0, 4), np.float32)])
    with pytest.raises(ValueError, match="one box array per image"):
        kp.infer_boxes([coco_image], [])
    with pytest.raises(ValueError, match="dtype uint8"):
        kp.infer_boxes([coco_image.astype(np.float32)], [np.zeros((0, 4))])
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        kp.infer_boxes([coco_image], [np.zeros((2, 5), np.float32)])
    with pytest.raises(ValueError, match="x1 < x2"):
        kp.infer_boxes([coco_image], [np.array([[10, 10, 5, 20]], np.float32)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_fp16_path_agrees_with_cpu_fp32(kp, coco_image):
    """On CUDA (fp16 autocast, pinned uploads) keypoints stay within a heatmap cell of CPU fp32."""
    boxes = np.array([[120.0, 60.0, 400.0, 429.0], [500.0, 150.0, 630.0, 429.0]], np.float32)
    ref = kp.infer_boxes([coco_image], [boxes])[0]
    other = KeypointRCNNTopDown(weights=None, device="cuda", **SMALL)
    other.build()
    other.model.load_state_dict(kp.model.state_dict())
    got = other.infer_boxes([coco_image, coco_image], [boxes, boxes])
    cell_px = float((boxes[:, 2:] - boxes[:, :2]).max()) / HEATMAP_SIZE
    for result in got:
        assert np.median(np.abs(result.keypoints_xy - ref.keypoints_xy)) <= cell_px
        np.testing.assert_allclose(result.heatmaps, ref.heatmaps, rtol=0.05, atol=0.5)
