"""Camera-cut detection: synthetic cuts and pans, and the cuts in the real broadcast clips."""

from __future__ import annotations

import av
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


def _cuts(name: str) -> tuple[list[int], int]:
    detector = SceneCutDetector()
    with av.open(str(shared_file(f"clips/cricket/{name}"))) as container:
        flags = [detector.update(frame.to_ndarray(format="bgr24")) for frame in container.decode(video=0)]
    return [i for i, cut in enumerate(flags) if cut], len(flags)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pull_01.mp4", [10]),  # close-up of the batter, then the wide view of the ground
        ("hook_01.gif", [18]),  # replay cut
        ("cover_drive_04_nets.mp4", []),  # locked-off nets camera: 272 frames, no cut
        ("nets_mixed_01.mp4", []),
    ],
)
def test_cuts_in_real_clips(name, expected):
    cuts, n = _cuts(name)
    assert n > max(expected, default=0)
    assert cuts == expected
