"""The typed messages batsight publishes: one frozen dataclass per kind, the only place a schema is written.

Stages build these (``Pose.from_result``, ``Similarity.from_update``, ...), :mod:`engine.wire` turns
them into ZeroMQ frames and back (:func:`engine.wire.encode_message`, :func:`engine.wire.decode_message`),
JSON goes through :meth:`Message.to_json_dict` / :func:`from_json_dict`, and every sink receives them.
No code outside this module reads a header field by its string name.

A field of a message class is one of:

* a **header field** (a plain annotation): one msgpack/JSON value of the header, in class order;
* an **array field** (:func:`array_field`): one raw buffer, with its dtype and shape declared here
  (named dims such as ``"N"`` must agree between the arrays of one message);
* a **group** (:class:`FitStats`): a dataclass whose fields are written inline, in place, as header
  fields (all ``null`` when the group is ``None``).

On the wire every header also carries the envelope ``v``, ``kind``, ``source_id``, ``seq``,
``frame_index``, ``pts_s``, ``capture_time_ns``, ``publish_time_ns`` and ``arrays`` (README, "Wire
format"). ``seq`` and ``publish_time_ns`` are set by the publisher; a message built by a stage has
``seq == 0`` and ``publish_time_ns == 0`` until it is decoded from the wire.

Pattern: supervision ``KeyPoints`` (validated frozen dataclass of parallel arrays); DESIGN §5.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union, get_args, get_origin

import numpy as np

from engine.errors import WireFormatError
from engine.types import NUM_KEYPOINTS, check_array, shape_text

if TYPE_CHECKING:
    from engine.analytics import AnalyticsUpdate, WristFit
    from engine.shots import ShotResult
    from engine.types import PoseResult

#: Schema version written to and required in every header's ``v``.
WIRE_VERSION = 1

#: Message kinds, in pipeline order. ``health`` is engine-wide; every other kind is per source.
KINDS: tuple[str, ...] = ("pose", "sim", "fit", "shot", "health", "eos")

#: Header keys of the envelope, in header order (``frame_index``, ``pts_s``, ``capture_time_ns`` are
#: ``None`` for kinds without a frame); kind-specific fields follow ``capture_time_ns``.
FRAME_KEYS: tuple[str, ...] = ("frame_index", "pts_s", "capture_time_ns")
_ENVELOPE = frozenset({"source_id", "seq", "publish_time_ns", *FRAME_KEYS})

_SOURCE_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")
K = NUM_KEYPOINTS


def check_kind_source(kind: object, source_id: object) -> None:
    """Raise :class:`WireFormatError` unless ``kind`` is in :data:`KINDS` and ``source_id`` fits it.

    ``source_id`` must be ``""`` for ``health`` and match ``[A-Za-z0-9_.-]+`` for every other kind.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        msg = f"kind must be one of {', '.join(KINDS)}, got {kind!r}"
        raise WireFormatError(msg)
    if not isinstance(source_id, str):
        msg = f"source_id must be a str, got {type(source_id).__name__}"
        raise WireFormatError(msg)
    if kind == "health":
        if source_id != "":
            msg = f"source_id of a health message must be '', got {source_id!r}"
            raise WireFormatError(msg)
    elif _SOURCE_ID_RE.fullmatch(source_id) is None:
        msg = f"source_id must match [A-Za-z0-9_.-]+, got {source_id!r}"
        raise WireFormatError(msg)


def topic_for(kind: str, source_id: str) -> bytes:
    """Topic frame of a message: ``b"<kind>/<source_id>/"``, or ``b"health/"`` for ``health``.

    Raises:
        WireFormatError: unknown ``kind`` or invalid ``source_id``.
    """
    check_kind_source(kind, source_id)
    if kind == "health":
        return b"health/"
    return f"{kind}/{source_id}/".encode("ascii")


# --------------------------------------------------------------------------------------------------
# Field declarations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArraySpec:
    """Declared dtype and shape of an array field.

    Attributes:
        shape: One entry per dim: an ``int`` (fixed size) or a ``str`` naming a dim that must be
            equal for every array of the message that names it (``"N"`` persons, ``"n"`` frames).
        dtype: numpy dtype of the buffer.
        optional: The array may be ``None`` (it is then absent from the wire message).
    """

    shape: tuple[int | str, ...]
    dtype: np.dtype
    optional: bool = False

    def shape_text(self) -> str:
        """The shape as text, e.g. ``(N, 4)``."""
        return shape_text(self.shape)


def array_field(*shape: int | str, dtype: type | str, optional: bool = False) -> Any:
    """Declare an array field of a message class (see :class:`ArraySpec`)."""
    spec = ArraySpec(tuple(shape), np.dtype(dtype), optional)
    return field(default=None if optional else MISSING, repr=False, metadata={"array": spec})


