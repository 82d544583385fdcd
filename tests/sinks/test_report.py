"""The ``report`` sink and its figures, on a small synthetic message stream (no model, no footage)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.image import AxesImage, imread
from numpy.polynomial import Legendre

from engine.analytics import fit_wrist_trajectory
from engine.errors import SinkError, WireFormatError
from engine.messages import AnyMessage as Message
from engine.messages import FitStats, from_json_dict, from_parts
from engine.types import COCO_KEYPOINT_NAMES, KEYPOINT_INDEX, NUM_KEYPOINTS
from engine.wire import decode, encode
from sinks.figures import (
    CLASS_COLOURS,
    SHOT_COLOURS,
    PairSeries,
    PoseSnapshot,
    WristSegment,
    dependency_matrix_figure,
    pair_similarity_figure,
    save_png,
    wrist_figure,
)
from sinks.jsonl import JsonlSink
from sinks.report import ReportCollector, ReportSink, parse_assignments, read_video_frames, report_from_jsonl

pytestmark = pytest.mark.timeout(60)

W, H, FPS = 320, 240, 30.0
DPI = 40  # small PNGs keep the tests fast; sizes scale with it
WRIST, SHOULDER = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["left_shoulder"]
# (start_frame, end_frame, label, confidence, with pair_similarity array)
SHOTS = ((2, 13, "pull", 0.91, True), (15, 28, "cover_drive", 0.77, False))


# --- synthetic stream -------------------------------------------------------------------------


def _matrix(scale: float = 1.0) -> np.ndarray:
    i = np.arange(NUM_KEYPOINTS)
    m = np.exp(-np.abs(i[:, None] - i[None, :]) / 4.0) * scale
    np.fill_diagonal(m, 1.0)
    return m.astype(np.float32)


def _keypoints(frame: int) -> np.ndarray:
    """A standing batter whose left wrist circles the left shoulder (pixels)."""
    kp = np.zeros((NUM_KEYPOINTS, 2), np.float32)
    kp[:, 0] = 160 + 12 * np.sin(np.arange(NUM_KEYPOINTS))
    kp[:, 1] = np.linspace(40, 220, NUM_KEYPOINTS)
    kp[SHOULDER] = (150, 90)
    angle = 2 * math.pi * frame / 30.0
    kp[WRIST] = (150 + 50 * math.cos(angle), 90 + 40 * math.sin(angle))
    return kp


def _offsets(frames: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.array([(f + 1) / FPS for f in frames])
    kp = np.stack([_keypoints(f) for f in frames]).astype(np.float64)
    return t, (kp[:, WRIST, 0] - kp[:, SHOULDER, 0]) / W, (kp[:, WRIST, 1] - kp[:, SHOULDER, 1]) / H


def _roundtrip(kind: str, source_id: str, seq: int, fields: dict, arrays: dict | None = None) -> Message:
    raw = decode(encode(kind, source_id, seq, fields, arrays or {}, publish_time_ns=1))
    return from_parts(raw.header, raw.arrays)


def _stats_fields(fit: object) -> dict:
    return {name: getattr(fit, name) for name in FitStats.__dataclass_fields__}


def make_stream(source_id: str = "nets", n_frames: int = 30, shots: bool = True) -> list[Message]:
    """pose/ + sim/ + fit/ per frame, shot/ after each shot's last frame, eos/ at the end."""
    out: list[Message] = []
    counters = {"pose": 0, "sim": 0, "fit": 0, "shot": 0}

    def add(kind: str, fields: dict, arrays: dict | None = None) -> None:
        out.append(_roundtrip(kind, source_id, counters[kind], fields, arrays))
        counters[kind] += 1

    for f in range(n_frames):
        frame = {"frame_index": f, "pts_s": (f + 1) / FPS, "capture_time_ns": f}
        kp = _keypoints(f)
        box = np.array([100, 30, 220, 230], np.float32)
        add("pose", {**frame, "frame_width": W, "frame_height": H, "n_persons": 1, "batter_found": True,
                     "track_id": 1, "heatmap_source": "rendered", "inference_ms": 1.0, "raw_pts_s": frame["pts_s"],
                     "timeline_break": False, "scene_cut": False},
            {"persons_xyxy": box[None], "persons_track_id": np.array([1], np.int64), "xyxy": box, "keypoints_xy": kp,
             "keypoints_conf": np.full(NUM_KEYPOINTS, 0.9, np.float32)})
        add("sim", {**frame, "window_s": 2.0, "window_frames": f + 1, "heatmap_source": "rendered",
                    "pairs": {"left_wrist/left_shoulder": 0.2 + 0.01 * f}},
            {"cosine_similarity": _matrix(), "window_mean": _matrix(), "cumulative_mean": _matrix((f + 1) / n_frames)})
        t, dx, dy = _offsets(range(max(0, f - 5), f + 2))
        fit = fit_wrist_trajectory(t, dx, dy)
        add("fit", {**frame, "window_s": 2.0, "wrist": "left_wrist", "shoulder": "left_shoulder", "basis": "legendre",
                    "dx": float(dx[-1]), "dy": float(dy[-1]), "n_points": fit.n_points, "t_start_s": fit.t_start_s,
                    "t_end_s": fit.t_end_s, "degree_xy": fit.degree_xy, **_stats_fields(fit)},
            {"dx_coef": fit.dx_coef, "dy_coef": fit.dy_coef, "r_coef": fit.r_coef})
        for k, (start, end, label, conf, with_pair) in enumerate(SHOTS if shots else ()):
            if f != end:
                continue
            t, dx, dy = _offsets(range(start, end + 1))
            fit = fit_wrist_trajectory(t, dx, dy)
            arrays = {"dx_coef": fit.dx_coef, "dy_coef": fit.dy_coef, "r_coef": fit.r_coef}
            arrays |= {"t_s": t, "dx": dx, "dy": dy}
            # a shot without any pair value (no batter heatmaps) carries NaN throughout
            pair = np.linspace(0.1, 0.6, t.size) if with_pair else np.full(t.size, np.nan)
            arrays["pair_similarity"] = pair.astype(np.float32)
            add("shot", {"frame_index": end, "pts_s": t[-1], "shot_index": k, "start_frame": start, "end_frame": end,
                         "start_s": t[0], "end_s": t[-1], "duration_s": t[-1] - t[0], "label": label,
                         "confidence": conf, "probabilities": {label: conf}, "handedness": "right",
                         "handedness_source": "config", "handedness_confidence": 1.0,
                         "wrist": "left_wrist", "shoulder": "left_shoulder",
                         "n_points": t.size, "degree_xy": fit.degree_xy, "basis": "legendre",
                         "t_start_s": fit.t_start_s, "t_end_s": fit.t_end_s, **_stats_fields(fit),
                         "classifier_version": "test"},
                arrays)
    out.append(_roundtrip("eos", source_id, 0, {"frames": n_frames, "dropped": 0, "corrupt": 0, "error": None,
                                                "reason": "end"}))
    return out


