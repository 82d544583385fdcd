"""Tests of engine.shots and engine.tools.train_shots.

Segmentation, handedness, whole-segment fit, classifier, wire payload, and the cross-validated
score recomputed from the training routine.
"""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise

import numpy as np
import pytest

from engine import wire
from engine.analytics import fit_wrist_trajectory, wrist_offsets
from engine.config import AnalyticsConfig, ShotConfig, load_config
from engine.errors import ConfigError, ModelError
from engine.messages import FRAME_KEYS, Shot
from engine.shots import (
    FLIP_INDEX,
    MEDIAPIPE33_TO_COCO17,
    SHOT_CLASSES,
    ShotAnalyzer,
    ShotClassifier,
    ShotSegment,
    ShotSegmenter,
    feature_names,
    mediapipe33_to_coco17,
    mirror_keypoints,
    mirrored_name,
    shot_features,
)
from engine.types import COCO_KEYPOINT_NAMES, KEYPOINT_INDEX, NUM_KEYPOINTS
from tests.conftest import shared_file

K = NUM_KEYPOINTS
W, H = 640.0, 480.0
TORSO_PX = 120.0
SHOULDER_MID = np.array([320.0, 200.0])

# ------------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------------


def _shot_offset(s: np.ndarray, amplitude: float = 2.0) -> np.ndarray:
    """Hands path of one synthetic stroke, s in [0, 1] -> [n, 2] torso lengths: out and back."""
    return amplitude * np.stack([(1.0 - np.cos(2 * np.pi * s)) / 2.0, -0.5 * np.sin(2 * np.pi * s)], axis=1)


def _stream(fps: float, shots: list[tuple[float, float]], total_s: float, noise: float = 0.02, seed: int = 0):
    """Times and hands offsets (torso lengths) of a stream: rest at (0.3, 0.8) plus strokes.

    ``shots``: ``(start_s, duration_s)`` of each stroke. Returns ``t [n], xy [n, 2]``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(total_s * fps))) / fps
    xy = np.tile([0.3, 0.8], (t.size, 1)).astype(np.float64)
    for t0, d in shots:
        inside = (t >= t0) & (t <= t0 + d)
        xy[inside] += _shot_offset((t[inside] - t0) / d)
    return t, xy + rng.normal(0.0, noise, xy.shape)


def _skeleton(hands: np.ndarray) -> np.ndarray:
    """``[17, 2]`` pixel keypoints of a standing batter whose wrists' midpoint is ``hands``.

    ``hands`` is relative to the shoulders' midpoint in torso lengths (y down).
    """
    sm = SHOULDER_MID
    kp = np.zeros((K, 2))
    kp[KEYPOINT_INDEX["nose"]] = sm + [-8, -40]
    kp[KEYPOINT_INDEX["left_eye"]] = sm + [-2, -48]
    kp[KEYPOINT_INDEX["right_eye"]] = sm + [-14, -48]
    kp[KEYPOINT_INDEX["left_ear"]] = sm + [6, -44]
    kp[KEYPOINT_INDEX["right_ear"]] = sm + [-20, -44]
    kp[KEYPOINT_INDEX["left_shoulder"]] = sm + [22, 0]
    kp[KEYPOINT_INDEX["right_shoulder"]] = sm + [-22, 0]
    hp = sm + np.asarray(hands) * TORSO_PX
    kp[KEYPOINT_INDEX["left_wrist"]] = hp + [6, -4]
    kp[KEYPOINT_INDEX["right_wrist"]] = hp + [-6, 4]
    kp[KEYPOINT_INDEX["left_elbow"]] = (kp[5] + kp[9]) / 2 + [10, 0]
    kp[KEYPOINT_INDEX["right_elbow"]] = (kp[6] + kp[10]) / 2 + [-10, 0]
    kp[KEYPOINT_INDEX["left_hip"]] = sm + [16, TORSO_PX]
    kp[KEYPOINT_INDEX["right_hip"]] = sm + [-16, TORSO_PX]
    kp[KEYPOINT_INDEX["left_knee"]] = sm + [30, TORSO_PX + 60]
    kp[KEYPOINT_INDEX["right_knee"]] = sm + [-25, TORSO_PX + 60]
    kp[KEYPOINT_INDEX["left_ankle"]] = sm + [40, TORSO_PX + 120]
    kp[KEYPOINT_INDEX["right_ankle"]] = sm + [-30, TORSO_PX + 118]
    return kp


def _right_hander_conf() -> np.ndarray:
    """Confidences of a right-hander seen front-on: the back (right) ear, elbow, wrist half hidden."""
    conf = np.full(K, 0.9)
    for name in ("right_ear", "right_elbow", "right_wrist"):
        conf[KEYPOINT_INDEX[name]] = 0.6
    return conf


def _mirror_frame(kp: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same frame filmed in a mirror: x -> W - x, left <-> right labels swapped."""
    return mirror_keypoints(kp, W), conf[list(FLIP_INDEX)]


