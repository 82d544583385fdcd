"""The shot classifier's inputs of one segment (feature set ``pose_seq_v2``).

Keypoints are ``[T, 17, 2]`` COCO keypoints (:mod:`engine.types`) in pixels or any isotropic unit,
already in the right-hander's frame (:func:`engine.shots.mirror_keypoints`). Each frame becomes
:data:`CHANNELS` (28 values) that do not depend on limb lengths, so MediaPipe (training) and
YOLO-pose (run time) skeletons, whose hip-to-ankle over torso ratios differ (1.30 against 1.58,
issue 10), give the same values for the same posture:

* the unit direction of 12 body segments (torso, shoulder line, hip line, upper arms, forearms,
  thighs, shins, head) -> 24 channels;
* the hands (mean of the visible wrists) relative to the shoulder midpoint, in arm lengths
  (median over the window of upper arm + forearm) -> 2 channels;
* the ankle gap (left ankle - right ankle) in leg lengths (median thigh + shin) -> 2 channels.

Missing keypoints stay NaN (nothing is filled): a channel is NaN in a frame where one of its
keypoints is missing, and :func:`shot_features` summarises only the frames where it is measured.
"""

from __future__ import annotations

import warnings

import numpy as np

from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS, check_array

__all__ = ["CHANNELS", "FEATURE_SET", "SEQUENCE_STEPS", "consistent_runs", "feature_names", "frame_channels",
           "pose_channels", "pose_sequence", "shot_features"]

_I = KEYPOINT_INDEX
_SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("shoulders", "left_shoulder", "right_shoulder"),
    ("hips", "left_hip", "right_hip"),
    ("left_upper_arm", "left_shoulder", "left_elbow"),
    ("left_forearm", "left_elbow", "left_wrist"),
    ("right_upper_arm", "right_shoulder", "right_elbow"),
    ("right_forearm", "right_elbow", "right_wrist"),
    ("left_thigh", "left_hip", "left_knee"),
    ("left_shin", "left_knee", "left_ankle"),
    ("right_thigh", "right_hip", "right_knee"),
    ("right_shin", "right_knee", "right_ankle"),
)
#: Names of the per-frame channels of :func:`pose_channels`, in order.
CHANNELS: tuple[str, ...] = (
    "torso.ux", "torso.uy", "head.ux", "head.uy",
    *(f"{name}.{a}" for name, _, _ in _SEGMENTS for a in ("ux", "uy")),
    "hands.x", "hands.y", "ankle_gap.x", "ankle_gap.y",
)
#: Name of the feature definition (stored in the parameter file).
FEATURE_SET = "pose_seq_v2"
#: Time steps of :func:`pose_sequence` (the temporal CNN's input length).
SEQUENCE_STEPS = 16
_N_TIMES = 4
#: One person between neighbouring frames: shoulder midpoint jump <= 1 torso length, torso change <= 1.6x.
_MAX_JUMP, _MAX_RATIO = 1.0, 1.6
_QUANTILES = (0.1, 0.5, 0.9)
_SCALARS = ("hands_x_range", "hands_y_range", "hands_peak_speed_time", "hands_peak_vel.ux", "hands_peak_vel.uy",
            "valid_fraction")


def feature_names() -> list[str]:
    """Names of the :func:`shot_features` vector, in order."""
    names = [f"{c}@{i}" for i in range(_N_TIMES) for c in CHANNELS]
    names += [f"{c}.q{int(q * 100)}" for q in _QUANTILES for c in CHANNELS]
    names += [f"{c}@peak_speed" for c in CHANNELS]
    return names + list(_SCALARS)


