"""Shots follow the batter's track only (issue 10 item 7): switches, late-found batters, unconfirmed people.

Synthetic people at known places: each has a tracker id, a stance (hands still in front of the body)
and hand motions at known times. A scripted "selector" says which of them is the batter on each frame;
the expected shots follow from the scripts, not from the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from engine.config import AnalyticsConfig, ShotConfig
from engine.shots import ShotAnalyzer, ShotClassifier, ShotResult
from engine.types import KEYPOINT_INDEX, NUM_KEYPOINTS

FPS = 30.0
W, H = 1280.0, 720.0
TORSO_PX = 100.0
PRE_ROLL_S = ShotConfig().pre_roll_s


@dataclass
class Person:
    """One synthetic person: shoulders' midpoint in pixels, hand motions ``(start_s, duration_s)``."""

    track_id: int
    shoulders_px: tuple[float, float]
    motions: list[tuple[float, float]] = field(default_factory=list)

    def hands(self, t: float) -> np.ndarray:
        """Hands' midpoint relative to the shoulders, torso lengths: rest, or out and back in a motion."""
        xy = np.array([0.3, 0.8])
        for t0, d in self.motions:
            if t0 <= t <= t0 + d:
                s = (t - t0) / d
                xy = xy + 2.0 * np.array([(1.0 - np.cos(2 * np.pi * s)) / 2.0, -0.5 * np.sin(2 * np.pi * s)])
        return xy

    def keypoints(self, t: float) -> np.ndarray:
        """``[17, 2]`` pixels: shoulders, hips one torso below, wrists at :meth:`hands`, the rest near them."""
        sm = np.asarray(self.shoulders_px)
        kp = np.tile(sm, (NUM_KEYPOINTS, 1)) + [0.0, -40.0]  # head points
        kp[KEYPOINT_INDEX["left_shoulder"]] = sm + [22, 0]
        kp[KEYPOINT_INDEX["right_shoulder"]] = sm + [-22, 0]
        hp = sm + self.hands(t) * TORSO_PX
        kp[KEYPOINT_INDEX["left_wrist"]] = hp + [6, -4]
        kp[KEYPOINT_INDEX["right_wrist"]] = hp + [-6, 4]
        kp[KEYPOINT_INDEX["left_elbow"]] = (kp[5] + kp[9]) / 2
        kp[KEYPOINT_INDEX["right_elbow"]] = (kp[6] + kp[10]) / 2
        for name, dx, dy in (("hip", 16, 1.0), ("knee", 25, 1.6), ("ankle", 30, 2.2)):
            kp[KEYPOINT_INDEX[f"left_{name}"]] = sm + [dx, dy * TORSO_PX]
            kp[KEYPOINT_INDEX[f"right_{name}"]] = sm + [-dx, dy * TORSO_PX]
        return kp


@pytest.fixture(scope="module")
def classifier() -> ShotClassifier:
    return ShotClassifier.load()


def _run(classifier, people: list[Person], batter_at, total_s: float, *, with_tracks: bool = True) -> list[ShotResult]:
    """Feed every frame: the batter (``batter_at(t)`` -> ``(Person, track_id)`` or ``None``), then everyone.

    ``with_tracks=False`` is the analyzer without track information (as before issue 10).
    """
    analyzer = ShotAnalyzer(ShotConfig(), AnalyticsConfig(), 0.3, classifier=classifier)
    conf = np.full(NUM_KEYPOINTS, 0.9)
    out = []
    for i in range(int(round(total_s * FPS))):
        t = i / FPS
        chosen = batter_at(t)
        kp = None if chosen is None else chosen[0].keypoints(t)
        tid = None if chosen is None or not with_tracks else chosen[1]
        r = analyzer.update(t, i, kp, None if kp is None else conf, W, H, track_id=tid)
        if r is not None:
            out.append(r)
        if with_tracks:
            ids = np.array([p.track_id for p in people], np.int64)
            analyzer.observe(t, i, ids, np.stack([p.keypoints(t) for p in people]),
                             np.full((len(people), NUM_KEYPOINTS), 0.9), W, H)
    while (r := analyzer.flush()) is not None:
        out.append(r)
    return out


