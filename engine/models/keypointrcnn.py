"""torchvision Keypoint R-CNN run top-down on given person boxes (future plugin ``keypointrcnn``).

The thesis' model is torchvision's ``keypointrcnn_resnet50_fpn``. Instead of letting it detect people
itself (RPN -> box head -> keypoint head), :meth:`KeypointRCNNTopDown.infer_boxes` feeds it the
detector's batter boxes: the backbone runs once per frame batch, then ``roi_heads.keypoint_roi_pool``
-> ``keypoint_head`` -> ``keypoint_predictor`` run on the given boxes only (no RPN, no box head).
The keypoint logits ``[N, 17, 56, 56]`` are the heatmaps (``heatmap_source = "model"``) and keypoints
come from torchvision's own ``keypointrcnn_inference`` / ``heatmaps_to_keypoints``, so for the same
boxes they equal what the full model returns (``tests/engine/test_keypointrcnn.py`` checks this).
:meth:`KeypointRCNNTopDown.infer_crops` (``crop`` mode) runs the same heads, but the backbone sees
only a crop around each box (box plus margin, resized to a short side of ``crop_size`` px) instead of
the whole frame, and maps keypoints and heatmap boxes back to frame pixels.
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
from engine.models.keypointrcnn_boxes import crop_transform, crop_window, no_person, pack, validate_inputs
from engine.models.keypointrcnn_weights import COCO_V1, build_coco_v1, build_from_state_dict
from engine.types import NUM_KEYPOINTS, KeypointHeatmaps

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
        mode: Which path :meth:`infer_keypoints` takes: ``"topdown"`` (:meth:`infer_boxes`),
            ``"crop"`` (:meth:`infer_crops`) or ``"full"`` (:meth:`infer_full`).
        crop_margin: ``crop`` and ``full`` modes: fraction of the box width / height added on each
            side before cropping (then clipped to the frame), ``>= 0``.
        crop_size: ``crop`` mode only: short side of each crop after torchvision's resize, pixels
            (its long side is capped by ``max_size``).
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
        mode: Literal["topdown", "crop", "full"] = "topdown",
        crop_margin: float = 0.15,
        crop_size: int = 256,
        num_keypoints: int = NUM_KEYPOINTS,
        min_size: int = 800,
        max_size: int = 1333,
        box_score_thresh: float = 0.05,
        box_detections_per_img: int | None = None,
    ) -> None:
        if mode not in ("topdown", "crop", "full"):
            msg = f"mode must be 'topdown', 'crop' or 'full', got {mode!r}"
            raise ConfigError(msg)
        if not (isinstance(crop_margin, (int, float)) and math.isfinite(crop_margin) and crop_margin >= 0):
            msg = f"crop_margin must be a finite fraction >= 0, got {crop_margin!r}"
            raise ConfigError(msg)
        if not (1 <= crop_size <= max_size):
            msg = f"need 1 <= crop_size <= max_size, got crop_size={crop_size}, max_size={max_size}"
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
        self.crop_size = int(crop_size)
        self.num_keypoints = int(num_keypoints)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.box_score_thresh = float(box_score_thresh)
        self.box_detections_per_img = 1 if box_detections_per_img is None else int(box_detections_per_img)
        self.device = "cpu"
        self.half = False
        self.model: Any = None  # torchvision KeypointRCNN after build()
        self.crop_transform: Any = None  # GeneralizedRCNNTransform of crop mode after build()
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
            crop_margin=options.keypoint_crop_margin,
            crop_size=options.keypoint_crop_size,
            min_size=options.keypoint_min_size,
            max_size=options.keypoint_max_size,
        )

    # ------------------------------------------------------------------ build

    def build(self) -> None:
        """Create ``keypointrcnn_resnet50_fpn``, load the weights, ``eval()``, move it to the device.

        Sets :attr:`model`, :attr:`crop_transform` (a copy of the model's ``GeneralizedRCNNTransform``,
        same mean / std / padding, resizing to ``crop_size``; remade when ``crop_size`` changes),
        :attr:`device` and :attr:`half` (fp16 autocast, CUDA only), then runs one warm-up call of the
        ``mode``'s path on a 64 x 64 black frame.

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
        self.crop_transform = crop_transform(model.transform, self.crop_size, self.max_size)
        self._pinned = []
        with torch.inference_mode():  # warm-up: kernels, allocator, CUDA context
            image = np.zeros((64, 64, 3), np.uint8)
            box = np.array([[8.0, 8.0, 56.0, 56.0]], np.float32)
            self.infer_keypoints([image], [box])

    # ------------------------------------------------------------------ inference

    def infer_keypoints(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps]:
        """Run the path chosen by ``mode``: :meth:`infer_boxes`, :meth:`infer_crops` or :meth:`infer_full`."""
        if self.mode == "full":
            return self.infer_full(images, boxes)
        if self.mode == "crop":
            return self.infer_crops(images, boxes)
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
        model = self._require_model()
        return self._heads_on_boxes(model.transform, images, validate_inputs(images, boxes))

    def infer_crops(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[KeypointHeatmaps]:
        """Crop mode: the backbone on a crop around each box only, then the keypoint head on the box.

        Each crop is the box grown by ``crop_margin`` x its width / height on every side, clipped to
        the frame and rounded outwards to whole pixels (as :meth:`infer_full`). The crops of all
        images and boxes go through :attr:`crop_transform` (torchvision's ``GeneralizedRCNNTransform``
        with the model's normalisation, resizing each crop so its short side is ``crop_size``, long
        side capped by ``max_size``, padding the batch to a multiple of 32) and ``model.backbone`` in
        one call; then, as :meth:`infer_boxes`, each box in its crop's resized pixels goes through
        ``keypoint_roi_pool`` -> ``keypoint_head`` -> ``keypoint_predictor`` and torchvision's
        ``keypointrcnn_inference``; keypoints are mapped back with ``resize_keypoints`` and shifted
        by the crop's top-left corner into frame pixels. The backbone cost no longer grows with the
        frame: it is that of one ``crop_size``-short-side image per box.

        Args:
            images: ``uint8 [H, W, 3]`` BGR frames; sizes may differ.
            boxes: One ``[N_i, 4]`` array per image (``xyxy``, frame pixels, ``x1 < x2``,
                ``y1 < y2``); ``N_i`` may be 0. A box must overlap its frame.

        Returns:
            One :class:`KeypointHeatmaps` per image, rows in box order; ``heatmap_xyxy`` = the box
            (frame pixels), so heatmap cell ``[k, i, j]`` covers ``x1 + [j, j + 1) * w / 56``,
            ``y1 + [i, i + 1) * h / 56`` of the frame.

        Raises:
            ModelError: called before :meth:`build`.
            TypeError, ValueError: as :meth:`infer_boxes`; a box lies outside its frame.
        """
        self._require_model()
        boxes_np = validate_inputs(images, boxes)
        crops: list[np.ndarray] = []
        crop_boxes: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for i, (image, image_boxes) in enumerate(zip(images, boxes_np, strict=True)):
            for box in image_boxes:
                cx1, cy1, cx2, cy2 = crop_window(box, self.crop_margin, image.shape[1], image.shape[0], i)
                corner = np.array([cx1, cy1], np.float32)
                crops.append(image[cy1:cy2, cx1:cx2])
                crop_boxes.append((box - np.tile(corner, 2))[None])  # exact: integer shift below 2**24
                offsets.append(corner)
        if self.crop_transform is None or self.crop_transform.min_size[-1] != self.crop_size:
            self.crop_transform = crop_transform(self.model.transform, self.crop_size, self.max_size)
        per_crop = self._heads_on_boxes(self.crop_transform, crops, crop_boxes)
        out = []
        start = 0
        for image_boxes in boxes_np:
            n = len(image_boxes)
            if n == 0:
                out.append(KeypointHeatmaps.empty(self.num_keypoints))
                continue
            rows = per_crop[start : start + n]
            shift = np.stack(offsets[start : start + n])[:, None, :]
            similarity = [r.similarity for r in rows if r.similarity is not None]
            out.append(
                KeypointHeatmaps(
                    keypoints_xy=np.concatenate([r.keypoints_xy for r in rows]) + shift,
                    keypoints_score=np.concatenate([r.keypoints_score for r in rows]),
                    keypoints_conf=np.concatenate([r.keypoints_conf for r in rows]),
                    heatmaps=np.concatenate([r.heatmaps for r in rows]),
                    heatmap_xyxy=image_boxes,
                    similarity=np.concatenate(similarity) if len(similarity) == n else None,
                )
            )
            start += n
        return out

    def _heads_on_boxes(
        self, transform: Any, images: Sequence[np.ndarray], boxes_np: Sequence[np.ndarray]
    ) -> list[KeypointHeatmaps]:
        """:meth:`infer_boxes` with a given ``GeneralizedRCNNTransform`` on validated float32 boxes."""
        import torch
        from torchvision.models.detection.roi_heads import keypointrcnn_inference
        from torchvision.models.detection.transform import resize_boxes, resize_keypoints

        model = self._require_model()
        out = [KeypointHeatmaps.empty(self.num_keypoints) for _ in images]
        active = [i for i, b in enumerate(boxes_np) if len(b)]
        if not active:
            return out
        with torch.inference_mode():
            with self._autocast():
                tensors = self._upload([images[i] for i in active])
                original_sizes = [(int(images[i].shape[0]), int(images[i].shape[1])) for i in active]
                image_list, _ = transform(tensors)
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
            out[i] = pack(
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
        boxes_np = validate_inputs(images, boxes)
        crops: list[np.ndarray] = []
        offsets: list[tuple[int, int]] = []
        owner: list[int] = []
        for i, (image, image_boxes) in enumerate(zip(images, boxes_np, strict=True)):
            for box in image_boxes:
                cx1, cy1, cx2, cy2 = crop_window(box, self.crop_margin, image.shape[1], image.shape[0], i)
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
                    rows[i].append(no_person(self.num_keypoints))
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
            out.append(pack(xy, score, heat, xyxy))
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
