"""The batsight wire format: one ZeroMQ multipart message per result, never pickle.

A message is ``[topic, header, *buffers]``:

* ``topic``: ASCII bytes ``b"<kind>/<source_id>/"`` for per-source kinds (``b"pose/cam1/"``) and
  exactly ``b"health/"`` for the engine-wide ``health`` kind. The trailing ``/`` makes topics
  prefix-safe: a subscription to ``pose/cam1/`` never matches ``pose/cam10/``.
* ``header``: a msgpack map (``use_bin_type=True``) holding

  ================== ============== ==========================================================
  key                type           meaning
  ================== ============== ==========================================================
  ``v``              int            wire version, :data:`WIRE_VERSION`
  ``kind``           str            one of :data:`KINDS`
  ``source_id``      str            ``[A-Za-z0-9_.-]+``; ``""`` for ``health``
  ``seq``            int >= 0       per ``(kind, source_id)`` counter set by the publisher;
                                    a jump exposes messages dropped on the way
  ``frame_index``    int or None    0-based frame index within the source
  ``pts_s``          float or None  presentation time on the source timeline, seconds
  ``capture_time_ns`` int or None   Unix epoch ns when the frame was read
  ``publish_time_ns`` int           Unix epoch ns when the message was encoded
  ``arrays``         list of maps   ``{name, dtype, shape}`` describing the buffers, in order
  ================== ============== ==========================================================

  plus kind-specific fields: str, int, float, bool, None, lists and str-keyed maps of those.
* ``buffers``: the raw C-contiguous little-endian bytes of each array, in the order of ``arrays``.
  Dtypes are limited to :data:`DTYPES`.

Pattern: pyzmq ``examples/pubsub/publisher.py`` (``send_array``: a small JSON header plus the raw
buffer) and ``examples/serialization/serialsocket.py`` (why not pickle).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from engine import messages
from engine.errors import WireFormatError

#: Version written to and required in every header's ``v`` (defined with the schema, :mod:`engine.messages`).
WIRE_VERSION = messages.WIRE_VERSION

#: Message kinds, in pipeline order. ``health`` is engine-wide; every other kind is per source.
KINDS: tuple[str, ...] = messages.KINDS

#: Topic prefix of the marker subscription each in-process sink adds (``READY_TOPIC_PREFIX +
#: unique id``). No message topic starts with a NUL byte, so the marker never receives anything; it
#: only lets the publisher tell its in-process sinks' subscriptions from external ones.
READY_TOPIC_PREFIX = b"\x00ready/"

#: Array dtypes allowed on the wire (names as in ``numpy.dtype(...).name``).
DTYPES: tuple[str, ...] = ("float32", "float64", "int32", "int64", "uint8", "bool")

#: Header keys set by :func:`encode` itself, plus ``topic`` (added by :meth:`Message.to_json_dict`);
#: ``fields`` must not contain them.
RESERVED_KEYS: frozenset[str] = frozenset({"v", "kind", "source_id", "seq", "publish_time_ns", "arrays", "topic"})

#: Standard per-frame header keys, taken from ``fields`` when given and ``None`` otherwise.
FRAME_KEYS: tuple[str, ...] = messages.FRAME_KEYS

#: Default limits of :func:`decode`.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024

# Little-endian wire dtypes; on little-endian hosts these equal the native dtypes.
_WIRE_DTYPES: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}
_REQUIRED = ("v", "kind", "source_id", "seq", "frame_index", "pts_s", "capture_time_ns", "publish_time_ns", "arrays")
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_check_kind_source = messages.check_kind_source
topic_for = messages.topic_for


def _normalise(value: Any, path: str) -> Any:
    """Return ``value`` as msgpack-safe plain Python (numpy scalars unwrapped, tuples as lists).

    Raises:
        WireFormatError: a type outside str, int, float, bool, None, list/tuple, str-keyed mapping.
    """
    if value is None or isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _UINT64_MAX:
            msg = f"field {path} must fit in 64 bits, got {value}"
            raise WireFormatError(msg)
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return _normalise(value.item(), path)
    if isinstance(value, (list, tuple)):
        return [_normalise(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                msg = f"keys of field {path} must be str, got {type(key).__name__} {key!r}"
                raise WireFormatError(msg)
            out[key] = _normalise(item, f"{path}.{key}")
        return out
    msg = f"field {path} must be str, int, float, bool, None, a list or a str-keyed map, got {type(value).__name__}"
    raise WireFormatError(msg)


def _array_buffer(name: str, array: np.ndarray) -> tuple[dict[str, Any], memoryview]:
    if not isinstance(array, np.ndarray):
        msg = f"array {name!r} must be a numpy.ndarray, got {type(array).__name__}"
        raise WireFormatError(msg)
    dtype_name = array.dtype.name
    if dtype_name not in _WIRE_DTYPES:
        msg = f"array {name!r} dtype must be one of {', '.join(DTYPES)}, got {array.dtype}"
        raise WireFormatError(msg)
    # No copy when already C-contiguous little-endian (the usual case on x86 / ARM). The shape comes
    # from ``array``: ascontiguousarray turns a 0-d array into shape (1,).
    contiguous = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[dtype_name])
    descriptor = {"name": name, "dtype": dtype_name, "shape": list(array.shape)}
    # Flatten to bytes: a zero-size array cannot be ``memoryview.cast`` directly.
    return descriptor, contiguous.reshape(-1).view(np.uint8).data


def encode(
    kind: str,
    source_id: str,
    seq: int,
    fields: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray] | None = None,
    publish_time_ns: int | None = None,
) -> list[bytes | memoryview]:
    """Encode one message as ZeroMQ frames.

    Arrays are not copied when they are already C-contiguous little-endian: the returned
    ``memoryview`` frames share their memory, so they must not be mutated until sent.

    Args:
        kind: One of :data:`KINDS`.
        source_id: ``[A-Za-z0-9_.-]+``; ``""`` for ``health``.
        seq: Per ``(kind, source_id)`` sequence number, ``>= 0``.
        fields: Header fields. ``frame_index`` (int), ``pts_s`` (float, seconds) and
            ``capture_time_ns`` (int, Unix epoch ns) default to ``None``; other keys are
            kind-specific. Values: str, int, float, bool, None, lists and str-keyed maps of those
            (numpy scalars are unwrapped). Keys must not be in :data:`RESERVED_KEYS`.
        arrays: ``name -> ndarray`` of a :data:`DTYPES` dtype, any shape (including zero-size).
        publish_time_ns: Unix epoch ns written as ``publish_time_ns``; ``time.time_ns()`` when ``None``.

    Returns:
        ``[topic, header, *buffers]``: ``bytes`` for topic and header, ``memoryview`` (format ``B``)
        per array.

    Raises:
        WireFormatError: unknown kind, bad source_id or seq, reserved or badly typed field, array
            that is not an ndarray or has a dtype outside the whitelist.
    """
    topic = topic_for(kind, source_id)
    if not _is_int(seq) or seq < 0:
        msg = f"seq must be an int >= 0, got {seq!r}"
        raise WireFormatError(msg)
    if not isinstance(fields, Mapping):
        msg = f"fields must be a mapping, got {type(fields).__name__}"
        raise WireFormatError(msg)
    clash = RESERVED_KEYS.intersection(fields)
    if clash:
        msg = f"fields must not use reserved header keys ({', '.join(sorted(RESERVED_KEYS))}), got {sorted(clash)}"
        raise WireFormatError(msg)
    if publish_time_ns is None:
        publish_time_ns = time.time_ns()
    elif not _is_int(publish_time_ns):
        msg = f"publish_time_ns must be an int, got {publish_time_ns!r}"
        raise WireFormatError(msg)

    header: dict[str, Any] = {"v": WIRE_VERSION, "kind": kind, "source_id": source_id, "seq": seq}
    for key in FRAME_KEYS:
        header[key] = None
    for key, value in fields.items():
        if not isinstance(key, str):
            msg = f"field names must be str, got {type(key).__name__} {key!r}"
            raise WireFormatError(msg)
        header[key] = _normalise(value, key)
    for key in ("frame_index", "capture_time_ns"):
        if header[key] is not None and not _is_int(header[key]):
            msg = f"{key} must be an int or None, got {header[key]!r}"
            raise WireFormatError(msg)
    pts_s = header["pts_s"]
    if pts_s is not None:
        if isinstance(pts_s, bool) or not isinstance(pts_s, (int, float)):
            msg = f"pts_s must be a float or None, got {pts_s!r}"
            raise WireFormatError(msg)
        header["pts_s"] = float(pts_s)
    header["publish_time_ns"] = publish_time_ns

    descriptors: list[dict[str, Any]] = []
    buffers: list[bytes | memoryview] = []
    for name, array in (arrays or {}).items():
        if not isinstance(name, str) or not name:
            msg = f"array names must be non-empty str, got {name!r}"
            raise WireFormatError(msg)
        descriptor, buffer = _array_buffer(name, array)
        descriptors.append(descriptor)
        buffers.append(buffer)
    header["arrays"] = descriptors
    return [topic, msgpack.packb(header, use_bin_type=True), *buffers]


@dataclass(frozen=True, eq=False)
class Message:
    """One decoded wire message.

    Attributes:
        topic: Topic frame as text, e.g. ``"pose/cam1/"`` or ``"health/"``.
        kind: One of :data:`KINDS`.
        source_id: Source name; ``""`` for ``health``.
        seq: Per ``(kind, source_id)`` sequence number.
        header: Every header field, the reserved ones (``v``, ``seq``, ``arrays`` descriptors, ...)
            included.
        arrays: ``name -> ndarray`` in the order of the header's ``arrays``; read-only, native dtype
            (one of :data:`DTYPES`), shapes as described in the header.
    """

    topic: str
    kind: str
    source_id: str
    seq: int
    header: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def frame_index(self) -> int | None:
        """0-based frame index within the source, or ``None`` (health, eos)."""
        return self.header["frame_index"]

    @property
    def pts_s(self) -> float | None:
        """Presentation time on the source timeline, seconds, or ``None``."""
        return self.header["pts_s"]

    @property
    def capture_time_ns(self) -> int | None:
        """Unix epoch ns when the frame was read, or ``None``."""
        return self.header["capture_time_ns"]

    @property
    def publish_time_ns(self) -> int:
        """Unix epoch ns when the message was encoded."""
        return self.header["publish_time_ns"]

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the message.

        Returns:
            Every header field except the ``arrays`` descriptors, plus ``"topic"`` and
            ``"arrays": {name: nested lists}``. Non-finite floats (NaN, +-inf), in the header and in
            arrays, become ``None`` so the result passes ``json.dumps(..., allow_nan=False)``.
        """
        out = {key: messages.json_safe(value) for key, value in self.header.items() if key != "arrays"}
        out["topic"] = self.topic
        out["arrays"] = {name: messages.array_to_json(array) for name, array in self.arrays.items()}
        return out


