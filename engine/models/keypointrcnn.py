"""torchvision Keypoint R-CNN run top-down on given person boxes (future plugin ``keypointrcnn``).

The thesis' model is torchvision's ``keypointrcnn_resnet50_fpn``. Instead of letting it detect people
itself (RPN -> box head -> keypoint head), :meth:`KeypointRCNNTopDown.infer_boxes` feeds it the
detector's batter boxes: the backbone runs once per frame batch, then ``roi_heads.keypoint_roi_pool``
-> ``keypoint_head`` -> ``keypoint_predictor`` run on the given boxes only (no RPN, no box head).
The keypoint logits ``[N, 17, 56, 56]`` are the heatmaps (``heatmap_source = "model"``) and keypoints
come from torchvision's own ``keypointrcnn_inference`` / ``heatmaps_to_keypoints``, so for the same
boxes they equal what the full model returns (``tests/test_keypointrcnn.py`` checks this).
:meth:`KeypointRCNNTopDown.infer_full` keeps the thesis' way (crop around the box, let the whole model
detect, keep the best person) for comparison. DESIGN §3.

Sources: ``torchvision/models/detection/keypoint_rcnn.py`` (builder, weights enum),
``roi_heads.py`` (``RoIHeads.forward`` keypoint branch, ``keypointrcnn_inference``,
``heatmaps_to_keypoints``), ``generalized_rcnn.py`` (``GeneralizedRCNN.forward``) and ``transform.py``
(``GeneralizedRCNNTransform``, ``resize_boxes``, ``resize_keypoints``), torchvision 0.29.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlparse

import numpy as np

from engine.config import ModelConfig
from engine.errors import ConfigError, ModelError
from engine.models.base import resolve_device
from engine.types import NUM_KEYPOINTS

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: ``weights`` value that selects torchvision's ``KeypointRCNN_ResNet50_FPN_Weights.COCO_V1``.
COCO_V1 = "COCO_V1"

#: Side of the keypoint logit grid of torchvision's ``KeypointRCNNPredictor`` (14x14 RoI features,
#: x2 transposed conv, x2 bilinear upsampling), cells.
HEATMAP_SIZE = 56

#: Seconds allowed to open a TCP connection to the weights host before a download is attempted.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class KeypointHeatmaps:
    """Keypoints and heatmap logits of the N boxes of one frame (K keypoints, S x S heatmap grid).

    Attributes:
        keypoints_xy: ``float32 [N, K, 2]`` keypoint x, y in frame pixels (origin top-left, x right,
            y down). ``NaN`` for a box where :meth:`KeypointRCNNTopDown.infer_full` found no person.
        keypoints_score: ``float32 [N, K]`` torchvision's ``keypoints_scores``: the heatmap logit at
            the chosen cell of the bicubically upsampled map (unbounded, not a probability).
            ``NaN`` where no person was found.
        keypoints_conf: ``float32 [N, K]`` in [0, 1]: ``sigmoid(keypoints_score)``. Monotone in the
            score and 0.5 at logit 0; it is not a calibrated probability (the head is trained with a
            spatial softmax over the 56 x 56 cells, DESIGN §4 normalises heatmaps that way). ``0``
            where no person was found.
        heatmaps: ``float32 [N, K, S, S]`` raw keypoint logits (``S = 56``), row-major: cell
            ``[k, i, j]`` covers the box slice ``x1 + [j, j + 1) * w / S``, ``y1 + [i, i + 1) * h / S``
            of ``heatmap_xyxy``. ``NaN`` where no person was found.
        heatmap_xyxy: ``float32 [N, 4]`` the box ``x1, y1, x2, y2`` in frame pixels that the S x S grid
            spans (the RoI). ``NaN`` where no person was found.
        similarity: ``float32 [N, K, K]`` the Keypoint Dependency Matrix of each box (thesis §6.1:
            cosine similarity of the spatial-softmax heatmaps), computed on the inference device in
            one batched matmul by :meth:`KeypointRCNNTopDown.infer_boxes`; ``None`` when not computed.
    """

    keypoints_xy: np.ndarray
    keypoints_score: np.ndarray
    keypoints_conf: np.ndarray
    heatmaps: np.ndarray = field(repr=False)
    heatmap_xyxy: np.ndarray
    similarity: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        xy = self.keypoints_xy
        if not isinstance(xy, np.ndarray) or xy.ndim != 3:
            got = xy.shape if isinstance(xy, np.ndarray) else type(xy).__name__
            msg = f"`keypoints_xy` must be a numpy.ndarray of shape (N, K, 2), got {got}"
            raise ValueError(msg)
        n, k = int(xy.shape[0]), int(xy.shape[1])
        s = (
            int(self.heatmaps.shape[-1])
            if isinstance(self.heatmaps, np.ndarray) and self.heatmaps.ndim == 4
            else HEATMAP_SIZE
        )
        _check_array("keypoints_xy", xy, (n, k, 2))
        _check_array("keypoints_score", self.keypoints_score, (n, k))
        _check_array("keypoints_conf", self.keypoints_conf, (n, k))
        _check_array("heatmaps", self.heatmaps, (n, k, s, s))
        _check_array("heatmap_xyxy", self.heatmap_xyxy, (n, 4))
        if self.similarity is not None:
            _check_array("similarity", self.similarity, (n, k, k))

    def __len__(self) -> int:
        return int(self.keypoints_xy.shape[0])

    @classmethod
    def empty(cls, num_keypoints: int = NUM_KEYPOINTS, heatmap_size: int = HEATMAP_SIZE) -> KeypointHeatmaps:
        """No boxes, every dimension kept (``keypoints_xy`` is ``[0, K, 2]``, ``heatmaps`` ``[0, K, S, S]``)."""
        k, s = num_keypoints, heatmap_size
        return cls(
            keypoints_xy=np.zeros((0, k, 2), np.float32),
            keypoints_score=np.zeros((0, k), np.float32),
            keypoints_conf=np.zeros((0, k), np.float32),
            heatmaps=np.zeros((0, k, s, s), np.float32),
            heatmap_xyxy=np.zeros((0, 4), np.float32),
        )


def _check_array(name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise ``TypeError`` / ``ValueError`` unless ``value`` is a float32 ndarray of ``shape``."""
    if not isinstance(value, np.ndarray):
        msg = f"`{name}` must be a numpy.ndarray, got {type(value).__name__}"
        raise TypeError(msg)
    if value.shape != shape:
        msg = f"`{name}` must have shape {shape}, got {value.shape}"
        raise ValueError(msg)
    if value.dtype != np.float32:
        msg = f"`{name}` must have dtype float32, got {value.dtype}"
        raise ValueError(msg)


