"""How a batsight message class is declared, validated and turned into header, arrays and JSON.

The message kinds themselves are declared in :mod:`engine.messages`; this module is the generic
machinery they share. A field of a message class is one of:

* a **header field** (a plain annotation): one msgpack/JSON value of the header, in class order;
* an **array field** (:func:`array_field`): one raw buffer, with its dtype and shape declared
  (named dims such as ``"N"`` must agree between the arrays of one message);
* a **group** (:func:`group_field`, e.g. :class:`engine.messages.FitStats`): a dataclass whose fields
  are written inline, in place, as header fields (all ``null`` when the group is ``None``).

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
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import numpy as np

from engine.errors import WireFormatError
from engine.types import check_array, shape_text

#: Schema version written to and required in every header's ``v``.
WIRE_VERSION = 1

#: Message kinds, in pipeline order. ``health`` is engine-wide; every other kind is per source.
KINDS: tuple[str, ...] = ("frame", "pose", "sim", "fit", "shot", "health", "eos")

#: Header keys of the envelope, in header order (``frame_index``, ``pts_s``, ``capture_time_ns`` are
#: ``None`` for kinds without a frame); kind-specific fields follow ``capture_time_ns``.
FRAME_KEYS: tuple[str, ...] = ("frame_index", "pts_s", "capture_time_ns")
_ENVELOPE = frozenset({"source_id", "seq", "publish_time_ns", *FRAME_KEYS})

_SOURCE_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")


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


def _schema(cls: type) -> tuple[_Field, ...]:
    """The fields of a message class after the envelope, in declaration (wire) order; cached per class."""
    # A plain function in front of the cache: mypy takes a dataclass's class object for unhashable
    # when it is passed to a functools cache directly.
    return _class_schema(cls)


@cache
def _class_schema(cls: type) -> tuple[_Field, ...]:
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


def _defaulted(cls: type) -> frozenset[str]:
    """Names of ``cls``'s dataclass fields that have a default (may be absent from a decoded header)."""
    # A plain function in front of the cache, as for _schema (mypy and dataclass class objects).
    return _class_defaulted(cls)


@cache
def _class_defaulted(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING)


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
        if isinstance(val_t, type) and is_dataclass(val_t):
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
    missing = [n for n in names if n not in value and n not in _defaulted(cls)]
    extra = sorted(set(value) - set(names))
    if missing or extra:
        msg = f"field {path} must have keys {', '.join(names)}; missing {missing}, unexpected {extra}"
        raise WireFormatError(msg)
    return cls(**{n: value[n] for n in names if n in value})


def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, once per class (it costs ~0.7 ms a call, every frame otherwise)."""
    # A plain function in front of the cache, as for _schema (mypy and dataclass class objects).
    return _cached_type_hints(cls)


@cache
def _cached_type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate_header_dataclass(obj: Any) -> None:
    """Type-check (and widen ints to floats in) every field of a header-only dataclass."""
    hints = _type_hints(type(obj))
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
            WireFormatError: a missing or unexpected field or array, or one of the wrong type. A
                header field declared with a default (added to the schema later, e.g. ``eos/``
                ``last_seq``) may be missing: data written before it (jsonl of earlier runs) gets the default.
        """
        schema = _schema(cls)
        expected = {"v", "kind", "arrays", *_ENVELOPE}
        kwargs: dict[str, Any] = {key: header.get(key) for key in _ENVELOPE if key in header}
        for f in schema:
            if f.role == "header":
                expected.add(f.name)
                if f.name not in header and f.name in _defaulted(cls):
                    continue  # a field added with a default later: messages and files from before it still decode
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


def array_from_json(name: str, value: Any, spec: ArraySpec) -> np.ndarray:
    """The array ``name`` from nested JSON lists: ``None`` as NaN in floats; dtype and empty shape from ``spec``.

    Raises:
        WireFormatError: values that do not convert to ``spec.dtype``.
    """
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
