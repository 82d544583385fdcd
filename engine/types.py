"""Values passed between pipeline stages: frozen dataclasses of validated numpy arrays.

Coordinates are pixels in the original frame (``0 <= x < W``, ``0 <= y < H``, origin top-left,
x right, y down) unless a name says ``_norm`` (divided by frame width / height, so in [0, 1]).
Times are seconds (``_s``), milliseconds (``_ms``) or nanoseconds (``_ns``) as named.
Pattern: supervision ``KeyPoints`` (``supervision/key_points/core.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeAlias

import numpy as np

#: The 17 COCO person keypoints, in COCO order (index = position in this tuple).
COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINT_NAMES)
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO_KEYPOINT_NAMES)}

#: COCO OKS per-keypoint constants sigma_k (cocoapi ``COCOeval.computeOks``), COCO order.
COCO_OKS_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
    dtype=np.float32,
) / 10.0

#: COCO skeleton edges as 0-based keypoint index pairs (for drawing).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


#: Side of the default heatmap grid, cells: torchvision's Keypoint R-CNN logits are ``56 x 56``
#: (14x14 RoI features, x2 transposed conv, x2 bilinear upsampling), as are the rendered heatmaps
#: by default (``analytics.heatmap_size``).
HEATMAP_SIZE = 56

#: One expected dimension for :func:`check_array`: an exact size (``int`` or numpy integer), a
#: dimension name such as ``"N"`` (any size, printed as the name) or ``None`` (any size, ``*``).
Dim: TypeAlias = int | np.integer | str | None


def shape_text(shape: tuple[Dim, ...]) -> str:
    """Expected shape as text, as numpy prints shapes: ``(N, 17, 2)``, ``(4,)``, ``(*, *, 3)``.

    ``None`` prints as ``*``, a dimension name as itself.
    """
    parts = ["*" if s is None else str(s) for s in shape]
    return f"({parts[0]},)" if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def check_array(
    name: str,
    value: object,
    shape: tuple[Dim, ...],
    dtype: type | np.dtype | str | None = None,
    *,
    convert: bool = False,
    dims: dict[str, int] | None = None,
) -> np.ndarray:
    """Validate (and with ``convert``, first convert) one array argument or field; return it.

    The one shape / dtype check of the package. Messages name the value and give expected against
    actual, e.g. "`keypoints_xy` must have shape (N, 17, 2), got (3, 17, 3)", or with ``dims``
    "`keypoints_xy` must have shape (N, K, 2) = (3, 17, 2), got (3, 17, 3)". Checks run in the
    order type, shape, dtype. Pattern: supervision ``validators/__init__.py``.

    Args:
        name: Name of the argument or field, shown in backticks in the message.
        value: The array. With ``convert``, anything ``numpy.asarray`` accepts.
        shape: Expected shape, one entry per dimension: an ``int`` must match exactly, a dimension
            name (``"N"``) or ``None`` matches any size.
        dtype: Required dtype; ``None`` accepts any. With ``convert`` the value is converted to it
            (``numpy.asarray(value, dtype)``) instead of being checked.
        convert: Convert ``value`` with ``numpy.asarray`` before checking the shape, instead of
            requiring an ``ndarray`` of ``dtype``.
        dims: Sizes of named dimensions, shared between calls (the parallel arrays of one value):
            a name found here must have that size, a name not yet here is bound to this array's
            size (the dict is updated, also when the check then fails). ``None``: names match any
            size, independently.

    Returns:
        ``value`` itself, or with ``convert`` the converted array (no copy when it already fits).

    Raises:
        TypeError: without ``convert``, ``value`` is not a ``numpy.ndarray``.
        ValueError: wrong number of dimensions or a wrong size; without ``convert``, a dtype other
            than ``dtype``.
    """
    if convert:
        arr = np.asarray(value, dtype=dtype)
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        msg = f"`{name}` must be a numpy.ndarray, got {type(value).__name__}"
        raise TypeError(msg)
    ok = arr.ndim == len(shape)
    if ok:
        for want, got in zip(shape, arr.shape, strict=True):
            if isinstance(want, str) and dims is not None:
                want = dims.setdefault(want, got)
            if want is not None and not isinstance(want, str) and want != got:
                ok = False
    if not ok:
        bound = ""
        if dims is not None:
            bound = " = " + shape_text(tuple(dims.get(s, s) if isinstance(s, str) else s for s in shape))
        msg = f"`{name}` must have shape {shape_text(shape)}{bound}, got {arr.shape}"
        raise ValueError(msg)
    if not convert and dtype is not None and arr.dtype != np.dtype(dtype):
        msg = f"`{name}` must have dtype {np.dtype(dtype)}, got {arr.dtype}"
        raise ValueError(msg)
    return arr


@dataclass(frozen=True)
class Frame:
    """One decoded video frame.

    Attributes:
        source_id: Name of the source that produced the frame (``[A-Za-z0-9_.-]+``).
        frame_index: 0-based index of the frame among the frames this source delivered
            (decoded frames, counting skipped corrupt ones is the source's job: they get no index).
        pts_s: Presentation time in seconds on the source's own timeline, strictly increasing
            within a source: ``pts * time_base`` from PyAV plus a per-source offset that the source
            moves where the raw timeline breaks (PTS reset or jump back, a huge jump forward, a
            reconnect), so the published time continues one frame interval after the previous
            frame. Without PTS: ``frame_index / fps`` (files) or wall-clock seconds (live).
        capture_time_ns: ``time.time_ns()`` (Unix epoch, ns) when the reader thread got the frame.
        image: ``uint8`` array ``[H, W, 3]``, BGR channel order (OpenCV / Ultralytics convention).
        raw_pts_s: The stream's own ``pts * time_base`` in seconds, before any correction, or
            ``None`` when the frame had no PTS (or the source has no stream clock).
        timeline_break: ``True`` on the first frame after a discontinuity of the source timeline
            (a reconnect, a PTS reset / backwards step, a jump forward beyond the source's limit):
            ``pts_s`` is continuous across it but the media is not, so rolling windows must restart
            at this frame.
    """

    source_id: str
    frame_index: int
    pts_s: float
    capture_time_ns: int
    image: np.ndarray = field(repr=False)
    raw_pts_s: float | None = None
    timeline_break: bool = False

    def __post_init__(self) -> None:
        check_array("image", self.image, (None, None, 3), np.uint8)

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.image.shape[1])


@dataclass(frozen=True)
class DeferredFrame:
    """A decoded frame whose BGR image is made only when the engine takes it from the source's queue.

    A live source queues these instead of :class:`Frame` (:meth:`engine.sources.Source.queued_frames`):
    most live frames are replaced by a newer one before the batcher takes them, and converting
    those (YUV -> BGR, a full-frame copy) would be wasted work. The source stamps ``frame_index``,
    ``pts_s`` and ``capture_time_ns`` when it decodes the frame; only the image conversion waits.

    Attributes:
        source_id: The source that decoded the frame.
        nbytes: Bytes the pending frame holds (its decoded picture planes), counted against the
            run's queue budget (``source.queue_budget_mib``).
        make: Builds the finished :class:`Frame` (converts the picture); called by :meth:`resolve`.
        timeline_break: The finished frame's ``timeline_break``: its own, or set by the queue when
            it replaced a dropped frame that had one (the break must not be lost with the frame).
    """

    source_id: str
    nbytes: int
    make: Callable[[], Frame] = field(repr=False)
    timeline_break: bool = False

    def resolve(self) -> Frame:
        """The finished frame (``image`` ``uint8 [H, W, 3]`` BGR), converted now on the calling thread."""
        frame = self.make()
        if self.timeline_break and not frame.timeline_break:
            frame = replace(frame, timeline_break=True)
        return frame


@dataclass(frozen=True)
class EndOfStream:
    """Marker a source sends after its last frame (or when it fails).

    Attributes:
        source_id: The source that ended.
        frames: Frames delivered by the source.
        dropped: Frames dropped by the live drop-oldest policy.
        corrupt: Frames or packets skipped because they could not be decoded.
        error: The exception that ended the source, or ``None`` for a normal end.
        stopped: The source ended because it was asked to stop (signal, ``Pipeline.stop``).
    """

    source_id: str
    frames: int = 0
    dropped: int = 0
    corrupt: int = 0
    error: BaseException | None = None
    stopped: bool = False


@dataclass(frozen=True)
class Persons:
    """All persons found in one frame, as parallel arrays (N persons, K = 17 keypoints).

    Attributes:
        xyxy: ``float32 [N, 4]`` boxes ``x1, y1, x2, y2`` in frame pixels, ``x1 < x2``, ``y1 < y2``.
        conf: ``float32 [N]`` detection confidence in [0, 1].
        track_id: ``int64 [N]`` tracker identity, ``-1`` where the tracker gave none.
        keypoints_xy: ``float32 [N, K, 2]`` keypoint x, y in frame pixels.
        keypoints_conf: ``float32 [N, K]`` per-keypoint confidence in [0, 1].
    """

    xyxy: np.ndarray
    conf: np.ndarray
    track_id: np.ndarray
    keypoints_xy: np.ndarray
    keypoints_conf: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.xyxy) if isinstance(self.xyxy, np.ndarray) and self.xyxy.ndim == 2 else None
        check_array("xyxy", self.xyxy, (n, 4), np.float32)
        check_array("conf", self.conf, (n,), np.float32)
        check_array("track_id", self.track_id, (n,), np.int64)
        check_array("keypoints_xy", self.keypoints_xy, (n, NUM_KEYPOINTS, 2), np.float32)
        check_array("keypoints_conf", self.keypoints_conf, (n, NUM_KEYPOINTS), np.float32)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> Persons:
        """No persons, with every dimension kept (``xyxy`` is ``[0, 4]``, keypoints ``[0, 17, 2]``)."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            conf=np.zeros((0,), np.float32),
            track_id=np.zeros((0,), np.int64),
            keypoints_xy=np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
            keypoints_conf=np.zeros((0, NUM_KEYPOINTS), np.float32),
        )

    def take(self, index: np.ndarray | list[int]) -> Persons:
        """Return the persons at ``index`` (integer positions), keeping all arrays parallel."""
        idx = np.asarray(index, dtype=np.int64)
        return Persons(
            xyxy=self.xyxy[idx],
            conf=self.conf[idx],
            track_id=self.track_id[idx],
            keypoints_xy=self.keypoints_xy[idx],
            keypoints_conf=self.keypoints_conf[idx],
        )


@dataclass(frozen=True)
class PoseResult:
    """What the inference stage hands to analytics for one frame.

    Attributes:
        frame: The frame (its image is kept for sinks that draw; analytics do not read it).
        persons: Every tracked person in the frame.
        batter: Index into ``persons`` of the selected batter, or ``None`` when no batter was found.
        heatmaps: ``float32 [K, S, S]`` heatmap logits of the batter on its box grid (model output
            or rendered), or ``None``.
        heatmap_source: ``"model"`` when ``heatmaps`` came from the network, ``"rendered"`` when drawn
            from keypoints, ``"none"`` when there is no batter.
        inference_ms: Model time for this frame's share of its batch, milliseconds.
        similarity: ``float32 [K, K]`` dependency matrix of ``heatmaps`` when the model computed it
            on the inference device, else ``None`` (analytics then compute it).
        scene_cut: The camera cut to a new view at this frame (:mod:`engine.scenecut`).
    """

    frame: Frame
    persons: Persons
    batter: int | None
    heatmaps: np.ndarray | None = field(default=None, repr=False)
    heatmap_source: str = "none"
    inference_ms: float = 0.0
    similarity: np.ndarray | None = field(default=None, repr=False)
    scene_cut: bool = False


@dataclass(frozen=True)
class KeypointHeatmaps:
    """Keypoints and heatmap logits of the N boxes of one frame (K keypoints, S x S heatmap grid).

    What a model backend's heatmap refinement returns per image (the ``keypointrcnn`` plugin:
    :meth:`engine.models.keypointrcnn.KeypointRCNNTopDown.infer_keypoints`).

    Attributes:
        keypoints_xy: ``float32 [N, K, 2]`` keypoint x, y in frame pixels (origin top-left, x right,
            y down). ``NaN`` for a box where the model found no person (Keypoint R-CNN ``full`` mode).
        keypoints_score: ``float32 [N, K]`` torchvision's ``keypoints_scores``: the heatmap logit at
            the chosen cell of the bicubically upsampled map (unbounded, not a probability).
            ``NaN`` where no person was found.
        keypoints_conf: ``float32 [N, K]`` in [0, 1]: ``sigmoid(keypoints_score)``. Monotone in the
            score and 0.5 at logit 0; it is not a calibrated probability (the head is trained with a
            spatial softmax over the 56 x 56 cells, DESIGN §4 normalises heatmaps that way). ``0``
            where no person was found.
        heatmaps: ``float32 [N, K, S, S]`` raw keypoint logits (``S = 56``), row-major: cell
            ``[k, i, j]`` covers the box slice ``x1 + [j, j + 1) * w / S``, ``y1 + [i, i + 1) * h / S``
            of ``heatmap_xyxy``. ``NaN`` where no person was found.
        heatmap_xyxy: ``float32 [N, 4]`` the box ``x1, y1, x2, y2`` in frame pixels that the S x S grid
            spans (the RoI). ``NaN`` where no person was found.
        similarity: ``float32 [N, K, K]`` the Keypoint Dependency Matrix of each box (thesis §6.1:
            cosine similarity of the spatial-softmax heatmaps), computed on the inference device in
            one batched matmul (:func:`engine.analytics.similarity.dependency_matrices`); ``None``
            when not computed.

    Raises:
        TypeError: a field is not a ``numpy.ndarray`` (from ``__post_init__``).
        ValueError: ``keypoints_xy`` is not 3-D, or a field's shape or dtype (float32) does not fit.
    """

    keypoints_xy: np.ndarray
    keypoints_score: np.ndarray
    keypoints_conf: np.ndarray
    heatmaps: np.ndarray = field(repr=False)
    heatmap_xyxy: np.ndarray
    similarity: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        xy = self.keypoints_xy
        if not isinstance(xy, np.ndarray) or xy.ndim != 3:
            got = xy.shape if isinstance(xy, np.ndarray) else type(xy).__name__
            msg = f"`keypoints_xy` must be a numpy.ndarray of shape (N, K, 2), got {got}"
            raise ValueError(msg)
        n, k = int(xy.shape[0]), int(xy.shape[1])
        s = (
            int(self.heatmaps.shape[-1])
            if isinstance(self.heatmaps, np.ndarray) and self.heatmaps.ndim == 4
            else HEATMAP_SIZE
        )
        check_array("keypoints_xy", xy, (n, k, 2), np.float32)
        check_array("keypoints_score", self.keypoints_score, (n, k), np.float32)
        check_array("keypoints_conf", self.keypoints_conf, (n, k), np.float32)
        check_array("heatmaps", self.heatmaps, (n, k, s, s), np.float32)
        check_array("heatmap_xyxy", self.heatmap_xyxy, (n, 4), np.float32)
        if self.similarity is not None:
            check_array("similarity", self.similarity, (n, k, k), np.float32)

    def __len__(self) -> int:
        return int(self.keypoints_xy.shape[0])

    @classmethod
    def empty(cls, num_keypoints: int = NUM_KEYPOINTS, heatmap_size: int = HEATMAP_SIZE) -> KeypointHeatmaps:
        """No boxes, every dimension kept (``keypoints_xy`` is ``[0, K, 2]``, ``heatmaps`` ``[0, K, S, S]``)."""
        k, s = num_keypoints, heatmap_size
        return cls(
            keypoints_xy=np.zeros((0, k, 2), np.float32),
            keypoints_score=np.zeros((0, k), np.float32),
            keypoints_conf=np.zeros((0, k), np.float32),
            heatmaps=np.zeros((0, k, s, s), np.float32),
            heatmap_xyxy=np.zeros((0, 4), np.float32),
        )
