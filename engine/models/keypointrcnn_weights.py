"""Weights of the Keypoint R-CNN backend: torchvision's ``COCO_V1`` from the hub cache, or a local state dict.

:func:`build_coco_v1` and :func:`build_from_state_dict` create ``keypointrcnn_resnet50_fpn`` with its
weights for :meth:`engine.models.keypointrcnn.KeypointRCNNTopDown.build`; every failure is a
:class:`~engine.errors.ModelError` whose message names the file to provide or what does not fit.
An offline machine fails in milliseconds (a quick TCP connect, :data:`CONNECT_TIMEOUT_S`) instead of
hanging in torch.hub's download.

Sources: ``torchvision/models/detection/keypoint_rcnn.py`` (builder, weights enum, ``overwrite_eps``),
``torchvision/ops/misc.py`` (``FrozenBatchNorm2d``), ``torch/hub.py`` (``get_dir``, checkpoints),
torchvision 0.29.
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from engine.errors import ModelError

log = logging.getLogger(__name__)

#: ``weights`` value that selects torchvision's ``KeypointRCNN_ResNet50_FPN_Weights.COCO_V1``.
COCO_V1 = "COCO_V1"

#: Seconds allowed to open a TCP connection to the weights host before a download is attempted.
CONNECT_TIMEOUT_S = 5.0


def coco_v1_checkpoint_path() -> Path:
    """Where torchvision looks for the ``COCO_V1`` file: ``torch.hub.get_dir()/checkpoints/<url name>``.

    ``torch.hub.get_dir()`` honours ``TORCH_HOME`` (default ``~/.cache/torch/hub``).
    """
    import torch
    from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights

    url = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def build_coco_v1(kwargs: dict[str, Any]) -> Any:
    """``keypointrcnn_resnet50_fpn`` with torchvision's ``COCO_V1`` weights (hub cache, else a download).

    Args:
        kwargs: Keyword arguments of ``keypointrcnn_resnet50_fpn`` (``num_keypoints`` included).

    Returns:
        The torchvision ``KeypointRCNN`` on the CPU, in training mode (as torchvision builds it).

    Raises:
        ModelError: ``num_keypoints`` differs from the weights' 17; the file is not in the cache and
            the host is unreachable; the cached file cannot be loaded (the message names the cache
            file to provide).
    """
    from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn

    num_keypoints = kwargs["num_keypoints"]
    enum = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1
    expected_k = len(enum.meta["keypoint_names"])
    if num_keypoints != expected_k:
        msg = f"weights COCO_V1 have {expected_k} keypoints, but num_keypoints={num_keypoints}"
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


def build_from_state_dict(path: Path, kwargs: dict[str, Any]) -> Any:
    """``keypointrcnn_resnet50_fpn`` with the state dict of a local file (see ``KeypointRCNNTopDown``).

    ``path`` is read with ``torch.load(weights_only=True)``; the ``{"model": ...}`` checkpoints of
    torchvision's training scripts are unwrapped. A state dict without ``num_batches_tracked``
    entries was saved from ``FrozenBatchNorm2d`` layers and is loaded into such layers, with
    ``eps = 0`` when the file keeps the COCO_V1 file name, else 1e-5.

    Args:
        path: The state-dict file.
        kwargs: Keyword arguments of ``keypointrcnn_resnet50_fpn`` (``num_keypoints`` included).

    Returns:
        The torchvision ``KeypointRCNN`` on the CPU with the file's weights.

    Raises:
        ModelError: the file is missing, unreadable, not a state dict, or does not fit the model
            (the message counts missing / unexpected keys and shape mismatches).
    """
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
        target = f"keypointrcnn_resnet50_fpn(num_keypoints={kwargs['num_keypoints']})"
        msg = f"state dict {path} does not fit {target}: {problems}"
        raise ModelError(msg)
    model.load_state_dict(state)
    return model


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