def coco_v1_checkpoint_path() -> Path:
    """Where torchvision looks for the ``COCO_V1`` file: ``torch.hub.get_dir()/checkpoints/<url name>``.

    ``torch.hub.get_dir()`` honours ``TORCH_HOME`` (default ``~/.cache/torch/hub``).
    """
    import torch
    from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights

    url = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


class KeypointRCNNTopDown:
    """torchvision Keypoint R-CNN (ResNet-50-FPN) on detector boxes: 17 COCO keypoints + 56x56 heatmaps.

    Lifecycle: the constructor stores validated options; :meth:`build` creates the network on its
    device (slow, may download, raises :class:`~engine.errors.ModelError`); the ``infer_*`` methods
    are then called from the single inference thread, never concurrently (they reuse pinned host
    buffers between calls). Nothing needs closing; drop the object to free the model.

    Args:
        weights: ``"COCO_V1"`` for torchvision's ``KeypointRCNN_ResNet50_FPN_Weights.COCO_V1`` (taken
            from the torch hub cache, downloaded there when missing and online); a path to a local
            state-dict file (``.pth``, loaded with ``torch.load(weights_only=True)``, also inside the
            ``{"model": ...}`` checkpoints of torchvision's training scripts); or ``None`` for random
            initialisation (tests, benchmarks). A state dict without ``num_batches_tracked`` entries was
            saved from ``FrozenBatchNorm2d`` layers, as torchvision builds every model with trained
            weights: it is loaded into such layers, with ``eps = 0`` when the file keeps the COCO_V1
            file name (``keypointrcnn_resnet50_fpn_coco-fc266e95.pth``, torchvision's
            ``overwrite_eps``), else 1e-5.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        mode: Which path :meth:`infer_keypoints` takes: ``"topdown"`` (:meth:`infer_boxes`) or
            ``"full"`` (:meth:`infer_full`).
        crop_margin: ``full`` mode only: fraction of the box width / height added on each side
            before cropping (then clipped to the frame), ``>= 0``.
        num_keypoints: Keypoints per person K; must equal the weights' ``keypoint_names`` (17).
        min_size: Short image side after torchvision's resize, pixels (torchvision default 800).
        max_size: Long-side cap of that resize, pixels (torchvision default 1333).
        box_score_thresh: ``full`` mode only: minimum detection score in [0, 1] (torchvision 0.05).
        box_detections_per_img: ``full`` mode only: detections kept per crop. ``None`` = 1, because
            only the best detection is used and the keypoint head costs ~7 GFLOP per detection;
            torchvision keeps its best-first order, so the kept one is the highest-scoring.

    Attributes:
        model: The torchvision ``KeypointRCNN`` after :meth:`build`, else ``None``.
        device: Torch device string after :meth:`build` (``"cpu"``, ``"cuda:0"``).
        half: Whether the network runs under fp16 autocast (on CUDA).

    Raises:
        ConfigError: an option is out of range.
    """

    heatmap_source: ClassVar[str] = "model"

    def __init__(
        self,
        *,
        weights: str | Path | None = COCO_V1,
        device: str = "auto",
        mode: Literal["topdown", "full"] = "topdown",
        crop_margin: float = 0.15,
        num_keypoints: int = NUM_KEYPOINTS,
        min_size: int = 800,
        max_size: int = 1333,
        box_score_thresh: float = 0.05,
        box_detections_per_img: int | None = None,
    ) -> None:
        if mode not in ("topdown", "full"):
            msg = f"mode must be 'topdown' or 'full', got {mode!r}"
            raise ConfigError(msg)
        if not (isinstance(crop_margin, (int, float)) and math.isfinite(crop_margin) and crop_margin >= 0):
            msg = f"crop_margin must be a finite fraction >= 0, got {crop_margin!r}"
            raise ConfigError(msg)
        if num_keypoints < 1:
            msg = f"num_keypoints must be >= 1, got {num_keypoints}"
            raise ConfigError(msg)
        if not (1 <= min_size <= max_size):
            msg = f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}"
            raise ConfigError(msg)
        if not (0.0 <= box_score_thresh <= 1.0):
            msg = f"box_score_thresh must be in [0, 1], got {box_score_thresh}"
            raise ConfigError(msg)
        if box_detections_per_img is not None and box_detections_per_img < 1:
            msg = f"box_detections_per_img must be >= 1 or None, got {box_detections_per_img}"
            raise ConfigError(msg)
        self.weights = weights
        self.requested_device = device
        self.mode = mode
        self.crop_margin = float(crop_margin)
        self.num_keypoints = int(num_keypoints)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.box_score_thresh = float(box_score_thresh)
        self.box_detections_per_img = 1 if box_detections_per_img is None else int(box_detections_per_img)
        self.device = "cpu"
        self.half = False
        self.model: Any = None  # torchvision KeypointRCNN after build()
        self._pinned: list[torch.Tensor] = []

    @classmethod
    def from_config(cls, config: ModelConfig) -> KeypointRCNNTopDown:
        """Map the :class:`~engine.config.ModelConfig` keys ``keypoint_*`` and ``device``.

        ``config.keypoint_weights`` is ``"COCO_V1"`` or a state-dict path, tried as given and then
        inside ``config.weights_dir``; a path that exists in neither place is kept as given, and
        :meth:`build` raises a ``ModelError`` naming it.
        """
        weights: str | Path = config.keypoint_weights
        if weights != COCO_V1:
            given = Path(weights).expanduser()
            in_dir = Path(config.weights_dir).expanduser() / given.name
            weights = in_dir if not given.is_file() and in_dir.is_file() else given
        return cls(
            weights=weights,
            device=config.device,
            mode=config.keypoint_mode,
            min_size=config.keypoint_min_size,
            max_size=config.keypoint_max_size,
        )

    # ------------------------------------------------------------------ build

    def build(self) -> None:
        """Create ``keypointrcnn_resnet50_fpn``, load the weights, ``eval()``, move it to the device.

        Sets :attr:`model`, :attr:`device` and :attr:`half` (fp16 autocast, CUDA only), then runs one
        warm-up call of the ``mode``'s path on a 64 x 64 black frame.

        Raises:
            ModelError: the state-dict file is missing, unreadable or does not fit the model;
                ``COCO_V1`` is not in the hub cache and cannot be downloaded (the message names the
                cache file to provide); ``cuda`` was requested without CUDA.
        """
        import torch

        device = resolve_device(self.requested_device)
        kwargs: dict[str, Any] = {
            "num_keypoints": self.num_keypoints,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "box_score_thresh": self.box_score_thresh,
            "box_detections_per_img": self.box_detections_per_img,
        }
        if self.weights is None:
            from torchvision.models.detection import keypointrcnn_resnet50_fpn

            model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
        elif str(self.weights) == COCO_V1:
            model = self._build_coco_v1(kwargs)
        else:
            model = self._build_from_state_dict(Path(self.weights).expanduser(), kwargs)
        model.eval().to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.half = device.startswith("cuda")
        self.model = model
        self._pinned = []
        with torch.inference_mode():  # warm-up: kernels, allocator, CUDA context
            image = np.zeros((64, 64, 3), np.uint8)
            box = np.array([[8.0, 8.0, 56.0, 56.0]], np.float32)
            self.infer_keypoints([image], [box])

    def _build_coco_v1(self, kwargs: dict[str, Any]) -> Any:
        from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn

        enum = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1
        expected_k = len(enum.meta["keypoint_names"])
        if self.num_keypoints != expected_k:
            msg = f"weights COCO_V1 have {expected_k} keypoints, but num_keypoints={self.num_keypoints}"
            raise ModelError(msg)
        cache = coco_v1_checkpoint_path()
        hint = (
            f"Download {enum.url} and put it at {cache} (torch.hub.get_dir()/checkpoints, honours TORCH_HOME), "
            "or use a local state-dict file: model.keypoint_weights=/path/to/keypointrcnn.pth"
        )
        if not cache.is_file():
            reason = _unreachable(enum.url)
            if reason is not None:
                msg = f"Keypoint R-CNN weights COCO_V1 are not in the torch hub cache and {reason}. {hint}"
                raise ModelError(msg)
            log.info("downloading Keypoint R-CNN COCO_V1 weights from %s to %s", enum.url, cache)
        try:
            return keypointrcnn_resnet50_fpn(weights=enum, progress=False, **kwargs)
        except Exception as exc:  # a corrupt cache file can make the unpickler raise anything
            msg = f"cannot load Keypoint R-CNN weights COCO_V1: {_one_line(exc)}. {hint}"
            raise ModelError(msg) from exc

    def _build_from_state_dict(self, path: Path, kwargs: dict[str, Any]) -> Any:
        import torch
        from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn

        if not path.is_file():
            msg = (
                f"Keypoint R-CNN state-dict file not found: {path} (resolved: {path.resolve()}); "
                f"set model.keypoint_weights to an existing .pth file or to {COCO_V1}"
            )
            raise ModelError(msg)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler raises anything (KeyError on a text file) for garbage
            msg = (
                f"cannot read {path} as a state dict with torch.load(weights_only=True): {_one_line(exc)}. "
                "Save it with torch.save(model.state_dict(), path)"
            )
            raise ModelError(msg) from exc
        # torchvision's reference training scripts save {"model": state_dict, "optimizer": ...}.
        if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
            state = state["model"]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            msg = f"{path} does not hold a state dict (a mapping of parameter names to tensors)"
            raise ModelError(msg)
        model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
        if not any(key.endswith("num_batches_tracked") for key in state):
            # Saved from a FrozenBatchNorm2d model, as torchvision builds every model with trained
            # weights (its COCO files included): rebuild that way; COCO_V1 also has eps = 0.
            coco_v1_name = Path(urlparse(KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.url).path).name
            _freeze_batchnorm(model, eps=0.0 if path.name == coco_v1_name else 1e-5)
        problems = _state_dict_mismatch(model.state_dict(), state)
        if problems:
            target = f"keypointrcnn_resnet50_fpn(num_keypoints={self.num_keypoints})"
            msg = f"state dict {path} does not fit {target}: {problems}"
            raise ModelError(msg)
        model.load_state_dict(state)
        return model

    # ------------------------------------------------------------------ inference

    def infer_keypoints(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps]:
        """Run the path chosen by ``mode``: :meth:`infer_boxes` (``topdown``) or :meth:`infer_full`."""
        if self.mode == "full":
            return self.infer_full(images, boxes)
        return self.infer_boxes(images, boxes)

    def infer_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps]:
        """Top-down: keypoints and 56x56 heatmap logits for the given boxes, no detection.

        The batch goes through ``model.transform`` (normalise, resize so the short side is
        ``min_size`` capped by ``max_size``, pad to a multiple of 32) and ``model.backbone`` once;
        only images with at least one box are included, and like torchvision's own batching the
        features near an image's bottom / right edge depend slightly on the padding the batch needs.
        Boxes are scaled into the resized images with the ratio of torchvision's ``resize_boxes``,
        pooled with ``keypoint_roi_pool`` (RoIAlign 14x14 on the FPN levels), run through
        ``keypoint_head`` and ``keypoint_predictor``, decoded by ``keypointrcnn_inference`` and
        mapped back with ``resize_keypoints`` (what ``transform.postprocess`` does). On CUDA the
        network runs under fp16 autocast; decoding always runs in fp32.

        Args:
            images: ``uint8 [H, W, 3]`` BGR frames; sizes may differ.
            boxes: One ``[N_i, 4]`` array per image: ``x1, y1, x2, y2`` in that frame's pixels with
                ``x1 < x2``, ``y1 < y2`` (finite; converted to float32). ``N_i`` may be 0.

        Returns:
            One :class:`KeypointHeatmaps` per image, rows in box order, ``heatmap_xyxy`` = the box.
            Keypoints lie inside their box, except that ``heatmaps_to_keypoints`` widens a box
            narrower or shorter than 1 pixel of the resized image to 1 such pixel.

        Raises:
            ModelError: called before :meth:`build`.
            TypeError, ValueError: an image or box array has the wrong type, dtype or shape, a box is
                not finite or empty, or the two lists differ in length.
        """
        import torch
        from torchvision.models.detection.roi_heads import keypointrcnn_inference
        from torchvision.models.detection.transform import resize_boxes, resize_keypoints

        model = self._require_model()
        boxes_np = _validate_inputs(images, boxes)
        out = [KeypointHeatmaps.empty(self.num_keypoints) for _ in images]
        active = [i for i, b in enumerate(boxes_np) if len(b)]
        if not active:
            return out
        with torch.inference_mode():
            with self._autocast():
                tensors = self._upload([images[i] for i in active])
                original_sizes = [(int(images[i].shape[0]), int(images[i].shape[1])) for i in active]
                image_list, _ = model.transform(tensors)
                features = model.backbone(image_list.tensors)
                if isinstance(features, torch.Tensor):
                    features = OrderedDict([("0", features)])
                proposals = [
                    resize_boxes(torch.tensor(boxes_np[i], device=self.device), orig, new)
                    for i, orig, new in zip(active, original_sizes, image_list.image_sizes, strict=True)
                ]
                heads = model.roi_heads
                x = heads.keypoint_roi_pool(features, proposals, image_list.image_sizes)
                x = heads.keypoint_head(x)
                logits = heads.keypoint_predictor(x)
            logits = logits.float()
            similarity_cpu = dependency_matrices(logits).cpu().numpy()
            keypoints, scores = keypointrcnn_inference(logits, proposals)
            sizes = zip(image_list.image_sizes, original_sizes, strict=True)
            keypoints = [resize_keypoints(kp, new, orig) for kp, (new, orig) in zip(keypoints, sizes, strict=True)]
            logits_cpu = logits.cpu().numpy()
            keypoints_cpu = [kp.cpu().numpy() for kp in keypoints]
            scores_cpu = [s.cpu().numpy() for s in scores]
        start = 0
        for j, i in enumerate(active):
            n = len(boxes_np[i])
            out[i] = _pack(
                keypoints_cpu[j][:, :, :2], scores_cpu[j], logits_cpu[start : start + n], boxes_np[i],
                similarity_cpu[start : start + n],
            )
            start += n
        return out

    def infer_full(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps]:
        """Thesis mode: crop around each box, run the whole detector, keep the best person per crop.

        Each crop is the box grown by ``crop_margin`` x its width / height on every side, clipped to
        the frame and rounded outwards to whole pixels. All crops of the batch go through
        ``model(crops)`` in one call (RPN, box head, keypoint head, ``transform.postprocess``); the
        highest-scoring detection of each crop is kept and shifted back to frame pixels. Its logits
        are taken from a forward hook on ``roi_heads.keypoint_predictor`` (the full forward does not
        return them), and ``heatmap_xyxy`` is the detection's box in frame pixels.

        Args:
            images: ``uint8 [H, W, 3]`` BGR frames; sizes may differ.
            boxes: One ``[N_i, 4]`` array per image (``xyxy``, frame pixels); ``N_i`` may be 0.

        Returns:
            One :class:`KeypointHeatmaps` per image, one row per given box. A crop in which the model
            finds no person above ``box_score_thresh`` gets ``NaN`` keypoints, scores, heatmaps and
            ``heatmap_xyxy``, and ``keypoints_conf`` 0.

        Raises:
            ModelError: called before :meth:`build`.
            TypeError, ValueError: as :meth:`infer_boxes`.
        """
        import torch

        model = self._require_model()
        boxes_np = _validate_inputs(images, boxes)
        crops: list[np.ndarray] = []
        offsets: list[tuple[int, int]] = []
        owner: list[int] = []
        for i, (image, image_boxes) in enumerate(zip(images, boxes_np, strict=True)):
            h, w = image.shape[:2]
            for x1, y1, x2, y2 in image_boxes.astype(np.float64):
                mx, my = self.crop_margin * (x2 - x1), self.crop_margin * (y2 - y1)
                cx1, cy1 = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
                cx2, cy2 = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
                if cx2 - cx1 < 1 or cy2 - cy1 < 1:
                    msg = f"box {[x1, y1, x2, y2]} of image {i} lies outside the {w}x{h} frame"
                    raise ValueError(msg)
                crops.append(image[cy1:cy2, cx1:cx2])
                offsets.append((cx1, cy1))
                owner.append(i)
        rows: list[list[tuple[np.ndarray, ...]]] = [[] for _ in images]
        if crops:
            captured: list[torch.Tensor] = []
            handle = model.roi_heads.keypoint_predictor.register_forward_hook(
                lambda _module, _inputs, output: captured.append(output)
            )
            try:
                with torch.inference_mode():
                    with self._autocast():
                        detections = model(self._upload(crops))
                    logits = torch.cat(captured).float() if captured else None
                    keys = ("boxes", "scores", "keypoints", "keypoints_scores")
                    results = [{k: d[k].float().cpu().numpy() for k in keys} for d in detections]
                    logits_cpu = logits.cpu().numpy() if logits is not None else None
            finally:
                handle.remove()
            start = 0
            for det, (ox, oy), i in zip(results, offsets, owner, strict=True):
                n = len(det["scores"])
                if n == 0 or logits_cpu is None:
                    rows[i].append(_no_person(self.num_keypoints))
                    continue
                best = int(np.argmax(det["scores"]))
                shift = np.array([ox, oy], np.float32)
                rows[i].append(
                    (
                        det["keypoints"][best, :, :2] + shift,
                        det["keypoints_scores"][best],
                        logits_cpu[start + best],
                        det["boxes"][best] + np.tile(shift, 2),
                    )
                )
                start += n
        out = []
        for image_rows in rows:
            if not image_rows:
                out.append(KeypointHeatmaps.empty(self.num_keypoints))
                continue
            xy, score, heat, xyxy = (np.stack(col).astype(np.float32) for col in zip(*image_rows, strict=True))
            out.append(_pack(xy, score, heat, xyxy))
        return out

    # ------------------------------------------------------------------ helpers

    def _require_model(self) -> Any:
        if self.model is None:
            msg = "KeypointRCNNTopDown used before build()"
            raise ModelError(msg)
        return self.model

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _upload(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """BGR ``uint8 [H, W, 3]`` -> RGB ``float32 [3, H, W]`` in [0, 1] on the device.

        On CUDA the bytes go through pinned host buffers (one per batch slot, reused while the shape
        holds) with non-blocking copies, and the conversion runs on the GPU. Reuse is safe because
        every ``infer_*`` call synchronises (``.cpu()``) before it returns.
        """
        import torch

        if not self.device.startswith("cuda"):
            chw = (np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)) for img in images)
            return [torch.from_numpy(a).float().div_(255.0) for a in chw]
        # The buffers may still feed a copy of a call that raised half-way: wait for it first.
        torch.cuda.current_stream(torch.device(self.device)).synchronize()
        tensors = []
        for slot, img in enumerate(images):
            if slot >= len(self._pinned) or tuple(self._pinned[slot].shape) != img.shape:
                buf = torch.empty(img.shape, dtype=torch.uint8).pin_memory()
                if slot < len(self._pinned):
                    self._pinned[slot] = buf
                else:
                    self._pinned.append(buf)
            host = self._pinned[slot]
            host.numpy()[...] = img
            dev = host.to(self.device, non_blocking=True)
            tensors.append(dev.permute(2, 0, 1).flip(0).float().div_(255.0))
        return tensors


