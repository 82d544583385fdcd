"""The keypoint-model contract (plugin group ``batsight.models``) and device selection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from engine.config import ModelConfig
from engine.types import Persons

if TYPE_CHECKING:
    from engine.types import KeypointHeatmaps


class KeypointModel(ABC):
    """Person detector + 17-keypoint estimator behind one call.

    Lifecycle: ``from_config`` stores options only; ``build()`` loads weights onto the device (slow,
    may raise :class:`~engine.errors.ModelError`); ``infer()`` is then called from the single
    inference thread, never concurrently. Tracking and batter selection happen downstream.

    Attributes:
        heatmap_source: ``"model"`` when :meth:`infer_heatmaps` returns network heatmaps,
            ``"rendered"`` when analytics must render them from keypoints.
        device: torch device string after ``build()`` (``"cpu"``, ``"cuda:0"``).
        half: Whether inference runs in fp16.
    """

    heatmap_source: ClassVar[str] = "rendered"
    device: str = "cpu"
    half: bool = False

    @classmethod
    @abstractmethod
    def from_config(cls, config: ModelConfig) -> KeypointModel:
        """Validate and store options; load nothing."""

    @abstractmethod
    def build(self) -> None:
        """Load weights and move the model to its device. Raises ``ModelError`` with the reason."""

    @abstractmethod
    def infer(self, images: list[np.ndarray]) -> list[Persons]:
        """Detect persons and their keypoints in a batch of frames.

        Args:
            images: ``uint8 [H, W, 3]`` BGR frames; sizes may differ within the batch.

        Returns:
            One :class:`~engine.types.Persons` per image, in frame pixels, ``track_id`` all ``-1``.
        """

    def refine(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps] | None:
        """Re-estimate keypoints (and heatmaps) of given boxes; ``None``: this backend does not refine.

        Called from the inference thread after tracking, with the batter box of each frame that has
        one. The default returns ``None`` and the detector's keypoints stay.

        Args:
            images: ``uint8 [H, W, 3]`` BGR frames.
            boxes: one float32 ``[1, 4]`` ``xyxy`` box in frame pixels per image.

        Returns:
            One :class:`~engine.types.KeypointHeatmaps` per image (keypoints in frame pixels), or ``None``.
        """
        return None


def resolve_device(requested: str) -> str:
    """Map ``auto`` to ``cuda:0`` when CUDA is available, else ``cpu``; pass explicit names through.

    Raises:
        ModelError: ``cuda`` was requested but torch sees no CUDA device.
    """
    import torch

    from engine.errors import ModelError

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        msg = f"model.device is {requested!r} but torch finds no CUDA device; use model.device=cpu or auto"
        raise ModelError(msg)
    return "cuda:0" if requested == "cuda" else requested