def run_sink(messages: list[Message], out_dir: Path, **options: object) -> ReportSink:
    sink = ReportSink(str(out_dir), dpi=DPI, **options)
    sink.open()
    for i in range(0, len(messages), 7):  # several batches, like the runtime
        sink.write_batch(messages[i : i + 7])
    sink.close()
    return sink


def _segment(label: str | None = "pull", confidence: float | None = 0.91) -> WristSegment:
    t, dx, dy = _offsets(range(2, 20))
    return WristSegment.from_fit("nets", t, dx, dy, fit_wrist_trajectory(t, dx, dy), shot_index=3, label=label,
                                 confidence=confidence, start_frame=2, end_frame=19)


def _pose(frame: int = 10) -> PoseSnapshot:
    return PoseSnapshot(frame, (frame + 1) / FPS, W, H, _keypoints(frame), np.full(NUM_KEYPOINTS, 0.9),
                        np.array([100, 30, 220, 230.0]))


# --- figures ----------------------------------------------------------------------------------


def test_dependency_matrix_figure_shows_names_values_and_source() -> None:
    matrix = _matrix()
    fig = dependency_matrix_figure(matrix, source_id="nets", heatmap_source="rendered", n_frames=42)
    ax, colour_bar = fig.axes[0], fig.axes[1]
    x_names = [t.get_text() for t in ax.get_xticklabels()]
    y_names = [t.get_text() for t in ax.get_yticklabels()]
    assert x_names == y_names == list(COCO_KEYPOINT_NAMES)
    assert "left_wrist" in x_names
    image = ax.get_images()[0]
    np.testing.assert_array_equal(image.get_array(), matrix)
    assert image.get_clim() == (0.0, 1.0)
    assert colour_bar.get_ylabel() == "cosine similarity"
    assert "42 batter frames" in ax.get_title() and "rendered" in ax.get_title() and "nets" in ax.get_title()
    model = dependency_matrix_figure(matrix, source_id="nets", heatmap_source="model", n_frames=1, annotate=False)
    assert "Keypoint R-CNN" in model.axes[0].get_title()
    assert not model.axes[0].texts