def _run_analyzer(analyzer: ShotAnalyzer, t, hands, mirror: bool = False, sims=None, mirrored_sims=None):
    results = []
    conf = _right_hander_conf()
    for i, (ti, h) in enumerate(zip(t, hands, strict=True)):
        kp = _skeleton(h)
        c = conf
        if mirror:
            kp, c = _mirror_frame(kp, conf)
        r = analyzer.update(
            float(ti), i, kp, c, W, H, None if sims is None else sims[i],
            None if mirrored_sims is None else mirrored_sims[i],
        )
        if r is not None:
            results.append(r)
    r = analyzer.flush()
    if r is not None:
        results.append(r)
    return results


@pytest.fixture(scope="module")
def classifier() -> ShotClassifier:
    return ShotClassifier.load()


def _analyzer(classifier: ShotClassifier, **overrides) -> ShotAnalyzer:
    return ShotAnalyzer(ShotConfig(**overrides), AnalyticsConfig(), 0.3, classifier=classifier)


# ------------------------------------------------------------------------------------------------
# segmentation
# ------------------------------------------------------------------------------------------------

TRUTH = [(1.0, 1.0), (3.5, 0.8), (6.0, 1.2)]


@pytest.mark.parametrize("fps", [12.5, 30.0, 60.0])
def test_three_shots_separated_by_stillness_give_three_segments(fps):
    t, xy = _stream(fps, TRUTH, 8.5)
    seg = ShotSegmenter(ShotConfig())
    found = [s for ti, (x, y) in zip(t, xy, strict=True) if (s := seg.update(ti, x, y)) is not None]
    assert seg.flush() is None
    assert len(found) == 3
    cfg = ShotConfig()
    for s, (t0, d) in zip(found, TRUTH, strict=True):
        assert s.end_reason == "quiet"
        # the speed crosses start_speed shortly after the true start, and end_speed shortly before the end
        assert abs(s.motion_start_s - t0) <= 0.2, (s.motion_start_s, t0)
        assert abs(s.motion_end_s - (t0 + d)) <= 0.3, (s.motion_end_s, t0 + d)  # window lag (<= smooth_s + 1 frame)
        assert s.start_s == pytest.approx(max(s.motion_start_s - cfg.pre_roll_s, 0.0), abs=1.01 / fps)
        assert s.end_s == pytest.approx(s.motion_end_s + cfg.post_roll_s, abs=1.01 / fps)
        assert s.t_s[0] == s.start_s and s.t_s[-1] == s.end_s
        assert s.frame_index[0] == s.start_frame == round(s.start_s * fps)
        assert len(s) == s.end_frame - s.start_frame + 1
        np.testing.assert_array_equal(s.dx, xy[s.start_frame : s.end_frame + 1, 0])
    # segments do not overlap and are in order
    assert all(a.end_s < b.start_s for a, b in pairwise(found))


def test_flush_returns_the_shot_in_progress_at_end_of_stream():
    t, xy = _stream(30.0, [(1.0, 1.0)], 1.6)  # ends in the middle of the stroke
    seg = ShotSegmenter(ShotConfig())
    assert all(seg.update(ti, x, y) is None for ti, (x, y) in zip(t, xy, strict=True))
    assert seg.active
    s = seg.flush()
    assert s is not None and s.end_reason == "flush"
    assert s.end_s == pytest.approx(t[-1])
    assert abs(s.motion_start_s - 1.0) <= 0.2
    assert seg.flush() is None  # nothing left


