"""Plugin ``keypointrcnn``: YOLO person boxes + torchvision Keypoint R-CNN keypoints and heatmaps.

The thesis' model (§5.1) on the batter: Ultralytics YOLO finds and tracks the persons, batsight
selects the batter, then Keypoint R-CNN runs on the batter's box only (top-down, DESIGN §3; with
``keypoint_mode: crop`` its backbone also sees only a crop around the box) and its
keypoint logits ``[17, 56, 56]`` become the heatmaps of the analytics (``heatmap_source: "model"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from engine.config import BackendOptions, ModelConfig
from engine.models.base import KeypointModel
from engine.models.keypointrcnn import COCO_V1, KeypointRCNNTopDown
from engine.models.ultralytics_pose import UltralyticsPose
from engine.types import KeypointHeatmaps, Persons


class KeypointRCNNOptions(BackendOptions):
    """The ``keypointrcnn`` backend's own keys, written flat as ``model.keypoint_*``.

    Its YOLO detector reads the shared keys (``model.weights``, ``imgsz``, ``conf``, ``iou``,
    ``device``, ``half``); ``model.weights_dir`` is also searched for ``keypoint_weights``.
    """

    keypoint_weights: str = Field("COCO_V1", description="keypointrcnn: COCO_V1 or a state-dict path")
    keypoint_mode: Literal["topdown", "crop", "full"] = Field(
        "topdown", description="keypointrcnn: head on boxes over the frame | over a crop | whole model on a crop"
    )
    keypoint_crop_margin: float = Field(
        0.15, ge=0, allow_inf_nan=False, description="keypointrcnn crop/full: margin per side, fraction of box size"
    )
    keypoint_crop_size: int = Field(256, ge=32, description="keypointrcnn crop: short crop side after resize, px")
    keypoint_min_size: int = Field(800, ge=32, description="keypointrcnn: short image side after resize, px")
    keypoint_max_size: int = Field(1333, ge=32, description="keypointrcnn: long-side cap of the resize, px")

    def weights_path(self, weights_dir: str) -> str | Path:
        """``keypoint_weights`` resolved: ``"COCO_V1"``, the path as given, or the file of that name in ``weights_dir``.

        A path that exists in neither place is kept as given, and building the model raises a
        ``ModelError`` naming it.
        """
        if self.keypoint_weights == COCO_V1:
            return COCO_V1
        given = Path(self.keypoint_weights).expanduser()
        in_dir = Path(weights_dir).expanduser() / given.name
        return in_dir if not given.is_file() and in_dir.is_file() else given


class KeypointRCNNPose(KeypointModel):
    """Detector (any :class:`KeypointModel`, YOLO-pose by default) + Keypoint R-CNN refinement.

    ``infer`` is the detector's; the pipeline then calls :meth:`refine` once per batch with each
    frame's batter box. Collaborators are injectable (tests use a fake detector).

    Args:
        detector: Person detector giving boxes (its keypoints are the fallback).
        keypoint_model: The Keypoint R-CNN runner.
    """

    heatmap_source = "model"
    options = KeypointRCNNOptions

    def __init__(self, detector: KeypointModel, keypoint_model: KeypointRCNNTopDown) -> None:
        self.detector = detector
        self.keypoint_model = keypoint_model

    @classmethod
    def from_config(cls, config: ModelConfig) -> KeypointRCNNPose:
        """YOLO from the shared keys; R-CNN from ``model.keypoint_*`` (:class:`KeypointRCNNOptions`) and ``device``.

        Raises:
            ConfigError: a ``model.keypoint_*`` value is invalid (the message names the key).
        """
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
        """Keypoint R-CNN on ``boxes[i]`` (``float32 [N_i, 4]`` xyxy, frame px) of ``images[i]``.

        See :meth:`KeypointModel.refine`; never ``None``: NaN keypoints mark a box without a person
        (``full`` mode).
        """
        return self.keypoint_model.infer_keypoints(images, boxes)