def test_dependency_matrix_figure_refuses_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(17, 17\), got \(16, 16\)"):
        dependency_matrix_figure(np.zeros((16, 16)), source_id="s", heatmap_source="rendered", n_frames=1)


def test_wrist_figure_plots_the_legendre_fits_on_dense_times() -> None:
    segment = _segment()
    fig = wrist_figure(segment, _pose(), n_dense=123)
    left, centre, right = fig.axes[:3]
    t_dense = right.lines[0].get_xdata()
    assert t_dense.shape == (123,) and t_dense[0] == segment.t_start_s and t_dense[-1] == segment.t_end_s
    domain = [segment.t_start_s, segment.t_end_s]
    np.testing.assert_allclose(centre.lines[0].get_xdata(), Legendre(segment.dx_coef, domain)(t_dense))
    np.testing.assert_allclose(centre.lines[0].get_ydata(), Legendre(segment.dy_coef, domain)(t_dense))
    np.testing.assert_allclose(right.lines[0].get_ydata(), Legendre(segment.r_coef, domain)(t_dense))
    # Observed points: the segment's (dx, dy) and (t, r).
    np.testing.assert_allclose(centre.collections[0].get_offsets(), np.c_[segment.dx, segment.dy])
    np.testing.assert_allclose(right.collections[0].get_offsets(), np.c_[segment.t_s, np.hypot(segment.dx, segment.dy)])

    assert (left.get_xlabel(), left.get_ylabel()) == ("x (px)", "y (px, down)")
    assert "frame widths" in centre.get_xlabel() and "left_wrist" in centre.get_xlabel()
    assert "inverted" in centre.get_ylabel() and centre.yaxis_inverted()
    assert right.get_xlabel() == "time (s, source PTS)" and "normalised" in right.get_ylabel()
    assert left.yaxis_inverted()  # image convention, y down
    centre_legend = [t.get_text() for t in centre.get_legend().get_texts()]
    assert f"degree-{segment.degree_xy} Legendre fit dx(t), dy(t)" in centre_legend
    assert any(text.startswith("observed (n = 18)") for text in centre_legend)
    assert any("quadratic fit" in t.get_text() for t in right.get_legend().get_texts())
    title = fig._suptitle.get_text()
    assert "nets, shot 3: pull (confidence 0.91)" in title and "frames 2-19" in title
    names = {t.get_text() for t in left.texts}
    assert {"left_wrist", "left_shoulder", "right_ankle"} <= names
    # where each name goes (by screen side, never overlapping): tests/sinks/test_figures_readable.py


