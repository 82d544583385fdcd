"""The source contract, and how a source spec on the command line becomes a source plugin.

Source plugins live in ``stream/`` and are found by name in the ``batsight.sources`` entry-point
group; the engine never imports ``stream`` itself.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from engine.config import SOURCE_ID_RE, SourceConfig
from engine.errors import ConfigError
from engine.plugins import SOURCES, load
from engine.types import Frame

_URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)
_ID_PREFIX_RE = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")


class Source(ABC):
    """A producer of :class:`~engine.types.Frame` values.

    Lifecycle: the constructor (usually through :meth:`from_spec`) only stores validated options.
    ``open()`` acquires the OS resource and raises :class:`~engine.errors.SourceError` when it cannot.
    ``frames()`` is called once, from the source's own reader thread, and yields frames until the
    input ends; it may block on I/O but must return within ``read_timeout_s`` of ``close()``.
    ``close()`` is idempotent, may be called from any thread, and is always called by the engine.

    Attributes:
        source_id: Name used in topics (``pose/<source_id>/``), ``[A-Za-z0-9_.-]+``.
        live: ``True`` for cameras and streams (drop-oldest queue, latency bounded); ``False`` for
            files (blocking queue, every frame processed exactly once, in order).
        total_frames: Frame count when known in advance (files), else ``None``; for progress bars.
        corrupt: Frames or packets skipped because they could not be decoded.
        fps: Nominal frame rate of the input, frames per second, known after ``open()``; ``None``
            when unknown. The engine gives it to the source's tracker.
        state: Read by ``health/``: ``"connecting"``, ``"live"``, ``"stalled"``,
            ``"reconnecting"`` or ``"ended"``; ``None`` (the default) leaves the state to the
            reader thread's view (PyAV sources keep their own).
        reconnects: Successful reopenings of a live source (0 for sources that never reconnect).
    """

    source_id: str
    live: bool = False
    total_frames: int | None = None
    corrupt: int = 0
    fps: float | None = None
    reconnects: int = 0

    @property
    def state(self) -> str | None:
        """The source's own state for ``health/``, or ``None`` to leave it to the reader thread."""
        return None

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> Source:
        """Build the source from its command-line spec (path, URL, device) without opening it."""

    @abstractmethod
    def open(self) -> None:
        """Open the input. Raises :class:`~engine.errors.SourceError` with the reason."""

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames in decode order with ``frame_index`` 0, 1, 2, ... (reader thread only)."""

    @abstractmethod
    def close(self) -> None:
        """Release the input; safe to call twice and from another thread."""


def source_kind(spec: str) -> str:
    """Return the ``batsight.sources`` plugin name for a spec.

    ``default`` -> ``default``; ``rtsp://``, ``http(s)://`` ... -> ``url``; ``/dev/videoN`` ->
    ``webcam``; anything else -> ``file``.
    """
    if spec == "default":
        return "default"
    if _URL_RE.match(spec):
        return "url"
    if re.fullmatch(r"/dev/video\d+", spec):
        return "webcam"
    return "file"


def _default_id(spec: str, kind: str, index: int) -> str:
    if kind == "default":
        return "default"
    if kind == "file":
        stem = Path(spec).stem
    elif kind == "webcam":
        stem = Path(spec).name
    else:
        stem = f"stream{index}"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or f"source{index}"
    return stem


def _refuse_malformed_id(raw: str) -> None:
    """Refuse ``ID=SPEC`` whose ID is malformed or whose SPEC is empty (``bad id=x.mp4``, ``cam=``).

    A spec with ``=`` that matches no existing file is taken as an attempt at ``ID=SPEC``; an
    existing file whose name holds ``=`` is still a file.

    Raises:
        ConfigError: the text before the first ``=`` is not a valid id, or nothing follows it.
    """
    prefix, sep, rest = raw.partition("=")
    if not sep or _URL_RE.match(raw) or Path(raw).exists():
        return
    if not rest.strip():
        msg = f"source {raw!r}: nothing after {prefix + '='!r}; expected ID=SPEC, e.g. cam1=rtsp://... or nets=clip.mp4"
        raise ConfigError(msg)
    msg = (
        f"source {raw!r}: {prefix!r} is not a valid source id (letters, digits, '_', '.', '-') "
        "and no file has that whole name"
    )
    raise ConfigError(msg)


def build_sources(specs: list[str], config: SourceConfig) -> list[Source]:
    """Turn command-line / config specs into unopened sources with unique ids.

    A spec may carry its id as ``ID=SPEC`` (``cam1=rtsp://...``); otherwise the id is the file stem,
    the device name, ``streamN`` for URLs, or ``default``. Repeated derived ids get ``_2``, ``_3`` ...

    Raises:
        ConfigError: an explicit id that is not ``[A-Za-z0-9_.-]+``, or given twice; ``ID=`` with
            nothing after it; a spec with ``=`` whose prefix is no valid id and that names no file.
        PluginError: the plugin for the spec's kind is not installed.
    """
    sources: list[Source] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(specs or ["default"]):
        match = _ID_PREFIX_RE.match(raw)
        if match and not _URL_RE.match(raw):
            source_id, spec = match.group(1), match.group(2)
        else:
            source_id, spec = None, raw
            _refuse_malformed_id(raw)
        kind = source_kind(spec)
        explicit = source_id is not None
        if source_id is None:
            source_id = _default_id(spec, kind, index)
        if not SOURCE_ID_RE.match(source_id):
            msg = f"source id must match [A-Za-z0-9_.-]+, got {source_id!r}"
            raise ConfigError(msg)
        if explicit and source_id in seen:
            msg = f"source id {source_id!r} is given twice: each source needs its own id (topics pose/<id>/)"
            raise ConfigError(msg)
        if source_id in seen:
            seen[source_id] += 1
            source_id = f"{source_id}_{seen[source_id]}"
        else:
            seen[source_id] = 1
        cls = load(SOURCES, kind)
        sources.append(cls.from_spec(spec, source_id, config))
    return sources
