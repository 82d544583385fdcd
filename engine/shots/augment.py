"""Training-time augmentation of keypoint sequences that mimics what the run time sees (issue 10).

The classifier is trained on MediaPipe landmarks of CricShot10 clips (mapped to COCO-17) but runs
on YOLO-pose keypoints cut out by the online segmenter. Each function below reproduces one of the
differences measured between the two; :func:`augment_sequence` draws all of them at random.
Arrays are ``[T, 17, 2]`` COCO keypoints in an isotropic unit; NaN marks a missing keypoint.
"""

from __future__ import annotations

import numpy as np

from engine.shots.handedness import mirror_keypoints
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS

__all__ = ["augment_sequence", "crop_window", "drop_frames", "drop_keypoints", "jitter", "scale_limbs",
           "time_warp", "torso_length"]

_I = KEYPOINT_INDEX
#: Kinematic chains (parent, child) in order from the body: scaling a segment moves its subtree.
_LEG_CHAINS = (("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"))
_ARM_CHAINS = (("left_shoulder", "left_elbow", "left_wrist"), ("right_shoulder", "right_elbow", "right_wrist"))


def torso_length(keypoints_xy: np.ndarray) -> np.ndarray:
    """``[T]`` distance from the shoulder midpoint to the hip midpoint (NaN where not visible)."""
    kp = np.asarray(keypoints_xy, np.float64)
    sh = (kp[:, _I["left_shoulder"]] + kp[:, _I["right_shoulder"]]) / 2.0
    hip = (kp[:, _I["left_hip"]] + kp[:, _I["right_hip"]]) / 2.0
    return np.hypot(*(sh - hip).T)


def scale_limbs(keypoints_xy: np.ndarray, leg: float = 1.0, arm: float = 1.0) -> np.ndarray:
    """Lengthen (factor > 1) or shorten the legs and arms, keeping every joint angle.

    Each thigh and shin is scaled by ``leg`` about its parent joint (hip -> knee -> ankle), each
    upper arm and forearm by ``arm`` (shoulder -> elbow -> wrist), so the hip-to-ankle vector, and
    with it the hip-to-ankle over torso ratio, is multiplied by exactly ``leg`` (issue 10: 1.30 in
    MediaPipe training data against 1.58 in YOLO-pose run-time shots, a factor of about 1.2).

    Args:
        keypoints_xy: ``[T, 17, 2]``.
        leg: Leg segment factor, > 0.
        arm: Arm segment factor, > 0.

    Returns:
        float64 ``[T, 17, 2]`` copy.

    Raises:
        ValueError: a factor <= 0.
    """
    if leg <= 0 or arm <= 0:
        msg = f"limb factors must be > 0, got leg={leg}, arm={arm}"
        raise ValueError(msg)
    src = np.asarray(keypoints_xy, np.float64)
    out = src.copy()
    for chains, f in ((_LEG_CHAINS, leg), (_ARM_CHAINS, arm)):
        for root, mid, end in chains:
            r, m, e = _I[root], _I[mid], _I[end]
            out[:, m] = out[:, r] + f * (src[:, m] - src[:, r])
            out[:, e] = out[:, m] + f * (src[:, e] - src[:, m])
    return out


def jitter(keypoints_xy: np.ndarray, sigma_torso: float, rng: np.random.Generator) -> np.ndarray:
    """Add independent Gaussian noise of ``sigma_torso`` x the median torso length to every x, y."""
    kp = np.asarray(keypoints_xy, np.float64)
    torso = torso_length(kp)
    scale = float(np.nanmedian(torso)) if np.isfinite(torso).any() else 1.0
    return kp + rng.normal(0.0, sigma_torso * scale, kp.shape)


def drop_keypoints(keypoints_xy: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Set each keypoint of each frame to NaN with probability ``p`` (a keypoint below threshold)."""
    kp = np.array(keypoints_xy, np.float64)
    kp[rng.random(kp.shape[:2]) < p] = np.nan
    return kp


def drop_frames(n: int, p: float, rng: np.random.Generator, min_keep: int = 3) -> np.ndarray:
    """Sorted indices of the frames of ``n`` kept when each is dropped with probability ``p``."""
    keep = np.flatnonzero(rng.random(n) >= p)
    if keep.size < min(min_keep, n):
        keep = np.sort(rng.choice(n, size=min(min_keep, n), replace=False))
    return keep


def crop_window(n: int, max_cut: float, rng: np.random.Generator, min_keep: int = 3) -> slice:
    """A window of ``n`` frames that starts and ends up to ``max_cut`` x n frames in (segmenter cuts)."""
    a = int(rng.uniform(0.0, max_cut) * n)
    b = n - int(rng.uniform(0.0, max_cut) * n)
    if b - a < min(min_keep, n):
        a, b = 0, n
    return slice(a, b)


def time_warp(n: int, rng: np.random.Generator, strength: float = 0.35) -> np.ndarray:
    """``[n]`` increasing frame times of a monotone warp ``u -> u ** g`` with ``log g ~ U(-s, s)``."""
    g = float(np.exp(rng.uniform(-strength, strength)))
    u = np.linspace(0.0, 1.0, n)
    return (u**g) * max(n - 1, 1)


def augment_sequence(
    keypoints_xy: np.ndarray, rng: np.random.Generator, *, mirror: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One random run-time-like version of a training sequence.

    In order: window cut (up to 20 % at each end), frame drops (p ~ U(0, 0.25)), limb lengths
    (legs x U(0.95, 1.35), arms x U(0.9, 1.15); the 1.30 -> 1.58 hip-ankle change is x1.22),
    jitter (sigma U(0, 0.05) torso lengths), missing keypoints (p ~ U(0, 0.15) each, plus with
    probability 0.2 both ankles and knees of the whole window, as in a close-up), time warp, and
    the mirror image when ``mirror``.

    Args:
        keypoints_xy: ``[T, 17, 2]`` isotropic units.
        rng: Random generator (seed it for reproducible training).
        mirror: Mirror the result (left <-> right).

    Returns:
        ``(keypoints [m, 17, 2], t [m])``; ``t`` in frame units (warped).
    """
    kp = np.asarray(keypoints_xy, np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 2):
        msg = f"`keypoints_xy` must have shape (T, {NUM_KEYPOINTS}, 2), got {kp.shape}"
        raise ValueError(msg)
    n = kp.shape[0]
    t = time_warp(n, rng)
    win = crop_window(n, 0.2, rng)
    kp, t = kp[win], t[win]
    keep = drop_frames(kp.shape[0], rng.uniform(0.0, 0.25), rng)
    kp, t = kp[keep], t[keep]
    kp = scale_limbs(kp, leg=rng.uniform(0.95, 1.35), arm=rng.uniform(0.9, 1.15))
    kp = jitter(kp, rng.uniform(0.0, 0.05), rng)
    kp = drop_keypoints(kp, rng.uniform(0.0, 0.15), rng)
    if rng.random() < 0.2:
        kp[:, [_I["left_knee"], _I["right_knee"], _I["left_ankle"], _I["right_ankle"]]] = np.nan
    if mirror:
        kp = mirror_keypoints(kp)
    return kp, t