def test_timeline_break_finishes_the_shot_and_restarts():
    t, xy = _stream(30.0, [(1.0, 1.0)], 1.6)
    t2, xy2 = _stream(30.0, [(1.0, 1.0)], 3.0, seed=1)
    seg = ShotSegmenter(ShotConfig())
    for ti, (x, y) in zip(t, xy, strict=True):
        assert seg.update(ti + 10.0, x, y) is None
    first = seg.update(t2[0], *xy2[0])  # pts jumps from 11.6 s back to 0 s
    assert first is not None and first.end_reason == "flush" and first.start_s > 10.0
    found = [s for ti, (x, y) in zip(t2[1:], xy2[1:], strict=True) if (s := seg.update(ti, x, y)) is not None]
    assert len(found) == 1 and found[0].start_s < 1.0  # the new timeline, unaffected by the old one


def test_short_blips_are_discarded_and_long_motion_is_cut():
    cfg = ShotConfig()
    t, xy = _stream(30.0, [], 3.0, noise=0.0)
    xy[45] += [3.0, 0.0]  # one-frame keypoint glitch: a single fast sample, shorter than start_hold_s
    seg = ShotSegmenter(cfg)
    assert [seg.update(ti, x, y) for ti, (x, y) in zip(t, xy, strict=True)] == [None] * t.size
    assert seg.flush() is None
    xy[60:64] += [0.0, 0.6]  # a 0.13 s twitch, measured as ~0.35 s of motion (the speed window)
    for min_duration_s, n in ((0.05, 1), (0.5, 0)):
        seg = ShotSegmenter(cfg.model_copy(update={"min_duration_s": min_duration_s}))
        assert len([s for ti, (x, y) in zip(t, xy, strict=True) if (s := seg.update(ti, x, y)) is not None]) == n
    # continuous fast circling for 10 s: cut at max_duration_s, then re-armed only after quiet
    t = np.arange(0, 10.0, 1 / 30)
    xy = np.stack([np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)], axis=1)
    seg = ShotSegmenter(cfg)
    found = [s for ti, (x, y) in zip(t, xy, strict=True) if (s := seg.update(ti, x, y)) is not None]
    assert len(found) == 1 and found[0].end_reason == "max_duration"
    assert found[0].motion_end_s - found[0].motion_start_s == pytest.approx(cfg.max_duration_s, abs=0.05)
    assert seg.flush() is None