def test_wrist_figure_draws_on_the_video_frame_or_a_blank_canvas() -> None:
    segment = _segment(label=None, confidence=None)
    blank = wrist_figure(segment, _pose())
    assert not blank.axes[0].get_images()
    assert "blank canvas" in blank.axes[0].get_title()
    image = np.zeros((H, W, 3), np.uint8)
    drawn = wrist_figure(segment, _pose(), image, zoom_to_batter=False)
    images = drawn.axes[0].get_images()
    assert len(images) == 1 and isinstance(images[0], AxesImage)
    assert drawn.axes[0].get_xlim() == (0.0, W) and drawn.axes[0].get_ylim() == (H, 0.0)
    no_pose = wrist_figure(segment, None, frame_size=(W, H))
    assert any("no batter pose" in t.get_text() for t in no_pose.axes[0].texts)
    with pytest.raises(ValueError, match="shape"):
        wrist_figure(segment, _pose(), np.zeros((H, W), np.uint8))


def test_pair_similarity_figure_colours_lines_by_shot_and_styles_them_by_class() -> None:
    t = np.linspace(0, 1, 20)
    series = [
        PairSeries("a shot 0: pull (p = 0.90)", "pull", t, 0.2 + 0.1 * t),
        PairSeries("b shot 0: cover_drive (p = 0.80)", "cover_drive", t, 0.5 - 0.1 * t),
        PairSeries("c (whole run)", None, t, 0.3 + 0 * t),
        PairSeries("empty", "pull", np.array([]), np.array([])),
    ]
    fig = pair_similarity_figure(series)
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    assert [to_hex(line.get_color()) for line in ax.lines] == list(SHOT_COLOURS[:3])  # one colour per shot
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", "-."]  # pull, cover drive, no label
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [s.name for s in series[:3]]
    assert ax.get_xlabel() == "normalised time in segment (0 = start, 1 = end)"
    assert "cosine similarity" in ax.get_ylabel() and "left_wrist vs left_shoulder" in ax.get_ylabel()
    assert ax.get_xlim() == (0.0, 1.0)
    many = pair_similarity_figure([PairSeries(f"s{i}", "pull" if i % 2 else "cover_drive", t, t) for i in range(20)])
    legend = sorted(t.get_text() for t in many.axes[0].get_legend().get_texts())
    assert legend == ["cover_drive (n = 10)", "pull (n = 10)"]  # too many for a colour each: by class
    assert {to_hex(line.get_color()) for line in many.axes[0].lines} == {CLASS_COLOURS["pull"],
                                                                          CLASS_COLOURS["cover_drive"]}


