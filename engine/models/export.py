"""Exported inference runtimes for YOLO-pose (OpenVINO, ONNX Runtime, TensorRT), made once and cached.

The export is Ultralytics' own exporter (``YOLO(weights).export(format=...)``, Ultralytics export
docs, https://docs.ultralytics.com/modes/export/); the exported model is loaded back with
``YOLO(path, task="pose")``, so pre- and post-processing (letterbox, NMS, keypoint rescaling) stay
Ultralytics' own and only the network runs elsewhere.

Cache: one folder per export, named after what it depends on
(``{stem}_{backend}_{fp32|fp16}_{imgsz}_b{batch}_{dynamic|static}_{digest}``, the digest being a
SHA-256 of the weights file's bytes and of the Ultralytics and runtime versions), created beside the
weights when that folder is writable, else under ``$XDG_CACHE_HOME/batsight/exports``
(``~/.cache/batsight/exports``), or only in ``model.export_dir`` when that is set. An export is
written into a temporary folder and renamed into place, so concurrent processes never read half an
export. Nothing here reaches the network: the runtime packages are checked before the exporter runs
(Ultralytics would otherwise try to pip-install them), and :func:`configure_ultralytics_offline`
(``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False``) is set by the caller.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import ModelError

log = logging.getLogger(__name__)

#: ``model.backend`` values; ``auto`` = OpenVINO on CPU, PyTorch on CUDA (:func:`choose_backend`).
Backend = Literal["auto", "torch", "openvino", "onnx", "tensorrt"]
ExportedBackend = Literal["openvino", "onnx", "tensorrt"]

#: Ultralytics' ``format=`` of each exported backend.
EXPORT_FORMATS: dict[str, str] = {"openvino": "openvino", "onnx": "onnx", "tensorrt": "engine"}
#: Import names each exported backend needs at export and run time, and the pip extra that brings them.
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {
    "openvino": ("openvino",),
    "onnx": ("onnx", "onnxruntime"),
    "tensorrt": ("tensorrt",),
}
#: How to install each runtime (OpenVINO is a main dependency; the others are extras of batsight).
_INSTALL_HINT = {
    "openvino": "pip install 'openvino>=2024.0'",
    "onnx": "pip install 'batsight[onnx]'",
    "tensorrt": "pip install 'batsight[tensorrt]'",
}
#: Distribution whose version enters the cache digest (a new runtime may compile differently).
_RUNTIME_DISTRIBUTION = {"openvino": "openvino", "onnx": "onnxruntime", "tensorrt": "tensorrt"}


class ExportError(ModelError):
    """An exported runtime cannot be made or loaded (missing package, no CUDA, exporter failure)."""


def choose_backend(requested: str, device: str) -> str:
    """The runtime ``model.backend=requested`` means on ``device``.

    ``auto`` is OpenVINO on CPU (2.5 x PyTorch for yolo11n-pose at 640 px on a 2-core x86 CPU, issue 9)
    and PyTorch on CUDA (run in fp16 there, ``model.half: auto``); TensorRT is never chosen by
    ``auto``: only when asked. Other values pass through.
    """
    if requested == "auto":
        return "torch" if device.startswith("cuda") else "openvino"
    return requested


def check_runtime(backend: str, device: str) -> None:
    """Raise :class:`ExportError` (one line) unless ``backend`` can run here.

    Raises:
        ExportError: a runtime package is not importable (names the pip extra), or TensorRT was asked
            for without a CUDA device.
    """
    if backend not in EXPORT_FORMATS:
        msg = f"backend must be one of {', '.join(EXPORT_FORMATS)}, got {backend!r}"
        raise ExportError(msg)
    if backend == "tensorrt" and not device.startswith("cuda"):  # first: installing a package would not help
        msg = f"model.backend=tensorrt needs a CUDA device, got model.device resolved to {device!r}"
        raise ExportError(msg)
    missing = [name for name in RUNTIME_PACKAGES[backend] if importlib.util.find_spec(name) is None]
    if missing:
        noun = "package" if len(missing) == 1 else "packages"
        msg = f"model.backend={backend} needs the {' and '.join(missing)} {noun} ({_INSTALL_HINT[backend]})"
        raise ExportError(msg)


@dataclass(frozen=True)
class ExportSpec:
    """What an export depends on besides the weights.

    Attributes:
        backend: ``openvino``, ``onnx`` or ``tensorrt``.
        imgsz: Inference image size, pixels (the long side of the letterbox).
        batch: Batch size the export is traced with; TensorRT's dynamic profile goes up to it.
        half: fp16 weights (OpenVINO: compressed weights; TensorRT: fp16 engine).
        dynamic: Dynamic batch and image shape (Ultralytics then letterboxes to the smallest
            stride-multiple rectangle, as with PyTorch, and never pads a short batch).
    """

    backend: ExportedBackend
    imgsz: int
    batch: int
    half: bool
    dynamic: bool = True

    def folder_name(self, weights: Path) -> str:
        """Cache folder name for ``weights``: every input of the export appears in it (digest last)."""
        precision = "fp16" if self.half else "fp32"
        shape = "dynamic" if self.dynamic else "static"
        return f"{weights.stem}_{self.backend}_{precision}_{self.imgsz}_b{self.batch}_{shape}_{self.digest(weights)}"

    def digest(self, weights: Path) -> str:
        """First 12 hex digits of SHA-256 over the weights' bytes and the Ultralytics and runtime versions."""
        sha = hashlib.sha256()
        with weights.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        for dist in ("ultralytics", _RUNTIME_DISTRIBUTION[self.backend]):
            try:
                sha.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
            except importlib.metadata.PackageNotFoundError:
                sha.update(f"{dist}==?".encode())
        return sha.hexdigest()[:12]

    def artifact_name(self, weights: Path) -> str:
        """Name of Ultralytics' output inside the cache folder (a folder for OpenVINO, a file otherwise)."""
        return {"openvino": f"{weights.stem}_openvino_model", "onnx": f"{weights.stem}.onnx"}.get(
            self.backend, f"{weights.stem}.engine"
        )


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/batsight/exports``, or ``~/.cache/batsight/exports``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "batsight" / "exports"


