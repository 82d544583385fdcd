"""Handedness from the bat side of the backlift (issue 10 item 5).

Synthetic batters built here (a right-hander filmed from the front, from behind, mirrored), and the
real shared clips run through ``batsight run``, with the handedness written down from looking at
their frames (see the table in ``REAL_CLIPS``).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from engine.shots import FLIP_INDEX, HandednessEstimate, backlift_side, infer_handedness, mirror_keypoints
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS
from tests.conftest import shared_file

K = NUM_KEYPOINTS
TORSO = 100.0
W = 640.0


def _batter(hands_right: float, hands_up: float, *, from_behind: bool = False) -> np.ndarray:
    """``[17, 2]`` pixels of a batter whose hands are ``hands_right`` torso lengths to the batter's right.

    The body centre is at x = 320. Seen from the front the batter's left side is on the image's
    right (``left_shoulder`` x > ``right_shoulder`` x) and the batter's right is towards smaller x;
    seen from behind both flip. ``hands_up``: hands' height above the hips, torso lengths.
    """
    side = 1.0 if from_behind else -1.0  # image direction of the batter's right
    kp = np.zeros((K, 2))
    centre_x, shoulder_y, hip_y = 320.0, 200.0, 200.0 + TORSO
    for name, dx, y in (("shoulder", 20, shoulder_y), ("hip", 15, hip_y), ("elbow", 28, 250), ("knee", 18, 360),
                        ("ankle", 20, 420), ("ear", 8, 160), ("eye", 5, 165)):
        kp[KEYPOINT_INDEX[f"right_{name}"]] = (centre_x + side * dx, y)
        kp[KEYPOINT_INDEX[f"left_{name}"]] = (centre_x - side * dx, y)
    kp[KEYPOINT_INDEX["nose"]] = (centre_x, 170)
    hands = (centre_x + side * hands_right * TORSO, hip_y - hands_up * TORSO)
    kp[KEYPOINT_INDEX["left_wrist"]] = (hands[0] - 3, hands[1] - 3)
    kp[KEYPOINT_INDEX["right_wrist"]] = (hands[0] + 3, hands[1] + 3)
    return kp


def _stroke(*, from_behind: bool = False, right_hander: bool = True, fps: float = 30.0):
    """Stance, backlift on the bat side, fast downswing, follow-through high on the other side."""
    bat = 1.0 if right_hander else -1.0
    path = [(0.1 * bat, 0.1)] * 6  # stance: hands low, near the body
    path += [(bat * r, u) for r, u in zip(np.linspace(0.2, 0.5, 6), np.linspace(0.3, 1.0, 6), strict=True)]
    path += [(0.0, 0.2)]  # the downswing: the fastest step
    path += [(-bat * r, u) for r, u in zip(np.linspace(0.4, 0.7, 8), np.linspace(0.6, 1.2, 8), strict=True)]
    kp = np.stack([_batter(r, u, from_behind=from_behind) for r, u in path])
    return kp, np.full((len(path), K), 0.9), np.arange(len(path)) / fps


def test_right_hander_reads_right_from_the_front_and_from_behind():
    for from_behind in (False, True):
        kp, conf, t = _stroke(from_behind=from_behind)
        side = backlift_side(kp, conf, t)
        # the six backlift frames (hands >= 0.3 torso lengths above the hips, before the downswing)
        assert np.flatnonzero(np.isfinite(side)).tolist() == [6, 7, 8, 9, 10, 11]
        np.testing.assert_allclose(side[6:12], np.linspace(0.2, 0.5, 6), atol=1e-9)
        assert infer_handedness(kp, conf, t) == HandednessEstimate("right", 7 / 8, 6, pytest.approx(0.35))


def test_mirror_image_reads_left_with_the_same_confidence():
    kp, conf, t = _stroke()
    mirrored = infer_handedness(mirror_keypoints(kp, W), conf[:, list(FLIP_INDEX)], t)
    assert mirrored == HandednessEstimate("left", 7 / 8, 6, pytest.approx(-0.35))
    lefty, conf, t = _stroke(right_hander=False, from_behind=True)
    assert infer_handedness(lefty, conf, t).handedness == "left"


def test_front_on_right_hander_with_a_better_seen_right_side_is_still_right():
    """The old cue (left minus right keypoint confidence) read such a batter as a left-hander."""
    kp, conf, t = _stroke()
    conf[:, [KEYPOINT_INDEX[n] for n in ("left_ear", "left_elbow", "left_wrist")]] = 0.5
    assert infer_handedness(kp, conf, t).handedness == "right"


def test_no_or_weak_evidence_falls_back_to_right():
    kp, conf, t = _stroke()
    still = np.repeat(kp[:1], len(t), axis=0)  # hands never rise: no backlift frame
    assert infer_handedness(still, conf, t) == HandednessEstimate("right", 0.5, 0, 0.0)
    assert infer_handedness(np.zeros((0, K, 2)), np.zeros((0, K)), np.zeros(0)).n_frames == 0
    # 3 of 5 backlift frames on the left: P(left) = 4/7 < 0.6 -> right, with P(right) = 3/7
    sides = [-0.3, -0.3, -0.3, 0.3, 0.3]
    weak = np.stack([_batter(r, 0.8) for r in sides] + [_batter(0.0, 0.0)])
    tw = np.arange(weak.shape[0]) / 30.0
    est = infer_handedness(weak, np.full((weak.shape[0], K), 0.9), tw)
    assert (est.handedness, est.confidence, est.n_frames) == ("right", pytest.approx(3 / 7), 5)
    assert infer_handedness(weak, np.full((weak.shape[0], K), 0.9), tw, min_confidence=0.55).handedness == "left"


def test_hidden_keypoints_and_bad_shapes():
    kp, conf, t = _stroke()
    conf[:, KEYPOINT_INDEX["left_hip"]] = 0.1  # no hips: no body centre, no evidence
    assert np.isnan(backlift_side(kp, conf, t)).all()
    with pytest.raises(ValueError, match="keypoints_conf"):
        backlift_side(kp, conf[:, :5], t)
    with pytest.raises(ValueError, match="t_s"):
        backlift_side(kp, conf, t[:-1])


def _two_strokes_hands(t: float) -> tuple[float, float]:
    """Hands (towards the batter's right, above the hips) in torso lengths at ``t`` seconds.

    Stroke 1 (0.5-2.1 s): backlift on the right, fast downswing, slow return. Stroke 2
    (2.6-3.4 s): a fast sweep of the hands kept low, so it has no backlift frame of its own.
    """
    if 0.5 <= t < 1.0:
        s = (t - 0.5) / 0.5
        return 0.1 + 0.8 * s, 0.1 + 1.0 * s
    if 1.0 <= t < 1.5:
        s = (t - 1.0) / 0.5
        return 0.9 - 2.0 * s, 1.1 - 1.0 * s
    if 1.5 <= t < 2.1:
        return -1.1 + 1.2 * (t - 1.5) / 0.6, 0.1
    if 2.6 <= t < 3.4:
        return 0.1 - 1.5 * float(np.sin(np.pi * (t - 2.6) / 0.8)), 0.1
    return 0.1, 0.1


def test_analyzer_infers_each_shot_from_its_own_frames():
    """The second shot's evidence starts after the first shot's end, not handedness_window_s before it."""
    from engine.config import AnalyticsConfig, ShotConfig
    from engine.shots import ShotAnalyzer, ShotClassifier

    analyzer = ShotAnalyzer(ShotConfig(), AnalyticsConfig(), 0.3, classifier=ShotClassifier.load())
    conf = np.full(K, 0.9)
    results = []
    for i, t in enumerate(np.arange(0, 4.5, 1 / 30)):
        r = analyzer.update(float(t), i, _batter(*_two_strokes_hands(float(t))), conf, W, 480.0)
        results += [r] if r is not None else []
    results += [r] if (r := analyzer.flush()) is not None else []
    assert len(results) == 2
    first, second = results
    assert first.segment.end_s < 2.6 <= second.segment.end_s
    assert (first.handedness, first.handedness_source) == ("right", "inferred") and first.handedness_confidence > 0.9
    assert (second.handedness, second.handedness_confidence) == ("right", 0.5)  # no backlift of its own

    # the wire: shot/ carries the confidence; a message written before the field existed still decodes
    from engine.errors import WireFormatError
    from engine.messages import Shot, from_json_dict

    data = Shot.from_result("cam1", first).to_json_dict()
    assert from_json_dict(data).handedness_confidence == pytest.approx(first.handedness_confidence)
    old = {k: v for k, v in data.items() if k != "handedness_confidence"}
    assert from_json_dict(old).handedness_confidence is None
    with pytest.raises(WireFormatError, match="missing field handedness_source"):
        from_json_dict({k: v for k, v in data.items() if k != "handedness_source"})


# ------------------------------------------------------------------------------------------------
# real clips: the handedness seen by eye in their frames
# ------------------------------------------------------------------------------------------------

#: Clip -> (handedness seen by eye in frames extracted from it, frames run). A right-hander lifts
#: the bat on the right, i.e. on the image's left when facing the camera; nets_mixed_01's batter
#: lifts it on her left (image right) and her high elbow in the follow-through is her right one.
#: Long clips are cut (re-encoded at test time) to the strokes that the issue names or that matter.
REAL_CLIPS = {
    "pull_01.mp4": ("right", slice(None)),  # broadcast close-up, front-on (11 frames)
    "cover_drive_01.mp4": ("right", slice(None)),  # broadcast close-up, front-on (26 frames)
    "sweep_01_nets.mp4": ("right", slice(None)),  # outdoor net, camera at the front / off side (51 frames)
    "nets_short_ball_01.mp4": ("right", slice(150, None)),  # IPL nets, ~45 degrees off side: the short ball
    "nets_mixed_01.mp4": ("left", slice(0, 90)),  # backyard net, bowler's end: the first two strokes
}
#: Clips also run as their mirror image (the same strokes by a batter of the other hand).
MIRRORED = ("sweep_01_nets.mp4",)


def _write_clip(src: Path, dst: Path, frames: slice, mirror: bool) -> None:
    """Re-encode ``src[frames]`` to ``dst``, flipped left-right when ``mirror``."""
    with av.open(str(src)) as c:
        rate = c.streams.video[0].average_rate or Fraction(25)
        images = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][frames]
    h, w = (images[0].shape[0] // 2) * 2, (images[0].shape[1] // 2) * 2
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(rate).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for a in images:
            a = a[:h, ::-1][:, -w:] if mirror else a[:h, :w]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")))
        out.mux(stream.encode())


def test_real_clips_and_their_mirror_images(tmp_path, cli):
    """Every shot of each clip gets the handedness seen by eye (one ``batsight run`` of all of them)."""
    expected, sources = {}, []
    for name, (hand, frames) in REAL_CLIPS.items():
        src, stem = shared_file(f"clips/cricket/{name}"), Path(name).stem
        runs = [(stem, hand, False)]
        if name in MIRRORED:
            runs.append((f"{stem}_mirror", {"right": "left", "left": "right"}[hand], True))
        for source_id, want, mirror in runs:
            if frames == slice(None) and not mirror:
                sources.append(str(src))
            else:
                _write_clip(src, tmp_path / f"{source_id}.mp4", frames, mirror)
                sources.append(str(tmp_path / f"{source_id}.mp4"))
            expected[source_id] = want
    out = tmp_path / "run.jsonl"
    result = cli("run", *sources, "--no-progress", "--sink", f"jsonl:{out}",
                 "--set", "publisher.endpoint=tcp://127.0.0.1:*")
    assert result.returncode == 0, result.stderr
    shots: dict[str, list[tuple[str, float]]] = {}
    for line in out.read_text().splitlines():
        m = json.loads(line)
        if m["kind"] == "shot":
            shots.setdefault(m["source_id"], []).append((m["handedness"], m["handedness_confidence"]))
    assert set(shots) == set(expected), shots
    for source, found in shots.items():
        assert [h for h, _ in found] == [expected[source]] * len(found), (source, found)