def test_save_png_writes_a_png_of_the_figure_size(tmp_path: Path) -> None:
    fig = pair_similarity_figure([PairSeries("x", "pull", np.linspace(0, 1, 5), np.ones(5) / 2)])
    path = save_png(fig, tmp_path / "f.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(path).shape[:2] == (round(5.5 * 50), 10 * 50)


# --- the sink ---------------------------------------------------------------------------------


def test_report_sink_writes_one_figure_per_shot(tmp_path: Path) -> None:
    sink = run_sink(make_stream("nets"), tmp_path / "out")
    names = sorted(p.name for p in sink.written)
    assert names == [
        "nets_dependency_matrix.png", "nets_shot0_wrist.png", "nets_shot1_wrist.png", "pair_similarity.png",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    sizes = {p.name: imread(p).shape for p in sink.written}
    assert sizes["nets_dependency_matrix.png"][:2] == (8 * DPI, 9 * DPI)
    assert sizes["nets_shot0_wrist.png"][:2] == (round(5.8 * DPI), 17 * DPI)
    assert all(shape[2] in (3, 4) for shape in sizes.values())


def test_report_without_shots_fits_the_whole_run() -> None:
    collector = ReportCollector()
    for message in make_stream("nets", shots=False):
        collector.update(message)
    state = collector._sources["nets"]
    segment = collector._whole_run("nets", state, "pull")
    t, dx, dy = _offsets(range(30))
    fit = fit_wrist_trajectory(t, dx, dy)
    np.testing.assert_allclose(segment.dx_coef, fit.dx_coef, rtol=1e-6, atol=1e-9)
    assert (segment.label, segment.confidence, segment.start_frame, segment.end_frame) == ("pull", None, 0, 29)
    assert state.sim_frames == 30
    np.testing.assert_array_equal(state.cumulative_mean, _matrix(1.0))  # the last sim/ message's matrix
    (series,) = collector._pair_series(state, "nets", "pull")
    assert series.t_norm[0] == 0.0 and series.t_norm[-1] == 1.0 and series.label == "pull"



def test_shot_pair_similarity_comes_from_the_shot_or_from_sim(tmp_path: Path) -> None:
    collector = ReportCollector()
    for message in make_stream("nets"):
        collector.update(message)
    state = collector._sources["nets"]
    with_array, from_sim = collector._pair_series(state, "nets", None)
    np.testing.assert_allclose(with_array.values, np.linspace(0.1, 0.6, 12).astype(np.float32))
    assert with_array.t_norm[0] == 0.0 and with_array.t_norm[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(from_sim.values, 0.2 + 0.01 * np.arange(15, 29))
    assert (with_array.label, from_sim.label) == ("pull", "cover_drive")
    assert with_array.name == "nets shot 0: pull (p = 0.91)"


def test_report_from_jsonl_gives_the_same_files_as_the_live_sink(tmp_path: Path) -> None:
    messages = make_stream("cd", shots=True) + make_stream("pl", shots=False)
    live = run_sink(messages, tmp_path / "live", labels="pl=pull")
    jsonl = JsonlSink(str(tmp_path / "run.jsonl"))
    jsonl.open()
    jsonl.write_batch(messages)
    jsonl.close()
    offline = report_from_jsonl(
        [str(tmp_path / "run.jsonl")], str(tmp_path / "offline"), labels={"pl": "pull"}, dpi=DPI
    )
    assert sorted(p.name for p in offline) == sorted(p.name for p in live.written)
    assert sorted(p.name for p in live.written) == [
        "cd_dependency_matrix.png", "cd_shot0_wrist.png", "cd_shot1_wrist.png",
        "pair_similarity.png", "pl_dependency_matrix.png", "pl_wrist.png",
    ]
    for name in ("pl_wrist.png", "cd_dependency_matrix.png"):
        assert imread(tmp_path / "live" / name).shape == imread(tmp_path / "offline" / name).shape


def test_report_from_jsonl_keeps_runs_of_the_same_source_apart(tmp_path: Path) -> None:
    collector_paths = []
    for name in ("a.jsonl", "b.jsonl"):
        sink = JsonlSink(str(tmp_path / name))
        sink.open()
        sink.write_batch([m for m in make_stream("cam", n_frames=6, shots=False) if m.kind != "pose"])
        sink.close()
        collector_paths.append(str(tmp_path / name))
    written = report_from_jsonl(collector_paths, str(tmp_path / "out"), dpi=DPI)
    assert sorted(p.name for p in written) == [
        "cam.2_dependency_matrix.png", "cam_dependency_matrix.png", "pair_similarity.png",
    ]


def test_from_json_dict_inverts_to_json_dict() -> None:
    messages = [
        *make_stream("nets", n_frames=16),
        _roundtrip("health", "", 4, {"frame_index": None, "pts_s": None, "capture_time_ns": None,
                                     "engine_state": "running", "uptime_s": 1.5, "model": "M", "device": "cpu",
                                     "sources": {}}),
    ]
    assert {m.kind for m in messages} == {"pose", "sim", "fit", "shot", "eos", "health"}
    for message in messages:
        record = json.loads(json.dumps(message.to_json_dict(), allow_nan=False))
        back = from_json_dict(record)
        assert (back.topic, back.kind, back.source_id, back.seq) == (
            message.topic, message.kind, message.source_id, message.seq
        )
        assert (back.frame_index, back.pts_s) == (message.frame_index, message.pts_s)
        assert back.publish_time_ns == message.publish_time_ns
        assert list(back.array_fields()) == list(message.array_fields())
        for name, array in message.array_fields().items():
            assert back.array_fields()[name].dtype == array.dtype  # the schema restores the dtype
            expected = array.copy()
            if expected.dtype.kind == "f":
                expected[~np.isfinite(expected)] = np.nan  # JSON null: NaN and +-inf alike
            np.testing.assert_array_equal(back.array_fields()[name], expected)
        assert back.to_json_dict() == record


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"kind": "pose"}, r"unsupported wire version: expected 1, got None"),
        ({"v": 1, "kind": "nope", "source_id": "a", "seq": 0}, "kind must be one of frame, pose, sim"),
        ({"v": 1, "kind": "eos", "source_id": "a", "seq": True, "frames": 0, "dropped": 0, "corrupt": 0,
          "error": None, "reason": "end"}, "field seq must be int, got bool"),
        ({"v": 1, "kind": "eos", "source_id": 1, "seq": 0, "frames": 0, "dropped": 0, "corrupt": 0,
          "error": None, "reason": "end"}, "source_id must be a str, got int"),
        ({"v": 1, "kind": "pose", "source_id": "a", "seq": 0, "arrays": [1]}, "arrays must be a map, got list"),
        ({"v": 1, "kind": "eos", "source_id": "a b", "seq": 0, "frames": 0, "dropped": 0, "corrupt": 0,
          "error": None, "reason": "end"}, "source_id must match"),
        ({"v": 1, "kind": "eos", "source_id": "a", "seq": 0}, "eos header is missing field frames"),
    ],
)
def test_from_json_dict_refuses_what_is_not_a_message(record: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_json_dict(record)


def test_report_from_jsonl_refuses_a_line_that_is_not_a_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "pose"}\n')
    with pytest.raises(SinkError, match=r"bad.jsonl:1: not a batsight jsonl message"):
        report_from_jsonl([str(path)], str(tmp_path / "out"))
    with pytest.raises(SinkError, match="cannot read"):
        report_from_jsonl([str(tmp_path / "missing.jsonl")], str(tmp_path / "out"))


