"""MediaPipe Pose (33 landmarks) -> COCO-17 keypoints (the CricShot10 training data's layout).

The mapping follows ``../shared/data/real/SOURCES.md`` (``keypoints/cricshot10_mediapipe33``):
MediaPipe indices 0 (nose), 2/5 (eyes), 7/8 (ears), 11/12 (shoulders), 13/14 (elbows),
15/16 (wrists), 23/24 (hips), 25/26 (knees), 27/28 (ankles). Reading the sequences from disk is
the training tool's job (:func:`engine.tools.train_shots.load_cricshot10`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MEDIAPIPE33_TO_COCO17", "mediapipe33_to_coco17"]

#: MediaPipe Pose (33 landmarks) index of each COCO-17 keypoint, in COCO order: nose 0, eyes 2/5,
#: ears 7/8, shoulders 11/12, elbows 13/14, wrists 15/16, hips 23/24, knees 25/26, ankles 27/28.
MEDIAPIPE33_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


def mediapipe33_to_coco17(landmarks: np.ndarray) -> np.ndarray:
    """Pick the 17 COCO keypoints' x, y out of MediaPipe Pose landmarks.

    Args:
        landmarks: ``[T, 99]`` (33 landmarks x (x, y, z), the CricShot10 ``.npy`` layout) or
            ``[T, 33, C]`` with ``C >= 2``; x, y in any units (MediaPipe: normalised to [0, 1]).

    Returns:
        float64 ``[T, 17, 2]`` in the input's x, y units, COCO order.

    Raises:
        ValueError: any other shape.
    """
    a = np.asarray(landmarks, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 99:
        a = a.reshape(a.shape[0], 33, 3)
    if a.ndim != 3 or a.shape[1] != 33 or a.shape[2] < 2:
        msg = f"`landmarks` must have shape (T, 99) or (T, 33, C>=2), got {a.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(a[:, MEDIAPIPE33_TO_COCO17, :2])