def test_fast_jitter_that_moves_the_hands_less_than_min_travel_is_not_a_shot():
    """Keypoints jumping back and forth in the stance pass the speed test, not the travel test."""
    cfg = ShotConfig()
    t, xy = _stream(30.0, [], 4.0, noise=0.0)
    jitter = (t >= 1.0) & (t < 2.2)  # a square wave: 6 frames up, 6 down (0.2 s each, = smooth_s)
    xy[jitter, 1] += np.where((np.arange(jitter.sum()) // 6) % 2 == 0, 0.3, -0.3)  # 0.6 torso lengths peak to peak
    travel = np.hypot(*np.ptp(xy, axis=0))
    assert travel == pytest.approx(0.6) and travel < cfg.min_travel

    def segments(config: ShotConfig, path: np.ndarray) -> list:
        seg = ShotSegmenter(config)
        found = [s for ti, (x, y) in zip(t, path, strict=True) if (s := seg.update(ti, x, y)) is not None]
        return found + ([last] if (last := seg.flush()) is not None else [])

    assert segments(cfg, xy) == []
    assert len(segments(cfg.model_copy(update={"min_travel": 0.0}), xy)) == 1  # fast enough to be a motion
    t, stroke = _stream(30.0, [(1.0, 0.6)], 4.0, noise=0.0)  # a stroke: 2 torso lengths out and back
    assert len(segments(cfg, stroke)) == 1


def test_invisible_frames_are_nan_and_long_gaps_end_the_motion():
    t, xy = _stream(30.0, [(1.0, 1.0)], 3.0)
    seg = ShotSegmenter(ShotConfig())
    hidden = (t > 1.3) & (t < 1.4)
    visible = [(ti, None, None) if hid else (ti, x, y) for ti, (x, y), hid in zip(t, xy, hidden, strict=True)]
    out = [s for args in visible if (s := seg.update(*args)) is not None]
    assert len(out) == 1
    s = out[0]
    assert np.isnan(s.dx[(s.t_s > 1.3) & (s.t_s < 1.4)]).all()
    assert np.isfinite(s.dx[~((s.t_s > 1.3) & (s.t_s < 1.4))]).all()
    # hands lost for longer than max_gap_s in mid-stroke: the motion ends at the gap
    seg = ShotSegmenter(ShotConfig())
    gone = t > 1.5
    visible = [(ti, None, None) if g else (ti, x, y) for ti, (x, y), g in zip(t, xy, gone, strict=True)]
    out = [s for args in visible if (s := seg.update(*args)) is not None]
    assert len(out) == 1 and out[0].end_reason == "gap"
    assert out[0].motion_end_s == pytest.approx(1.5) and out[0].end_s <= 1.5 + ShotConfig().post_roll_s


def test_segmenter_rejects_bad_input_and_segment_validates():
    seg = ShotSegmenter(ShotConfig())
    with pytest.raises(ValueError, match="pts_s"):
        seg.update(math.nan, 0.0, 0.0)
    with pytest.raises(ValueError, match="both"):
        seg.update(0.0, 1.0, None)
    with pytest.raises(ValueError, match="finite"):
        seg.update(0.0, math.inf, 0.0)
    empty = ShotSegment.empty()
    assert len(empty) == 0 and empty.t_s.shape == (0,) and empty.frame_index.dtype == np.int64
    z = np.zeros(3)
    with pytest.raises(ValueError, match=r"`dx` must have shape \(3,\), got \(2,\)"):
        ShotSegment(0.0, 1.0, 0, 2, 0.0, 1.0, "quiet", np.array([0.0, 0.5, 1.0]), np.zeros(2), z, np.arange(3))
    with pytest.raises(ValueError, match="frame_index"):
        ShotSegment(0.0, 1.0, 0, 2, 0.0, 1.0, "quiet", np.array([0.0, 0.5, 1.0]), z, z, np.arange(3.0))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["shots.end_speed=3.0"], "end_speed (3.0) must be <= start_speed"),
        (["shots.min_duration_s=5"], "min_duration_s (5.0) must be < max_duration_s"),
        (["shots.handedness=ambi"], "shots.handedness"),
        (["shots.start_speed=0"], "shots.start_speed"),
    ],
)
def test_shot_config_is_validated(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert fragment in str(info.value)


# ------------------------------------------------------------------------------------------------
# handedness and mirroring
# ------------------------------------------------------------------------------------------------


def test_mirror_helpers():
    rng = np.random.default_rng(3)
    kp = rng.uniform(0, W, (5, K, 2))
    np.testing.assert_allclose(mirror_keypoints(mirror_keypoints(kp, W), W), kp)
    m = mirror_keypoints(kp, W)
    lw, rw = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]
    np.testing.assert_allclose(m[:, rw, 0], W - kp[:, lw, 0])
    np.testing.assert_allclose(m[:, rw, 1], kp[:, lw, 1])
    assert all(COCO_KEYPOINT_NAMES[FLIP_INDEX[k]] == mirrored_name(COCO_KEYPOINT_NAMES[k]) for k in range(K))
    assert mirrored_name("left_wrist") == "right_wrist" and mirrored_name("nose") == "nose"
    with pytest.raises(ValueError, match="COCO keypoint name"):
        mirrored_name("left_hand")
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 2\)"):
        mirror_keypoints(np.zeros((3, 2)))


def test_mirrored_left_hander_gives_the_right_handers_features_and_descriptors(classifier):
    t, hands = _stream(30.0, [(1.0, 1.0)], 3.0)
    hands = hands * [-1.0, 1.0]  # a right-hander facing the camera lifts the bat on the image's left
    left_arm_sims, right_arm_sims = np.linspace(0.1, 0.5, t.size), np.linspace(0.9, 0.6, t.size)
    right = _run_analyzer(_analyzer(classifier), t, hands, sims=left_arm_sims, mirrored_sims=right_arm_sims)
    # in the mirror image the arms swap: the front (right) arm's pair is the mirrored pair
    left = _run_analyzer(
        _analyzer(classifier), t, hands, mirror=True, sims=right_arm_sims, mirrored_sims=left_arm_sims
    )
    assert len(right) == len(left) == 1
    r, m = right[0], left[0]
    assert (r.handedness, r.handedness_source) == ("right", "inferred")
    assert (r.wrist, r.shoulder) == ("left_wrist", "left_shoulder")
    assert (m.handedness, m.handedness_source) == ("left", "inferred")
    assert (m.wrist, m.shoulder) == ("right_wrist", "right_shoulder")
    assert m.handedness_confidence == pytest.approx(r.handedness_confidence) and r.handedness_confidence >= 0.8
    assert (m.segment.start_frame, m.segment.end_frame) == (r.segment.start_frame, r.segment.end_frame)
    np.testing.assert_allclose(m.dx, r.dx, atol=1e-12)
    np.testing.assert_allclose(m.dy, r.dy, atol=1e-12)
    span = slice(r.segment.start_frame, r.segment.end_frame + 1)
    np.testing.assert_array_equal(r.pair_similarity, left_arm_sims[span].astype(np.float32))
    np.testing.assert_array_equal(m.pair_similarity, r.pair_similarity)  # the front arm's in both
    for name in ("dx_coef", "dy_coef", "r_coef"):
        np.testing.assert_allclose(getattr(m.fit, name), getattr(r.fit, name), atol=1e-9)
    for name in ("horizontal_span", "vertical_span", "mean_elevation_deg", "peak_r", "peak_r_time_s"):
        assert getattr(m.fit, name) == pytest.approx(getattr(r.fit, name), abs=1e-9)
    assert m.prediction.label == r.prediction.label
    for c in SHOT_CLASSES:
        assert m.prediction.probabilities[c] == pytest.approx(r.prediction.probabilities[c], abs=1e-9)
    # classifier features of the normalised sequences agree too
    kp = np.stack([_skeleton(h) for h in hands[: len(t)]])
    kpm = mirror_keypoints(mirror_keypoints(kp, W), W)
    np.testing.assert_allclose(shot_features(kpm, t), shot_features(kp, t), atol=1e-9)


