"""The keypoint-model contract (plugin group ``batsight.models``) and device selection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from engine.config import BackendOptions, ModelConfig
from engine.plugins import MODELS, load
from engine.types import KeypointHeatmaps, Persons


class KeypointModel(ABC):
    """Person detector + 17-keypoint estimator behind one call.

    Lifecycle: ``from_config`` validates and stores options only; ``build()`` loads weights onto the
    device (slow, may raise :class:`~engine.errors.ModelError`); ``infer()`` and then ``refine()``
    are called from the single inference thread, never concurrently. Tracking and batter selection
    happen downstream, between the two calls.

    Options: the ``model:`` config section is flat. :class:`~engine.config.ModelConfig` holds the
    keys every built-in backend reads (``name``, ``weights``, ``weights_dir``, ``imgsz``, ``conf``,
    ``iou``, ``device``, ``half``); a backend with keys of its own declares them in :attr:`options`
    and reads them in ``from_config`` with ``cls.options.from_model_config(config)``.

    Attributes:
        heatmap_source: ``"model"`` when :meth:`refine` returns network heatmaps, ``"rendered"`` when
            analytics must render them from keypoints.
        options: The backend's own ``model.*`` keys, a :class:`~engine.config.BackendOptions`
            subclass (names, types, defaults, bounds), or ``None`` when it reads only the shared
            keys. Config loading validates these keys (errors name ``model.<key>``) and fills their
            defaults into ``ModelConfig``; a key no installed backend declares is refused.
        device: torch device string after ``build()`` (``"cpu"``, ``"cuda:0"``).
        half: Whether inference runs in fp16.
    """

    heatmap_source: ClassVar[str] = "rendered"
    options: ClassVar[type[BackendOptions] | None] = None
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
        """Second pass on chosen boxes: better keypoints and network heatmaps (top-down, DESIGN §3).

        Called by the pipeline once per batch, after batter selection, with the frames that have a
        batter and each one's batter box; never called with an empty list.

        Args:
            images: ``uint8 [H, W, 3]`` BGR frames (a subset of the batch given to :meth:`infer`).
            boxes: ``boxes[i]`` is ``float32 [N_i, 4]`` xyxy in the frame pixels of ``images[i]``
                (the pipeline passes ``N_i = 1``, the batter).

        Returns:
            ``None``: this backend does not refine keypoints (this default; the detector's keypoints
            stay and analytics render heatmaps from them). Otherwise one
            :class:`~engine.types.KeypointHeatmaps` per image with one row per box, keypoints in
            frame pixels; a row of NaN keypoints means "nothing found", and the detector's
            keypoints stay for that frame.
        """
        return None


def load_model_class(name: str) -> type[KeypointModel]:
    """The :class:`KeypointModel` subclass registered as ``name`` in ``batsight.models``.

    Raises:
        PluginError: ``name`` is not registered, cannot be imported, or is no ``KeypointModel`` subclass.
    """
    return load(MODELS, name, KeypointModel)


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
