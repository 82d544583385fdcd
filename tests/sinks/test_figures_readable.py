"""The report figures are readable: names by screen position, Fig. 6's legend outside, axes held to the data.

Keypoint names are placed by where their points lie on screen, never over each other; Fig. 6 has one
colour per shot and its legend outside the data; a fit that overshoots cannot take the axes over.

Label boxes are measured with matplotlib's renderer in display pixels after the figure is drawn, as
a reader sees them. Real poses: the COCO val2017 ground-truth keypoints in
``../shared/data/real/keypoints/coco17_gt`` (people photographed from the front, so their left side
is on the right of the picture), drawn on their own images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

from engine.analytics import fit_wrist_trajectory
from engine.types import COCO_KEYPOINT_NAMES, KEYPOINT_INDEX, NUM_KEYPOINTS
from sinks.figures import (
    AXIS_MARGIN,
    CLASS_LINESTYLES,
    PairSeries,
    PoseSnapshot,
    WristSegment,
    pair_similarity_figure,
    place_labels,
    save_png,
    wrist_figure,
)
from sinks.figures.canvas import new_figure
from tests.conftest import shared_file

pytestmark = pytest.mark.timeout(120)

W, H = 640, 480


def _segment(**fields: object) -> WristSegment:
    t = np.linspace(0.0, 1.0, 15)
    dx, dy = 0.1 * np.cos(3 * t), -0.1 * np.sin(3 * t)
    return WristSegment.from_fit("cam", t, dx, dy, fit_wrist_trajectory(t, dx, dy), **fields)  # type: ignore[arg-type]


def _front_on_pose() -> np.ndarray:
    """A batter facing the camera (pixels): his left side on the right of the screen."""
    kp = {
        "nose": (320, 100), "left_eye": (330, 92), "right_eye": (310, 92), "left_ear": (342, 98),
        "right_ear": (298, 98), "left_shoulder": (370, 150), "right_shoulder": (270, 150),
        "left_elbow": (395, 215), "right_elbow": (245, 215), "left_wrist": (405, 275), "right_wrist": (235, 275),
        "left_hip": (350, 280), "right_hip": (290, 280), "left_knee": (355, 360), "right_knee": (285, 360),
        "left_ankle": (360, 440), "right_ankle": (280, 440),
    }
    return np.array([kp[name] for name in COCO_KEYPOINT_NAMES], np.float64)


def _labels(fig: Figure, ax_index: int = 0) -> dict[str, tuple[Annotation, Bbox]]:
    """Keypoint-name annotations of a drawn figure with their text boxes (display pixels)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    # Text's own extent: the text only (Annotation's adds its leader line)
    return {t.get_text(): (t, Text.get_window_extent(t, renderer)) for t in fig.axes[ax_index].texts
            if isinstance(t, Annotation) and t.get_gid() == f"label:{t.get_text()}"}


def _check_labels(fig: Figure, keypoints_xy: np.ndarray, visible: np.ndarray) -> dict[str, tuple[np.ndarray, Bbox]]:
    """Assert every visible point is labelled, boxes disjoint, none over a point, each nearest its own.

    A label nearer another point than its own must have a leader line to its own point.

    Returns name -> (the point in display pixels, its label's box).
    """
    labels = _labels(fig)
    ax = fig.axes[0]
    names = [COCO_KEYPOINT_NAMES[i] for i in np.flatnonzero(visible)]
    assert sorted(labels) == sorted(names)
    points = {name: ax.transData.transform(keypoints_xy[KEYPOINT_INDEX[name]]) for name in names}
    boxes = {name: box for name, (_, box) in labels.items()}
    for a in names:
        for b in names:
            if a < b:
                assert not boxes[a].overlaps(boxes[b]), f"labels {a} and {b} overlap"
        for b, p in points.items():
            assert not boxes[a].contains(*p), f"label {a} covers keypoint {b}"
        own = _distance(boxes[a], points[a])
        nearest_other = min((_distance(boxes[a], p) for b, p in points.items() if b != a), default=math.inf)
        np.testing.assert_allclose(labels[a][0].xy, keypoints_xy[KEYPOINT_INDEX[a]])
        if own >= nearest_other:  # then a leader line must lead from the label to its own point
            (leader,) = [t for t in ax.texts if t.get_gid() == f"leader:{a}"]
            assert isinstance(leader, Annotation) and leader.arrow_patch is not None
            np.testing.assert_allclose(leader.xy, keypoints_xy[KEYPOINT_INDEX[a]])
            start = points[a] + np.asarray(leader.xyann) * fig.dpi / 72.0
            assert _distance(boxes[a], start) < 3.0, f"label {a}'s leader line does not start at the label"
    return {name: (points[name], boxes[name]) for name in names}


