"""Tests of engine.types: the one array check and the plugin-contract heatmap type."""

from __future__ import annotations

import numpy as np
import pytest

from engine.types import HEATMAP_SIZE, NUM_KEYPOINTS, KeypointHeatmaps, check_array, shape_text


@pytest.mark.parametrize(
    ("shape", "text"),
    [((4,), "(4,)"), ((None,), "(*,)"), (("N", 17, 2), "(N, 17, 2)"), ((None, None, 3), "(*, *, 3)"), ((), "()")],
)
def test_shape_text_prints_like_numpy(shape, text) -> None:
    assert shape_text(shape) == text


def test_check_array_returns_a_fitting_array_itself() -> None:
    a = np.zeros((3, 17, 2), np.float32)
    assert check_array("keypoints_xy", a, ("N", 17, 2), np.float32) is a
    assert check_array("keypoints_xy", a, (None, np.int64(17), 2)) is a  # numpy sizes, any dtype
    assert check_array("empty", np.zeros((0, 4), np.float32), ("N", 4), np.float32).shape == (0, 4)


@pytest.mark.parametrize(
    ("value", "shape", "dtype", "error", "text"),
    [
        (np.zeros((3, 17, 3), np.float32), ("N", 17, 2), np.float32, ValueError,
         "`x` must have shape (N, 17, 2), got (3, 17, 3)"),
        (np.zeros((5,)), (4,), None, ValueError, "`x` must have shape (4,), got (5,)"),
        (np.zeros((2, 4, 1)), (None, 4), None, ValueError, "`x` must have shape (*, 4), got (2, 4, 1)"),
        (np.zeros((2, 4)), (None, 4), np.float32, ValueError, "`x` must have dtype float32, got float64"),
        ([[1.0, 2.0, 3.0, 4.0]], ("N", 4), None, TypeError, "`x` must be a numpy.ndarray, got list"),
    ],
)
def test_check_array_messages_give_expected_against_actual(value, shape, dtype, error, text) -> None:
    with pytest.raises(error) as info:
        check_array("x", value, shape, dtype)
    assert str(info.value) == text


def test_check_array_convert_converts_then_checks_the_shape() -> None:
    out = check_array("xyxy", [1, 2, 3, 4], (4,), np.float64, convert=True)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.tolist() == [1.0, 2.0, 3.0, 4.0]
    a = np.zeros(4, np.float64)
    assert check_array("xyxy", a, (4,), np.float64, convert=True) is a  # no copy when it fits
    assert check_array("xyxy", np.zeros(4, np.int32), (4,), np.float32, convert=True).dtype == np.float32
    with pytest.raises(ValueError, match=r"^`xyxy` must have shape \(4,\), got \(5,\)$"):
        check_array("xyxy", [0] * 5, (4,), np.float64, convert=True)


def test_heatmaps_type_validates_shapes():
    empty = KeypointHeatmaps.empty()
    assert len(empty) == 0 and empty.heatmaps.shape == (0, NUM_KEYPOINTS, HEATMAP_SIZE, HEATMAP_SIZE)
    with pytest.raises(ValueError, match="`keypoints_score` must have shape"):
        KeypointHeatmaps(
            keypoints_xy=np.zeros((1, 17, 2), np.float32),
            keypoints_score=np.zeros((1, 16), np.float32),
            keypoints_conf=np.zeros((1, 17), np.float32),
            heatmaps=np.zeros((1, 17, 56, 56), np.float32),
            heatmap_xyxy=np.zeros((1, 4), np.float32),
        )


def test_heatmaps_type_checks_every_field() -> None:
    def fields(**overrides: object) -> dict[str, object]:
        base: dict[str, object] = {
            "keypoints_xy": np.zeros((2, 17, 2), np.float32),
            "keypoints_score": np.zeros((2, 17), np.float32),
            "keypoints_conf": np.zeros((2, 17), np.float32),
            "heatmaps": np.zeros((2, 17, 8, 8), np.float32),
            "heatmap_xyxy": np.zeros((2, 4), np.float32),
        }
        return {**base, **overrides}

    ok = KeypointHeatmaps(**fields(similarity=np.zeros((2, 17, 17), np.float32)))  # type: ignore[arg-type]
    assert len(ok) == 2 and ok.heatmaps.shape == (2, 17, 8, 8)
    with pytest.raises(ValueError, match=r"`keypoints_xy` must be a numpy.ndarray of shape \(N, K, 2\)"):
        KeypointHeatmaps(**fields(keypoints_xy=np.zeros((2, 17), np.float32)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`heatmaps` must have shape \(2, 17, 9, 9\), got \(2, 17, 8, 9\)"):
        KeypointHeatmaps(**fields(heatmaps=np.zeros((2, 17, 8, 9), np.float32)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`heatmap_xyxy` must have dtype float32, got float64"):
        KeypointHeatmaps(**fields(heatmap_xyxy=np.zeros((2, 4))))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`similarity` must have shape \(2, 17, 17\)"):
        KeypointHeatmaps(**fields(similarity=np.zeros((2, 17, 16), np.float32)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`keypoints_conf` must be a numpy.ndarray, got list"):
        KeypointHeatmaps(**fields(keypoints_conf=[[0.0] * 17] * 2))  # type: ignore[arg-type]


def test_check_array_binds_named_dimensions_across_calls_with_dims() -> None:
    dims: dict[str, int] = {}
    check_array("xyxy", np.zeros((3, 4), np.float32), ("N", 4), np.float32, dims=dims)
    assert dims == {"N": 3}
    check_array("keypoints_xy", np.zeros((3, 17, 2), np.float32), ("N", "K", 2), np.float32, dims=dims)
    assert dims == {"N": 3, "K": 17}
    with pytest.raises(ValueError) as info:
        check_array("keypoints_xy", np.zeros((3, 16, 2), np.float32), ("N", 17, 2), dims=dims)
    assert str(info.value) == "`keypoints_xy` must have shape (N, 17, 2) = (3, 17, 2), got (3, 16, 2)"
    with pytest.raises(ValueError, match=r"^`conf` must have shape \(N,\) = \(3,\), got \(2,\)$"):
        check_array("conf", np.zeros(2, np.float32), ("N",), dims=dims)
    # Without dims every name matches any size on its own: (S, S) does not require a square.
    assert check_array("maps", np.zeros((2, 3)), ("S", "S")).shape == (2, 3)
    with pytest.raises(ValueError, match=r"^`maps` must have shape \(S, S\) = \(2, 2\), got \(2, 3\)$"):
        check_array("maps", np.zeros((2, 3)), ("S", "S"), dims={})
