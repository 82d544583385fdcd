"""Box and result helpers of :class:`engine.models.keypointrcnn.KeypointRCNNTopDown`.

Input checks, the crop window around a box (``crop`` and ``full`` modes), the ``GeneralizedRCNNTransform``
of ``crop`` mode and the packing of keypoints / logits into :class:`~engine.types.KeypointHeatmaps`.

Sources: ``torchvision/models/detection/transform.py`` (``GeneralizedRCNNTransform``), torchvision 0.29.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.types import HEATMAP_SIZE, KeypointHeatmaps, check_array


def crop_window(box: np.ndarray, margin: float, width: int, height: int, index: int) -> tuple[int, int, int, int]:
    """Integer crop ``x1, y1, x2, y2`` (frame px, end exclusive): ``box`` grown by ``margin`` x its size per side.

    Rounded outwards to whole pixels and clipped to the ``width`` x ``height`` frame.

    Raises:
        ValueError: the clipped crop is empty (the box lies outside the frame of image ``index``).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    cx1, cy1 = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
    cx2, cy2 = min(width, math.ceil(x2 + mx)), min(height, math.ceil(y2 + my))
    if cx2 - cx1 < 1 or cy2 - cy1 < 1:
        msg = f"box {[x1, y1, x2, y2]} of image {index} lies outside the {width}x{height} frame"
        raise ValueError(msg)
    return cx1, cy1, cx2, cy2


def crop_transform(transform: Any, crop_size: int, max_size: int) -> Any:
    """A ``GeneralizedRCNNTransform`` like ``transform`` (mean, std, padding) resizing to ``crop_size``."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    crop = GeneralizedRCNNTransform(
        min_size=crop_size,
        max_size=max_size,
        image_mean=list(transform.image_mean),
        image_std=list(transform.image_std),
        size_divisible=transform.size_divisible,
        fixed_size=transform.fixed_size,
    )
    return crop.eval()


def validate_inputs(images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Check images / boxes and return the boxes as contiguous ``float32 [N_i, 4]`` arrays.

    Raises:
        TypeError, ValueError: see :meth:`engine.models.keypointrcnn.KeypointRCNNTopDown.infer_boxes`.
    """
    if len(images) != len(boxes):
        msg = f"need one box array per image, got {len(images)} images and {len(boxes)} box arrays"
        raise ValueError(msg)
    out = []
    for i, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
        check_array(f"images[{i}]", image, ("H", "W", 3), np.uint8)
        if image.shape[0] < 1 or image.shape[1] < 1:
            msg = f"`images[{i}]` must have shape (H, W, 3) with H, W >= 1, got {image.shape}"
            raise ValueError(msg)
        arr = np.asarray(image_boxes)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        check_array(f"boxes[{i}]", arr, ("N", 4))
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            msg = f"boxes[{i}] must be finite, got {arr[~np.isfinite(arr).all(axis=1)][:1].tolist()}"
            raise ValueError(msg)
        bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
        if bad.any():
            msg = f"boxes[{i}] must satisfy x1 < x2 and y1 < y2, got {arr[bad][0].tolist()}"
            raise ValueError(msg)
        out.append(arr)
    return out


def pack(
    xy: np.ndarray, score: np.ndarray, heat: np.ndarray, xyxy: np.ndarray, similarity: np.ndarray | None = None
) -> KeypointHeatmaps:
    """One frame's rows as :class:`KeypointHeatmaps` (float32), ``keypoints_conf = sigmoid(score)`` (0 where NaN).

    Shapes: ``xy [N, K, 2]`` frame px, ``score [N, K]`` logits, ``heat [N, K, 56, 56]`` logits,
    ``xyxy [N, 4]`` frame px, ``similarity [N, K, K]`` or ``None``.
    """
    score = score.astype(np.float32)
    with np.errstate(over="ignore"):
        conf = np.where(np.isnan(score), 0.0, 1.0 / (1.0 + np.exp(-score.astype(np.float64)))).astype(np.float32)
    return KeypointHeatmaps(
        keypoints_xy=xy.astype(np.float32),
        keypoints_score=score,
        keypoints_conf=conf,
        heatmaps=heat.astype(np.float32),
        heatmap_xyxy=xyxy.astype(np.float32),
        similarity=None if similarity is None else similarity.astype(np.float32),
    )


def no_person(num_keypoints: int) -> tuple[np.ndarray, ...]:
    """NaN ``(xy [K, 2], score [K], heatmaps [K, 56, 56], xyxy [4])`` of a box where no person was found."""
    k, s = num_keypoints, HEATMAP_SIZE
    return (
        np.full((k, 2), np.nan, np.float32),
        np.full((k,), np.nan, np.float32),
        np.full((k, s, s), np.nan, np.float32),
        np.full((4,), np.nan, np.float32),
    )



