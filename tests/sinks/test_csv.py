"""The ``csv`` sink (``sinks.table.CsvSink``): typed messages in, rows read back with the ``csv`` module.

Unit tests feed :mod:`engine.testing` messages (values known by construction); the real-clip test runs
``batsight run`` in-process on a real clip with both ``jsonl`` and ``csv`` sinks and compares every
csv row with the ``pose/``, ``sim/`` and ``fit/`` lines of the jsonl.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SinkError, SinkOptionError
from engine.messages import FitStats, Shot, Similarity, from_json_dict
from engine.testing import make_eos, make_fit, make_health, make_pose
from engine.types import COCO_KEYPOINT_NAMES, NUM_KEYPOINTS
from sinks.base import parse_sink_spec
from sinks.table import CsvSink
from tests.conftest import shared_file
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(120)

PAIRS = ("left_wrist/left_shoulder", "right_wrist/right_shoulder")


def make_sim(source_id: str = "cam1", frame_index: int = 0, fps: float = 30.0) -> Similarity:
    """A ``sim/`` message whose pair values are ``0.1 + frame_index / 100`` and ``0.5``."""
    m = np.eye(NUM_KEYPOINTS, dtype=np.float32)
    return Similarity(
        source_id=source_id, frame_index=frame_index, pts_s=frame_index / fps, capture_time_ns=1, window_s=2.0,
        window_frames=1, pairs={PAIRS[0]: 0.1 + frame_index / 100, PAIRS[1]: 0.5}, heatmap_source="rendered",
        cosine_similarity=m, window_mean=m, cumulative_mean=m,
    )


def make_shot(source_id: str = "cam1", shot_index: int = 0, with_fit: bool = True) -> Shot:
    """A ``shot/`` of frames 3-9 at 30 fps, labelled ``pull`` (p = 0.8)."""
    n = 7
    stats = FitStats(rms_dx=0.01, rms_dy=0.02, rms_r=0.03, horizontal_span=0.2, vertical_span=0.3,
                     mean_elevation_deg=12.5, peak_r=0.4, peak_r_time_s=0.2, r_vertex_time_s=None)
    coef = np.array([0.1, 0.2]) if with_fit else np.zeros(0)
    return Shot(
        source_id=source_id, frame_index=9, pts_s=0.3, capture_time_ns=None, shot_index=shot_index,
        start_frame=3, end_frame=9, start_s=0.1, end_s=0.3, duration_s=0.2,
        label="pull" if with_fit else None, confidence=0.8 if with_fit else None,
        probabilities={"pull": 0.8, "cover_drive": 0.15, "other": 0.05} if with_fit else None,
        handedness="right", handedness_source="inferred", handedness_confidence=0.75, wrist="left_wrist",
        shoulder="left_shoulder", n_points=n, degree_xy=1 if with_fit else None, basis="legendre",
        t_start_s=0.1 if with_fit else None,
        t_end_s=0.3 if with_fit else None, stats=stats if with_fit else None, classifier_version="v1",
        dx_coef=coef, dy_coef=coef.copy(), r_coef=coef.copy(), t_s=np.linspace(0.1, 0.3, n), dx=np.zeros(n),
        dy=np.zeros(n), pair_similarity=np.zeros(n, np.float32),
    )


def frame_messages(frame_index: int, source_id: str = "cam1", batter: bool = True, fit: bool = True) -> list:
    """What the engine publishes for one frame: pose, and with a batter sim and (optionally) fit."""
    out: list = [make_pose(source_id, frame_index, batter_found=batter, seq=frame_index)]
    if batter:
        out.append(make_sim(source_id, frame_index))
        if fit:
            out.append(replace(make_fit(source_id, frame_index), dx=0.01 * frame_index, dy=-0.3))
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def open_sink(tmp_path: Path, **options: object) -> CsvSink:
    sink = CsvSink(str(tmp_path / "out.csv"), **options)  # type: ignore[arg-type]
    sink.open()
    return sink


# --- unit tests ---------------------------------------------------------------------------------


def test_one_row_per_batter_frame_with_keypoints_pairs_and_offsets(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    messages = [m for f in range(4) for m in frame_messages(f, batter=f != 2, fit=f != 0)]
    sink.write_batch(messages + [make_eos("cam1", frames=4), make_health()])
    sink.close()
    with (tmp_path / "out.csv").open(newline="") as f:
        header = next(csv.reader(f))
    expected_header = ["source_id", "frame_index", "pts_s"]
    for name in COCO_KEYPOINT_NAMES:
        expected_header += [f"{name}_x", f"{name}_y", f"{name}_conf"]
    expected_header += ["sim_left_wrist_left_shoulder", "sim_right_wrist_right_shoulder", "dx", "dy", "r"]
    assert header == expected_header
    rows = read_rows(tmp_path / "out.csv")
    assert [(r["source_id"], int(r["frame_index"])) for r in rows] == [("cam1", 0), ("cam1", 1), ("cam1", 3)]
    for row in rows:
        i = int(row["frame_index"])
        assert float(row["pts_s"]) == i / 30.0
        for k, name in enumerate(COCO_KEYPOINT_NAMES):  # make_pose: (150 + i + 5k, 60 + 30k), conf 0.5 + k/40
            assert float(row[f"{name}_x"]) == 150 + i + 5 * k
            assert float(row[f"{name}_y"]) == 60 + 30 * k
            assert np.float32(row[f"{name}_conf"]) == np.float32(0.5 + k / 40)
        assert float(row["sim_left_wrist_left_shoulder"]) == 0.1 + i / 100
        assert float(row["sim_right_wrist_right_shoulder"]) == 0.5
    first, second, fourth = rows
    assert first["dx"] == first["dy"] == first["r"] == ""  # frame 0 has no fit/
    assert float(second["dx"]) == 0.01 and float(second["dy"]) == -0.3
    assert float(second["r"]) == pytest.approx(math.sqrt(0.01**2 + 0.3**2), rel=1e-12)
    assert float(fourth["dx"]) == 0.03
    assert sink.rows == {"frames": 3, "shots": 0}


def test_a_row_is_written_when_a_later_frame_arrives_not_at_the_end(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.write_batch(frame_messages(0))
    assert (tmp_path / "out.csv").read_text() == ""  # frame 0 may still get messages: nothing yet
    sink.write_batch(frame_messages(1)[:1])  # pose of frame 1 completes frame 0
    rows = read_rows(tmp_path / "out.csv")  # flushed at the end of the batch, the sink still open
    assert [r["frame_index"] for r in rows] == ["0"]
    assert rows[0]["dx"] != ""  # frame 0's fit made it into its row
    sink.write_batch(frame_messages(1)[1:] + frame_messages(2, batter=False))
    assert [r["frame_index"] for r in read_rows(tmp_path / "out.csv")] == ["0", "1"]
    sink.write_batch(frame_messages(3))
    sink.close()  # the pending row of frame 3 is written at close
    assert [r["frame_index"] for r in read_rows(tmp_path / "out.csv")] == ["0", "1", "3"]


def test_only_one_pending_row_per_source_is_held(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    for f in range(50):
        sink.write_batch(frame_messages(f))
        assert len(sink._pending) == 1
        assert sink.rows["frames"] == f
    sink.close()
    assert len(read_rows(tmp_path / "out.csv")) == 50


def test_interleaved_sources_get_their_own_rows(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    batch = []
    for f in range(3):
        batch += frame_messages(f, "a") + frame_messages(f, "b", batter=f != 1)
    sink.write_batch(batch + [make_eos("a", frames=3)])
    rows = read_rows(tmp_path / "out.csv")
    assert [(r["source_id"], r["frame_index"]) for r in rows] == [("a", "0"), ("b", "0"), ("a", "1"), ("a", "2")]
    sink.close()
    rows = read_rows(tmp_path / "out.csv")
    assert [(r["source_id"], r["frame_index"]) for r in rows][-1] == ("b", "2")


def test_nan_and_missing_values_are_empty_cells(tmp_path: Path) -> None:
    pose = make_pose(frame_index=0)
    conf = pose.keypoints_conf.copy()
    conf[3] = np.nan
    sim = make_sim(frame_index=0)
    sink = open_sink(tmp_path)
    sink.write_batch([replace(pose, keypoints_conf=conf), replace(sim, pairs={PAIRS[0]: math.nan, PAIRS[1]: 0.5}),
                      replace(make_fit(frame_index=0), dx=None, dy=0.2)])
    sink.close()
    (row,) = read_rows(tmp_path / "out.csv")
    assert row["left_ear_conf"] == "" and row["left_ear_x"] != ""
    assert row["sim_left_wrist_left_shoulder"] == "" and row["sim_right_wrist_right_shoulder"] == "0.5"
    assert row["dx"] == "" and row["dy"] == "0.2" and row["r"] == ""


def test_orphan_sim_and_fit_without_their_pose_write_nothing(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.write_batch([make_sim(frame_index=5), make_fit(frame_index=5), make_eos()])
    sink.close()
    assert read_rows(tmp_path / "out.csv") == []


def test_a_run_without_batter_frames_still_gets_a_header(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.write_batch(frame_messages(0, batter=False) + frame_messages(1, batter=False))
    sink.close()
    text = (tmp_path / "out.csv").read_text()
    assert text.splitlines()[0].startswith("source_id,frame_index,pts_s,nose_x,nose_y,nose_conf,")
    assert text.splitlines()[0].endswith(",dx,dy,r") and len(text.splitlines()) == 1


def test_one_row_per_shot_in_the_shots_file(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.write_batch([make_shot("cam1", 0), make_shot("cam2", 4, with_fit=False)])
    rows = read_rows(tmp_path / "out_shots.csv")  # written and flushed at once
    sink.close()
    assert len(rows) == 2
    first, second = rows
    assert first["shot_index"] == "0" and first["source_id"] == "cam1"
    assert (first["start_frame"], first["end_frame"]) == ("3", "9")
    assert (float(first["start_s"]), float(first["end_s"]), float(first["duration_s"])) == (0.1, 0.3, 0.2)
    assert first["label"] == "pull" and float(first["confidence"]) == 0.8
    assert (float(first["p_pull"]), float(first["p_cover_drive"]), float(first["p_other"])) == (0.8, 0.15, 0.05)
    assert (first["handedness"], first["handedness_source"], first["handedness_confidence"]) == ("right", "inferred",
                                                                                                  "0.75")
    assert (first["wrist"], first["shoulder"], first["n_points"], first["degree_xy"]) == (
        "left_wrist", "left_shoulder", "7", "1")
    assert float(first["mean_elevation_deg"]) == 12.5 and first["r_vertex_time_s"] == ""
    assert first["classifier_version"] == "v1"
    # a shot without a fit or prediction: its cells are empty
    assert second["shot_index"] == "4" and second["label"] == "" and second["p_pull"] == ""
    assert second["degree_xy"] == "" and second["rms_dx"] == "" and second["n_points"] == "7"


def test_the_shots_file_defaults_beside_the_frames_file_and_can_be_named(tmp_path: Path) -> None:
    assert CsvSink(str(tmp_path / "run.csv")).shots_path == tmp_path / "run_shots.csv"
    assert CsvSink(str(tmp_path / "run")).shots_path == tmp_path / "run_shots"
    assert CsvSink(str(tmp_path / "a.csv"), shots_path=str(tmp_path / "b.csv")).shots_path == tmp_path / "b.csv"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"path": "-"}, "not '-'"),
        ({"path": ""}, "must be a file path"),
        ({"path": "x.csv", "shots_path": "x.csv"}, "two files"),
        ({"path": "x.csv", "dpi": "3"}, "unknown option 'dpi'"),
    ],
)
def test_bad_options_are_refused(options: dict, match: str) -> None:
    with pytest.raises(SinkOptionError, match=match):
        CsvSink.from_options(options, name="csv")


@pytest.mark.parametrize("where", ["missing_dir/out.csv", "a_dir"])
def test_an_unwritable_path_is_a_sink_error_at_open(tmp_path: Path, where: str) -> None:
    (tmp_path / "a_dir").mkdir()
    sink = CsvSink(str(tmp_path / where))
    with pytest.raises(SinkError, match="cannot open csv output"):
        sink.open()
    assert sink._frames_file is None and sink._shots_file is None


def test_an_unwritable_shots_path_closes_the_frames_file(tmp_path: Path) -> None:
    sink = CsvSink(str(tmp_path / "out.csv"), shots_path=str(tmp_path / "nowhere" / "shots.csv"))
    with pytest.raises(SinkError, match="nowhere"):
        sink.open()
    assert sink._frames_file is None


def test_write_needs_open_and_close_is_idempotent(tmp_path: Path) -> None:
    sink = CsvSink(str(tmp_path / "out.csv"))
    with pytest.raises(SinkError, match="must be open"):
        sink.write_batch(frame_messages(0))
    sink.open()
    sink.close()
    sink.close()


# --- the sink as the CLI finds it (the ``csv`` entry point in pyproject.toml) -------------------


def test_sink_spec_forms() -> None:
    assert parse_sink_spec("csv:out.csv") == ("csv", {"path": "out.csv"})
    assert parse_sink_spec("csv:path=a.csv,shots_path=b.csv") == ("csv", {"path": "a.csv", "shots_path": "b.csv"})


def _close(a: str, b: float) -> bool:
    """Cell ``a`` equals ``b`` to float32 printing precision (``None`` / NaN: empty cell)."""
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a == ""
    return np.float32(a) == np.float32(b)


def test_real_clip_rows_match_the_jsonl_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = shared_file("clips/cricket/cover_drive_01.mp4")  # 26 frames, batter in all, one shot
    monkeypatch.chdir(tmp_path)
    result = run_cli(["run", str(clip), "--no-progress", "--sink", "jsonl:run.jsonl", "--sink", "csv:run.csv",
                      "--set", "publisher.endpoint=tcp://127.0.0.1:*"], capsys)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    messages = [from_json_dict(line) for line in lines]
    poses = {m.frame_index: m for m in messages if m.kind == "pose" and m.batter_found}
    sims = {m.frame_index: m for m in messages if m.kind == "sim"}
    fits = {m.frame_index: m for m in messages if m.kind == "fit"}
    shots = [m for m in messages if m.kind == "shot"]
    assert len(poses) > 0 and len(sims) == len(poses)

    rows = read_rows(tmp_path / "run.csv")
    assert len(rows) == len(poses)  # one row per batter-frame
    assert [int(r["frame_index"]) for r in rows] == sorted(poses)
    pair_keys = list(next(iter(sims.values())).pairs)
    assert pair_keys and all(f"sim_{p.replace('/', '_')}" in rows[0] for p in pair_keys)
    for row in rows:
        f = int(row["frame_index"])
        pose = poses[f]
        assert row["source_id"] == pose.source_id == "cover_drive_01"
        assert float(row["pts_s"]) == pose.pts_s
        for k, name in enumerate(COCO_KEYPOINT_NAMES):
            assert np.float32(row[f"{name}_x"]) == pose.keypoints_xy[k, 0], (f, name)
            assert np.float32(row[f"{name}_y"]) == pose.keypoints_xy[k, 1], (f, name)
            assert np.float32(row[f"{name}_conf"]) == pose.keypoints_conf[k], (f, name)
        for pair, value in sims[f].pairs.items():
            assert _close(row[f"sim_{pair.replace('/', '_')}"], value), (f, pair)
        fit = fits.get(f)
        dx, dy = (None, None) if fit is None else (fit.dx, fit.dy)
        assert _close(row["dx"], dx) and _close(row["dy"], dy), f
        r = None if dx is None or dy is None else math.hypot(dx, dy)
        assert _close(row["r"], r), f

    shot_rows = read_rows(tmp_path / "run_shots.csv")
    assert len(shot_rows) == len(shots) >= 1
    for row, shot in zip(shot_rows, shots, strict=True):
        assert int(row["shot_index"]) == shot.shot_index
        assert (int(row["start_frame"]), int(row["end_frame"])) == (shot.start_frame, shot.end_frame)
        assert float(row["duration_s"]) == shot.duration_s
        assert row["label"] == (shot.label or "")
        assert _close(row["confidence"], shot.confidence)
        for label, p in (shot.probabilities or {}).items():
            assert _close(row[f"p_{label}"], p)