def _write_jsonl(path: Path, messages: list[Message]) -> list[str]:
    sink = JsonlSink(str(path))
    sink.open()
    sink.write_batch(messages)
    sink.close()
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_report_from_jsonl_refuses_a_file_without_messages(tmp_path: Path, text: str) -> None:
    good = tmp_path / "good.jsonl"
    _write_jsonl(good, make_stream("nets", n_frames=4, shots=False))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(text, encoding="utf-8")
    with pytest.raises(SinkError, match=r"^no batsight messages in '.*empty\.jsonl'"):
        report_from_jsonl([str(good), str(empty)], str(tmp_path / "out"), dpi=DPI)
    assert list((tmp_path / "out").iterdir()) == []  # refused before drawing anything


def test_report_from_jsonl_skips_a_truncated_last_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    messages = [m for m in make_stream("nets", n_frames=6, shots=False) if m.kind in ("pose", "sim")]
    lines = _write_jsonl(tmp_path / "whole.jsonl", messages)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")  # crash mid-write
    with caplog.at_level(logging.WARNING, logger="sinks.report"):
        written = report_from_jsonl([str(cut)], str(tmp_path / "out"), dpi=DPI)
    assert f"{cut}:{len(lines)}: skipped a truncated last line" in caplog.text
    assert [p.name for p in written] == ["nets_dependency_matrix.png", "nets_wrist.png", "pair_similarity.png"]

    only_cut = tmp_path / "only_cut.jsonl"
    only_cut.write_text(lines[0][:40], encoding="utf-8")
    with pytest.raises(SinkError, match="no batsight messages in"):
        report_from_jsonl([str(only_cut)], str(tmp_path / "out2"), dpi=DPI)