def group_field(*, optional: bool = False) -> Any:
    """Declare a group field: a dataclass written inline, field by field, into the header."""
    return field(default=None if optional else MISSING, metadata={"group": True})


@dataclass(frozen=True)
class _Field:
    name: str
    role: Literal["header", "array", "group"]
    hint: Any
    spec: ArraySpec | None = None


def _is_optional(hint: Any) -> tuple[bool, Any]:
    """``(True, T)`` for ``T | None``; ``(False, hint)`` otherwise."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) < len(get_args(hint)):
            return True, args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
    return False, hint


@cache
def _schema(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if f.name in _ENVELOPE:
            continue
        if "array" in f.metadata:
            out.append(_Field(f.name, "array", hints[f.name], f.metadata["array"]))
        elif "group" in f.metadata:
            out.append(_Field(f.name, "group", hints[f.name]))
        else:
            out.append(_Field(f.name, "header", hints[f.name]))
    return tuple(out)


def _group_class(f: _Field) -> type:
    return _is_optional(f.hint)[1]


def _check_value(path: str, value: Any, hint: Any) -> Any:
    """Validate ``value`` against the annotation ``hint``; return it (ints widened to float for floats).

    Raises:
        WireFormatError: the value does not have the declared type (message names ``path``).
    """
    optional, inner = _is_optional(hint)
    if value is None:
        if optional:
            return None
        msg = f"field {path} must not be null"
        raise WireFormatError(msg)
    origin = get_origin(inner)
    if origin is Literal:
        if value not in get_args(inner):
            msg = f"field {path} must be one of {', '.join(map(repr, get_args(inner)))}, got {value!r}"
            raise WireFormatError(msg)
        return value
    if inner is bool:
        ok = isinstance(value, bool)
    elif inner is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif inner is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        ok = isinstance(value, float)
    elif inner is str:
        ok = isinstance(value, str)
    elif origin is dict:
        key_t, val_t = get_args(inner)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            msg = f"field {path} must be a map with str keys, got {type(value).__name__}"
            raise WireFormatError(msg)
        if is_dataclass(val_t):
            return {
                k: v if isinstance(v, val_t) else _plain_to_dataclass(f"{path}.{k}", v, val_t) for k, v in value.items()
            }
        return {k: _check_value(f"{path}.{k}", v, val_t) for k, v in value.items()}
    else:  # pragma: no cover - a schema written with an unsupported annotation
        msg = f"field {path} has an unsupported annotation {inner!r}"
        raise TypeError(msg)
    if not ok:
        want = f"{inner.__name__}{' or null' if optional else ''}"
        msg = f"field {path} must be {want}, got {type(value).__name__} {value!r}"
        raise WireFormatError(msg)
    return value


def _plain_to_dataclass(path: str, value: Any, cls: type) -> Any:
    """Build the (header-only) dataclass ``cls`` from a plain map, validating each field."""
    if not isinstance(value, Mapping):
        msg = f"field {path} must be a map, got {type(value).__name__}"
        raise WireFormatError(msg)
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in value]
    extra = sorted(set(value) - set(names))
    if missing or extra:
        msg = f"field {path} must have keys {', '.join(names)}; missing {missing}, unexpected {extra}"
        raise WireFormatError(msg)
    return cls(**{n: value[n] for n in names})


def _validate_header_dataclass(obj: Any) -> None:
    """Type-check (and widen ints to floats in) every field of a header-only dataclass."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        checked = _check_value(f.name, value, hints[f.name])
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


