"""`batsight run` on real nets footage, checked by subscribers that know only the README.

One run of the real CLI (a subprocess, YOLO-pose on the CPU) on ``cover_drive_04_nets.mp4``
(272 frames). Two independent subscribers watch it: this module's own decoder (pyzmq + msgpack +
numpy, following the README's wire-format table, not engine.wire) and the README's 15-line example
run verbatim. Expected analytics values are recomputed here with numpy from the published keypoints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import msgpack
import numpy as np
import pytest
import zmq

from tests.conftest import REPO_ROOT, shared_file
from tests.helpers import port_taken, reference_fit_degree, retry_if_port_taken, subprocess_env

CLIP_FRAMES = 272
OKS_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
LEFT_SHOULDER, LEFT_WRIST = 5, 9


def readme_subscriber_code(endpoint: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- subscriber-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its subscriber example"
    code = match.group(1)
    assert len(code.strip().splitlines()) <= 15
    return code.replace("tcp://127.0.0.1:5556", endpoint)


def independent_decode(parts: list[bytes]) -> dict:
    """Decode one message knowing only the README table."""
    header = msgpack.unpackb(parts[1], raw=False)
    assert header["v"] == 1
    topic = f"{header['kind']}/{header['source_id']}/" if header["kind"] != "health" else "health/"
    assert parts[0].decode() == topic
    assert len(parts) - 2 == len(header["arrays"])
    arrays = {}
    for desc, buf in zip(header["arrays"], parts[2:], strict=True):
        assert desc["dtype"] in {"float32", "float64", "int32", "int64", "uint8", "bool"}
        array = np.frombuffer(buf, dtype=np.dtype(desc["dtype"]).newbyteorder("<")).reshape(desc["shape"])
        arrays[desc["name"]] = array
    header["_arrays"] = arrays
    return header


class _IndependentCollector:
    """This module's own subscriber (pyzmq + msgpack + numpy) on a thread, until the engine stops."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.messages: list[dict] = []
        self.connected = threading.Event()
        self.done = threading.Event()  # set by the test when the engine ended without publishing
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()
        self.connected.wait(30)

    def _collect(self) -> None:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(self.endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.connected.set()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        try:
            quiet_ms = 0
            while not self.done.is_set() and quiet_ms < 60_000:
                if not poller.poll(200):
                    quiet_ms += 200
                    continue
                quiet_ms = 0
                m = independent_decode(sub.recv_multipart())
                self.messages.append(m)
                if m["kind"] == "health" and m["engine_state"] == "stopped":
                    return
        finally:
            sub.close(0)
            ctx.term()


def _attempt(clip, tmp, endpoint: str) -> dict:
    """One run of the engine on ``endpoint`` with both subscribers; its results (see :func:`real_run`)."""
    collector = _IndependentCollector(endpoint)
    example = subprocess.Popen(
        [sys.executable, "-c", readme_subscriber_code(endpoint)], stdout=subprocess.PIPE, text=True
    )
    jsonl = tmp / f"out-{endpoint.rsplit(':', 1)[1]}.jsonl"
    try:
        run = subprocess.run(
            [
                sys.executable, "-m", "engine.cli", "run", str(clip), "--no-progress",
                "--sink", f"jsonl:{jsonl}", "--sink", "console",
                "--set", f"publisher.endpoint={endpoint}",
                "--set", "publisher.min_subscribers=2",
                "--set", "publisher.wait_subscribers_s=30",
            ],
            capture_output=True, text=True, timeout=600, cwd=tmp, env=subprocess_env(),
        )
        if port_taken(run):  # nothing was published: end both subscribers now
            collector.done.set()
            example.kill()
        collector.thread.join(60)
        example_out, _ = example.communicate(timeout=60)
    finally:
        example.kill()
        example.wait(10)
    return {"run": run, "messages": collector.messages, "example": example_out, "jsonl": jsonl}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The engine (a subprocess) on the clip, watched by this module's decoder and the README's example.

    The engine must bind a port the subscribers know in advance: a free one, and another one should
    another process take it first (the engine then fails at once, before any frame).
    """
    clip = shared_file("clips/cricket/cover_drive_04_nets.mp4")
    tmp = tmp_path_factory.mktemp("e2e")
    return retry_if_port_taken(lambda endpoint: _attempt(clip, tmp, endpoint), lambda r: port_taken(r["run"]))


def _kind(messages, kind):
    return [m for m in messages if m["kind"] == kind]


def test_cli_succeeds_and_reports_throughput(real_run):
    run = real_run["run"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    match = re.search(r"(\d+) frames in ([\d.]+) s -> ([\d.]+) fps \(model only ([\d.]+) fps\)", run.stdout)
    assert match, run.stdout
    assert int(match.group(1)) == CLIP_FRAMES
    pipeline_fps, model_fps = float(match.group(3)), float(match.group(4))
    assert 0 < pipeline_fps <= model_fps * 1.05
    print(f"\ncover_drive_04_nets: pipeline {pipeline_fps:.2f} fps, model only {model_fps:.2f} fps")
    assert "cover_drive_04_nets: 272 frames" in run.stderr  # console sink summary


def test_every_frame_yields_one_pose_message_in_order_with_the_batter(real_run):
    poses = _kind(real_run["messages"], "pose")
    assert [m["frame_index"] for m in poses] == list(range(CLIP_FRAMES))
    assert [m["seq"] for m in poses] == list(range(CLIP_FRAMES))
    pts = np.array([m["pts_s"] for m in poses])
    assert np.all(np.diff(pts) > 0)
    assert pts[-1] == pytest.approx(4.53, abs=0.05)  # 272 frames at 60 fps, SOURCES.md
    found = [m["batter_found"] for m in poses]
    assert sum(found) >= 0.95 * CLIP_FRAMES
    assert not any(m["scene_cut"] or m["timeline_break"] for m in poses)  # one locked-off nets camera
    for m in poses:
        assert (m["frame_width"], m["frame_height"]) == (720, 1280)
        if m["batter_found"]:
            x1, y1, x2, y2 = m["_arrays"]["xyxy"]
            assert 0 <= x1 < x2 <= 720 and 0 <= y1 < y2 <= 1280
            assert m["_arrays"]["keypoints_xy"].shape == (17, 2)
    # one batter in the nets: the same track almost all the time
    ids = [m["track_id"] for m in poses if m["batter_found"]]
    assert max(ids.count(i) for i in set(ids)) >= 0.9 * len(ids)


def _rendered_probs(keypoints_xy: np.ndarray, xyxy: np.ndarray, size: int = 56) -> np.ndarray:
    """README's heatmap rule, computed independently: softmax of -d²/(2σ²) on the box grid."""
    x1, y1, x2, y2 = xyxy.astype(np.float64)
    xs = x1 + (np.arange(size) + 0.5) * (x2 - x1) / size
    ys = y1 + (np.arange(size) + 0.5) * (y2 - y1) / size
    sigma = 2 * OKS_SIGMAS * np.sqrt((x2 - x1) * (y2 - y1))
    gx, gy = np.meshgrid(xs, ys)
    d2 = (gx[None] - keypoints_xy[:, 0, None, None]) ** 2 + (gy[None] - keypoints_xy[:, 1, None, None]) ** 2
    logits = -d2 / (2 * sigma[:, None, None] ** 2)
    p = np.exp(logits - logits.max(axis=(1, 2), keepdims=True))
    return p / p.sum(axis=(1, 2), keepdims=True)


def test_similarity_matrices_are_valid_and_match_an_independent_computation(real_run):
    messages = real_run["messages"]
    poses = {m["frame_index"]: m for m in _kind(messages, "pose")}
    sims = _kind(messages, "sim")
    assert len(sims) == sum(m["batter_found"] for m in poses.values())
    for m in sims:
        for name in ("cosine_similarity", "window_mean", "cumulative_mean"):
            a = m["_arrays"][name]
            assert a.shape == (17, 17)
            assert np.all(a >= 0) and np.all(a <= 1 + 1e-6)
            np.testing.assert_allclose(np.diag(a), 1.0, atol=1e-5)
        assert m["pairs"]["left_wrist/left_shoulder"] == pytest.approx(
            float(m["_arrays"]["cosine_similarity"][LEFT_WRIST, LEFT_SHOULDER]), abs=1e-6
        )
    for m in sims[::40]:
        pose = poses[m["frame_index"]]
        p = _rendered_probs(pose["_arrays"]["keypoints_xy"].astype(np.float64), pose["_arrays"]["xyxy"]).reshape(17, -1)
        unit = p / np.linalg.norm(p, axis=1, keepdims=True)
        np.testing.assert_allclose(m["_arrays"]["cosine_similarity"], unit @ unit.T, atol=2e-4)
    # the window mean is the mean of the per-frame matrices whose pts lie in (t - window_s, t]
    last = sims[-1]
    window = [s for s in sims if last["pts_s"] - last["window_s"] < s["pts_s"] <= last["pts_s"]]
    assert last["window_frames"] == len(window)
    expected = np.mean([s["_arrays"]["cosine_similarity"] for s in window], axis=0)
    np.testing.assert_allclose(last["_arrays"]["window_mean"], expected, atol=1e-5)
    expected_cum = np.mean([s["_arrays"]["cosine_similarity"] for s in sims], axis=0)
    np.testing.assert_allclose(last["_arrays"]["cumulative_mean"], expected_cum, atol=1e-5)


def test_fit_coefficients_reproduce_numpy_polynomial_fits(real_run):
    messages = real_run["messages"]
    poses = _kind(messages, "pose")
    points = []
    for m in poses:
        if not m["batter_found"]:
            continue
        conf = m["_arrays"]["keypoints_conf"]
        if conf[LEFT_WRIST] < 0.3 or conf[LEFT_SHOULDER] < 0.3:  # batter.min_keypoint_conf
            continue
        xy = m["_arrays"]["keypoints_xy"].astype(np.float64)
        dx = (xy[LEFT_WRIST, 0] - xy[LEFT_SHOULDER, 0]) / m["frame_width"]
        dy = (xy[LEFT_WRIST, 1] - xy[LEFT_SHOULDER, 1]) / m["frame_height"]
        points.append((m["frame_index"], m["pts_s"], dx, dy))
    fits = _kind(messages, "fit")
    assert len(fits) == len(points) - 1
    by_frame = {p[0]: i for i, p in enumerate(points)}
    for fit in fits[::25] + [fits[-1]]:
        end = by_frame[fit["frame_index"]]
        window = [p for p in points[: end + 1] if fit["pts_s"] - fit["window_s"] < p[1] <= fit["pts_s"]]
        t = np.array([p[1] for p in window])
        dx = np.array([p[2] for p in window])
        dy = np.array([p[3] for p in window])
        assert fit["n_points"] == len(t)
        assert fit["dx"] == pytest.approx(dx[-1], abs=1e-6)
        degree = reference_fit_degree(t, 10)
        assert fit["degree_xy"] == degree
        cases = (("dx_coef", dx, degree), ("dy_coef", dy, degree), ("r_coef", np.hypot(dx, dy), min(2, len(t) - 1)))
        for name, y, deg in cases:
            ref = np.polynomial.Legendre.fit(t, y, deg, domain=[t.min(), t.max()])
            np.testing.assert_allclose(fit["_arrays"][name], ref.coef, rtol=1e-5, atol=1e-7)
        assert (fit["t_start_s"], fit["t_end_s"]) == pytest.approx((t.min(), t.max()))
        assert fit["horizontal_span"] == pytest.approx(dx.max() - dx.min(), abs=1e-6)
        assert fit["vertical_span"] == pytest.approx(dy.max() - dy.min(), abs=1e-6)
        assert fit["peak_r"] == pytest.approx(np.hypot(dx, dy).max(), abs=1e-6)


def test_eos_health_and_the_readme_example_and_jsonl(real_run):
    messages = real_run["messages"]
    (eos,) = _kind(messages, "eos")
    assert eos["frames"] == CLIP_FRAMES and eos["error"] is None and eos["reason"] == "end"
    health = _kind(messages, "health")
    assert health[-1]["engine_state"] == "stopped"
    assert health[-1]["sources"]["cover_drive_04_nets"]["frames_out"] == CLIP_FRAMES
    # the README's subscriber decoded every message the engine sent
    lines = real_run["example"].splitlines()
    assert len(lines) == len(messages)
    assert sum(line.startswith("pose/cover_drive_04_nets/ ") for line in lines) == CLIP_FRAMES
    assert "'keypoints_xy': (17, 2)" in real_run["example"]
    # the in-process jsonl sink got the same messages
    records = [json.loads(line) for line in real_run["jsonl"].read_text().splitlines()]
    assert len(records) == len(messages)
    jpose = [r for r in records if r["kind"] == "pose"]
    mpose = _kind(messages, "pose")
    assert [r["frame_index"] for r in jpose] == list(range(CLIP_FRAMES))
    for r, m in zip(jpose[::50], mpose[::50], strict=True):
        if m["batter_found"]:
            np.testing.assert_allclose(np.array(r["arrays"]["keypoints_xy"]), m["_arrays"]["keypoints_xy"], rtol=1e-6)


def test_the_cover_drive_is_segmented_and_classified(real_run):
    shots = _kind(real_run["messages"], "shot")
    assert 1 <= len(shots) <= 3
    poses = _kind(real_run["messages"], "pose")
    for shot in shots:
        assert 0 <= shot["start_s"] < shot["end_s"] <= poses[-1]["pts_s"] + 1e-6
        assert shot["label"] in ("pull", "cover_drive", "other")
        assert 0 < shot["confidence"] <= 1 and sum(shot["probabilities"].values()) == pytest.approx(1, abs=1e-6)
        t, dx, dy = (shot["_arrays"][k] for k in ("t_s", "dx", "dy"))
        ok = np.isfinite(dx) & np.isfinite(dy)
        degree = reference_fit_degree(t[ok], 10)
        assert shot["degree_xy"] == degree
        ref = np.polynomial.Legendre.fit(t[ok], dx[ok], degree, domain=[t[ok].min(), t[ok].max()])
        np.testing.assert_allclose(shot["_arrays"]["dx_coef"], ref.coef, rtol=1e-5, atol=1e-7)
        assert shot["horizontal_span"] == pytest.approx(dx[ok].max() - dx[ok].min(), abs=1e-6)
    # pair_similarity follows the front arm: the (wrist, shoulder) cell of each frame's sim/ matrix
    sim_by_frame = {m["frame_index"]: m["_arrays"]["cosine_similarity"] for m in _kind(real_run["messages"], "sim")}
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
             "left_knee", "right_knee", "left_ankle", "right_ankle"]  # COCO order, README
    for shot in shots:
        cell = (names.index(shot["wrist"]), names.index(shot["shoulder"]))
        frames = range(shot["start_frame"], shot["end_frame"] + 1)
        expected = [sim_by_frame[i][cell] if i in sim_by_frame else np.nan for i in frames]
        np.testing.assert_allclose(shot["_arrays"]["pair_similarity"], np.array(expected, np.float32), rtol=1e-6)
    # SOURCES.md: a cover drive in the middle of the 4.5 s clip; the classifier never saw this clip.
    # The shot that covers the middle is that drive, whichever shot is the most confident (a second
    # segment from about 3 s is labelled on its own; README clip table).
    (drive,) = [s for s in shots if s["start_s"] < 2.5 < s["end_s"]]
    assert drive["label"] == "cover_drive"