def test_raw_mirrored_descriptors_negate_dx_and_keep_spans():
    t, hands = _stream(30.0, [(0.0, 1.0)], 1.0, noise=0.01)
    kp = np.stack([_skeleton(h) for h in hands])
    kpm = mirror_keypoints(kp, W)
    off = np.array([wrist_offsets(k, W, H, "left_wrist", "left_shoulder") for k in kp])
    offm = np.array([wrist_offsets(k, W, H, "right_wrist", "right_shoulder") for k in kpm])
    np.testing.assert_allclose(offm[:, 0], -off[:, 0], atol=1e-12)
    a = fit_wrist_trajectory(t, off[:, 0], off[:, 1], 10)
    b = fit_wrist_trajectory(t, offm[:, 0], offm[:, 1], 10)
    np.testing.assert_allclose(b.dx_coef, -a.dx_coef, atol=1e-9)
    np.testing.assert_allclose(b.dy_coef, a.dy_coef, atol=1e-9)
    np.testing.assert_allclose(b.r_coef, a.r_coef, atol=1e-9)
    for name in ("horizontal_span", "vertical_span", "mean_elevation_deg", "peak_r", "peak_r_time_s", "rms_dx"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), abs=1e-9)


def test_configured_handedness_is_used_as_is(classifier):
    t, hands = _stream(30.0, [(1.0, 1.0)], 3.0)
    res = _run_analyzer(_analyzer(classifier, handedness="left"), t, hands)
    assert len(res) == 1
    r = res[0]
    got = (r.handedness, r.handedness_source, r.handedness_confidence, r.wrist)
    assert got == ("left", "config", 1.0, "right_wrist")
    # left-hander analysed in the right-hander's frame: dx is minus the raw right-arm offset
    kp = _skeleton(hands[r.segment.start_frame])
    raw = wrist_offsets(kp, W, H, "right_wrist", "right_shoulder")
    assert r.dx[0] == pytest.approx(-raw[0]) and r.dy[0] == pytest.approx(raw[1])


# ------------------------------------------------------------------------------------------------
# analyzer: fit, series, cuts, message
# ------------------------------------------------------------------------------------------------


def test_whole_segment_fit_equals_fit_wrist_trajectory_on_the_same_points(classifier):
    t, hands = _stream(30.0, TRUTH, 8.5)
    sims = np.linspace(0.2, 0.8, t.size)
    sims[::7] = np.nan
    res = _run_analyzer(
        _analyzer(classifier, handedness="right"), t, hands, sims=[None if np.isnan(s) else s for s in sims]
    )
    assert [r.shot_index for r in res] == [0, 1, 2]
    for r in res:
        seg = r.segment
        np.testing.assert_array_equal(r.t_s, seg.t_s)
        kp = [_skeleton(h) for h in hands[seg.start_frame : seg.end_frame + 1]]
        expect = np.array([wrist_offsets(k, W, H) for k in kp])
        np.testing.assert_allclose(np.stack([r.dx, r.dy], 1), expect, atol=1e-12)
        ref = fit_wrist_trajectory(r.t_s, expect[:, 0], expect[:, 1], 10)
        for f in ("dx_coef", "dy_coef", "r_coef"):
            np.testing.assert_array_equal(getattr(r.fit, f), getattr(ref, f))
        assert (r.fit.n_points, r.fit.degree_xy) == (len(seg), 10)
        descriptors = ("horizontal_span", "vertical_span", "mean_elevation_deg", "peak_r", "peak_r_time_s")
        for f in (*descriptors, "r_vertex_time_s"):
            assert getattr(r.fit, f) == getattr(ref, f)
        np.testing.assert_array_equal(r.pair_similarity, sims[seg.start_frame : seg.end_frame + 1].astype(np.float32))
        # segmentation signal = hands relative to shoulders in torso lengths
        np.testing.assert_allclose(seg.dx, hands[seg.start_frame : seg.end_frame + 1, 0], atol=1e-9)