def _distance(box: Bbox, point: np.ndarray) -> float:
    dx = max(box.x0 - point[0], 0.0, point[0] - box.x1)
    dy = max(box.y0 - point[1], 0.0, point[1] - box.y1)
    return math.hypot(dx, dy)


# --- keypoint names -------------------------------------------------------------------------------


def test_front_on_labels_sit_on_their_points_screen_side_without_overlaps() -> None:
    kp = _front_on_pose()
    pose = PoseSnapshot(10, 0.3, W, H, kp, np.full(NUM_KEYPOINTS, 0.9), np.array([220, 60, 420, 460.0]))
    fig = wrist_figure(_segment(), pose, zoom_to_batter=True)
    placed = _check_labels(fig, kp, np.ones(NUM_KEYPOINTS, bool))
    # front-on: left_shoulder is on the right of the screen, so its name is to the right of it
    # (in the old layout, "left_*" names went left of their points, beside the right shoulder)
    for side in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        # clearly beside the arms and hips; knees and ankles lie below the centroid: their names go
        # below them, still leaning to their side
        lean = 0.25 if side in ("shoulder", "elbow", "wrist", "hip") else 0.0
        point, box = placed[f"left_{side}"]
        assert (box.x0 + box.x1) / 2 > point[0] + lean * box.width, f"left_{side}'s label is not right of its point"
        point, box = placed[f"right_{side}"]
        assert (box.x0 + box.x1) / 2 < point[0] - lean * box.width, f"right_{side}'s label is not left of its point"
    for name in ("left_eye", "right_eye"):  # the top of the figure: their names above them (display y up)
        point, box = placed[name]
        assert box.y0 > point[1], f"{name}'s label is not above its point"


def test_labels_hold_when_saved_at_another_dpi(tmp_path: Path) -> None:
    """Offsets are in points and labels stay out of the layout: a PNG at another dpi has the same geometry."""
    kp = _front_on_pose()
    pose = PoseSnapshot(10, 0.3, W, H, kp, np.full(NUM_KEYPOINTS, 0.9))
    fig = wrist_figure(_segment(), pose)
    save_png(fig, tmp_path / "f.png", dpi=60)
    fig.set_dpi(60)
    _check_labels(fig, kp, np.ones(NUM_KEYPOINTS, bool))


