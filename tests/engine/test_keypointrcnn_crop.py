"""Keypoint R-CNN ``crop`` mode: equivalence with an independently built crop, mapping to frame pixels.

Random-init weights (``torch.manual_seed(0)``, no download), ``crop_size=160`` and ``min_size=256``
keep this file fast on CPU.

Tolerance of the equivalence check (:data:`KP_ATOL_PX`): the reference below crops, normalises,
resizes (``F.interpolate`` bilinear to the size torchvision's scale rule gives), pads and scales the
box itself, in float64 ratios where torchvision uses float32 ones and in the other order
(resize-then-normalise is the same linear map up to float32 rounding, ~1e-7 relative). The box
coordinates therefore differ by ~1e-5 px, RoIAlign moves the logits (|logit| up to ~50) by ~1e-4 and
the decoded keypoints by ~1e-4 px of the resized crop (< 1e-3 frame px at the scales used here). A
wrong crop corner, box scale or feature level moves a keypoint by at least one heatmap cell (>= 1 px),
so 1e-2 px separates the two.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints, keypointrcnn_inference

from engine.config import ModelConfig, load_config
from engine.errors import ConfigError
from engine.models.keypointrcnn import KeypointRCNNTopDown
from engine.types import HEATMAP_SIZE, NUM_KEYPOINTS
from tests.conftest import shared_file

KP_ATOL_PX = 1e-2
LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-4
CROP = {"crop_size": 160, "crop_margin": 0.15, "min_size": 256, "max_size": 448}
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's GeneralizedRCNNTransform defaults
IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def kp() -> KeypointRCNNTopDown:
    torch.manual_seed(0)
    model = KeypointRCNNTopDown(weights=None, device="cpu", mode="crop", **CROP)
    model.build()
    return model


@pytest.fixture(scope="module")
def coco_image() -> np.ndarray:
    return cv2.imread(str(shared_file("keypoints/coco17_gt/000000196141.jpg")))


def _reference(model, frames: list[np.ndarray], boxes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keypoints (frame px) and logits per box, by cropping / resizing / padding by hand.

    One backbone call on the whole batch of crops (padded to the largest, rounded up to 32), as
    torchvision batches; then torchvision's keypoint RoI pool, head, predictor and decoding.
    """
    size, cap, margin = CROP["crop_size"], CROP["max_size"], CROP["crop_margin"]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    resized, rois, maps = [], [], []
    for frame, frame_boxes in zip(frames, boxes, strict=True):
        fh, fw = frame.shape[:2]
        for x1, y1, x2, y2 in frame_boxes.astype(np.float64):
            mx, my = margin * (x2 - x1), margin * (y2 - y1)
            cx1, cy1 = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
            cx2, cy2 = min(fw, math.ceil(x2 + mx)), min(fh, math.ceil(y2 + my))
            crop = frame[cy1:cy2, cx1:cx2]
            h, w = crop.shape[:2]
            scale = min(size / min(h, w), cap / max(h, w))
            nh, nw = math.floor(h * scale), math.floor(w * scale)
            rgb = torch.from_numpy(np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1))).float() / 255
            image = F.interpolate(rgb[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            resized.append((image - mean) / std)
            sx, sy = nw / w, nh / h
            rois.append(torch.tensor([[(x1 - cx1) * sx, (y1 - cy1) * sy, (x2 - cx1) * sx, (y2 - cy1) * sy]]).float())
            maps.append((sx, sy, cx1, cy1))
    ph = math.ceil(max(im.shape[1] for im in resized) / 32) * 32
    pw = math.ceil(max(im.shape[2] for im in resized) / 32) * 32
    batch = torch.zeros(len(resized), 3, ph, pw)
    for n, im in enumerate(resized):
        batch[n, :, : im.shape[1], : im.shape[2]] = im
    heads = model.roi_heads
    with torch.inference_mode():
        features = model.backbone(batch)
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in resized]
        logits = heads.keypoint_predictor(heads.keypoint_head(heads.keypoint_roi_pool(features, rois, sizes)))
        keypoints, _ = keypointrcnn_inference(logits, rois)
    out = []
    for n, (sx, sy, cx1, cy1) in enumerate(maps):
        xy = keypoints[n][0, :, :2].numpy().astype(np.float64)
        out.append(((xy / [sx, sy] + [cx1, cy1]).astype(np.float32), logits[n].numpy()))
    return out


def test_crop_mode_equals_an_independently_built_crop(kp, coco_image):
    """Two frames, three boxes (one clipped by the frame edge), one backbone call: the hand-made crops agree."""
    frames = [coco_image, coco_image[::-1].copy()]
    boxes = [
        np.array([[120.0, 60.0, 400.0, 429.0], [500.5, 150.25, 630.0, 420.0]], np.float32),
        np.array([[0.0, 0.0, 210.7, 300.2]], np.float32),
    ]
    out = kp.infer_crops(frames, boxes)
    expected = iter(_reference(kp.model, frames, boxes))
    for result, frame_boxes in zip(out, boxes, strict=True):
        assert result.heatmaps.shape == (len(frame_boxes), NUM_KEYPOINTS, HEATMAP_SIZE, HEATMAP_SIZE)
        np.testing.assert_array_equal(result.heatmap_xyxy, frame_boxes)
        assert result.similarity is not None and result.similarity.shape == (len(frame_boxes), 17, 17)
        for row in range(len(frame_boxes)):
            xy, logits = next(expected)
            np.testing.assert_allclose(result.keypoints_xy[row], xy, rtol=0, atol=KP_ATOL_PX)
            np.testing.assert_allclose(result.heatmaps[row], logits, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)


def test_heatmaps_mapped_to_frame_pixels_peak_at_the_keypoints(kp, coco_image):
    """Each heatmap upsampled onto its ``heatmap_xyxy`` in frame px peaks at the keypoint.

    The maps are upsampled bicubically to the box in frame pixels as torchvision's
    ``heatmaps_to_keypoints`` does (``ceil(w) x ceil(h)`` cells, ``align_corners=False``); crop mode
    decoded the same maps on the box in resized-crop pixels, i.e. took the maximum of the same
    bicubic interpolant sampled on another grid. So (a) the frame-pixel argmax and the keypoint agree
    within one pitch of each grid (1 frame px + 1 resized-crop px) unless the map has two nearly equal
    peaks, which random-init maps often have: we require it of 3/4 of the keypoints; and (b) for every
    keypoint the upsampled map at the keypoint's cell is within 2 % of the map's logit range of its
    maximum (near a maximum the interpolant is flat; the measured gap is <= 1.3 %). A wrong crop
    corner or scale breaks both.
    """
    boxes = np.array([[120.0, 60.0, 400.0, 429.0], [500.0, 150.0, 630.0, 429.0]], np.float32)
    result = kp.infer_crops([coco_image], [boxes])[0]
    decoded, _ = heatmaps_to_keypoints(torch.from_numpy(result.heatmaps), torch.from_numpy(result.heatmap_xyxy))
    for row, (x1, y1, x2, y2) in enumerate(boxes.astype(np.float64)):
        crop_w = min((1 + 2 * CROP["crop_margin"]) * (x2 - x1), coco_image.shape[1])
        crop_h = min((1 + 2 * CROP["crop_margin"]) * (y2 - y1), coco_image.shape[0])
        crop_px = min(crop_w, crop_h) / CROP["crop_size"]  # frame px per resized-crop px (>= 1 / scale)
        err = np.abs(decoded[row, :, :2].numpy() - result.keypoints_xy[row]).max(axis=1)
        assert np.mean(err <= 1.0 + crop_px + 1e-3) >= 0.75, err
        mw, mh = math.ceil(x2 - x1), math.ceil(y2 - y1)
        maps = F.interpolate(torch.from_numpy(result.heatmaps[row])[:, None], size=(mh, mw), mode="bicubic")[:, 0]
        maps = maps.numpy()
        xy = result.keypoints_xy[row].astype(np.float64)
        cols = np.clip(np.round((xy[:, 0] - x1) * mw / (x2 - x1) - 0.5), 0, mw - 1).astype(int)
        rows = np.clip(np.round((xy[:, 1] - y1) * mh / (y2 - y1) - 0.5), 0, mh - 1).astype(int)
        at_keypoint = maps[np.arange(NUM_KEYPOINTS), rows, cols]
        peak, low = maps.reshape(NUM_KEYPOINTS, -1).max(axis=1), maps.reshape(NUM_KEYPOINTS, -1).min(axis=1)
        assert (at_keypoint >= peak - 0.02 * (peak - low)).all(), (peak - at_keypoint) / (peak - low)


def test_keypoints_of_a_box_at_a_known_place_follow_it_in_frame_pixels(kp):
    """Synthetic: the same textured patch at two places -> keypoints inside the box, shifted by the offset."""
    rng = np.random.default_rng(0)
    frame_a = np.zeros((480, 640, 3), np.uint8)
    frame_a[40:440, 60:360] = rng.integers(0, 256, (400, 300, 3), np.uint8)
    dx, dy = 217, 31
    frame_b = np.zeros_like(frame_a)
    frame_b[40 + dy : 440 + dy, 60 + dx : 360 + dx] = frame_a[40:440, 60:360]
    box_a = np.array([[100.0, 90.0, 300.0, 380.0]], np.float32)  # crop (70, 46)-(330, 424): inside the patch
    box_b = box_a + np.array([dx, dy, dx, dy], np.float32)
    out_a, out_b = kp.infer_crops([frame_a, frame_b], [box_a, box_b])
    x, y = out_a.keypoints_xy[0, :, 0], out_a.keypoints_xy[0, :, 1]
    assert ((x >= 100) & (x <= 300) & (y >= 90) & (y <= 380)).all()
    np.testing.assert_allclose(out_b.keypoints_xy, out_a.keypoints_xy + [dx, dy], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(out_b.heatmaps, out_a.heatmaps)
    np.testing.assert_array_equal(out_b.heatmap_xyxy, box_b)


def test_empty_frames_and_bad_boxes(kp, coco_image):
    out = kp.infer_crops([coco_image, coco_image], [np.zeros((0, 4), np.float32), []])
    assert [len(r) for r in out] == [0, 0] and out[0].heatmaps.shape == (0, NUM_KEYPOINTS, 56, 56)
    assert kp.infer_crops([], []) == []
    with pytest.raises(ValueError, match="lies outside the 640x429 frame"):
        kp.infer_crops([coco_image], [np.array([[700.0, 10.0, 800.0, 50.0]], np.float32)])
    with pytest.raises(ValueError, match="x1 < x2"):
        kp.infer_crops([coco_image], [np.array([[10, 10, 5, 20]], np.float32)])


def test_crop_options_from_config_and_bounds():
    config = ModelConfig(keypoint_mode="crop", keypoint_crop_size=288, keypoint_crop_margin=0.25)
    model = KeypointRCNNTopDown.from_config(config)
    assert (model.mode, model.crop_size, model.crop_margin) == ("crop", 288, 0.25)
    with pytest.raises(ConfigError, match="crop_size"):
        KeypointRCNNTopDown(weights=None, crop_size=1400, max_size=1333)
    with pytest.raises(ConfigError, match="model.keypoint_crop_size"):
        load_config(None, ["model.keypoint_crop_size=8"])
    with pytest.raises(ConfigError, match="model.keypoint_mode"):
        load_config(None, ["model.keypoint_mode=crops"])