def test_fit_degree_is_configurable(classifier):
    t, hands = _stream(30.0, [(1.0, 1.0)], 3.0)
    (r,) = _run_analyzer(_analyzer(classifier, fit_degree=4), t, hands)
    assert r.fit.degree_xy == 4 and r.fit.dx_coef.shape == (5,) and r.fit.r_coef.shape == (3,)


def test_camera_cut_ends_the_shot(classifier):
    t, hands = _stream(30.0, [(1.0, 2.0)], 4.0)
    analyzer = _analyzer(classifier)
    conf = _right_hander_conf()
    out = []
    for i, (ti, h) in enumerate(zip(t, hands, strict=True)):
        kp = _skeleton(h)
        if ti >= 2.0:  # cut to another camera: the batter is elsewhere and smaller
            kp = (kp - SHOULDER_MID) * 0.4 + [100.0, 100.0]
        if (r := analyzer.update(ti, i, kp, conf, W, H)) is not None:
            out.append(r)
    assert out and out[0].segment.end_reason == "flush"
    assert out[0].segment.end_s < 2.0 <= out[0].segment.end_s + 1.5 / 30


def test_no_batter_frames_and_bad_input(classifier):
    analyzer = _analyzer(classifier)
    for i in range(60):
        assert analyzer.update(i / 30, i, None, None, W, H) is None
    assert analyzer.flush() is None
    with pytest.raises(ValueError, match=r"\(17, 2\)"):
        analyzer.update(3.0, 90, np.zeros((16, 2)), np.zeros(16), W, H)
    with pytest.raises(ValueError, match="width"):
        analyzer.update(3.0, 90, None, None, 0, H)
    with pytest.raises(ValueError, match="min_keypoint_conf"):
        ShotAnalyzer(ShotConfig(), AnalyticsConfig(), 1.5, classifier=classifier)


def _plain(value) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return not (type(value) is float and not math.isfinite(value))
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return False


def shot_message(result):
    """The ``shot/`` header fields (without the frame keys) and arrays of a shot result."""
    message = Shot.from_result("cam1", result)
    fields = {k: v for k, v in message.header_fields().items() if k not in FRAME_KEYS}
    return fields, message.array_fields()


def test_shot_message_is_plain_and_round_trips_the_wire(classifier):
    t, hands = _stream(30.0, [(1.0, 1.0)], 3.0)
    (r,) = _run_analyzer(_analyzer(classifier), t, hands)
    fields, arrays = shot_message(r)
    expected = {
        "shot_index", "start_frame", "end_frame", "start_s", "end_s", "duration_s", "label", "confidence",
        "probabilities", "handedness", "handedness_source", "handedness_confidence", "wrist", "shoulder", "n_points",
        "degree_xy", "basis",
        "t_start_s", "t_end_s", "rms_dx", "rms_dy", "rms_r", "horizontal_span", "vertical_span",
        "mean_elevation_deg", "peak_r", "peak_r_time_s", "r_vertex_time_s", "classifier_version",
    }
    assert set(fields) == expected
    assert all(_plain(v) for v in fields.values()), {k: type(v) for k, v in fields.items()}
    assert fields["label"] in SHOT_CLASSES and fields["basis"] == "legendre"
    assert fields["classifier_version"] == classifier.version
    assert sum(fields["probabilities"].values()) == pytest.approx(1.0)
    assert fields["duration_s"] == pytest.approx(fields["end_s"] - fields["start_s"])
    assert fields["horizontal_span"] == r.fit.horizontal_span
    n = len(r)
    assert {k: (a.dtype.name, a.shape) for k, a in arrays.items()} == {
        "dx_coef": ("float64", (11,)), "dy_coef": ("float64", (11,)), "r_coef": ("float64", (3,)),
        "t_s": ("float64", (n,)), "dx": ("float64", (n,)), "dy": ("float64", (n,)),
        "pair_similarity": ("float32", (n,)),
    }
    assert np.isnan(arrays["pair_similarity"]).all()
    msg = wire.decode(wire.encode("shot", "cam1", 0, fields, arrays))
    assert msg.header["label"] == fields["label"]
    np.testing.assert_array_equal(msg.arrays["dx_coef"], r.fit.dx_coef)
    typed = wire.decode_message(wire.encode_message(Shot.from_result("cam1", r), 0))
    assert typed.label == fields["label"] and typed.frame_index == r.segment.end_frame


