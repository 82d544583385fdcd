"""Handedness: infer it from the bat side of the backlift, and mirror a left-hander into a right-hander's frame.

A left-hander's keypoints are mirrored (``x -> W - x``, left <-> right labels swapped) so that
every shot feature describes the *front* arm in a right-hander's frame (the thesis analyses
``left_wrist`` / ``left_shoulder`` of a right-hander). Keypoints are ``[..., 17, 2]`` COCO keypoints
(:mod:`engine.types`) in original-frame pixels, x right, y down; confidences are in [0, 1].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from engine.types import COCO_KEYPOINT_NAMES, KEYPOINT_INDEX, NUM_KEYPOINTS, check_array

__all__ = ["FLIP_INDEX", "HandednessEstimate", "backlift_side", "infer_handedness", "mirror_keypoints", "mirrored_name"]

#: COCO index of the mirror-image keypoint (left <-> right), ``FLIP_INDEX[FLIP_INDEX[k]] == k``.
FLIP_INDEX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

_FLIP = np.array(FLIP_INDEX)
_LS, _RS = KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]
_LH, _RH = KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]
_LW, _RW = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]
_NOSE, _LEYE, _REYE = KEYPOINT_INDEX["nose"], KEYPOINT_INDEX["left_eye"], KEYPOINT_INDEX["right_eye"]


def mirror_keypoints(keypoints_xy: np.ndarray, width: float = 0.0) -> np.ndarray:
    """Mirror image of COCO keypoints: ``x -> width - x`` and left <-> right labels swapped.

    Args:
        keypoints_xy: ``[..., 17, 2]`` x, y (pixels, or any units with ``width`` in the same).
        width: Frame width; 0 mirrors about ``x = 0`` (enough for relative features).

    Returns:
        float64 array of the same shape (a new array).
    """
    kp = np.asarray(keypoints_xy, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-2:] != (NUM_KEYPOINTS, 2):
        msg = f"`keypoints_xy` must have shape (..., {NUM_KEYPOINTS}, 2), got {kp.shape}"
        raise ValueError(msg)
    out = kp[..., _FLIP, :].copy()
    out[..., 0] = float(width) - out[..., 0]
    return out


def mirrored_name(name: str) -> str:
    """COCO name of the mirror-image keypoint (``left_wrist`` <-> ``right_wrist``, ``nose`` stays)."""
    if name not in KEYPOINT_INDEX:
        msg = f"must be a COCO keypoint name ({', '.join(KEYPOINT_INDEX)}), got {name!r}"
        raise ValueError(msg)
    return COCO_KEYPOINT_NAMES[FLIP_INDEX[KEYPOINT_INDEX[name]]]


def backlift_side(
    keypoints_xy: np.ndarray,
    keypoints_conf: np.ndarray,
    t_s: np.ndarray,
    min_keypoint_conf: float = 0.3,
    min_height: float = 0.3,
) -> np.ndarray:
    """Per-frame bat-side evidence: which side of the batter's body the hands are on in the backlift.

    Method: whatever the camera position, a batter lifts the bat on the bat side, behind the back
    shoulder (a right-hander's right side), and brings it down and through towards the front side.
    The batter's left-to-right direction in the image is the sign of the median over the frames of
    ``((left_shoulder - right_shoulder).x + (left_hip - right_hip).x) / torso`` (positive when the
    front of the body faces the camera, negative seen from behind; one sign for all frames, as a
    batter does not turn round within a stroke and single frames swap left and right when the
    face is hidden). Per frame, the hands (mean of the visible wrists, which needs no left/right
    label) lie ``(hands - body centre).x`` torso lengths from the centre of shoulders and hips;
    that offset times the direction, negated, is positive when the hands are on the batter's *right*. Only backlift
    frames count: frames up to the one of peak hands speed (the downswing) whose hands are at least
    ``min_height`` torso lengths above the hips' midpoint. The value uses the pose model's
    anatomical left/right labels, not the side the camera is on, so a right-hander reads positive
    front-on, side-on from the off side, and from behind. Mirroring the frames
    (:func:`mirror_keypoints`) negates every value.

    Args:
        keypoints_xy: ``[T, 17, 2]`` x, y in pixels (or any isotropic unit), y down.
        keypoints_conf: ``[T, 17]`` confidences in [0, 1]; below ``min_keypoint_conf`` is not visible.
        t_s: ``[T]`` frame times in seconds, increasing.
        min_keypoint_conf: Visibility threshold in [0, 1].
        min_height: Least height of the hands above the hips for a backlift frame, torso lengths.

    Returns:
        float64 ``[T]``: hands' offset towards the batter's right in torso lengths on backlift
        frames, NaN on other frames (not a backlift frame, or shoulders, hips or both wrists missing).

    Raises:
        ValueError: wrong shapes.
    """
    kp = np.array(keypoints_xy, dtype=np.float64)
    dims: dict[str, int] = {}
    check_array("keypoints_xy", kp, ("T", NUM_KEYPOINTS, 2), dims=dims)
    conf = check_array("keypoints_conf", keypoints_conf, ("T", NUM_KEYPOINTS), np.float64, convert=True, dims=dims)
    t = check_array("t_s", t_s, ("T",), np.float64, convert=True, dims=dims)
    kp[conf < min_keypoint_conf] = np.nan
    sh = (kp[:, _LS] + kp[:, _RS]) / 2.0
    hip = (kp[:, _LH] + kp[:, _RH]) / 2.0
    out = np.full(t.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames stay NaN
        torso = np.hypot(*(sh - hip).T)
        torso = np.where(torso > 0, torso, np.nan)
        order = ((kp[:, _LS, 0] - kp[:, _RS, 0]) + (kp[:, _LH, 0] - kp[:, _RH, 0])) / torso
        face = np.isfinite(kp[:, _NOSE, 0]) & (np.isfinite(kp[:, _LEYE, 0]) | np.isfinite(kp[:, _REYE, 0]))
        facing = np.sign(np.nanmedian(order[face] if np.isfinite(order[face]).any() else order))
        hands = np.nanmean(kp[:, [_LW, _RW]], axis=1)
        side = -(hands[:, 0] - (sh[:, 0] + hip[:, 0]) / 2.0) / torso * (facing if facing != 0 else np.nan)
        height = (hip[:, 1] - hands[:, 1]) / torso
        dt = np.diff(t)
        speed = np.hypot(*np.diff(hands, axis=0).T) / np.nanmedian(torso) / np.where(dt > 0, dt, np.nan)
    if not np.isfinite(speed).any():
        return out
    peak = int(np.nanargmax(speed)) + 1  # the later frame of the fastest step
    keep = (np.arange(t.shape[0]) <= peak) & (height >= min_height) & np.isfinite(side)
    out[keep] = side[keep]
    return out


@dataclass(frozen=True)
class HandednessEstimate:
    """The batter's handedness and how sure the inference is.

    Attributes:
        handedness: ``"right"`` or ``"left"``.
        confidence: Probability in [0, 1] that ``handedness`` is right, from the evidence alone:
            ``(k + 1) / (n + 2)`` (Laplace's rule of succession) where ``n`` backlift frames were
            seen and ``k`` of them put the hands on the side of ``handedness``; 0.5 without
            evidence, below 0.5 when weak evidence for ``left`` fell back to ``right``.
        n_frames: Backlift frames used (``n``).
        score: Median :func:`backlift_side` over those frames (torso lengths; > 0: right), 0 without.
    """

    handedness: str
    confidence: float
    n_frames: int
    score: float


def infer_handedness(
    keypoints_xy: np.ndarray,
    keypoints_conf: np.ndarray,
    t_s: np.ndarray,
    min_confidence: float = 0.75,
    min_keypoint_conf: float = 0.3,
) -> HandednessEstimate:
    """Infer the batter's handedness from the bat side of the backlift (:func:`backlift_side`).

    The evidence's probability of left, ``P(left) = (k + 1) / (n + 2)`` with ``k`` of ``n``
    backlift frames on the left (Laplace's rule of succession), must reach ``min_confidence`` for
    the answer ``"left"``; otherwise the answer is ``"right"`` with ``P(right) = 1 - P(left)``, which
    is below 0.5 when weak evidence for left was overruled. The asymmetry is the prior: about three
    in four batters are right-handed, so the default 0.75 asks the evidence to beat those odds.
    Mirrored frames give the other hand with the same confidence whenever the answer is
    ``"left"`` for one of them. Set ``shots.handedness`` when the batter is known.

    Args:
        keypoints_xy: ``[T, 17, 2]`` the batter's keypoints, pixels, over a stance and one stroke.
        keypoints_conf: ``[T, 17]`` their confidences.
        t_s: ``[T]`` frame times, seconds.
        min_confidence: Least ``P(left)`` in [0.5, 1] for the answer ``"left"``.
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        The :class:`HandednessEstimate`.

    Raises:
        ValueError: wrong shapes.
    """
    side = backlift_side(keypoints_xy, keypoints_conf, t_s, min_keypoint_conf)
    side = side[np.isfinite(side)]
    if side.size == 0:
        return HandednessEstimate("right", 0.5, 0, 0.0)
    n, left = side.size, int(np.count_nonzero(side < 0))
    p_left = (left + 1) / (n + 2)
    score = float(np.median(side))
    if p_left >= min_confidence:
        return HandednessEstimate("left", p_left, n, score)
    return HandednessEstimate("right", 1.0 - p_left, n, score)
