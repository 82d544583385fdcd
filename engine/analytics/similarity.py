"""The Keypoint Dependency Matrix of thesis §6.1: one implementation, numpy and torch paths.

:func:`dependency_matrices` is the matrix: spatial softmax of each of the K heatmap logit maps
(DESIGN §4), flatten, cosine similarity of every pair, clipped to [0, 1], diagonal exactly 1. It
takes a numpy array (computed here with numpy, via :func:`~engine.analytics.heatmaps.spatial_softmax`
and :func:`cosine_similarity_matrices`) or a torch tensor (computed with torch on the tensor's
device, as the ``keypointrcnn`` backend does on the GPU); torch is imported only for tensors, so
numpy-only users never import it. :func:`dependency_matrix` is the one-person wrapper.

Building blocks and the closed form:

* :func:`cosine_similarity_matrices` / :func:`cosine_similarity_matrix`: the cosine step alone, on
  any non-negative maps (probabilities or any scale).
* :func:`rendered_similarity_matrix`: the same matrix for *rendered* logits
  (:func:`~engine.analytics.heatmaps.render_heatmaps`) in closed form without building the maps,
  ``O(K^2 S)``; the analytics of rendered-heatmap backends use it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np

from engine.analytics.heatmaps import separable_logits, spatial_softmax
from engine.types import NUM_KEYPOINTS, check_array

if TYPE_CHECKING:
    import torch

__all__ = [
    "cosine_similarity_matrices",
    "cosine_similarity_matrix",
    "dependency_matrices",
    "dependency_matrix",
    "rendered_similarity_matrix",
]


@overload
def dependency_matrices(logits: np.ndarray) -> np.ndarray: ...


@overload
def dependency_matrices(logits: torch.Tensor) -> torch.Tensor: ...


def dependency_matrices(logits: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Keypoint Dependency Matrices (thesis §6.1) of a batch of heatmap logits, one per person.

    Method: each of the K ``[H, W]`` logit maps of a person is made a probability map by a spatial
    softmax (DESIGN §4), flattened, and entry ``[n, a, b]`` is the cosine ``A . B / (|A| |B|)`` of
    maps ``a`` and ``b`` (one batched matmul); values are clipped to [0, 1] and the diagonal is
    exactly 1.

    Two paths, chosen by the input's type, each with its own float arithmetic (they agree to ~1e-6):

    * numpy: :func:`~engine.analytics.heatmaps.spatial_softmax` then
      :func:`cosine_similarity_matrices`, in float32 (any real dtype is converted first). Torch is
      not imported.
    * torch: ``torch.softmax`` over the flattened maps in float32, ``normalize``, ``matmul``, on the
      tensor's device (the ``keypointrcnn`` backend computes it on the GPU next to the logits).

    Args:
        logits: ``[N, K, H, W]`` heatmap logits (``H = W = S``, 56 for Keypoint R-CNN), unitless; a
            ``numpy.ndarray`` (or anything ``numpy.asarray`` takes) or a ``torch.Tensor`` on any
            device.

    Returns:
        ``float32 [N, K, K]``, symmetric, in [0, 1], diagonal 1: a ``numpy.ndarray`` for numpy input,
        a ``torch.Tensor`` on the input's device for a tensor.

    Raises:
        ValueError: ``logits`` is not 4-D.
    """
    if _is_tensor(logits):
        return _dependency_matrices_torch(logits)  # type: ignore[arg-type]  # a tensor: checked above
    x = check_array("logits", logits, ("N", "K", "H", "W"), np.float32, convert=True)
    return cosine_similarity_matrices(spatial_softmax(x))


_ArrayT = TypeVar("_ArrayT", "np.ndarray", "torch.Tensor")


def dependency_matrix(logits: _ArrayT) -> _ArrayT:
    """Keypoint Dependency Matrix (thesis §6.1) of one person: :func:`dependency_matrices` of ``logits[None]``.

    Args:
        logits: ``[K, H, W]`` heatmap logits, numpy array or torch tensor.

    Returns:
        ``float32 [K, K]`` of the input's kind (see :func:`dependency_matrices`).

    Raises:
        ValueError: ``logits`` is not 3-D.
    """
    if not _is_tensor(logits):
        logits = check_array("logits", logits, ("K", "H", "W"), np.float32, convert=True)  # type: ignore[assignment]
    elif logits.ndim != 3:
        msg = f"`logits` must have shape (K, H, W), got {tuple(logits.shape)}"
        raise ValueError(msg)
    return dependency_matrices(logits[None])[0]