def test_shot_message_without_fit_or_prediction_uses_none(classifier):
    # hands visible (segmentation works) but never the left wrist with enough confidence, and
    # no hips after the first frames: no fit points, no classifier frames
    t, hands = _stream(30.0, [(1.0, 1.0)], 3.0)
    analyzer = _analyzer(classifier)
    out = []
    for i, (ti, h) in enumerate(zip(t, hands, strict=True)):
        conf = np.full(K, 0.9)
        conf[KEYPOINT_INDEX["left_shoulder"]] = 0.9
        if i > 3:
            conf[[KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]]] = 0.1
        if (r := analyzer.update(ti, i, _skeleton(h), conf, W, H)) is not None:
            out.append(r)
    (r,) = out
    # fit exists (wrist + shoulder visible), but the classifier has no frame with hips
    assert r.fit is not None and r.prediction is None
    fields, _ = shot_message(r)
    assert fields["label"] is None and fields["confidence"] is None and fields["probabilities"] is None


# ------------------------------------------------------------------------------------------------
# classifier
# ------------------------------------------------------------------------------------------------


def test_packaged_classifier_loads_and_predicts_probabilities(classifier):
    assert classifier.classes == SHOT_CLASSES
    assert re.fullmatch(r"\d+\.\d+\.\d+", classifier.version)
    assert "packaged" in classifier.source
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (20, classifier.n_features))
    x[0, :5] = np.nan  # missing features are filled
    p = classifier.predict_proba(x)
    assert p.shape == (20, 3) and np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0)
    pred = classifier.predict(x[1], x[2])
    assert pred.label in SHOT_CLASSES and 1 / 3 <= pred.confidence <= 1.0
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    assert pred.confidence == max(pred.probabilities.values())
    # mirror invariance of the keypoint entry point
    t, hands = _stream(30.0, [(0.0, 1.0)], 1.0)
    kp = np.stack([_skeleton(h) for h in hands])
    a = classifier.predict_keypoints(kp, t)
    b = classifier.predict_keypoints(mirror_keypoints(kp, W), t)
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-12)
    with pytest.raises(ValueError, match="features"):
        classifier.predict_proba(np.zeros(3))


