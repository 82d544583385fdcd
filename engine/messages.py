"""The typed messages batsight publishes: one frozen dataclass per kind, the only place a schema is written.

Stages build these (``Pose.from_result``, ``Similarity.from_update``, ...), :mod:`engine.wire` turns
them into ZeroMQ frames and back (:func:`engine.wire.encode_message`, :func:`engine.wire.decode_message`),
JSON goes through :meth:`Message.to_json_dict` / :func:`from_json_dict`, and every sink receives them.
No code outside this module reads a header field by its string name. How a field is declared (header
field, :func:`~engine.schema.array_field`, :func:`~engine.schema.group_field`) and validated is
:mod:`engine.schema`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from engine.errors import WireFormatError
from engine.schema import (
    FRAME_KEYS,
    KINDS,
    WIRE_VERSION,
    ArraySpec,
    Message,
    array_field,
    array_from_json,
    array_specs,
    array_to_json,
    check_kind_source,
    group_field,
    header_names,
    json_safe,
    topic_for,
    validate_header_dataclass,
)
from engine.types import NUM_KEYPOINTS

if TYPE_CHECKING:
    from engine.analytics import AnalyticsUpdate, WristFit
    from engine.shots import ShotResult
    from engine.types import Frame, PoseResult

__all__ = [
    "FRAME_KEYS", "KINDS", "MESSAGE_TYPES", "WIRE_VERSION", "AnyMessage", "ArraySpec", "EndOfStream", "Fit",
    "FitStats", "FrameImage", "Health", "Message", "Pose", "Shot", "ShotLabel", "Similarity", "SourceHealth",
    "array_specs", "array_to_json", "check_kind_source", "from_json_dict", "from_parts", "header_names", "json_safe",
    "topic_for",
]

K = NUM_KEYPOINTS


# --------------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------------

HeatmapSource = Literal["model", "rendered", "none"]


@dataclass(frozen=True, kw_only=True, eq=False)
class FrameImage(Message):
    """``frame/<source_id>/``: the decoded frame as JPEG, opt-in (README wire table, ``publisher.frames``).

    Published just before the frame's ``pose/`` message, for at most ``publisher.frame_fps`` frames
    per second of each source, so a remote sink can draw results on the video.

    Attributes:
        frame_width, frame_height: Size of the source frame, pixels: the coordinate frame of
            ``pose/`` ``xyxy`` and ``keypoints_xy``.
        width, height: Size of the JPEG image, pixels (the frame scaled down to at most
            ``publisher.frame_max_width``, aspect ratio kept); a keypoint ``(x, y)`` lies at
            ``(x * width / frame_width, y * height / frame_height)`` in the image.
        quality: JPEG quality it was encoded with, 1-100.
        jpeg: uint8 ``[B]`` the JPEG file's bytes (baseline JPEG, 3 channels).
    """

    KIND: ClassVar[str] = "frame"

    frame_width: int
    frame_height: int
    width: int
    height: int
    quality: int
    jpeg: np.ndarray = array_field("B", dtype=np.uint8)

    @classmethod
    def from_image(cls, frame: Frame, image: np.ndarray, jpeg: bytes | np.ndarray, quality: int) -> FrameImage:
        """The ``frame/`` message of ``frame``, whose (scaled) BGR ``image`` ``[h, w, 3]`` was encoded as ``jpeg``."""
        return cls(
            **_frame_envelope(frame),
            frame_width=frame.width,
            frame_height=frame.height,
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            quality=int(quality),
            jpeg=np.frombuffer(jpeg, np.uint8) if isinstance(jpeg, bytes) else np.ascontiguousarray(jpeg, np.uint8),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Pose(Message):
    """``pose/<source_id>/``: every frame, in order (README wire table).

    Attributes:
        frame_width, frame_height: Frame size, pixels.
        n_persons: Persons found (``N``).
        batter_found: A batter was selected this frame.
        track_id: The batter's tracker id, or ``None``.
        heatmap_source: ``"model"``, ``"rendered"``, or ``"none"`` without a batter.
        inference_ms: Model time of this frame's share of its batch, ms.
        raw_pts_s: The stream's own ``pts * time_base``, seconds, or ``None``.
        timeline_break: First frame after a discontinuity of the source timeline.
        scene_cut: First frame after a camera cut.
        persons_xyxy: float32 ``[N, 4]`` boxes in frame pixels.
        persons_track_id: int64 ``[N]`` tracker ids (``-1`` untracked).
        xyxy: float32 ``[4]`` the batter's box, or ``None`` without a batter.
        keypoints_xy: float32 ``[17, 2]`` the batter's keypoints in frame pixels (COCO order), or ``None``.
        keypoints_conf: float32 ``[17]`` their confidences in [0, 1], or ``None``.
    """

    KIND: ClassVar[str] = "pose"

    frame_width: int
    frame_height: int
    n_persons: int
    batter_found: bool
    track_id: int | None
    heatmap_source: HeatmapSource
    inference_ms: float
    raw_pts_s: float | None
    timeline_break: bool
    scene_cut: bool
    persons_xyxy: np.ndarray = array_field("N", 4, dtype=np.float32)
    persons_track_id: np.ndarray = array_field("N", dtype=np.int64)
    xyxy: np.ndarray | None = array_field(4, dtype=np.float32, optional=True)
    keypoints_xy: np.ndarray | None = array_field(K, 2, dtype=np.float32, optional=True)
    keypoints_conf: np.ndarray | None = array_field(K, dtype=np.float32, optional=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        batter_arrays = [a is not None for a in (self.xyxy, self.keypoints_xy, self.keypoints_conf)]
        if any(batter_arrays) != self.batter_found or not all(batter_arrays) and self.batter_found:
            msg = f"xyxy, keypoints_xy and keypoints_conf must be given exactly when batter_found ({self.batter_found})"
            raise WireFormatError(msg)

    @classmethod
    def from_result(cls, result: PoseResult) -> Pose:
        """The ``pose/`` message of one frame's :class:`~engine.types.PoseResult`."""
        frame, persons, b = result.frame, result.persons, result.batter
        return cls(
            **_frame_envelope(frame),
            frame_width=frame.width,
            frame_height=frame.height,
            n_persons=len(persons),
            batter_found=b is not None,
            track_id=None if b is None else int(persons.track_id[b]),
            heatmap_source=result.heatmap_source if b is not None else "none",  # type: ignore[arg-type]
            inference_ms=round(result.inference_ms, 3),
            raw_pts_s=frame.raw_pts_s,
            timeline_break=frame.timeline_break,
            scene_cut=result.scene_cut,
            persons_xyxy=_f32(persons.xyxy),
            persons_track_id=np.ascontiguousarray(persons.track_id),
            xyxy=None if b is None else _f32(persons.xyxy[b]),
            keypoints_xy=None if b is None else _f32(persons.keypoints_xy[b]),
            keypoints_conf=None if b is None else _f32(persons.keypoints_conf[b]),
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Similarity(Message):
    """``sim/<source_id>/``: the Keypoint Dependency Matrix of a batter frame (thesis §6.1, Fig. 3).

    Attributes:
        window_s: Rolling window length, seconds.
        window_frames: Batter frames in ``window_mean``.
        pairs: ``"a/b"`` (COCO names) -> cosine similarity of that pair this frame.
        heatmap_source: ``"model"`` or ``"rendered"``.
        cosine_similarity: float32 ``[17, 17]`` this frame's matrix, values in [0, 1].
        window_mean: float32 ``[17, 17]`` mean over the last ``window_s``.
        cumulative_mean: float32 ``[17, 17]`` mean since the start (or the last timeline break).
    """

    KIND: ClassVar[str] = "sim"

    window_s: float
    window_frames: int
    pairs: dict[str, float]
    heatmap_source: HeatmapSource
    cosine_similarity: np.ndarray = array_field(K, K, dtype=np.float32)
    window_mean: np.ndarray = array_field(K, K, dtype=np.float32)
    cumulative_mean: np.ndarray = array_field(K, K, dtype=np.float32)

    @classmethod
    def from_update(cls, result: PoseResult, update: AnalyticsUpdate, window_s: float) -> Similarity:
        """The ``sim/`` message of one batter frame's analytics."""
        frame = result.frame
        return cls(
            **_frame_envelope(frame),
            window_s=window_s,
            window_frames=update.window_frames,
            pairs={k: float(v) for k, v in update.pairs.items()},
            heatmap_source=result.heatmap_source,  # type: ignore[arg-type]
            cosine_similarity=_f32(update.similarity),
            window_mean=_f32(update.window_mean),
            cumulative_mean=_f32(update.cumulative_mean),
        )


@dataclass(frozen=True)
class FitStats:
    """Residuals and descriptors of a wrist-vs-shoulder fit (thesis §6.2), written inline in ``fit/`` and ``shot/``.

    Attributes:
        rms_dx, rms_dy, rms_r: Residual RMS of the Δx, Δy, r fits (frame-normalised units), or ``None``.
        horizontal_span, vertical_span: ``max - min`` of the observed Δx, Δy.
        mean_elevation_deg: Mean ``degrees(atan2(-Δy, |Δx|))``, in [-90, 90].
        peak_r: Largest observed r; peak_r_time_s its time, seconds.
        r_vertex_time_s: Time of the quadratic r(t)'s vertex, seconds, or ``None``.
    """

    rms_dx: float | None
    rms_dy: float | None
    rms_r: float | None
    horizontal_span: float | None
    vertical_span: float | None
    mean_elevation_deg: float | None
    peak_r: float | None
    peak_r_time_s: float | None
    r_vertex_time_s: float | None

    def __post_init__(self) -> None:
        validate_header_dataclass(self)

    @classmethod
    def from_fit(cls, fit: WristFit, finite_only: bool = False) -> FitStats:
        """The descriptors of ``fit``; with ``finite_only``, NaN / inf become ``None``."""
        conv = _finite_or_none if finite_only else _float_or_none
        return cls(**{f.name: conv(getattr(fit, f.name)) for f in fields(cls)})


@dataclass(frozen=True, kw_only=True, eq=False)
class Fit(Message):
    """``fit/<source_id>/``: rolling Legendre fits of the wrist relative to the shoulder (thesis §6.2).

    Evaluate with ``numpy.polynomial.Legendre(dx_coef, domain=[t_start_s, t_end_s])(pts_s)``.

    Attributes:
        window_s: Rolling window length, seconds.
        wrist, shoulder: COCO names of the fitted pair.
        basis: ``"legendre"``.
        dx, dy: This frame's wrist - shoulder offset, frame widths / heights.
        n_points: Points fitted (>= 2).
        t_start_s, t_end_s: Fit domain, seconds of ``pts_s``.
        degree_xy: Degree of the Δx, Δy fits: ``analytics.fit_degree`` capped by
            :func:`engine.analytics.fit_degree_cap` for the window's points.
        stats: Residuals and descriptors (:class:`FitStats`).
        dx_coef, dy_coef: float64 ``[degree_xy + 1]`` Legendre coefficients.
        r_coef: float64 ``[<= 3]`` Legendre coefficients of r(t).
    """

    KIND: ClassVar[str] = "fit"

    window_s: float
    wrist: str
    shoulder: str
    basis: Literal["legendre"]
    dx: float | None
    dy: float | None
    n_points: int
    t_start_s: float
    t_end_s: float
    degree_xy: int
    stats: FitStats = group_field()
    dx_coef: np.ndarray = array_field("D", dtype=np.float64)
    dy_coef: np.ndarray = array_field("D", dtype=np.float64)
    r_coef: np.ndarray = array_field("R", dtype=np.float64)

    @classmethod
    def from_update(cls, result: PoseResult, update: AnalyticsUpdate, window_s: float, wrist: str,
                    shoulder: str) -> Fit | None:
        """The ``fit/`` message of one batter frame, or ``None`` when the frame has no fit."""
        fit, frame = update.fit, result.frame
        if fit is None:
            return None
        return cls(
            **_frame_envelope(frame),
            window_s=window_s,
            wrist=wrist,
            shoulder=shoulder,
            basis="legendre",
            dx=update.dx,
            dy=update.dy,
            n_points=fit.n_points,
            t_start_s=fit.t_start_s,
            t_end_s=fit.t_end_s,
            degree_xy=fit.degree_xy,
            stats=FitStats.from_fit(fit),
            dx_coef=np.ascontiguousarray(fit.dx_coef, np.float64),
            dy_coef=np.ascontiguousarray(fit.dy_coef, np.float64),
            r_coef=np.ascontiguousarray(fit.r_coef, np.float64),
        )


ShotLabel = Literal["pull", "cover_drive", "other"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Shot(Message):
    """``shot/<source_id>/``: one detected shot, when it ends (``frame_index``, ``pts_s`` = its last frame).

    Attributes:
        shot_index: 0-based shot count of the source.
        start_frame, end_frame: First and last frame index of the segment.
        start_s, end_s, duration_s: Segment times, seconds.
        label: ``pull``, ``cover_drive`` or ``other``, or ``None`` without a prediction.
        confidence: Probability of ``label``, or ``None``.
        probabilities: label -> probability, or ``None``.
        handedness: ``right`` or ``left``; handedness_source: ``config`` or ``inferred``.
        handedness_confidence: Probability in [0, 1] that ``handedness`` is right (1.0 when configured);
            ``None`` only in messages from before the field existed (they decode without it).
        wrist, shoulder: COCO names of the front arm.
        n_points: Frames where the front arm is visible (the fit's points).
        degree_xy: Degree of the Δx, Δy fits, or ``None`` without a fit.
        basis: ``"legendre"``.
        t_start_s, t_end_s: Fit domain, seconds, or ``None`` without a fit.
        stats: :class:`FitStats` (non-finite values as ``None``), or ``None`` without a fit.
        classifier_version: Version of the classifier parameters.
        dx_coef, dy_coef, r_coef: float64 whole-segment Legendre coefficients (empty without a fit).
        t_s, dx, dy: float64 ``[n]`` per segment frame (front arm, right-hander frame, NaN where not visible).
        pair_similarity: float32 ``[n]`` heatmap similarity of the front wrist / shoulder, NaN where missing.
    """

    KIND: ClassVar[str] = "shot"

    shot_index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    duration_s: float
    label: ShotLabel | None
    confidence: float | None
    probabilities: dict[str, float] | None
    handedness: Literal["right", "left"]
    handedness_source: Literal["config", "inferred"]
    handedness_confidence: float | None = None
    wrist: str
    shoulder: str
    n_points: int
    degree_xy: int | None
    basis: Literal["legendre"]
    t_start_s: float | None
    t_end_s: float | None
    stats: FitStats | None = group_field(optional=True)
    classifier_version: str
    dx_coef: np.ndarray = array_field("D", dtype=np.float64)
    dy_coef: np.ndarray = array_field("D", dtype=np.float64)
    r_coef: np.ndarray = array_field("R", dtype=np.float64)
    t_s: np.ndarray = array_field("n", dtype=np.float64)
    dx: np.ndarray = array_field("n", dtype=np.float64)
    dy: np.ndarray = array_field("n", dtype=np.float64)
    pair_similarity: np.ndarray = array_field("n", dtype=np.float32)

    @classmethod
    def from_result(cls, source_id: str, result: ShotResult) -> Shot:
        """The ``shot/`` message of a finished :class:`~engine.shots.ShotResult`."""
        seg, fit, pred = result.segment, result.fit, result.prediction
        empty = np.zeros((0,), np.float64)
        return cls(
            source_id=source_id,
            frame_index=int(seg.end_frame),
            pts_s=float(seg.end_s),
            capture_time_ns=None,
            shot_index=int(result.shot_index),
            start_frame=int(seg.start_frame),
            end_frame=int(seg.end_frame),
            start_s=float(seg.start_s),
            end_s=float(seg.end_s),
            duration_s=float(seg.duration_s),
            label=pred.label if pred is not None else None,  # type: ignore[arg-type]
            confidence=_finite_or_none(pred.confidence) if pred is not None else None,
            probabilities={k: float(v) for k, v in pred.probabilities.items()} if pred is not None else None,
            handedness=result.handedness,  # type: ignore[arg-type]
            handedness_source=result.handedness_source,  # type: ignore[arg-type]
            handedness_confidence=float(result.handedness_confidence),
            wrist=result.wrist,
            shoulder=result.shoulder,
            n_points=int(fit.n_points) if fit is not None else int(np.count_nonzero(np.isfinite(result.dx))),
            degree_xy=int(fit.degree_xy) if fit is not None else None,
            basis="legendre",
            t_start_s=_finite_or_none(fit.t_start_s) if fit is not None else None,
            t_end_s=_finite_or_none(fit.t_end_s) if fit is not None else None,
            stats=FitStats.from_fit(fit, finite_only=True) if fit is not None else None,
            classifier_version=result.classifier_version,
            dx_coef=np.ascontiguousarray(fit.dx_coef, np.float64) if fit is not None else empty,
            dy_coef=np.ascontiguousarray(fit.dy_coef, np.float64) if fit is not None else empty.copy(),
            r_coef=np.ascontiguousarray(fit.r_coef, np.float64) if fit is not None else empty.copy(),
            t_s=np.ascontiguousarray(result.t_s, np.float64),
            dx=np.ascontiguousarray(result.dx, np.float64),
            dy=np.ascontiguousarray(result.dy, np.float64),
            pair_similarity=np.ascontiguousarray(result.pair_similarity, np.float32),
        )


SourceState = Literal["connecting", "live", "stalled", "reconnecting", "ended", "failed"]


@dataclass(frozen=True)
class SourceHealth:
    """One source's entry in ``health/`` ``sources``.

    Attributes:
        state: ``connecting``, ``live``, ``stalled``, ``reconnecting``, ``ended`` or ``failed``.
        reconnects: Successful reopenings of a live source.
        frames_in: Frames the reader took from the source; frames_out: frames published.
        dropped: Frames dropped by the live drop-oldest policy; corrupt: damaged frames/packets
            (undecodable, or flagged by the demuxer).
        concealed: Frames decoded with concealed errors (published).
        queue_depth: Frames waiting in the source's queue.
        fps_in, fps_out: Rates over about one health period, frames per second.
        batter_frames: Frames with a batter.
        worker: ``batsight cluster`` only: the worker actor running the source (``None`` in a
            single-machine run).
        node: ``batsight cluster`` only: the Ray node id of that worker (``None`` otherwise).
    """

    state: SourceState
    reconnects: int
    frames_in: int
    frames_out: int
    dropped: int
    corrupt: int
    queue_depth: int
    fps_in: float
    fps_out: float
    batter_frames: int
    concealed: int = 0
    worker: str | None = None
    node: str | None = None

    def __post_init__(self) -> None:
        validate_header_dataclass(self)


@dataclass(frozen=True, kw_only=True, eq=False)
class Health(Message):
    """``health/``: engine-wide state, every ``publisher.health_period_s`` and once at the end.

    Attributes:
        engine_state: ``running`` or ``stopped``.
        uptime_s: Seconds since the pipeline started.
        model: Model class name; device: torch device string.
        sources: source id -> :class:`SourceHealth`.
    """

    KIND: ClassVar[str] = "health"

    source_id: str = ""
    engine_state: Literal["running", "stopped"]
    uptime_s: float
    model: str
    device: str
    sources: dict[str, SourceHealth]


@dataclass(frozen=True, kw_only=True, eq=False)
class EndOfStream(Message):
    """``eos/<source_id>/``: once when a source ends.

    Attributes:
        frames: Frames published for the source.
        dropped: Frames dropped (live drop-oldest).
        corrupt: Damaged frames or packets (undecodable, or flagged by the demuxer).
        concealed: Frames decoded with concealed errors (published).
        error: The error that ended the source, as text, or ``None``.
        reason: ``end``, ``error``, ``stopped``, ``timeout`` or ``truncated`` (a file that ended before
            the frames its container announces, or with a damaged last packet; all it held was published).
        last_seq: kind -> ``seq`` of the last message of that kind published for the source (kinds
            with none left out); set by the publisher. A subscriber that received every ``seq`` up to
            these got the whole run of the source.
    """

    KIND: ClassVar[str] = "eos"

    frames: int
    dropped: int
    corrupt: int
    error: str | None
    reason: Literal["end", "error", "stopped", "timeout", "truncated"]
    concealed: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)


#: Every message class by kind.
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls for cls in (FrameImage, Pose, Similarity, Fit, Shot, Health, EndOfStream)
}
AnyMessage = FrameImage | Pose | Similarity | Fit | Shot | Health | EndOfStream


