"""``batsight classify PATH...``: classify keypoint sequences made elsewhere (issue 10 item 8).

Each ``.npy`` file (or every ``.npy`` under a folder, sorted) is one shot. It goes through the
same steps as the ``shot/`` topic at run time: right-hander frame (mirror for ``--handedness
left``), :meth:`ShotClassifier.predict_keypoints` (the packaged model, mirror-averaged and
calibrated) and ``shots.min_confidence``. One JSON object per sequence is printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import ShotConfig
from engine.errors import ConfigError
from engine.shots.classifier import ShotClassifier
from engine.shots.handedness import FLIP_INDEX, mirror_keypoints
from engine.shots.mediapipe import mediapipe33_to_coco17
from engine.types import NUM_KEYPOINTS

__all__ = ["add_classify_parser", "classify_paths", "load_sequence"]


def _aspect(text: str) -> float:
    """``W:H`` (or a number) -> width / height, for argparse."""
    w, sep, h = text.partition(":")
    try:
        value = float(w) / float(h) if sep else float(w)
    except (ValueError, ZeroDivisionError):
        msg = f"expected W:H like 4:3, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not value > 0:
        msg = f"aspect must be > 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def load_sequence(path: Path, layout: str, aspect: float) -> tuple[np.ndarray, np.ndarray | None]:
    """One sequence file -> isotropic COCO-17 keypoints.

    Args:
        path: ``.npy`` file: ``mediapipe33`` ``(T, 99)`` or ``(T, 33, C>=2)`` x, y(, z) normalised to
            the frame; ``coco17`` ``(T, 17, 2)`` x, y or ``(T, 17, 3)`` x, y, confidence.
        layout: ``mediapipe33`` or ``coco17``.
        aspect: Frame width / height; x is multiplied by it (1 for pixel coordinates).

    Returns:
        ``(keypoints_xy [T, 17, 2] float64, keypoints_conf [T, 17] or None)``; non-finite = missing.

    Raises:
        ConfigError: unreadable file or wrong shape (the message names the file).
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise ConfigError(msg) from None
    conf = None
    try:
        if layout == "mediapipe33":
            kp = mediapipe33_to_coco17(arr)
        else:
            a = np.asarray(arr, np.float64)
            if a.ndim != 3 or a.shape[1] != NUM_KEYPOINTS or a.shape[2] not in (2, 3):
                msg = f"`coco17` needs shape (T, 17, 2|3), got {a.shape}"
                raise ValueError(msg)
            kp = a[..., :2].copy()
            conf = a[..., 2].copy() if a.shape[2] == 3 else None
    except ValueError as exc:
        msg = f"{path}: {exc}"
        raise ConfigError(msg) from None
    kp[..., 0] *= aspect
    return kp, conf


def classify_paths(
    paths: list[str], layout: str, aspect: float, handedness: str, classifier: ShotClassifier,
    min_confidence: float, min_keypoint_conf: float = 0.3,
) -> list[dict[str, Any]]:
    """Classify every ``.npy`` named by ``paths`` (files, or folders searched recursively).

    Returns:
        One dict per sequence: ``path``, ``label``, ``confidence``, ``probabilities``, ``frames``,
        ``handedness``; the first three ``None`` when fewer than 2 frames show shoulders and hips.

    Raises:
        ConfigError: a path that does not exist, a folder without ``.npy`` files, a bad file.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.npy"))
            if not found:
                msg = f"no .npy files under {p}"
                raise ConfigError(msg)
            files += found
        elif p.is_file():
            files.append(p)
        else:
            msg = f"no such file or folder: {p}"
            raise ConfigError(msg)
    out = []
    for f in files:
        kp, conf = load_sequence(f, layout, aspect)
        if handedness == "left":
            kp = mirror_keypoints(kp)
            conf = None if conf is None else conf[:, list(FLIP_INDEX)]
        pred = classifier.predict_keypoints(kp, None, conf, min_keypoint_conf, min_confidence)
        out.append({
            "path": str(f),
            "label": pred.label if pred else None,
            "confidence": pred.confidence if pred else None,
            "probabilities": pred.probabilities if pred else None,
            "frames": int(kp.shape[0]),
            "handedness": handedness,
        })
    return out


def _cmd_classify(args: argparse.Namespace) -> int:
    clf = ShotClassifier.load(args.classifier or None)
    rows = classify_paths(args.paths, args.layout, args.aspect, args.handedness, clf, args.min_confidence)
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


def add_classify_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``classify`` sub-command to ``batsight``'s sub-parsers."""
    cls = sub.add_parser("classify", parents=[common], help="classify keypoint sequences (.npy) like the shot/ topic")
    cls.add_argument("paths", nargs="+", metavar="PATH", help=".npy file or folder of them")
    cls.add_argument("--layout", choices=("mediapipe33", "coco17"), default="mediapipe33",
                     help="mediapipe33 (T, 99) x,y,z normalised, or coco17 (T, 17, 2|3)")
    cls.add_argument("--aspect", type=_aspect, default=1.0, metavar="W:H",
                     help="frame aspect of normalised inputs (CricShot10: 4:3); 1:1 for pixels (default)")
    cls.add_argument("--handedness", choices=("right", "left"), default="right", help="batter handedness")
    cls.add_argument("--classifier", default="", help="classifier parameter JSON (default: the packaged one)")
    cls.add_argument("--min-confidence", type=float, default=ShotConfig().min_confidence,
                     help="pull / cover drive below this probability is labelled other (shots.min_confidence)")
    cls.set_defaults(func=_cmd_classify)
