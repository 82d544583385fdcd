"""model.backend: the OpenVINO export gives PyTorch's answers, is cached, never reaches the network, falls back."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import av
import numpy as np
import pytest

from engine.config import load_config
from engine.models.export import ExportSpec, cache_roots, choose_backend
from engine.models.ultralytics_pose import UltralyticsPose
from engine.pipeline import run_inline
from engine.tools.bench import ReplaySource
from engine.types import Frame
from tests.conftest import shared_file

CLIP = "clips/cricket/cover_drive_04_nets.mp4"  # 720x1280, 60 fps, one batter in nets
N_FRAMES = 16
MIN_CONF = 0.3


def _model(export_dir: Path | str, backend: str, imgsz: int = 640) -> UltralyticsPose:
    overrides = ["model.device=cpu", f"model.backend={backend}", f"model.imgsz={imgsz}"]
    if export_dir:
        overrides.append(f"model.export_dir={export_dir}")
    config = load_config(None, overrides)
    return UltralyticsPose.from_config(config.model)


def _no_network(*_args, **_kwargs):
    msg = "batsight must not reach the network"
    raise AssertionError(msg)


@pytest.fixture(scope="module")
def openvino_model() -> UltralyticsPose:
    """OpenVINO from the default cache beside the weights (what ``batsight run`` uses; exported on first use)."""
    model = _model("", "openvino")
    model.build()
    return model


@pytest.fixture(scope="module")
def torch_model() -> UltralyticsPose:
    model = _model("", "torch")
    model.build()
    return model


@pytest.fixture(scope="module")
def clip_frames() -> list[Frame]:
    frames = []
    with av.open(str(shared_file(CLIP))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            frames.append(Frame("clip", i, float(frame.time), 0, frame.to_ndarray(format="bgr24")))
            if len(frames) == N_FRAMES:
                break
    return frames


def _poses(model: UltralyticsPose, frames: list[Frame]) -> list:
    config = load_config(None, ["model.device=cpu", "shots.enabled=false"])
    messages = run_inline(config, [ReplaySource(frames, "clip", 60.0)], model)
    return [m for m in messages if m.KIND == "pose"]


def test_auto_is_openvino_on_cpu_and_torch_on_cuda():
    assert choose_backend("auto", "cpu") == "openvino"
    assert choose_backend("auto", "cuda:0") == "torch"
    assert choose_backend("tensorrt", "cuda:0") == "tensorrt"


def test_openvino_keypoints_agree_with_pytorch_within_one_pixel(openvino_model, torch_model, clip_frames):
    assert openvino_model.backend == "openvino"
    assert torch_model.backend == "torch"
    ov, pt = _poses(openvino_model, clip_frames), _poses(torch_model, clip_frames)
    assert len(ov) == len(pt) == N_FRAMES
    assert [m.batter_found for m in ov] == [m.batter_found for m in pt]
    assert sum(m.batter_found for m in pt) >= N_FRAMES // 2  # the batter is in view: a real comparison
    diffs = []
    for a, b in zip(ov, pt, strict=True):
        if a.batter_found:
            both = (a.keypoints_conf > MIN_CONF) & (b.keypoints_conf > MIN_CONF)
            diffs.append(np.linalg.norm(a.keypoints_xy[both] - b.keypoints_xy[both], axis=1))
    d = np.concatenate(diffs)
    print(f"OpenVINO vs PyTorch keypoints, px: max {d.max():.2e}, p99 {np.percentile(d, 99):.2e}, n {d.size}")
    assert d.size > 60
    assert d.max() < 1.0


def test_the_export_is_cached_under_its_key_and_reused(openvino_model, monkeypatch):
    from ultralytics.engine.model import Model

    path, weights = openvino_model.exported_path, openvino_model.weights_path
    assert path is not None and weights is not None
    assert path.parent.parent == weights.resolve().parent  # beside the weights
    assert path.parent.name == ExportSpec("openvino", 640, 8, False).folder_name(weights)
    assert path.parent.name.startswith("yolo11n-pose_openvino_fp32_640_b8_dynamic_")

    def refuse(*_args, **_kwargs):
        msg = "exported again"
        raise AssertionError(msg)

    monkeypatch.setattr(Model, "export", refuse)
    again = _model("", "openvino")
    again.build()
    assert (again.backend, again.exported_path) == ("openvino", path)


def test_a_fresh_export_never_reaches_the_network(tmp_path, monkeypatch):
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    model = _model(tmp_path, "openvino", imgsz=160)
    model.build()
    assert model.backend == "openvino"
    assert model.exported_path is not None and model.exported_path.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == [model.exported_path.parent.name]  # no temporary left
    assert "_openvino_fp32_160_b8_dynamic_" in model.exported_path.parent.name


def test_the_cache_key_changes_with_every_input(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    base = ExportSpec("openvino", 640, 8, False)
    names = {
        base.folder_name(weights),
        ExportSpec("openvino", 480, 8, False).folder_name(weights),
        ExportSpec("openvino", 640, 4, False).folder_name(weights),
        ExportSpec("openvino", 640, 8, True).folder_name(weights),
        ExportSpec("onnx", 640, 8, False).folder_name(weights),
    }
    assert len(names) == 5
    weights.write_bytes(b"two")
    assert base.folder_name(weights) not in names
    assert cache_roots(weights)[0] == tmp_path
    assert cache_roots(weights, str(tmp_path / "x")) == [tmp_path / "x"]


def test_a_missing_runtime_falls_back_to_pytorch_with_one_warning(tmp_path, monkeypatch, caplog):
    from engine.models import export

    monkeypatch.setitem(export.RUNTIME_PACKAGES, "openvino", ("batsight_no_such_runtime",))
    model = _model(tmp_path, "openvino")
    with caplog.at_level(logging.WARNING):
        model.build()
    assert model.backend == "torch" and model.exported_path is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "running PyTorch instead" in warnings[0].getMessage()
    assert "batsight_no_such_runtime" in warnings[0].getMessage()
    assert len(model.infer([np.zeros((64, 64, 3), np.uint8)])) == 1
    assert not list(tmp_path.iterdir())  # nothing half-exported left behind


def test_tensorrt_on_cpu_names_the_missing_gpu_not_a_package():
    from engine.models.export import ExportError, check_runtime

    with pytest.raises(ExportError, match=r"^model.backend=tensorrt needs a CUDA device, got .*'cpu'$"):
        check_runtime("tensorrt", "cpu")  # tensorrt is not installed here either: the device is what to fix
