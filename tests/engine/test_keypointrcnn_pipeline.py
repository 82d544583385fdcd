"""Pipeline with the ``keypointrcnn`` plugin: model heatmaps drive the dependency matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.models.base import KeypointModel
from engine.models.keypointrcnn import KeypointRCNNTopDown
from engine.models.keypointrcnn_pose import KeypointRCNNPose
from engine.plugins import MODELS, load
from engine.testing import FakeKeypointModel, ListSource
from tests.helpers import by_kind, run_pipeline


def test_plugin_is_registered_and_built_from_config():
    cls = load(MODELS, "keypointrcnn", KeypointModel)  # type: ignore[type-abstract]
    model = cls.from_config(ModelConfig(keypoint_weights="nothere.pth", keypoint_mode="full", keypoint_min_size=320))
    assert model.heatmap_source == "model"
    assert model.keypoint_model.mode == "full" and model.keypoint_model.min_size == 320
    crop = cls.from_config(ModelConfig(keypoint_mode="crop", keypoint_crop_size=256, keypoint_crop_margin=0.2))
    assert (crop.keypoint_model.mode, crop.keypoint_model.crop_size, crop.keypoint_model.crop_margin) == (
        "crop", 256, 0.2
    )


@pytest.mark.parametrize("mode", ["topdown", "crop"])
def test_batter_keypoints_and_similarity_come_from_keypoint_rcnn_heatmaps(tmp_path, mode):
    torch.manual_seed(0)
    keypoint_model = KeypointRCNNTopDown(
        weights=None, device="cpu", min_size=256, max_size=448, mode=mode, crop_size=128
    )
    model = KeypointRCNNPose(FakeKeypointModel(), keypoint_model)
    source = ListSource("cam", n_frames=4, size=(120, 160))
    pipeline, messages, error = run_pipeline([source], model, tmp_path)
    assert error is None
    poses = by_kind(messages, "pose")
    sims = {m.frame_index: m for m in by_kind(messages, "sim")}
    assert len(poses) == 4 and all(m.heatmap_source == "model" for m in poses)
    for pose in poses:
        image = np.full((120, 160, 3), pose.frame_index, np.uint8)  # ListSource's frame content
        box = pose.xyxy[None]
        (expected,) = keypoint_model.infer_keypoints([image], [box])
        np.testing.assert_allclose(pose.keypoints_xy, expected.keypoints_xy[0], atol=1e-3)
        np.testing.assert_allclose(pose.keypoints_conf, expected.keypoints_conf[0], atol=1e-5)
        logits = expected.heatmaps[0].reshape(17, -1).astype(np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        unit = p / np.linalg.norm(p, axis=1, keepdims=True)
        sim = sims[pose.frame_index]
        assert sim.heatmap_source == "model"
        np.testing.assert_allclose(sim.cosine_similarity, np.clip(unit @ unit.T, 0, 1), atol=1e-4)
    assert pipeline.summary().model_s > 0


@pytest.mark.parametrize("mode", ["topdown", "full"])
def test_missing_weights_name_the_file(tmp_path, mode):
    from engine.errors import ModelError

    model = KeypointRCNNPose(
        FakeKeypointModel(), KeypointRCNNTopDown(weights=tmp_path / "kp.pth", device="cpu", mode=mode)
    )
    with pytest.raises(ModelError, match="kp.pth"):
        model.build()


def test_device_dependency_matrices_equal_the_numpy_analytics():
    from engine.analytics.heatmaps import spatial_softmax
    from engine.analytics.similarity import cosine_similarity_matrix, dependency_matrices

    logits = torch.randn(3, 17, 56, 56, generator=torch.Generator().manual_seed(0)) * 4
    got = dependency_matrices(logits).numpy()
    for n in range(3):
        expected = cosine_similarity_matrix(spatial_softmax(logits[n].numpy()))
        np.testing.assert_allclose(got[n], expected, atol=1e-5)
    assert got.shape == (3, 17, 17) and np.allclose(np.diagonal(got, axis1=1, axis2=2), 1)


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_dependency_matrices_of_a_tensor_stay_a_tensor_on_its_device(device):
    from engine.analytics.similarity import dependency_matrices, dependency_matrix

    logits = (torch.randn(4, 17, 56, 56, generator=torch.Generator().manual_seed(1)) * 4).to(device)
    got = dependency_matrices(logits)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.device == logits.device
    # The torch path's arithmetic as it was written in engine/models/keypointrcnn.py, bit for bit.
    unit = torch.nn.functional.normalize(torch.softmax(logits.flatten(2).float(), dim=-1), dim=-1)
    expected = (unit @ unit.transpose(1, 2)).clamp_(0.0, 1.0)
    expected.diagonal(dim1=1, dim2=2).fill_(1.0)
    assert torch.equal(got, expected)
    one = dependency_matrix(logits[2])
    assert isinstance(one, torch.Tensor) and one.shape == (17, 17)
    torch.testing.assert_close(one, got[2], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"`logits` must have shape \(N, K, H, W\), got \(17, 56, 56\)"):
        dependency_matrices(logits[0])
    with pytest.raises(ValueError, match=r"`logits` must have shape \(K, H, W\), got \(4, 17, 56, 56\)"):
        dependency_matrix(logits)