def _coco_people(min_visible: int = 12) -> list[tuple[Path, np.ndarray, np.ndarray, tuple[int, int]]]:
    root = shared_file("keypoints/coco17_gt")
    data = json.loads((root / "test_coco.json").read_text())
    images = {image["id"]: image for image in data["images"]}
    people = []
    for annotation in data["annotations"]:
        k = np.asarray(annotation["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
        if (k[:, 2] > 0).sum() >= min_visible:
            image = images[annotation["image_id"]]
            people.append((root / image["file_name"], k[:, :2], k[:, 2] > 0, (image["width"], image["height"])))
    return people


def test_real_people_labels_never_overlap_and_each_is_nearest_its_point() -> None:
    people = _coco_people()
    assert len(people) >= 10  # 12 people with >= 12 labelled keypoints in the file
    for path, kp, visible, (width, height) in people[::2]:  # 6 of them keep the test short
        image = imread(path)
        pose = PoseSnapshot(0, 0.0, width, height, kp, visible.astype(np.float64))
        fig = wrist_figure(_segment(), pose, image[..., :3], min_keypoint_conf=0.5)
        _check_labels(fig, kp, visible)


def test_place_labels_on_a_crowded_cluster_keeps_boxes_apart() -> None:
    fig = new_figure(4.0, 4.0)
    ax = fig.add_subplot()
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    rng = np.random.default_rng(3)
    xy = 50 + rng.normal(0, 6, (12, 2))
    ax.scatter(xy[:, 0], xy[:, 1])
    annotations = place_labels(ax, xy, [f"point_{i}" for i in range(12)])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [Text.get_window_extent(a, renderer) for a in annotations]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
        data_area = ax.get_window_extent(renderer)
        assert data_area.contains(a.x0, a.y0) and data_area.contains(a.x1, a.y1)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        place_labels(ax, np.zeros((3, 2)), ["a", "b"])


# --- Fig. 6 ---------------------------------------------------------------------------------------


def test_pair_similarity_has_one_colour_per_shot_class_line_styles_and_the_legend_outside() -> None:
    t = np.linspace(0, 1, 30)
    labels = ["pull", "cover_drive", "pull", "other", None, "cover_drive"]
    series = [PairSeries(f"s{i}: {label}", label, t, 0.5 + 0.4 * np.sin(3 * t + i)) for i, label in enumerate(labels)]
    fig = pair_similarity_figure(series)
    (ax,) = fig.axes
    colours = [line.get_color() for line in ax.lines]
    assert len(set(colours)) == len(series)  # two pulls, two cover drives: still all different
    assert [line.get_linestyle() for line in ax.lines] == [
        {"-": "-", "--": "--", ":": ":", "-.": "-."}[CLASS_LINESTYLES[label]] for label in labels
    ]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend_box = ax.get_legend().get_window_extent(renderer)
    data_box = ax.get_window_extent(renderer)  # the axes patch: the data area
    assert not legend_box.overlaps(data_box)
    assert legend_box.x0 > data_box.x1  # to the right of the data
    figure_box = fig.bbox
    assert figure_box.x0 <= legend_box.x0 and legend_box.x1 <= figure_box.x1 + 0.5  # and inside the figure
    title = fig.axes[0].get_title() or (fig._suptitle.get_text() if fig._suptitle else "")
    assert "left_wrist vs left_shoulder" in title


# --- axes held to the data ------------------------------------------------------------------------


def test_a_fit_that_overshoots_does_not_take_the_axes_over() -> None:
    t = np.linspace(0.0, 1.0, 12)
    dx, dy = np.linspace(-0.1, 0.1, 12), np.linspace(0.05, -0.05, 12)
    wild = np.zeros(11)
    wild[10] = 5.0  # a degree-10 term: |value| up to 5 frame widths, 50x the data
    segment = WristSegment(source_id="cam", t_s=t, dx=dx, dy=dy, dx_coef=wild, dy_coef=-wild,
                           r_coef=np.array([0.1, 0.0, 3.0]), t_start_s=0.0, t_end_s=1.0)
    fit_x = segment.dx_poly()(np.linspace(0, 1, 400))
    assert np.abs(fit_x).max() > 10 * np.abs(dx).max()  # the fit does overshoot
    fig = wrist_figure(segment, None, frame_size=(W, H))
    _, centre, right = fig.axes[:3]
    for limits, values in ((centre.get_xlim(), np.r_[dx, 0.0]), (centre.get_ylim(), np.r_[dy, 0.0])):
        lo, hi = min(values), max(values)
        span = hi - lo
        assert min(limits) >= lo - AXIS_MARGIN * span - 1e-12 and max(limits) <= hi + AXIS_MARGIN * span + 1e-12
        assert min(limits) <= lo and max(limits) >= hi  # every observed point stays in view
    assert centre.yaxis_inverted()
    r = np.hypot(dx, dy)
    r_lo, r_hi = right.get_ylim()
    assert r_lo >= r.min() - AXIS_MARGIN * np.ptp(r) - 1e-12 and r_hi <= r.max() + AXIS_MARGIN * np.ptp(r) + 1e-12
    assert r_lo <= r.min() and r_hi >= r.max()
    assert right.lines[0].get_ydata().max() > 2 * r_hi  # the r fit overshoots too, and is clipped by the axes
    assert right.lines[0].get_clip_on() and centre.lines[0].get_clip_on()
