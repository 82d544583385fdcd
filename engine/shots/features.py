"""The shot classifier's fixed-length feature vector of one segment (feature set ``pose_t4_v1``).

Keypoints are ``[T, 17, 2]`` COCO keypoints (:mod:`engine.types`) in pixels or any isotropic unit,
already in the right-hander's frame (:func:`engine.shots.mirror_keypoints`); features are measured
in *torso lengths* (shoulder midpoint to hip midpoint), so they depend neither on the batter's size
in the frame nor on the frame's aspect ratio.
"""

from __future__ import annotations

import math

import numpy as np

from engine.types import COCO_KEYPOINT_NAMES, KEYPOINT_INDEX, NUM_KEYPOINTS, check_array

__all__ = ["FEATURE_SET", "feature_names", "shot_features"]

_LS, _RS = KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]
_LW = KEYPOINT_INDEX["left_wrist"]
_LH, _RH = KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]
_NOSE = KEYPOINT_INDEX["nose"]
_LA, _RA = KEYPOINT_INDEX["left_ankle"], KEYPOINT_INDEX["right_ankle"]

#: Name of the feature definition implemented by :func:`shot_features` (stored in the params file).
FEATURE_SET = "pose_t4_v1"
_N_TIMES = 4
_ARM_DESCRIPTORS = ("horizontal_span", "vertical_span", "mean_elevation_deg", "peak_r", "peak_r_time")


def feature_names(n_times: int = _N_TIMES) -> list[str]:
    """Names of the :func:`shot_features` vector, in order."""
    names = [f"{k}.{axis}@{i}" for k in COCO_KEYPOINT_NAMES for axis in ("x", "y") for i in range(n_times)]
    names += ["ankle_gap_mean", "ankle_gap_max", "nose_height_mean"]
    names += [f"front_arm.{d}" for d in _ARM_DESCRIPTORS]
    return names


def _longest_consistent_run(sh_mid: np.ndarray, torso: np.ndarray, max_jump: float, max_ratio: float) -> np.ndarray:
    """Indices of the longest run of consecutive frames that look like one person.

    Consecutive frames belong together when the shoulder midpoint moves at most ``max_jump``
    torso lengths and the torso length changes by at most ``max_ratio``. Camera cuts and
    switches to another person (CricShot10 sequences often hold the bowler or a fielder for some
    frames) break runs. Ties go to the earliest run.
    """
    n = sh_mid.shape[0]
    best_start, best_len, start = 0, min(n, 1), 0
    for i in range(1, n):
        a, b = torso[i - 1], torso[i]
        small = max(min(a, b), 1e-12)
        same = np.hypot(*(sh_mid[i] - sh_mid[i - 1])) <= max_jump * max(a, b) and max(a, b) / small <= max_ratio
        if not same:
            start = i
        if i - start + 1 > best_len:
            best_start, best_len = start, i - start + 1
    return np.arange(best_start, best_start + best_len)