# --------------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class Message:
    """Base of every message kind (use a subclass).

    Attributes:
        source_id: The source, ``[A-Za-z0-9_.-]+`` (``""`` for :class:`Health`).
        frame_index: 0-based frame index within the source, or ``None`` (health, eos).
        pts_s: Presentation time of the frame on the source timeline, seconds, or ``None``.
        capture_time_ns: Unix epoch ns when the frame was read, or ``None``.
        seq: Per ``(kind, source_id)`` counter set by the publisher (0 before publication).
        publish_time_ns: Unix epoch ns when the message was encoded (0 before publication).

    Raises:
        WireFormatError: from ``__post_init__`` on a field of the wrong type, a value outside its
            allowed set, or an array of the wrong dtype or shape.
    """

    KIND: ClassVar[str] = ""

    source_id: str
    frame_index: int | None = None
    pts_s: float | None = None
    capture_time_ns: int | None = None
    seq: int = 0
    publish_time_ns: int = 0

    def __post_init__(self) -> None:
        check_kind_source(self.KIND, self.source_id)
        for name, hint in (("frame_index", int | None), ("pts_s", float | None), ("capture_time_ns", int | None),
                           ("seq", int), ("publish_time_ns", int)):
            self._set_checked(name, _check_value(name, getattr(self, name), hint))
        if self.seq < 0:
            msg = f"seq must be an int >= 0, got {self.seq}"
            raise WireFormatError(msg)
        dims: dict[str, int] = {}
        for f in _schema(type(self)):
            value = getattr(self, f.name)
            if f.role == "header":
                self._set_checked(f.name, _check_value(f.name, value, f.hint))
            elif f.role == "group":
                optional, cls = _is_optional(f.hint)
                if value is None and not optional:
                    msg = f"field {f.name} must not be null"
                    raise WireFormatError(msg)
                if value is not None and not isinstance(value, cls):
                    msg = f"field {f.name} must be a {cls.__name__}, got {type(value).__name__}"
                    raise WireFormatError(msg)
            else:
                assert f.spec is not None  # noqa: S101 - array fields always carry a spec
                _check_array_field(f.name, value, f.spec, dims)

    def _set_checked(self, name: str, value: Any) -> None:
        if value is not getattr(self, name):
            object.__setattr__(self, name, value)

    @property
    def kind(self) -> str:
        """The message kind, one of :data:`KINDS`."""
        return self.KIND

    @property
    def topic(self) -> str:
        """Topic as text, e.g. ``"pose/cam1/"`` or ``"health/"``."""
        return topic_for(self.KIND, self.source_id).decode("ascii")

    # ---------------------------------------------------------------------------------- encoding
    def header_fields(self) -> dict[str, Any]:
        """Header fields in wire order: ``frame_index``, ``pts_s``, ``capture_time_ns``, then the kind's.

        Groups are written inline; values are plain Python (dataclass maps become dicts).
        """
        out: dict[str, Any] = {key: getattr(self, key) for key in FRAME_KEYS}
        for f in _schema(type(self)):
            value = getattr(self, f.name)
            if f.role == "header":
                out[f.name] = _plain(value)
            elif f.role == "group":
                for g in fields(_group_class(f)):
                    out[g.name] = None if value is None else _plain(getattr(value, g.name))
        return out

    def array_fields(self) -> dict[str, np.ndarray]:
        """Arrays in wire order; optional arrays that are ``None`` are left out."""
        return {f.name: getattr(self, f.name) for f in _schema(type(self))
                if f.role == "array" and getattr(self, f.name) is not None}

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: the header fields in wire order, ``"topic"``, and ``"arrays"``.

        Keys: ``v``, ``kind``, ``source_id``, ``seq``, ``frame_index``, ``pts_s``,
        ``capture_time_ns``, the kind's fields, ``publish_time_ns``, ``topic``, and ``arrays``
        (``{name: nested lists}``). Non-finite floats (NaN, +-inf), in the header and in arrays,
        become ``None`` so the result passes ``json.dumps(..., allow_nan=False)``.
        """
        out: dict[str, Any] = {"v": WIRE_VERSION, "kind": self.KIND, "source_id": self.source_id, "seq": self.seq}
        out.update({key: json_safe(value) for key, value in self.header_fields().items()})
        out["publish_time_ns"] = self.publish_time_ns
        out["topic"] = self.topic
        out["arrays"] = {name: array_to_json(array) for name, array in self.array_fields().items()}
        return out

    # ---------------------------------------------------------------------------------- decoding
    @classmethod
    def from_parts(cls, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Message:
        """Build the message of ``cls``'s kind from a decoded header and its arrays.

        Args:
            header: Every header field, envelope included (``v``, ``kind`` and ``arrays`` are
                ignored here: :func:`engine.wire.decode` has checked them).
            arrays: ``name -> ndarray`` as described by the header.

        Raises:
            WireFormatError: a missing or unexpected field or array, or one of the wrong type.
        """
        schema = _schema(cls)
        expected = {"v", "kind", "arrays", *_ENVELOPE}
        kwargs: dict[str, Any] = {key: header.get(key) for key in _ENVELOPE if key in header}
        for f in schema:
            if f.role == "header":
                expected.add(f.name)
                if f.name not in header:
                    msg = f"{cls.KIND} header is missing field {f.name}"
                    raise WireFormatError(msg)
                kwargs[f.name] = header[f.name]
            elif f.role == "group":
                group_cls = _group_class(f)
                names = [g.name for g in fields(group_cls)]
                expected.update(names)
                absent = [n for n in names if n not in header]
                if absent:
                    msg = f"{cls.KIND} header is missing fields {', '.join(absent)}"
                    raise WireFormatError(msg)
                values = {n: header[n] for n in names}
                kwargs[f.name] = None if all(v is None for v in values.values()) else group_cls(**values)
            else:
                kwargs[f.name] = arrays.get(f.name)
        extra = sorted(set(header) - expected)
        if extra:
            msg = f"{cls.KIND} header has unexpected fields: {', '.join(extra)}"
            raise WireFormatError(msg)
        extra_arrays = sorted(set(arrays) - {f.name for f in schema if f.role == "array"})
        if extra_arrays:
            msg = f"{cls.KIND} message has unexpected arrays: {', '.join(extra_arrays)}"
            raise WireFormatError(msg)
        return cls(**kwargs)


def _check_array_field(name: str, value: Any, spec: ArraySpec, dims: dict[str, int]) -> None:
    """:func:`engine.types.check_array` of one array field, its errors as :class:`WireFormatError`."""
    if value is None:
        if spec.optional:
            return
        msg = f"`{name}` must be an array of shape {spec.shape_text()}, got None"
        raise WireFormatError(msg)
    try:
        check_array(name, value, spec.shape, spec.dtype, dims=dims)
    except (TypeError, ValueError) as exc:
        raise WireFormatError(str(exc)) from None


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def json_safe(value: Any) -> Any:
    """Copy of a header value with non-finite floats replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    return value


