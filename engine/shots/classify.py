"""``batsight classify PATH...``: classify keypoint sequences made elsewhere (issue 10 item 8).

Each ``.npy`` file (or every ``.npy`` under a folder, sorted) is one shot. It goes through the
same steps as the ``shot/`` topic at run time: right-hander frame (mirror for ``--handedness
left``), :meth:`ShotClassifier.predict_keypoints` (the packaged model, mirror-averaged and
calibrated), ``shots.min_confidence`` and ``batter.min_keypoint_conf`` (from ``--config`` / ``--set``
as ``batsight run`` reads them). One JSON object per sequence is printed on stdout; a path
or file that cannot be classified gets one line on stderr and does not stop the others.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import BatterConfig, load_config
from engine.errors import ConfigError
from engine.shots.classifier import ShotClassifier
from engine.shots.handedness import FLIP_INDEX, mirror_keypoints
from engine.shots.mediapipe import MEDIAPIPE33_TO_COCO17
from engine.types import NUM_KEYPOINTS

__all__ = ["add_classify_parser", "classify_file", "load_sequence", "sequence_files"]

#: Median ``|x|, |y|`` at or below which coordinates are taken as normalised to the frame (MediaPipe
#: landmarks lie in about [-0.5, 1.5]; a person in pixels spans tens to hundreds of pixels).
NORMALISED_MAX = 2.0


def _aspect(text: str) -> float:
    """``W:H`` (or a number) -> width / height, for argparse."""
    w, sep, h = text.partition(":")
    try:
        width, height = float(w), float(h) if sep else 1.0
    except ValueError:
        msg = f"expected W:H like 4:3 or a ratio like 1.333, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    value = width / height if height else math.nan
    if not (width > 0 and height > 0 and math.isfinite(value) and value > 0):
        msg = f"W and H must be finite and > 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _probability(text: str) -> float:
    """A number in [0, 1], for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        msg = f"expected a probability in [0, 1], got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _npy_under(folder: Path) -> list[Path]:
    """``*.npy`` (any case) under ``folder``, sorted: files and broken links (reported when read).

    Hidden files and folders (``.*``) are skipped, and so are pipes and sockets (reading them could
    block for ever).
    """
    return sorted(
        f for f in folder.rglob("*")
        if f.suffix.lower() == ".npy" and (f.is_file() or (f.is_symlink() and not f.exists()))
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )


def sequence_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """The ``.npy`` files named by ``paths``, each once, and one error line per path that names none.

    Args:
        paths: Files (read whatever their name), or folders searched recursively for ``*.npy``
            (hidden entries skipped; symbolic links to folders are not followed).

    Returns:
        ``(files, errors)``: files in the order given (a folder's sorted), a file named twice (also
        through a link or a folder) kept at its first mention; errors name the path.
    """
    files: list[Path] = []
    errors: list[str] = []
    seen: set[str] = set()
    for p in map(Path, paths):
        found: list[Path] = []
        if p.is_dir():
            found = _npy_under(p)
            if not found:
                npz = sum(1 for _ in p.rglob("*.npz"))
                hint = f" ({npz} .npz archives: save each sequence as its own .npy)" if npz else ""
                errors.append(f"{p}: no .npy files in this folder{hint}")
        elif p.is_file():
            found = [p]
        elif p.is_symlink():
            errors.append(f"{p}: broken symbolic link")
        elif p.exists():
            errors.append(f"{p}: not a regular file or folder")
        else:
            errors.append(f"{p}: no such file or folder")
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, errors


def _read_npy(path: Path) -> np.ndarray:
    """A numeric ``.npy`` array as float64; the header is checked before any data is read, pickles never load."""
    fmt = np.lib.format
    problem = ""
    try:
        with path.open("rb") as fh:
            magic = fh.read(len(fmt.MAGIC_PREFIX))
            if magic != fmt.MAGIC_PREFIX:
                npz = magic[:2] == b"PK"
                problem = "a .npz archive: save each sequence as its own .npy" if npz else "not a NumPy .npy file"
            else:
                fh.seek(0)
                version = fmt.read_magic(fh)
                header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                dtype = header(fh)[2]
                if dtype.kind not in "iuf":
                    problem = f"holds {dtype} values; only real numbers (float or int) are read"
        if not problem:
            return np.array(np.load(path, mmap_mode="r", allow_pickle=False), dtype=np.float64)
    except OSError as exc:
        problem = "broken symbolic link" if path.is_symlink() else f"cannot read: {exc.strerror or exc}"
    except ValueError as exc:  # a bad header, or less data than the header promises
        problem = f"damaged or truncated .npy file ({exc})"
    msg = f"{path}: {problem}"
    raise ConfigError(msg)