def test_a_switch_mid_motion_does_not_publish_the_other_persons_motion(classifier):
    """The umpire's arms move 0.8-1.8 s; the selector leaves him at 1.3 s for the batter, who plays at 3.0 s."""
    umpire = Person(1, (300.0, 300.0), [(0.8, 1.0)])
    batter = Person(2, (900.0, 300.0), [(3.0, 0.8)])

    def batter_at(t):
        return (umpire, 1) if t < 1.3 else (batter, 2)

    shots = _run(classifier, [umpire, batter], batter_at, 5.0)
    assert len(shots) == 1
    (shot,) = shots
    assert abs(shot.segment.motion_start_s - 3.0) <= 0.2
    assert shot.segment.start_s > 1.8  # nothing of the umpire's motion
    # without track information the umpire's motion, cut at the switch, is published as a shot
    before = _run(classifier, [umpire, batter], batter_at, 5.0, with_tracks=False)
    assert any(s.segment.start_s < 1.3 for s in before)


def test_a_batter_found_late_gets_the_whole_stroke(classifier):
    """The batter's stroke is 1.0-1.8 s; the selector finds him only at 1.4 s, mid-stroke."""
    non_striker = Person(1, (300.0, 300.0))
    batter = Person(2, (900.0, 300.0), [(1.0, 0.8)])

    def batter_at(t):
        return (non_striker, 1) if t < 1.4 else (batter, 2)

    (shot,) = _run(classifier, [non_striker, batter], batter_at, 3.5)
    seg = shot.segment
    assert abs(seg.motion_start_s - 1.0) <= 0.2
    assert seg.start_s == pytest.approx(seg.motion_start_s - PRE_ROLL_S, abs=1.01 / FPS)
    assert seg.start_frame < 1.0 * FPS  # the stance before the stroke is in, well before the switch (frame 42)
    # the frames before the switch are the batter's own: his hands, not the non-striker's
    before_switch = seg.t_s < 1.4
    expected = np.array([batter.hands(t) for t in seg.t_s[before_switch]])
    np.testing.assert_allclose(np.c_[seg.dx[before_switch], seg.dy[before_switch]], expected, atol=1e-9)
    assert np.isfinite(shot.dx[before_switch]).all()  # the fit uses them too
    # without track information the shot starts at the switch
    (old,) = _run(classifier, [non_striker, batter], batter_at, 3.5, with_tracks=False)
    assert old.segment.start_s >= 1.4 - 1e-9


def test_an_unconfirmed_person_never_starts_a_shot(classifier):
    """After 2 s the camera follows the ball: the only person is a running fielder without a confirmed track."""
    batter = Person(2, (900.0, 300.0))
    fielder = Person(-1, (200.0, 400.0), [(2.2, 0.6), (2.9, 0.6)])

    def batter_at(t):
        return (batter, 2) if t < 2.0 else (fielder, -1)

    assert _run(classifier, [batter, fielder], batter_at, 4.5) == []
    assert len(_run(classifier, [batter, fielder], batter_at, 4.5, with_tracks=False)) >= 1


def test_switching_back_does_not_publish_a_shot_twice(classifier):
    """Batter 1 plays at 0.5 s (published); the selector flickers to 2 and back: still one shot."""
    one = Person(1, (300.0, 300.0), [(0.5, 0.8)])
    two = Person(2, (900.0, 300.0))

    def batter_at(t):
        return (two, 2) if 2.5 <= t < 3.0 else (one, 1)

    shots = _run(classifier, [one, two], batter_at, 4.5)
    assert len(shots) == 1
    assert abs(shots[0].segment.motion_start_s - 0.5) <= 0.2


def test_a_replay_that_finishes_several_shots_returns_them_all_in_order(classifier):
    """Batter 2 played twice while the selector watched 1; both come out, one per call, then flush ends."""
    one = Person(1, (300.0, 300.0))
    two = Person(2, (900.0, 300.0), [(0.5, 0.6), (1.8, 0.6)])

    def batter_at(t):
        return (one, 1) if t < 3.2 else (two, 2)

    shots = _run(classifier, [one, two], batter_at, 4.0)
    assert len(shots) == 2
    assert [abs(s.segment.motion_start_s - t0) <= 0.2 for s, t0 in zip(shots, (0.5, 1.8), strict=True)] == [True, True]
    assert shots[0].segment.end_s < shots[1].segment.start_s
    assert [s.shot_index for s in shots] == [0, 1]


def test_observe_rejects_inconsistent_shapes(classifier):
    analyzer = ShotAnalyzer(ShotConfig(), AnalyticsConfig(), 0.3, classifier=classifier)
    with pytest.raises(ValueError, match="like `track_id`"):
        analyzer.observe(0.0, 0, np.array([1, 2]), np.zeros((1, NUM_KEYPOINTS, 2)), np.zeros((1, NUM_KEYPOINTS)), W, H)