def array_to_json(array: np.ndarray) -> Any:
    """Nested lists of ``array``, non-finite floats as ``None``."""
    if array.dtype.kind == "f":
        out = array.astype(object)
        out[~np.isfinite(array)] = None
        return out.tolist()
    return array.tolist()


# --------------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------------

HeatmapSource = Literal["model", "rendered", "none"]


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
            source_id=frame.source_id,
            frame_index=frame.frame_index,
            pts_s=frame.pts_s,
            capture_time_ns=frame.capture_time_ns,
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
            source_id=frame.source_id,
            frame_index=frame.frame_index,
            pts_s=frame.pts_s,
            capture_time_ns=frame.capture_time_ns,
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
        _validate_header_dataclass(self)

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
        degree_xy: Degree of the Δx, Δy fits, ``min(10, n_points - 1)``.
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
            source_id=frame.source_id,
            frame_index=frame.frame_index,
            pts_s=frame.pts_s,
            capture_time_ns=frame.capture_time_ns,
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
        dropped: Frames dropped by the live drop-oldest policy; corrupt: undecodable frames/packets.
        queue_depth: Frames waiting in the source's queue.
        fps_in, fps_out: Rates over about one health period, frames per second.
        batter_frames: Frames with a batter.
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

    def __post_init__(self) -> None:
        _validate_header_dataclass(self)


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
        corrupt: Undecodable frames or packets.
        error: The error that ended the source, as text, or ``None``.
        reason: ``end``, ``error``, ``stopped`` or ``timeout``.
    """

    KIND: ClassVar[str] = "eos"

    frames: int
    dropped: int
    corrupt: int
    error: str | None
    reason: Literal["end", "error", "stopped", "timeout"]


#: Every message class by kind.
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls for cls in (Pose, Similarity, Fit, Shot, Health, EndOfStream)
}
AnyMessage = Pose | Similarity | Fit | Shot | Health | EndOfStream


def header_names(cls: type[Message]) -> tuple[str, ...]:
    """The kind-specific header field names of a message class, in wire order (groups flattened)."""
    out: list[str] = []
    for f in _schema(cls):
        if f.role == "header":
            out.append(f.name)
        elif f.role == "group":
            out.extend(g.name for g in fields(_group_class(f)))
    return tuple(out)


def array_specs(cls: type[Message]) -> dict[str, ArraySpec]:
    """``name -> ArraySpec`` of a message class's arrays, in wire order."""
    return {f.name: f.spec for f in _schema(cls) if f.role == "array" and f.spec is not None}


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
    specs = {f.name: f.spec for f in _schema(cls) if f.role == "array"}
    arrays = {}
    for name, value in raw_arrays.items():
        if name not in specs:
            msg = f"{kind} message has unexpected array {name!r}"
            raise WireFormatError(msg)
        arrays[name] = _array_from_json(name, value, specs[name])  # type: ignore[arg-type]
    header = {key: value for key, value in data.items() if key not in ("topic", "arrays")}
    message = cls.from_parts(header, arrays)
    if "topic" in data and data["topic"] != message.topic:
        msg = f"topic must match kind and source_id: expected {message.topic!r}, got {data['topic']!r}"
        raise WireFormatError(msg)
    return message  # type: ignore[return-value]


def _array_from_json(name: str, value: Any, spec: ArraySpec) -> np.ndarray:
    try:
        if spec.dtype.kind == "f":
            obj = np.array(value, dtype=object)
            obj[obj == None] = np.nan  # noqa: E711 - elementwise comparison with None
            array = obj.astype(spec.dtype)
        else:
            array = np.array(value, dtype=spec.dtype)
    except (TypeError, ValueError) as exc:
        msg = f"array {name!r} must be nested lists of {spec.dtype}: {exc}"
        raise WireFormatError(msg) from None
    if array.size == 0:
        array = array.reshape(tuple(s if isinstance(s, int) else 0 for s in spec.shape))
    return array


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
