"""Camera-cut detection: synthetic cuts and pans, and the cuts in the real broadcast clips."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from engine.scenecut import SceneCutDetector
from tests.conftest import shared_file


def _textured(seed: int, shape=(360, 640)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(shape[0] // 40, shape[1] // 40, 3), dtype=np.uint8)
    return np.kron(base, np.ones((40, 40, 1), np.uint8))  # blocks survive the thumbnail


def test_a_cut_between_two_views_is_found_at_the_first_frame_of_the_new_view():
    a, b = _textured(1), _textured(2)
    rng = np.random.default_rng(0)
    frames = [a] * 8 + [b] * 8
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-6, 7, f.shape), 0, 255).astype(np.uint8) for f in frames]
    detector = SceneCutDetector()
    assert [i for i, f in enumerate(noisy) if detector.update(f)] == [8]


def test_slow_motion_and_lighting_drift_are_not_cuts():
    a = _textured(3, (400, 720))
    detector = SceneCutDetector()
    flags = []
    for i in range(30):  # the view slides 2 px per frame and brightens slowly
        frame = np.clip(a[:360, 2 * i : 2 * i + 640].astype(np.int16) + i // 3, 0, 255).astype(np.uint8)
        flags.append(detector.update(frame))
    assert not any(flags)


def test_a_resolution_change_is_no_crash_and_a_new_aspect_is_a_cut():
    detector = SceneCutDetector()
    a = _textured(6, (720, 1280))
    same_view_smaller = a[::2, ::2].copy()  # same thumbnail size: compared as usual, no cut
    square = np.ascontiguousarray(a[:, :720])  # other aspect: thumbnail 160 x 160, a new scene
    flags = [detector.update(f) for f in (a, a, same_view_smaller, same_view_smaller, square, square)]
    assert flags == [False, False, False, False, True, False]


def test_reset_forgets_the_previous_view_and_bad_input_is_refused():
    detector = SceneCutDetector()
    detector.update(_textured(4))
    detector.reset()
    assert detector.update(_textured(5)) is False  # a new start, not a cut
    with pytest.raises(ValueError, match="uint8"):
        detector.update(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        SceneCutDetector(threshold=0)


def _ground(rng: np.random.Generator, shape=(360, 640)) -> np.ndarray:
    """Mown-grass stripes with noise: the same colours in a close-up and a wide view."""
    stripes = ((np.arange(shape[1]) // 64) % 2).astype(np.int16)[None, :, None] * np.array([0, 12, 6], np.int16)
    base = np.array([40, 120, 60], np.int16) + stripes + rng.integers(-8, 9, (*shape, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _person(image: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    image[y : y + h, x : x + w] = (30, 90, 45)  # darker green kit: little colour change, a new layout
    image[y : y + h // 6, x + w // 3 : x + 2 * w // 3] = (60, 150, 90)  # head


def _close_up_then_wide(n_close: int = 10, n_wide: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(n_close):  # one large batter, swaying a little
        image = _ground(rng)
        _person(image, 230 + i, 20, 180, 330)
        frames.append(image)
    for i in range(n_wide):  # a wide view: six small people
        image = _ground(rng)
        for x, y in ((300 + i, 60), (340, 50), (120, 200), (420, 220), (290, 260), (520, 120)):
            _person(image, x, y, 24, 70)
        frames.append(image)
    return frames


def test_a_cut_from_close_up_to_wide_of_the_same_colours_is_found_by_the_layout_cue():
    frames = _close_up_then_wide()
    colour_only = SceneCutDetector(layout_threshold=0)
    assert not any(colour_only.update(f) for f in frames)  # the colours barely change at the cut
    detector = SceneCutDetector()
    assert [i for i, f in enumerate(frames) if detector.update(f)] == [10]


def test_a_steady_zoom_is_not_a_cut():
    rng = np.random.default_rng(8)
    wide = _ground(rng, (720, 1280))
    for x, y in ((600, 120), (240, 400), (840, 440), (580, 520)):
        _person(wide, x, y, 48, 140)
    detector = SceneCutDetector()
    flags = []
    for i in range(30):  # zoom in on the centre, 4 % per frame (x3 in 30 frames)
        s = 1.04**i
        h, w = int(720 / s), int(1280 / s)
        y0, x0 = (720 - h) // 2, (1280 - w) // 2
        flags.append(detector.update(cv2.resize(wide[y0 : y0 + h, x0 : x0 + w], (640, 360))))
    assert not any(flags)


def _cuts(name: str) -> tuple[list[int], int]:
    detector = SceneCutDetector()
    with av.open(str(shared_file(f"clips/cricket/{name}"))) as container:
        container.streams.video[0].thread_type = "AUTO"
        flags = [detector.update(frame.to_ndarray(format="bgr24")) for frame in container.decode(video=0)]
    return [i for i, cut in enumerate(flags) if cut], len(flags)


# Cuts read by eye from every frame (first frame of the new view). Broadcast close-up <-> wide cuts
# of the same ground (pull_02 30, cover_drive_03 15, flick 19, late_cut 16, straight_drive 16,
# square_cut_02 18, sweep_02 20) change the mean colour by only 13-26 of 27: the layout cue finds
# them. A whip pan after a cut (lofted 23; pull_02 35, 94, 108 following the ball into the crowd)
# replaces the whole picture and is reported too. Every nets clip is listed: none may cut falsely.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pull_01.mp4", [10]),  # close-up of the batter, then the wide view of the ground
        ("pull_02.mp4", [30, 35, 94, 108]),  # zoomed on the batter, then wide; then pans after the ball
        ("cover_drive_01.mp4", []),
        ("bowled_01.mp4", []),  # one continuous zoom from the wide view to the stumps
        ("defence_01.gif", []),  # a continuous zoom
        ("hook_01.gif", [17]),  # close-up, then the boundary (the colour cue alone said 18, a frame late)
        ("cover_drive_03.gif", [15]),
        ("flick_01.gif", [19]),
        ("late_cut_01.gif", [16]),
        ("lofted_01.gif", [19, 23]),
        ("pull_03.gif", [18]),
        ("square_cut_02.gif", [18]),
        ("straight_drive_01.gif", [16]),
        ("sweep_02.gif", [20]),
        ("backfoot_defence_01_nets.mp4", []),
        ("cover_drive_04_nets.mp4", []),  # locked-off nets camera: 272 frames, no cut
        ("cover_drive_05_nets.mp4", [4]),  # a new take from another spot after 4 frames
        ("nets_mixed_01.mp4", []),
        ("nets_short_ball_01.mp4", [265]),  # the screen recording cuts to another net
        ("square_cut_01_nets.mp4", []),
        ("sweep_01_nets.mp4", []),
    ],
)
def test_cuts_in_real_clips(name, expected):
    cuts, n = _cuts(name)
    assert n > max(expected, default=0)
    assert cuts == expected