def cache_roots(weights: Path, export_dir: str | None = None) -> list[Path]:
    """Folders that may hold the export, in lookup order.

    ``[export_dir]`` when given, else ``[folder of the weights, user_cache_dir()]``.
    """
    if export_dir:
        return [Path(export_dir).expanduser()]
    return [weights.resolve().parent, user_cache_dir()]


def _writable(folder: Path, create: bool) -> bool:
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def exported_model(weights: Path, spec: ExportSpec, device: str, export_dir: str | None = None) -> Path:
    """Path of the exported model for ``weights`` and ``spec``: from the cache, or exported into it now.

    Args:
        weights: The PyTorch weights file (``.pt``).
        spec: Backend, image size, batch, precision, shape mode.
        device: torch device string the export runs on (``cpu``, ``cuda:0``; TensorRT needs CUDA).
        export_dir: Cache folder to use instead of "beside the weights, else the user cache".

    Returns:
        The path ``YOLO(path, task="pose")`` loads: an OpenVINO folder, an ``.onnx`` or ``.engine`` file.

    Raises:
        ExportError: runtime package missing, no CUDA for TensorRT, no writable cache folder, or the
            exporter failed (the message has its first line).
    """
    check_runtime(spec.backend, device)
    name = spec.folder_name(weights)
    artifact = spec.artifact_name(weights)
    roots = cache_roots(weights, export_dir)
    for root in roots:
        if (root / name / artifact).exists():
            return root / name / artifact
    for i, root in enumerate(roots):
        if _writable(root, create=bool(export_dir) or i > 0):
            return _export(weights, spec, device, root / name, artifact)
    msg = f"no writable folder for the {spec.backend} export of {weights.name} (tried {', '.join(map(str, roots))})"
    raise ExportError(msg)


@contextmanager
def _ultralytics_quiet() -> Iterator[None]:
    """Silence Ultralytics' logger (export banners, its own failure line): the caller reports once."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():  # torch.jit.trace's FutureWarning while tracing
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_args(spec: ExportSpec, device: str) -> dict[str, object]:
    """Keyword arguments of ``YOLO.export`` for ``spec``: ``quantize`` on Ultralytics >= 8.4, else ``half``/``int8``."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    args: dict[str, object] = {
        "format": EXPORT_FORMATS[spec.backend],
        "imgsz": spec.imgsz,
        "batch": spec.batch,
        "dynamic": spec.dynamic,
        "device": device,
        "nms": False,
        "verbose": False,
    }
    if "quantize" in DEFAULT_CFG_DICT:
        args["quantize"] = 16 if spec.half else 32
    else:
        args.update(half=spec.half, int8=False)
    if spec.backend == "onnx":  # onnxslim is optional: without it Ultralytics would try to pip-install it
        args["simplify"] = importlib.util.find_spec("onnxslim") is not None
    return args


def _export(weights: Path, spec: ExportSpec, device: str, final: Path, artifact: str) -> Path:
    """Export into a temporary sibling of ``final`` and rename it into place (atomic on one filesystem)."""
    from ultralytics import YOLO

    # the CLI shows this INFO line: the first run pauses here (~25 s for yolo11n-pose on a 2-core CPU)
    log.info("exporting %s to %s once, which takes a while; later runs reuse %s", weights.name, spec.backend, final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache (beside the weights) from other users
        link = tmp / weights.name  # the exporter writes beside the file it is given
        try:
            link.symlink_to(weights.resolve())
        except OSError:
            shutil.copy2(weights, link)
        try:
            with _ultralytics_quiet():
                out = Path(str(YOLO(str(link), task="pose").export(**_export_args(spec, device))))
        except Exception as exc:  # noqa: BLE001 - the exporter raises anything (AssertionError, RuntimeError, ...)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            msg = f"{spec.backend} export of {weights.name} failed: {exc.__class__.__name__}: {text}"
            raise ExportError(msg) from None
        if out.name != artifact or not (tmp / artifact).exists():
            msg = f"{spec.backend} export of {weights.name} wrote {out}, expected {tmp / artifact}"
            raise ExportError(msg)
        link.unlink()
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same export first: use theirs
            if not (final / artifact).exists():
                raise
        return final / artifact
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