def from_parts(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> AnyMessage:
    """The typed message of a decoded header (its ``kind`` picks the class) and its arrays.

    Raises:
        WireFormatError: unknown kind, or fields / arrays that do not fit the kind's schema.
    """
    kind = header.get("kind")
    if kind not in MESSAGE_TYPES:
        msg = f"kind must be one of {', '.join(KINDS)}, got {kind!r}"
        raise WireFormatError(msg)
    return MESSAGE_TYPES[kind].from_parts(header, arrays)  # type: ignore[return-value]


def from_json_dict(data: Mapping[str, Any]) -> AnyMessage:
    """Inverse of :meth:`Message.to_json_dict` (one jsonl line of the ``jsonl`` sink).

    ``None`` in a float array becomes NaN; array dtypes and the shapes of empty arrays come from the
    schema.

    Raises:
        WireFormatError: not a map, wrong ``v``, unknown kind, ``topic`` not matching, or fields /
            arrays that do not fit the kind's schema.
    """
    if not isinstance(data, Mapping):
        msg = f"a message must be a JSON object, got {type(data).__name__}"
        raise WireFormatError(msg)
    if data.get("v") != WIRE_VERSION:
        msg = f"unsupported wire version: expected {WIRE_VERSION}, got {data.get('v')!r}"
        raise WireFormatError(msg)
    kind = data.get("kind")
    if kind not in MESSAGE_TYPES:
        msg = f"kind must be one of {', '.join(KINDS)}, got {kind!r}"
        raise WireFormatError(msg)
    cls = MESSAGE_TYPES[kind]
    raw_arrays = data.get("arrays", {})
    if not isinstance(raw_arrays, Mapping):
        msg = f"arrays must be a map, got {type(raw_arrays).__name__}"
        raise WireFormatError(msg)
    specs = array_specs(cls)
    arrays = {}
    for name, value in raw_arrays.items():
        if name not in specs:
            msg = f"{kind} message has unexpected array {name!r}"
            raise WireFormatError(msg)
        arrays[name] = array_from_json(name, value, specs[name])
    header = {key: value for key, value in data.items() if key not in ("topic", "arrays")}
    message = cls.from_parts(header, arrays)
    if "topic" in data and data["topic"] != message.topic:
        msg = f"topic must match kind and source_id: expected {message.topic!r}, got {data['topic']!r}"
        raise WireFormatError(msg)
    return message  # type: ignore[return-value]


def _frame_envelope(frame: Frame) -> dict[str, Any]:
    """``source_id``, ``frame_index``, ``pts_s``, ``capture_time_ns`` of the frame a message is about."""
    return {
        "source_id": frame.source_id,
        "frame_index": frame.frame_index,
        "pts_s": frame.pts_s,
        "capture_time_ns": frame.capture_time_ns,
    }


def _f32(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=np.float32)


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _finite_or_none(value: float | None) -> float | None:
    """Plain float, or ``None`` for ``None`` / NaN / inf."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None
