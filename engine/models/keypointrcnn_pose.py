"""Plugin ``keypointrcnn``: YOLO person boxes + torchvision Keypoint R-CNN keypoints and heatmaps.

The thesis' model (§5.1) on the batter: Ultralytics YOLO finds and tracks the persons, batsight
selects the batter, then Keypoint R-CNN runs on the batter's box only (top-down, DESIGN §3) and its
keypoint logits ``[17, 56, 56]`` become the heatmaps of the analytics (``heatmap_source: "model"``).
"""

from __future__ import annotations

import numpy as np

from engine.config import ModelConfig
from engine.models.base import KeypointModel
from engine.models.keypointrcnn import KeypointRCNNTopDown
from engine.models.ultralytics_pose import UltralyticsPose
from engine.types import KeypointHeatmaps, Persons


class KeypointRCNNPose(KeypointModel):
    """Detector (any :class:`KeypointModel`, YOLO-pose by default) + Keypoint R-CNN refinement.

    ``infer`` is the detector's; the pipeline then calls :meth:`refine` once per batch with each
    frame's batter box. Collaborators are injectable (tests use a fake detector).

    Args:
        detector: Person detector giving boxes (its keypoints are the fallback).
        keypoint_model: The Keypoint R-CNN runner.
    """

    heatmap_source = "model"

    def __init__(self, detector: KeypointModel, keypoint_model: KeypointRCNNTopDown) -> None:
        self.detector = detector
        self.keypoint_model = keypoint_model

    @classmethod
    def from_config(cls, config: ModelConfig) -> KeypointRCNNPose:
        """YOLO weights from ``model.weights``; R-CNN from ``model.keypoint_*`` (paths also in weights_dir)."""
        keypoint_model = KeypointRCNNTopDown.from_config(config)
        return cls(UltralyticsPose.from_config(config), keypoint_model)

    def build(self) -> None:
        """Build both models. Raises ``ModelError`` naming the missing weights file."""
        self.detector.build()
        self.keypoint_model.build()
        self.device = self.keypoint_model.device
        self.half = self.keypoint_model.half

    def infer(self, images: list[np.ndarray]) -> list[Persons]:
        """The detector's persons (see :meth:`KeypointModel.infer`)."""
        return self.detector.infer(images)

    def refine(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps]:
        """Keypoint R-CNN on ``boxes[i]`` (``float32 [N_i, 4]`` xyxy, frame px) of ``images[i]``."""
        return self.keypoint_model.infer_keypoints(images, boxes)