def _to_coco17(a: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(keypoints_xy [T, 17, 2], keypoints_conf [T, 17] or None)`` of a ``layout`` array; ValueError."""
    mp33 = (a.ndim == 2 and a.shape[1] == 99) or (a.ndim == 3 and a.shape[1] == 33 and a.shape[2] in (2, 3, 4))
    coco = a.ndim == 3 and a.shape[1] == NUM_KEYPOINTS and a.shape[2] in (2, 3)
    if layout == "mediapipe33" and mp33:
        lm = a.reshape(a.shape[0], 33, 3) if a.ndim == 2 else a
        return lm[:, MEDIAPIPE33_TO_COCO17, :2].copy(), None
    if layout == "coco17" and coco:
        return a[..., :2].copy(), (a[..., 2].copy() if a.shape[2] == 3 else None)
    need = "mediapipe33 needs (T, 99) or (T, 33, 2|3|4)" if layout == "mediapipe33" else "coco17 needs (T, 17, 2|3)"
    other = "coco17" if coco else "mediapipe33" if mp33 else ""
    hint = f" (looks like {other}: give --layout {other})" if other else ""
    msg = f"shape {a.shape}: {need}{hint}"
    raise ValueError(msg)


def load_sequence(path: Path, layout: str, aspect: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """One sequence file -> isotropic COCO-17 keypoints.

    Args:
        path: ``.npy`` file of real numbers: ``mediapipe33`` ``(T, 99)`` or ``(T, 33, 2|3|4)`` x, y(,
            z, visibility: ignored); ``coco17`` ``(T, 17, 2)`` x, y or ``(T, 17, 3)`` x, y, confidence
            in [0, 1]. Non-finite x, y = missing keypoint; NaN confidence = 0.
        layout: ``mediapipe33`` or ``coco17``.
        aspect: Frame width / height of coordinates normalised to the frame (x is multiplied by it);
            ``None`` for pixels. Whether they are normalised is read from the data: median ``|x|,
            |y|`` at most :data:`NORMALISED_MAX`.

    Returns:
        ``(keypoints_xy [T, 17, 2] float64, keypoints_conf [T, 17] float64 or None)``, T >= 1; NaN = missing.

    Raises:
        ConfigError: unreadable, not ``.npy``, non-numeric, wrong shape, no frames, confidences
            outside [0, 1], normalised coordinates without ``aspect`` or pixels with one (the
            message names the file).
    """
    arr = _read_npy(path)
    try:
        kp, conf = _to_coco17(arr, layout)
    except ValueError as exc:
        msg = f"{path}: {exc}"
        raise ConfigError(msg) from None
    if kp.shape[0] == 0:
        msg = f"{path}: no frames (T = 0)"
        raise ConfigError(msg)
    kp[~np.isfinite(kp)] = np.nan
    if conf is not None:
        if np.any((conf < 0) | (conf > 1)):
            span = f"{np.nanmin(conf):.3g}..{np.nanmax(conf):.3g}"
            msg = f"{path}: the third value must be a confidence in [0, 1], got {span}"
            raise ConfigError(msg)
        conf = np.nan_to_num(conf, nan=0.0)
    size = np.abs(kp[np.isfinite(kp)])
    if size.size:  # without any finite keypoint the classifier says "not classified"
        normalised = float(np.median(size)) <= NORMALISED_MAX
        if normalised and aspect is None:
            msg = f"{path}: coordinates look normalised to the frame (median |x|, |y| <= {NORMALISED_MAX:g})"
            raise ConfigError(msg + ": give --aspect W:H")
        if not normalised and aspect not in (None, 1.0):
            msg = f"{path}: coordinates look like pixels (median |x|, |y| > {NORMALISED_MAX:g})"
            raise ConfigError(msg + ": drop --aspect, it is for normalised ones")
    with np.errstate(over="ignore"):
        kp[..., 0] *= aspect or 1.0
    kp[~np.isfinite(kp)] = np.nan
    return kp, conf


def classify_file(
    path: Path, layout: str, aspect: float | None, handedness: str, classifier: ShotClassifier,
    min_confidence: float, min_keypoint_conf: float = BatterConfig().min_keypoint_conf,
) -> dict[str, Any]:
    """Classify one sequence file as the ``shot/`` topic classifies a segment.

    Args:
        path: ``.npy`` file (:func:`load_sequence`).
        layout: ``mediapipe33`` or ``coco17``.
        aspect: Frame width / height of normalised coordinates, ``None`` for pixels.
        handedness: ``right`` or ``left`` (mirrored into the right-hander's frame first).
        classifier: The model (:meth:`ShotClassifier.load`).
        min_confidence: ``shots.min_confidence``: pull / cover drive below it is labelled other.
        min_keypoint_conf: ``batter.min_keypoint_conf``: coco17 confidences below it are missing.

    Returns:
        ``path``, ``label``, ``confidence``, ``probabilities`` (finite, summing to 1), ``abstained``,
        ``frames`` (T), ``handedness``, ``classifier_version``.

    Raises:
        ConfigError: a bad file (:func:`load_sequence`), or fewer than 2 frames show both shoulders
            and both hips.
    """
    kp, conf = load_sequence(path, layout, aspect)
    if handedness == "left":
        kp = mirror_keypoints(kp)
        conf = None if conf is None else conf[:, list(FLIP_INDEX)]
    pred = classifier.predict_keypoints(kp, None, conf, min_keypoint_conf, min_confidence)
    if pred is None:
        msg = f"{path}: fewer than 2 of its {kp.shape[0]} frames show both shoulders and both hips; not classified"
        raise ConfigError(msg)
    return {
        "path": str(path),
        "label": pred.label,
        "confidence": pred.confidence,
        "probabilities": pred.probabilities,
        "abstained": pred.abstained,
        "frames": int(kp.shape[0]),
        "handedness": handedness,
        "classifier_version": classifier.version,
    }


def _cmd_classify(args: argparse.Namespace) -> int:
    """Rows on stdout as they are made, one line per failure on stderr; 1 when anything failed."""
    config = load_config(args.config, list(args.set or []))
    clf = ShotClassifier.load(config.shots.classifier if args.classifier is None else args.classifier)
    min_confidence = config.shots.min_confidence if args.min_confidence is None else args.min_confidence
    files, errors = sequence_files(args.paths)
    for line in errors:
        sys.stderr.write(f"batsight: error: {line}\n")
    failed = len(errors)
    try:
        for f in files:
            try:
                row = classify_file(
                    f, args.layout, args.aspect, args.handedness, clf, min_confidence, config.batter.min_keypoint_conf
                )
            except ConfigError as exc:
                sys.stderr.write(f"batsight: error: {exc}\n")
                failed += 1
                continue
            sys.stdout.write(json.dumps(row, allow_nan=False) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly (Python docs, "Note on SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failed else 0


def add_classify_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``classify`` sub-command to ``batsight``'s sub-parsers."""
    cls = sub.add_parser(
        "classify", parents=[common], help="classify keypoint sequences (.npy) like the shot/ topic",
        description="Classify keypoint sequences (.npy) with the shot/ topic's features, model and threshold; "
        "one JSON object per sequence on stdout. Exit 0 when all were classified, 1 when a path or file "
        "failed (one line each on stderr; the others are still printed), 2 for a bad command line.",
    )
    cls.add_argument("paths", nargs="+", metavar="PATH", help=".npy file, or folder searched for *.npy")
    cls.add_argument("--layout", choices=("mediapipe33", "coco17"), default="mediapipe33",
                     help="mediapipe33: (T, 99) or (T, 33, 2|3|4) x, y(, z, visibility); "
                     "coco17: (T, 17, 2) x, y or (T, 17, 3) x, y, confidence (default: mediapipe33)")
    cls.add_argument("--aspect", type=_aspect, default=None, metavar="W:H",
                     help="frame width:height (or a ratio) of coordinates normalised to the frame, "
                     "required for them (CricShot10: 4:3); omit for pixels")
    cls.add_argument("--handedness", choices=("right", "left"), default="right",
                     help="batter handedness (default: right)")
    cls.add_argument("--classifier", metavar="FILE",
                     help="classifier parameter JSON (default: shots.classifier; empty: the packaged one)")
    cls.add_argument("--min-confidence", type=_probability, metavar="P",
                     help="pull / cover drive below this probability is labelled other (default: shots.min_confidence)")
    cls.add_argument("--config", "-c", help="YAML config file whose shots.classifier, shots.min_confidence and "
                     "batter.min_keypoint_conf are used, as by run (see configs/default.yaml)")
    cls.add_argument("--set", "-s", action="append", metavar="KEY=VALUE", help="override a config key")
    cls.set_defaults(func=_cmd_classify)