def test_packaged_params_file_describes_itself():
    from engine.tools.train_shots import DEFAULT_OUT

    params = json.loads(DEFAULT_OUT.read_text())
    assert DEFAULT_OUT.stat().st_size < 1_500_000
    for key in ("version", "classes", "feature", "model", "calibration", "min_confidence", "training_data", "cv"):
        assert key in params
    chosen = params["cv"]["chosen"]
    assert params["model"]["type"] == chosen
    if chosen == "extra_trees":
        assert params["feature"]["names"] == feature_names()
    assert params["cv"][chosen]["clean"]["pull_vs_cover_mean"] >= 0.75


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"version": "1"}', "invalid: KeyError"),
    ],
)
def test_bad_params_file_raises_model_error_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ModelError) as info:
        ShotClassifier.load(path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_wrong_classes_are_refused(tmp_path):
    from engine.tools.train_shots import DEFAULT_OUT

    params = json.loads(DEFAULT_OUT.read_text())
    with pytest.raises(ModelError, match="missing.json"):
        ShotClassifier.load(tmp_path / "missing.json")
    bad = dict(params, classes=["a", "b", "c"])
    with pytest.raises(ModelError, match="classes must be"):
        ShotClassifier(bad, "x.json")


def test_shot_features_shape_and_missing_torso():
    t, hands = _stream(30.0, [(0.0, 1.0)], 1.0)
    kp = np.stack([_skeleton(h) for h in hands])
    f = shot_features(kp, t)
    assert f.shape == (len(feature_names()),) and np.isfinite(f).all()
    # scale and translation invariant (torso lengths relative to the hips)
    np.testing.assert_allclose(shot_features(kp * 2.5 + 40.0, t), f, atol=1e-9)
    conf = np.full((len(t), K), 0.9)
    conf[:, KEYPOINT_INDEX["left_hip"]] = 0.0
    assert shot_features(kp, t, conf) is None
    conf = np.full((len(t), K), 0.9)
    conf[:, KEYPOINT_INDEX["nose"]] = 0.0
    g = shot_features(kp, t, conf)
    head = np.array(["head." in name for name in feature_names()])
    assert np.isnan(g[head]).all() and np.isfinite(g[~head]).all()


# ------------------------------------------------------------------------------------------------
# real data: MediaPipe mapping and cross-validated score
# ------------------------------------------------------------------------------------------------


def test_mediapipe_to_coco_mapping_matches_sources_md():
    text = shared_file("SOURCES.md").read_text(encoding="utf-8")
    m = re.search(r"MediaPipe indices (.*?\(ankles\))", " ".join(text.split()))
    assert m, "mapping sentence not found in SOURCES.md"
    pairs = re.findall(r"(\d+)(?:/(\d+))? \((\w+)\)", m.group(1))
    expected: dict[str, int] = {}
    for left, right, what in pairs:
        if right:
            base = {"eyes": "eye", "ears": "ear", "shoulders": "shoulder", "elbows": "elbow", "wrists": "wrist",
                    "hips": "hip", "knees": "knee", "ankles": "ankle"}[what]
            expected[f"left_{base}"], expected[f"right_{base}"] = int(left), int(right)
        else:
            expected[what] = int(left)
    assert len(expected) == K
    assert tuple(expected[name] for name in COCO_KEYPOINT_NAMES) == MEDIAPIPE33_TO_COCO17
    raw = np.arange(2 * 99, dtype=np.float64).reshape(2, 99)
    coco = mediapipe33_to_coco17(raw)
    assert coco.shape == (2, K, 2)
    for k, mp in enumerate(MEDIAPIPE33_TO_COCO17):
        assert coco[1, k, 0] == raw[1, 3 * mp] and coco[1, k, 1] == raw[1, 3 * mp + 1]
    with pytest.raises(ValueError, match="99"):
        mediapipe33_to_coco17(np.zeros((3, 98)))


def test_every_shared_cricshot10_sequence_is_loaded_and_featurised():
    """Counts straight from the folder (SOURCES.md naming ``<class>/<class>_NNNN.npy``), not the loader.

    Every sequence gives features (none skipped). The grouped CV itself runs in
    ``python -m engine.tools.train_shots`` (minutes), not here.
    """
    from engine.tools.train_shots import FOLDER_CLASS, load_cricshot10

    root = shared_file("keypoints/cricshot10_mediapipe33")
    per_folder = {d.name: len(list(d.glob(f"{d.name}_[0-9][0-9][0-9][0-9].npy"))) for d in root.iterdir() if d.is_dir()}
    items = load_cricshot10(root)
    assert len(items) == sum(per_folder.values())
    assert {f: sum(1 for it in items if it[0] == f) for f in per_folder} == per_folder
    assert set(FOLDER_CLASS) <= set(per_folder)
    for _, name, _, kp in items:
        f = shot_features(kp)
        assert f is not None and f.shape == (len(feature_names()),), name


def test_min_confidence_publishes_other_with_the_probabilities_kept(classifier):
    """``shots.min_confidence`` above the shot's top probability: ``label`` other, ``probabilities`` as before."""
    t, hands = _stream(30.0, [(1.0, 1.0)], 3.0)
    (free,) = _run_analyzer(_analyzer(classifier, min_confidence=0.0), t, hands)
    base, _ = shot_message(free)
    top = max(base["probabilities"], key=base["probabilities"].get)
    assert base["label"] == top
    (strict,) = _run_analyzer(_analyzer(classifier, min_confidence=1.0), t, hands)
    fields, _ = shot_message(strict)
    assert fields["label"] == "other"
    assert fields["probabilities"] == base["probabilities"]
    assert fields["confidence"] == pytest.approx(base["probabilities"]["other"])
    assert ShotConfig().min_confidence == load_config(None).shots.min_confidence