def shot_features(
    keypoints_xy: np.ndarray,
    t_s: np.ndarray | None = None,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
) -> np.ndarray | None:
    """Fixed-length features of one shot for :class:`ShotClassifier` (feature set ``pose_t4_v1``).

    Give the keypoints already in the right-hander's frame (mirror a left-hander first). Method:

    1. Keypoints with confidence ``< min_keypoint_conf`` are missing (NaN). Frames need both
       shoulders and both hips; among those, the longest run that looks like one person is kept
       (see :func:`_longest_consistent_run`: shoulder jump <= 1 torso length, torso change
       <= 1.6x).
    2. Every keypoint is taken relative to the hip midpoint and divided by the run's median torso
       length (shoulder midpoint to hip midpoint), so units are torso lengths, y down.
    3. Time is normalised to [0, 1] over the run (by ``t_s``, or by frame order when ``t_s`` is
       ``None``: CricShot10 sequences have no timestamps) and each keypoint's x and y are linearly
       interpolated at 4 equally spaced times (17 x 2 x 4 = 136 values).
    4. Summary values: mean and max ankle gap, mean nose height; and the thesis descriptors of the
       front arm (``left_wrist`` - ``left_shoulder``) in torso lengths: horizontal span, vertical
       span, mean elevation angle (degrees, ``atan2(-Δy, |Δx|)``), peak r and its normalised time
       (same definitions as :class:`engine.analytics.WristFit`).

    Features that cannot be measured (a keypoint never visible) are NaN; the classifier fills
    them with the training medians.

    Args:
        keypoints_xy: ``[T, 17, 2]`` x, y in pixels or any *isotropic* unit (same scale on x and y).
        t_s: ``[T]`` frame times in seconds, non-decreasing, or ``None``.
        keypoints_conf: ``[T, 17]`` confidences, or ``None`` (all visible).
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        float64 ``[len(feature_names())]``, or ``None`` when fewer than 2 frames show both
        shoulders and both hips.

    Raises:
        ValueError: wrong shapes.
    """
    kp = np.array(keypoints_xy, dtype=np.float64)  # a copy: missing keypoints become NaN below
    dims: dict[str, int] = {}
    check_array("keypoints_xy", kp, ("T", NUM_KEYPOINTS, 2), dims=dims)
    n = kp.shape[0]
    if keypoints_conf is not None:
        conf = check_array("keypoints_conf", keypoints_conf, ("T", NUM_KEYPOINTS), np.float64, convert=True, dims=dims)
        kp[conf < min_keypoint_conf] = np.nan
    if t_s is not None:
        t = check_array("t_s", t_s, ("T",), np.float64, convert=True, dims=dims)
    else:
        t = np.arange(n, dtype=np.float64)
    sh_mid = (kp[:, _LS] + kp[:, _RS]) / 2.0
    hip_mid = (kp[:, _LH] + kp[:, _RH]) / 2.0
    torso = np.hypot(*(sh_mid - hip_mid).T)
    ok = np.isfinite(torso) & (torso > 0) & np.isfinite(t)
    if np.count_nonzero(ok) < 2:
        return None
    kp, t, sh_mid, hip_mid, torso = kp[ok], t[ok], sh_mid[ok], hip_mid[ok], torso[ok]
    run = _longest_consistent_run(sh_mid, torso, 1.0, 1.6)
    if run.size < 2:
        return None
    kp, t, hip_mid, torso = kp[run], t[run], hip_mid[run], torso[run]
    scale = float(np.median(torso))
    rel = (kp - hip_mid[:, None, :]) / scale  # [m, 17, 2], torso lengths
    span = float(t[-1] - t[0])
    u = (t - t[0]) / span if span > 0 else np.linspace(0.0, 1.0, t.shape[0])
    q = np.linspace(0.0, 1.0, _N_TIMES)
    out: list[float] = []
    for k in range(NUM_KEYPOINTS):
        for axis in (0, 1):
            v = rel[:, k, axis]
            good = np.isfinite(v)
            if np.count_nonzero(good) == 0:
                out.extend([math.nan] * _N_TIMES)
            else:
                out.extend(np.interp(q, u[good], v[good]).tolist())
    gap = np.hypot(*(rel[:, _LA] - rel[:, _RA]).T)
    gap = gap[np.isfinite(gap)]
    nose = rel[:, _NOSE, 1]
    nose = nose[np.isfinite(nose)]
    out += [float(gap.mean()) if gap.size else math.nan, float(gap.max()) if gap.size else math.nan]
    out += [float(-nose.mean()) if nose.size else math.nan]
    d = rel[:, _LW] - rel[:, _LS]
    good = np.isfinite(d).all(axis=1)
    if np.count_nonzero(good):
        dx, dy, ug = d[good, 0], d[good, 1], u[good]
        r = np.hypot(dx, dy)
        peak = int(np.argmax(r))
        out += [
            float(dx.max() - dx.min()),
            float(dy.max() - dy.min()),
            float(np.degrees(np.arctan2(-dy, np.abs(dx))).mean()),
            float(r[peak]),
            float(ug[peak]),
        ]
    else:
        out += [math.nan] * len(_ARM_DESCRIPTORS)
    return np.asarray(out, dtype=np.float64)
