"""torchvision Keypoint R-CNN run top-down on given person boxes (future plugin ``keypointrcnn``).

The thesis' model is torchvision's ``keypointrcnn_resnet50_fpn``. Instead of letting it detect people
itself (RPN -> box head -> keypoint head), :meth:`KeypointRCNNTopDown.infer_boxes` feeds it the
detector's batter boxes: the backbone runs once per frame batch, then ``roi_heads.keypoint_roi_pool``
-> ``keypoint_head`` -> ``keypoint_predictor`` run on the given boxes only (no RPN, no box head).
The keypoint logits ``[N, 17, 56, 56]`` are the heatmaps (``heatmap_source = "model"``) and keypoints
come from torchvision's own ``keypointrcnn_inference`` / ``heatmaps_to_keypoints``, so for the same
boxes they equal what the full model returns (``tests/engine/test_keypointrcnn.py`` checks this).
:meth:`KeypointRCNNTopDown.infer_full` keeps the thesis' way (crop around the box, let the whole model
detect, keep the best person) for comparison. DESIGN §3.

Sources: ``torchvision/models/detection/keypoint_rcnn.py`` (builder, weights enum),
``roi_heads.py`` (``RoIHeads.forward`` keypoint branch, ``keypointrcnn_inference``,
``heatmaps_to_keypoints``), ``generalized_rcnn.py`` (``GeneralizedRCNN.forward``) and ``transform.py``
(``GeneralizedRCNNTransform``, ``resize_boxes``, ``resize_keypoints``), torchvision 0.29.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from engine.analytics.similarity import dependency_matrices
from engine.config import ModelConfig
from engine.errors import ConfigError, ModelError
from engine.models.base import resolve_device
from engine.models.keypointrcnn_weights import COCO_V1, build_coco_v1, build_from_state_dict
from engine.types import HEATMAP_SIZE, NUM_KEYPOINTS, KeypointHeatmaps, check_array

if TYPE_CHECKING:
    import torch


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
        :meth:`build` raises a ``ModelError`` naming it. The keys are read typed through
        :class:`~engine.models.keypointrcnn_pose.KeypointRCNNOptions`.

        Raises:
            ConfigError: a ``model.keypoint_*`` value is invalid (the message names the key).
        """
        from engine.models.keypointrcnn_pose import KeypointRCNNOptions  # that module imports this one

        options = KeypointRCNNOptions.from_model_config(config)
        return cls(
            weights=options.weights_path(config.weights_dir),
            device=config.device,
            mode=options.keypoint_mode,
            min_size=options.keypoint_min_size,
            max_size=options.keypoint_max_size,
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
            model = build_coco_v1(kwargs)
        else:
            model = build_from_state_dict(Path(self.weights).expanduser(), kwargs)
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