def _visible_torso(
    keypoints_xy: np.ndarray, keypoints_conf: np.ndarray | None, min_keypoint_conf: float, dims: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked copy of the keypoints (NaN below ``min_keypoint_conf``), shoulder and hip midpoints, torso lengths.

    Returns ``(kp [T, 17, 2], sh_mid [T, 2], hip_mid [T, 2], torso [T])`` (NaN where a keypoint is
    missing); ``dims`` receives ``T`` for later shape checks. Raises ValueError on wrong shapes.
    """
    kp = np.array(keypoints_xy, dtype=np.float64)  # a copy: missing keypoints become NaN below
    check_array("keypoints_xy", kp, ("T", NUM_KEYPOINTS, 2), dims=dims)
    if keypoints_conf is not None:
        conf = check_array("keypoints_conf", keypoints_conf, ("T", NUM_KEYPOINTS), np.float64, convert=True, dims=dims)
        kp[conf < min_keypoint_conf] = np.nan
    sh_mid = (kp[:, _I["left_shoulder"]] + kp[:, _I["right_shoulder"]]) / 2.0
    hip_mid = (kp[:, _I["left_hip"]] + kp[:, _I["right_hip"]]) / 2.0
    return kp, sh_mid, hip_mid, np.hypot(*(sh_mid - hip_mid).T)


def _run_breaks(sh_mid: np.ndarray, torso: np.ndarray, max_jump: float, max_ratio: float) -> np.ndarray:
    """Which frames start a new run: bool ``[n]`` (frame 0 always does).

    Consecutive frames belong together when the shoulder midpoint moves at most ``max_jump``
    torso lengths (the larger of the two) and the torso length changes by at most ``max_ratio``.
    Camera cuts and switches to another person (CricShot10 sequences often hold the bowler or a
    fielder for some frames) break runs.
    """
    a, b = torso[:-1], torso[1:]
    big, small = np.maximum(a, b), np.maximum(np.minimum(a, b), 1e-12)
    jump = np.hypot(*(sh_mid[1:] - sh_mid[:-1]).T)
    same = (jump <= max_jump * big) & (big / small <= max_ratio)
    return np.concatenate([[True], ~same])


def _longest_consistent_run(sh_mid: np.ndarray, torso: np.ndarray, max_jump: float, max_ratio: float) -> np.ndarray:
    """Indices of the longest run of consecutive frames that look like one person (:func:`_run_breaks`).

    Ties go to the earliest run.
    """
    if sh_mid.shape[0] == 0:
        return np.arange(0)
    starts = np.flatnonzero(_run_breaks(sh_mid, torso, max_jump, max_ratio))
    lengths = np.diff(np.append(starts, sh_mid.shape[0]))
    k = int(np.argmax(lengths))
    return np.arange(starts[k], starts[k] + lengths[k])


def consistent_runs(
    keypoints_xy: np.ndarray,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
) -> list[np.ndarray]:
    """Frame indices of each run of frames that looks like one person, longest first.

    The frames that show both shoulders and both hips (visible: confidence ``>=
    min_keypoint_conf``) are split where the shoulder midpoint jumps more than 1 torso length or
    the torso length changes more than 1.6x between neighbours (the criterion with which
    :func:`pose_channels` keeps its longest run). A run may step over frames without a torso.

    Args:
        keypoints_xy: ``[T, 17, 2]`` x, y in pixels or any isotropic unit.
        keypoints_conf: ``[T, 17]`` confidences, or ``None`` (finite keypoints are visible).
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        int64 index arrays into the ``T`` frames, sorted by length (descending; ties: earliest
        first). Empty when no frame shows a torso.

    Raises:
        ValueError: wrong shapes.
    """
    _, sh_mid, _, torso = _visible_torso(keypoints_xy, keypoints_conf, min_keypoint_conf, {})
    ok = np.flatnonzero(np.isfinite(torso) & (torso > 0))
    if ok.size == 0:
        return []
    starts = np.flatnonzero(_run_breaks(sh_mid[ok], torso[ok], _MAX_JUMP, _MAX_RATIO))
    runs = np.split(ok, starts[1:])
    return sorted(runs, key=lambda r: -r.size)


def _unit(v: np.ndarray) -> np.ndarray:
    """Unit vectors of ``[n, 2]`` (NaN where the length is 0 or NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.hypot(v[:, 0], v[:, 1])[:, None]
        return np.where(n > 0, v / n, np.nan)


def _median_length(kp: np.ndarray, chain: tuple[tuple[str, str], ...]) -> float:
    """Median over frames of the summed lengths of a keypoint chain (NaN when never measured)."""
    total = np.zeros(kp.shape[0])
    for a, b in chain:
        total = total + np.hypot(*(kp[:, _I[b]] - kp[:, _I[a]]).T)
    total = total[np.isfinite(total) & (total > 0)]
    return float(np.median(total)) if total.size else float("nan")


def pose_channels(
    keypoints_xy: np.ndarray,
    t_s: np.ndarray | None = None,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-frame :data:`CHANNELS` of one person's longest consistent run of frames.

    Method: keypoints with confidence ``< min_keypoint_conf`` are NaN; frames need both shoulders
    and both hips; among those, the longest run that looks like one person is kept (shoulder jump
    <= 1 torso length, torso change <= 1.6x, :func:`_longest_consistent_run`); then the channels
    of the module docstring. Arm and leg lengths are the medians over both sides and all frames.

    Args:
        keypoints_xy: ``[T, 17, 2]`` x, y in pixels or any *isotropic* unit, y down.
        t_s: ``[T]`` frame times in seconds, or ``None`` (frame order, e.g. CricShot10 files).
        keypoints_conf: ``[T, 17]`` confidences, or ``None`` (finite keypoints are visible).
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        ``(channels, t)``: float64 ``[m, 28]`` (NaN where not measurable) and the ``[m]`` times
        (seconds, or frame indices), or ``None`` when fewer than 2 frames show shoulders and hips.

    Raises:
        ValueError: wrong shapes.
    """
    dims: dict[str, int] = {}
    kp, sh_mid, hip_mid, torso = _visible_torso(keypoints_xy, keypoints_conf, min_keypoint_conf, dims)
    if t_s is not None:
        t = check_array("t_s", t_s, ("T",), np.float64, convert=True, dims=dims)
    else:
        t = np.arange(kp.shape[0], dtype=np.float64)
    ok = np.isfinite(torso) & (torso > 0) & np.isfinite(t)
    if np.count_nonzero(ok) < 2:
        return None
    kp, t, sh_mid, hip_mid, torso = kp[ok], t[ok], sh_mid[ok], hip_mid[ok], torso[ok]
    run = _longest_consistent_run(sh_mid, torso, _MAX_JUMP, _MAX_RATIO)
    if run.size < 2:
        return None
    kp, t, sh_mid, hip_mid, torso = kp[run], t[run], sh_mid[run], hip_mid[run], torso[run]
    scale = float(np.median(torso))
    cols = [_unit(sh_mid - hip_mid), _unit(kp[:, _I["nose"]] - sh_mid)]
    cols += [_unit(kp[:, _I[b]] - kp[:, _I[a]]) for _, a, b in _SEGMENTS]
    arm = _mean_finite([_median_length(kp, ((f"{s}_shoulder", f"{s}_elbow"), (f"{s}_elbow", f"{s}_wrist")))
                        for s in ("left", "right")])
    leg = _mean_finite([_median_length(kp, ((f"{s}_hip", f"{s}_knee"), (f"{s}_knee", f"{s}_ankle")))
                        for s in ("left", "right")])
    arm = arm if np.isfinite(arm) and arm > 0 else 1.2 * scale
    leg = leg if np.isfinite(leg) and leg > 0 else 1.5 * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hands = np.nanmean(kp[:, [_I["left_wrist"], _I["right_wrist"]]], axis=1)
    cols.append((hands - sh_mid) / arm)
    cols.append((kp[:, _I["left_ankle"]] - kp[:, _I["right_ankle"]]) / leg)
    return np.concatenate(cols, axis=1), t


def frame_channels(
    keypoints_xy: np.ndarray,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
) -> np.ndarray:
    """:data:`CHANNELS` of every frame on its own (input of the ``frame_mlp`` family).

    The channels of :func:`pose_channels`, but each frame is measured alone: arm and leg lengths
    are that frame's (mean of the sides measured; 1.2 and 1.5 torso lengths when none is), and
    no frame is dropped for not looking like its neighbours, so a sequence that jumps between
    people (CricShot10's MediaPipe picks) still gives the batter's frames.

    Args:
        keypoints_xy: ``[T, 17, 2]`` x, y in pixels or any *isotropic* unit, y down.
        keypoints_conf: ``[T, 17]`` confidences, or ``None`` (finite keypoints are visible).
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        float64 ``[T, 28]``; a frame without both shoulders and both hips is all NaN, other
        channels are NaN where one of their keypoints is missing.

    Raises:
        ValueError: wrong shapes.
    """
    kp, sh_mid, hip_mid, torso = _visible_torso(keypoints_xy, keypoints_conf, min_keypoint_conf, {})
    ok = np.isfinite(torso) & (torso > 0)

    def length(*pairs: tuple[str, str]) -> np.ndarray:  # [T] summed chain length per side, sides averaged
        sides = []
        for side in ("left", "right"):
            total = sum(np.hypot(*(kp[:, _I[f"{side}_{b}"]] - kp[:, _I[f"{side}_{a}"]]).T) for a, b in pairs)
            sides.append(np.where(np.isfinite(total) & (total > 0), total, np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(sides), axis=0)

    arm = length(("shoulder", "elbow"), ("elbow", "wrist"))
    leg = length(("hip", "knee"), ("knee", "ankle"))
    arm = np.where(np.isfinite(arm), arm, 1.2 * torso)[:, None]
    leg = np.where(np.isfinite(leg), leg, 1.5 * torso)[:, None]
    cols = [_unit(sh_mid - hip_mid), _unit(kp[:, _I["nose"]] - sh_mid)]
    cols += [_unit(kp[:, _I[b]] - kp[:, _I[a]]) for _, a, b in _SEGMENTS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hands = np.nanmean(kp[:, [_I["left_wrist"], _I["right_wrist"]]], axis=1)
    cols.append((hands - sh_mid) / arm)
    cols.append((kp[:, _I["left_ankle"]] - kp[:, _I["right_ankle"]]) / leg)
    out = np.concatenate(cols, axis=1)
    out[~ok] = np.nan
    return out


def _mean_finite(values: list[float]) -> float:
    v = [x for x in values if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _resample(ch: np.ndarray, u: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear interpolation of every channel at normalised times ``q`` over its finite samples."""
    out = np.full((q.size, ch.shape[1]), np.nan)
    for j in range(ch.shape[1]):
        good = np.isfinite(ch[:, j])
        if good.any():
            out[:, j] = np.interp(q, u[good], ch[good, j])
    return out


def _normalised_time(t: np.ndarray) -> np.ndarray:
    span = float(t[-1] - t[0])
    return (t - t[0]) / span if span > 0 else np.linspace(0.0, 1.0, t.shape[0])


def pose_sequence(
    keypoints_xy: np.ndarray,
    t_s: np.ndarray | None = None,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
    steps: int = SEQUENCE_STEPS,
) -> np.ndarray | None:
    """:func:`pose_channels` linearly resampled at ``steps`` equally spaced normalised times.

    Returns:
        float64 ``[steps, 28]`` (NaN for a channel never measured), or ``None`` (see
        :func:`pose_channels`). Input of the temporal CNN.
    """
    res = pose_channels(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
    if res is None:
        return None
    ch, t = res
    return _resample(ch, _normalised_time(t), np.linspace(0.0, 1.0, steps))


def shot_features(
    keypoints_xy: np.ndarray,
    t_s: np.ndarray | None = None,
    keypoints_conf: np.ndarray | None = None,
    min_keypoint_conf: float = 0.3,
) -> np.ndarray | None:
    """Fixed-length features of one shot (feature set ``pose_seq_v2``) for the tree model.

    From :func:`pose_channels` over the normalised time ``u`` in [0, 1] of the run:

    1. every channel at 4 equally spaced times (linear interpolation over its measured frames);
    2. every channel's 10 / 50 / 90 % quantiles over the frames (robust to a window that starts
       or ends part-way through the stroke);
    3. every channel at the frame of peak hands speed (the impact phase);
    4. hands x and y range, normalised time of the peak hands speed, direction (unit vector) of
       the hands' velocity there, fraction of frames with every channel measured.

    Nothing is filled: a feature whose channel is never measured is NaN (the trees send NaN down
    a learned side).

    Args:
        keypoints_xy: ``[T, 17, 2]`` isotropic x, y (see :func:`pose_channels`).
        t_s: ``[T]`` frame times in seconds, or ``None``.
        keypoints_conf: ``[T, 17]`` confidences, or ``None``.
        min_keypoint_conf: Visibility threshold in [0, 1].

    Returns:
        float64 ``[len(feature_names())]``, or ``None`` when fewer than 2 frames show both
        shoulders and both hips.

    Raises:
        ValueError: wrong shapes.
    """
    res = pose_channels(keypoints_xy, t_s, keypoints_conf, min_keypoint_conf)
    if res is None:
        return None
    ch, t = res
    u = _normalised_time(t)
    parts = [_resample(ch, u, np.linspace(0.0, 1.0, _N_TIMES)).ravel()]
    with warnings.catch_warnings():  # all-NaN channels give NaN quantiles, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        parts.append(np.nanquantile(ch, _QUANTILES, axis=0).ravel())
    hands = ch[:, -4:-2]
    du = np.diff(u)
    with np.errstate(invalid="ignore", divide="ignore"):
        vel = np.diff(hands, axis=0) / np.where(du > 0, du, np.nan)[:, None]
    speed = np.hypot(vel[:, 0], vel[:, 1])
    scalars = [np.nan] * len(_SCALARS)
    peak_pose = np.full(len(CHANNELS), np.nan)
    good_h = np.isfinite(hands).all(axis=1)
    if good_h.any():
        scalars[0] = float(np.ptp(hands[good_h, 0]))
        scalars[1] = float(np.ptp(hands[good_h, 1]))
    if np.isfinite(speed).any():
        k = int(np.nanargmax(speed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            peak_pose = np.nanmean(ch[k : k + 2], axis=0)
        scalars[2] = float(0.5 * (u[k] + u[k + 1]))
        scalars[3], scalars[4] = (vel[k] / speed[k]).tolist() if speed[k] > 0 else (np.nan, np.nan)
    scalars[5] = float(np.mean(np.isfinite(ch).all(axis=1)))
    parts += [peak_pose, np.asarray(scalars, np.float64)]
    return np.concatenate(parts).astype(np.float64)