def _validate_inputs(images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Check images / boxes (see :meth:`KeypointRCNNTopDown.infer_boxes`); return float32 box arrays."""
    if len(images) != len(boxes):
        msg = f"need one box array per image, got {len(images)} images and {len(boxes)} box arrays"
        raise ValueError(msg)
    out = []
    for i, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
        if not isinstance(image, np.ndarray):
            msg = f"images[{i}] must be a numpy.ndarray, got {type(image).__name__}"
            raise TypeError(msg)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            msg = f"images[{i}] must have shape (H, W, 3), got {image.shape}"
            raise ValueError(msg)
        if image.dtype != np.uint8:
            msg = f"images[{i}] must have dtype uint8, got {image.dtype}"
            raise ValueError(msg)
        arr = np.asarray(image_boxes)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            msg = f"boxes[{i}] must have shape (N, 4), got {arr.shape}"
            raise ValueError(msg)
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


def dependency_matrices(logits: torch.Tensor) -> torch.Tensor:
    """Keypoint Dependency Matrices ``[N, K, K]`` of heatmap logits ``[N, K, S, S]``, on their device.

    Thesis §6.1: each map is made a probability map by a spatial softmax (DESIGN §4), flattened, and
    the cosine similarity of every pair is one batched matmul; values are clipped to [0, 1] and the
    diagonal is exactly 1, as :func:`engine.analytics.cosine_similarity_matrix` does on the CPU.
    """
    import torch

    probs = torch.softmax(logits.flatten(2).float(), dim=-1)
    unit = torch.nn.functional.normalize(probs, dim=-1)
    sim = (unit @ unit.transpose(1, 2)).clamp_(0.0, 1.0)
    sim.diagonal(dim1=1, dim2=2).fill_(1.0)
    return sim


def _pack(
    xy: np.ndarray, score: np.ndarray, heat: np.ndarray, xyxy: np.ndarray, similarity: np.ndarray | None = None
) -> KeypointHeatmaps:
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


def _no_person(num_keypoints: int) -> tuple[np.ndarray, ...]:
    k, s = num_keypoints, HEATMAP_SIZE
    return (
        np.full((k, 2), np.nan, np.float32),
        np.full((k,), np.nan, np.float32),
        np.full((k, s, s), np.nan, np.float32),
        np.full((4,), np.nan, np.float32),
    )


def _state_dict_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any], examples: int = 2) -> str:
    """Describe how ``given`` differs from the model's ``expected`` state dict; ``""`` when it fits.

    Counts missing keys, unexpected keys and shape mismatches, each with the first ``examples``
    names (shapes as ``file [..] vs model [..]``), so that a wrong file is recognisable at a glance.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k}: file {list(given[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:examples]) + (", ..." if len(items) > examples else "")
            parts.append(f"{len(items)} {what} ({shown})")
    return "; ".join(parts)


def _freeze_batchnorm(model: Any, *, eps: float) -> None:
    """Replace every ``nn.BatchNorm2d`` by torchvision's ``FrozenBatchNorm2d`` with ``eps``, in place."""
    from torch import nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, FrozenBatchNorm2d(child.num_features, eps=eps))


def _unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be reached within :data:`CONNECT_TIMEOUT_S`, or ``None`` if it can.

    A quick TCP connect so that an offline machine fails in milliseconds instead of hanging in
    ``urlopen`` (which torch.hub calls without a timeout). Skipped when a proxy is configured.
    """
    parsed = urlparse(url)
    if parsed.hostname is None or urllib.request.getproxies().get(parsed.scheme):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{parsed.hostname}:{port} is unreachable ({_one_line(exc)})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"