def _is_tensor(value: object) -> bool:
    """Whether ``value`` is a ``torch.Tensor``, without importing torch (no torch loaded -> no tensor)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _dependency_matrices_torch(logits: torch.Tensor) -> torch.Tensor:
    """The torch path of :func:`dependency_matrices`: ``[N, K, H, W]`` -> float32 ``[N, K, K]`` on the same device."""
    import torch

    if logits.ndim != 4:
        msg = f"`logits` must have shape (N, K, H, W), got {tuple(logits.shape)}"
        raise ValueError(msg)
    probs = torch.softmax(logits.flatten(2).float(), dim=-1)
    unit = torch.nn.functional.normalize(probs, dim=-1)
    sim = (unit @ unit.transpose(1, 2)).clamp_(0.0, 1.0)
    sim.diagonal(dim1=1, dim2=2).fill_(1.0)
    return sim


def cosine_similarity_matrices(heatmaps: np.ndarray) -> np.ndarray:
    """Cosine step of the Keypoint Dependency Matrix (thesis §6.1) for a batch of persons: one matmul.

    Each ``[H, W]`` map is flattened to a vector; entry ``[n, a, b]`` is
    ``A . B / (|A| |B|)`` for maps ``a`` and ``b`` of person ``n``. For non-negative maps (for
    example after :func:`~engine.analytics.heatmaps.spatial_softmax`) this lies in [0, 1]; the result
    is clipped to [0, 1] (negative inputs are therefore reported as 0) and the diagonal is set to
    exactly 1. A map that is all zeros has no direction: its row and column are 0, except the
    diagonal entry, which is 1. Computed in float32 (inputs are converted). On logits, use
    :func:`dependency_matrices`, which applies the softmax first.

    Args:
        heatmaps: ``[N, K, H, W]`` non-negative maps (probabilities or any scale: cosine is
            scale-invariant).

    Returns:
        ``float32 [N, K, K]``, symmetric, in [0, 1], diagonal 1.

    Raises:
        ValueError: ``heatmaps`` is not 4-D.
    """
    h = check_array("heatmaps", heatmaps, ("N", "K", "H", "W"), np.float32, convert=True)
    n, k = h.shape[:2]
    flat = h.reshape(n, k, -1)
    norms = np.sqrt(np.einsum("nkp,nkp->nk", flat, flat))
    with np.errstate(divide="ignore"):
        inv = np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)
    unit = flat * inv[:, :, None]
    sim = np.matmul(unit, unit.transpose(0, 2, 1))
    np.clip(sim, 0.0, 1.0, out=sim)
    diag = np.arange(k)
    sim[:, diag, diag] = 1.0
    return sim


def cosine_similarity_matrix(heatmaps: np.ndarray) -> np.ndarray:
    """Cosine step of the Keypoint Dependency Matrix (thesis §6.1) of one person.

    :func:`cosine_similarity_matrices` of ``heatmaps[None]`` (flattened maps,
    ``A . B / (|A| |B|)``, clipped to [0, 1], diagonal exactly 1, all-zero map -> row and column 0
    except the diagonal).

    Args:
        heatmaps: ``[K, H, W]`` non-negative maps.

    Returns:
        ``float32 [K, K]``.

    Raises:
        ValueError: ``heatmaps`` is not 3-D.
    """
    h = check_array("heatmaps", heatmaps, ("K", "H", "W"), convert=True)
    return cosine_similarity_matrices(h[None])[0]


def rendered_similarity_matrix(keypoints_xy: np.ndarray, xyxy: np.ndarray, size: int = 56) -> np.ndarray:
    """Closed form of ``dependency_matrix(render_heatmaps(keypoints_xy, xyxy, size))`` without the maps.

    Method: a rendered logit map is an outer sum ``ly[i] + lx[j]``
    (:func:`~engine.analytics.heatmaps.separable_logits`), so its softmax is the outer product
    ``py[i] * px[j]`` of two 1-D softmaxes, and for outer products
    ``(ay (x) ax) . (by (x) bx) = (ay . by)(ax . bx)``. The 2-D cosine is therefore the elementwise
    product of the two 1-D cosine matrices: ``O(K^2 S)`` instead of ``O(K^2 S^2)``. Computed in
    float64 and agrees with the generic float32 path of :func:`dependency_matrices` to about 1e-6
    (the published matrices of rendered-heatmap backends are this function's, bit for bit).

    Args:
        keypoints_xy: ``[K, 2]`` keypoint x, y in frame pixels.
        xyxy: ``[4]`` box in frame pixels, ``x1 < x2``, ``y1 < y2``.
        size: Grid side ``S`` in cells.

    Returns:
        ``float32 [K, K]``, symmetric, in [0, 1], diagonal 1.

    Raises:
        ValueError: as :func:`~engine.analytics.heatmaps.render_heatmaps`.
    """
    ly, lx = separable_logits(keypoints_xy, xyxy, size)
    out = np.ones((NUM_KEYPOINTS, NUM_KEYPOINTS), dtype=np.float64)
    for factor in (ly, lx):
        p = np.exp(factor - factor.max(axis=1, keepdims=True))  # scale is irrelevant for cosine
        unit = p / np.sqrt(np.einsum("ks,ks->k", p, p))[:, None]
        out *= unit @ unit.T
    np.clip(out, 0.0, 1.0, out=out)
    np.fill_diagonal(out, 1.0)
    return out.astype(np.float32)