def test_report_from_jsonl_refuses_a_truncated_line_in_the_middle(tmp_path: Path) -> None:
    lines = _write_jsonl(tmp_path / "whole.jsonl", make_stream("nets", n_frames=3, shots=False))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines[:2]) + lines[2][:30] + "\n" + "".join(lines[3:]), encoding="utf-8")
    with pytest.raises(SinkError, match=r"bad\.jsonl:3: not a batsight jsonl message"):
        report_from_jsonl([str(bad)], str(tmp_path / "out"), dpi=DPI)
    last_not_a_message = tmp_path / "last.jsonl"  # valid JSON, wrong content: not a truncation
    last_not_a_message.write_text("".join(lines) + '{"kind": "pose"}\n', encoding="utf-8")
    with pytest.raises(SinkError, match=rf"last\.jsonl:{len(lines) + 1}: not a batsight jsonl message"):
        report_from_jsonl([str(last_not_a_message)], str(tmp_path / "out"), dpi=DPI)


def test_bad_shot_message_is_refused_and_a_shot_without_fit_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(WireFormatError, match="shot header is missing field start_frame"):
        _roundtrip("shot", "nets", 0, {"shot_index": 0, "t_start_s": 1.0, "t_end_s": 2.0}, {"t_s": np.zeros(2)})
    shot = next(m for m in make_stream("nets") if m.kind == "shot")
    no_fit = replace(shot, t_start_s=None, t_end_s=None)
    collector = ReportCollector()
    with caplog.at_level(logging.WARNING, logger="sinks.report"):
        collector.update(no_fit)
    assert not collector._sources["nets"].shots
    assert "t_start_s and t_end_s must be finite numbers, got None, None" in caplog.text


def test_memory_stays_bounded() -> None:
    collector = ReportCollector(max_frames=8, max_shots=1)
    for message in make_stream("nets", n_frames=30):
        collector.update(message)
    state = collector._sources["nets"]
    assert len(state.poses) <= 8 and state.poses["frame_index"][-1] == 29
    assert len(state.pairs["left_wrist/left_shoulder"]) <= 8
    assert [s.segment.shot_index for s in state.shots] == [1] and state.shots_dropped == 1


def test_report_draws_on_video_frames(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(12):
            image = np.full((H, W, 3), i * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames = read_video_frames(path, {3, 7, 50})
    assert sorted(frames) == [3, 7] and frames[7].shape == (H, W, 3)
    assert abs(int(frames[7].mean()) - 140) < 12  # the 8th frame's grey level
    poses = [m for m in make_stream("nets", n_frames=12, shots=False) if m.kind == "pose"]
    sink = run_sink(poses, tmp_path / "out", video=f"nets={path}")
    assert [p.name for p in sink.written] == ["nets_wrist.png"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dpi": "0"}, r"'dpi' must be in \[30, 600\]"),
        ({"dpi": "many"}, "'dpi' must be an integer"),
        ({"min_keypoint_conf": 2}, r"'min_keypoint_conf' must be in \[0.0, 1.0\]"),
        ({"video": "no-equals-sign"}, "must be SOURCE_ID=VALUE"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"out_dir": ""}, "'out_dir' must be a folder path"),
    ],
)
def test_report_sink_refuses_bad_options(options: dict, match: str) -> None:
    with pytest.raises(SinkError, match=match):
        ReportSink(**{"out_dir": "report", **options})


def test_open_checks_videos_and_write_needs_open(tmp_path: Path) -> None:
    sink = ReportSink(str(tmp_path / "out"), video={"nets": str(tmp_path / "missing.mp4")})
    with pytest.raises(SinkError, match="video for source 'nets' not found"):
        sink.open()
    with pytest.raises(SinkError, match="must be open"):
        ReportSink(str(tmp_path)).write_batch([])
    assert ReportSink.primary_option == "out_dir"
    assert parse_assignments("a=x.mp4, b=y.mp4", "--video") == {"a": "x.mp4", "b": "y.mp4"}
    assert parse_assignments(["a=pull"], "--label") == {"a": "pull"}


def test_empty_stream_writes_nothing(tmp_path: Path) -> None:
    sink = run_sink([], tmp_path / "out")
    assert sink.written == [] and (tmp_path / "out").is_dir()
    sink.close()  # idempotent