def _part_buffer(part: object, index: int) -> memoryview:
    if isinstance(part, (bytes, bytearray, memoryview)):
        return memoryview(part)
    buffer = getattr(part, "buffer", None)  # zmq.Frame
    if isinstance(buffer, memoryview):
        return buffer
    msg = f"message part {index} must be bytes, memoryview or zmq.Frame, got {type(part).__name__}"
    raise WireFormatError(msg)


def _check_plain(value: Any) -> None:
    """Raise unless ``value`` holds only str, int, float, bool, None, lists and str-keyed dicts."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, (str, int, float)):
            continue
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            msg = f"header values must be str, int, float, bool, None, lists or maps, got {type(item).__name__}"
            raise WireFormatError(msg)


def _parse_descriptor(index: int, descriptor: object) -> tuple[str, np.dtype, tuple[int, ...]]:
    if not isinstance(descriptor, dict) or set(descriptor) != {"name", "dtype", "shape"}:
        got = sorted(descriptor) if isinstance(descriptor, dict) else type(descriptor).__name__
        msg = f"arrays[{index}] must be a map with keys dtype, name, shape, got {got}"
        raise WireFormatError(msg)
    name, dtype, shape = descriptor["name"], descriptor["dtype"], descriptor["shape"]
    if not isinstance(name, str) or not name:
        msg = f"arrays[{index}].name must be a non-empty str, got {name!r}"
        raise WireFormatError(msg)
    if dtype not in _WIRE_DTYPES:
        msg = f"array {name!r} dtype must be one of {', '.join(DTYPES)}, got {dtype!r}"
        raise WireFormatError(msg)
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
        msg = f"array {name!r} shape must be a list of non-negative ints, got {shape!r}"
        raise WireFormatError(msg)
    return name, _WIRE_DTYPES[dtype], tuple(shape)


def _decode_header(part: memoryview) -> dict[str, Any]:
    """The header map of a message: msgpack, ``v``, plain values, required keys and their types.

    Raises:
        WireFormatError: see :func:`decode`.
    """
    try:
        header = msgpack.unpackb(part, raw=False, strict_map_key=True, timestamp=0, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        msg = f"header is not valid msgpack: {exc}"
        raise WireFormatError(msg) from None
    if not isinstance(header, dict):
        msg = f"header must be a msgpack map, got {type(header).__name__}"
        raise WireFormatError(msg)
    version = header.get("v")
    if not _is_int(version) or version != WIRE_VERSION:
        msg = f"unsupported wire version: expected {WIRE_VERSION}, got {version!r}"
        raise WireFormatError(msg)
    _check_plain(header)
    missing = [key for key in _REQUIRED if key not in header]
    if missing:
        msg = f"header is missing required keys: {', '.join(missing)}"
        raise WireFormatError(msg)
    kind, source_id, seq = header["kind"], header["source_id"], header["seq"]
    _check_kind_source(kind, source_id)
    if not _is_int(seq) or seq < 0:
        msg = f"seq must be an int >= 0, got {seq!r}"
        raise WireFormatError(msg)
    for key in ("frame_index", "capture_time_ns"):
        if header[key] is not None and not _is_int(header[key]):
            msg = f"{key} must be an int or None, got {header[key]!r}"
            raise WireFormatError(msg)
    pts_s = header["pts_s"]
    if pts_s is not None and (isinstance(pts_s, bool) or not isinstance(pts_s, (int, float))):
        msg = f"pts_s must be a float or None, got {pts_s!r}"
        raise WireFormatError(msg)
    if not _is_int(header["publish_time_ns"]):
        msg = f"publish_time_ns must be an int, got {header['publish_time_ns']!r}"
        raise WireFormatError(msg)
    return header


def _decode_arrays(descriptors: object, buffers: Sequence[memoryview]) -> dict[str, np.ndarray]:
    """The read-only arrays described by the header's ``arrays`` list, one per buffer.

    Raises:
        WireFormatError: see :func:`decode`.
    """
    if not isinstance(descriptors, list):
        msg = f"arrays must be a list, got {type(descriptors).__name__}"
        raise WireFormatError(msg)
    if len(buffers) != len(descriptors):
        msg = f"expected {len(descriptors)} array buffers (one per arrays entry), got {len(buffers)}"
        raise WireFormatError(msg)
    arrays: dict[str, np.ndarray] = {}
    for index, (descriptor, buffer) in enumerate(zip(descriptors, buffers, strict=True)):
        name, dtype, shape = _parse_descriptor(index, descriptor)
        if name in arrays:
            msg = f"array names must be unique, got {name!r} twice"
            raise WireFormatError(msg)
        expected = math.prod(shape) * dtype.itemsize
        if buffer.nbytes != expected:
            msg = (
                f"array {name!r} buffer size must be {expected} bytes for shape {list(shape)} {dtype.name}, "
                f"got {buffer.nbytes}"
            )
            raise WireFormatError(msg)
        raw = np.frombuffer(buffer, dtype=np.uint8)
        if dtype.kind == "b" and raw.size and raw.max() > 1:
            msg = f"array {name!r} of dtype bool must hold only bytes 0 and 1"
            raise WireFormatError(msg)
        array = raw.view(dtype).reshape(shape)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        array.flags.writeable = False
        arrays[name] = array
    return arrays


def decode(
    parts: Sequence[object],
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> Message:
    """Decode and validate one multipart message.

    Args:
        parts: ``[topic, header, *buffers]`` as ``bytes``, ``memoryview`` or ``zmq.Frame``
            (``recv_multipart(copy=False)``). Arrays are read-only views of these buffers.
        max_message_bytes: Largest accepted total size of all parts, bytes.
        max_header_bytes: Largest accepted header part, bytes.

    Returns:
        The :class:`Message`.

    Raises:
        WireFormatError: fewer than 2 parts, over a size limit, header not a msgpack map, wrong
            ``v``, missing or mistyped required key, topic not matching ``kind``/``source_id``,
            buffer count or size not matching the ``arrays`` descriptors, dtype outside
            :data:`DTYPES`, or a bool buffer holding bytes other than 0 and 1.
    """
    if len(parts) < 2:
        msg = f"expected at least 2 message parts (topic, header), got {len(parts)}"
        raise WireFormatError(msg)
    buffers = [_part_buffer(part, i) for i, part in enumerate(parts)]
    total = sum(b.nbytes for b in buffers)
    if total > max_message_bytes:
        msg = f"message too large: expected at most {max_message_bytes} bytes, got {total}"
        raise WireFormatError(msg)
    if buffers[1].nbytes > max_header_bytes:
        msg = f"header too large: expected at most {max_header_bytes} bytes, got {buffers[1].nbytes}"
        raise WireFormatError(msg)
    header = _decode_header(buffers[1])
    kind, source_id, seq = header["kind"], header["source_id"], header["seq"]

    topic = bytes(buffers[0])
    expected_topic = topic_for(kind, source_id)
    if topic != expected_topic:
        msg = f"topic must match kind and source_id: expected {expected_topic!r}, got {topic!r}"
        raise WireFormatError(msg)

    arrays = _decode_arrays(header["arrays"], buffers[2:])
    return Message(
        topic=topic.decode("ascii"),
        kind=kind,
        source_id=source_id,
        seq=seq,
        header=header,
        arrays=arrays,
    )


def encode_message(
    message: messages.Message, seq: int, publish_time_ns: int | None = None
) -> list[bytes | memoryview]:
    """Encode a typed message (:mod:`engine.messages`) as ZeroMQ frames; see :func:`encode`.

    The message's own ``seq`` and ``publish_time_ns`` are ignored: the publisher sets them here.

    Raises:
        WireFormatError: as :func:`encode`.
    """
    return encode(
        message.KIND,
        message.source_id,
        seq,
        message.header_fields(),
        message.array_fields(),
        publish_time_ns=publish_time_ns,
    )


def decode_message(
    parts: Sequence[object],
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> messages.AnyMessage:
    """Decode, validate and type one multipart message (:func:`decode`, then the kind's schema).

    Raises:
        WireFormatError: as :func:`decode`, or fields / arrays that do not fit the kind's schema
            (:func:`engine.messages.from_parts`).
    """
    raw = decode(parts, max_message_bytes, max_header_bytes)
    return messages.from_parts(raw.header, raw.arrays)
