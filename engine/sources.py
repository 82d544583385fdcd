"""The source contract, and how a source spec on the command line becomes a source plugin.

Source plugins live in ``stream/`` (or in any installed package) and are found in the
``batsight.sources`` entry-point group; the engine never imports ``stream`` itself. Which plugin
reads a spec is decided by the plugins: each says how specifically it claims the spec
(:meth:`Source.claims`) and the highest claim wins (:func:`source_plugin`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.config import SOURCE_ID_RE, SourceConfig
from engine.errors import ConfigError, PluginError
from engine.plugins import SOURCES, load, names
from engine.types import DeferredFrame, Frame

#: A URL scheme (RFC 3986 ``scheme "://"``): such a spec is never read as ``ID=SPEC``, whatever its ``=``.
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ID_PREFIX_RE = re.compile(r"^([A-Za-z0-9_.-]+)(?::([A-Za-z]+))?=(.+)$")
#: Values of ``source.mode`` and of ``MODE`` in ``ID:MODE=SPEC``.
SOURCE_MODES = ("auto", "live", "file")


class Source(ABC):
    """A producer of :class:`~engine.types.Frame` values.

    Lifecycle: the constructor (usually through :meth:`from_spec`) only stores validated options.
    ``open()`` acquires the OS resource and raises :class:`~engine.errors.SourceError` when it cannot.
    ``frames()`` is called once, from the source's own reader thread, and yields frames until the
    input ends; it may block on I/O but must return within ``read_timeout_s`` of ``close()``.
    ``close()`` is idempotent, may be called from any thread, and is always called by the engine.

    Attributes:
        source_id: Name used in topics (``pose/<source_id>/``), ``[A-Za-z0-9_.-]+``.
        live: ``True`` for cameras and streams (one-frame drop-oldest queue: the newest frame wins,
            latency bounded); ``False`` for files (blocking queue, every frame processed exactly
            once, in order). The engine reads it after ``open()``, so a source may decide it there
            (``config.mode`` ``auto``: an HTTP file of known duration is read as a file).
        total_frames: Frame count when known in advance (files), else ``None``; for progress bars.
        corrupt: Damaged frames or packets: skipped because they could not be decoded, or flagged
            damaged by the demuxer.
        concealed: Frames delivered with decoding errors concealed by the decoder (published, counted).
        truncated: The input ended early (a cut file): its end is ``eos/`` ``reason: truncated``.
        fps: Nominal frame rate of the input, frames per second, known after ``open()``; ``None``
            when unknown. The engine gives it to the source's tracker.
        state: Read by ``health/``: ``"connecting"``, ``"live"``, ``"stalled"``,
            ``"reconnecting"`` or ``"ended"``; ``None`` (the default) leaves the state to the
            reader thread's view (PyAV sources keep their own).
        reconnects: Successful reopenings of a live source (0 for sources that never reconnect).
        decoder_bytes: Bytes the open source holds while decoding (its decoder's reference
            pictures), an estimate known after ``open()``; counted in the run's queue budget
            (``source.queue_budget_mib``) while the source runs. 0 = nothing worth counting.
    """

    source_id: str
    live: bool = False
    total_frames: int | None = None
    corrupt: int = 0
    concealed: int = 0
    truncated: bool = False
    fps: float | None = None
    reconnects: int = 0
    decoder_bytes: int = 0

    @property
    def state(self) -> str | None:
        """The source's own state for ``health/``, or ``None`` to leave it to the reader thread."""
        return None

    @classmethod
    def claims(cls, spec: str) -> int:
        """How specifically this plugin recognises ``spec``: ``0`` = not mine, higher = more specific.

        The engine asks every registered ``batsight.sources`` plugin about each command-line spec
        (the part after ``ID=``) and builds the source with the plugin of the highest claim
        (:func:`source_plugin`); a tie at the top, or no claim above 0, is a
        :class:`~engine.errors.ConfigError`. Scale used by the built-in plugins: ``100`` for an
        exact name (``default``), ``10`` for a URL scheme or device pattern (``rtsp://...``,
        ``/dev/videoN``), ``1`` for the catch-all (``file``: any other text is a path). A plugin
        for its own scheme (``synth://``) claims ``10``; claim more only to take specs from another
        plugin on purpose.

        Called on the main thread before any source opens, for every spec and every plugin: it must
        be cheap and look at the text only (no file or network access) and must not raise.

        Returns:
            An ``int >= 0``. This default claims nothing, so a plugin that does not override it is
            never chosen from a spec.
        """
        return 0

    def probe(self) -> dict[str, Any]:
        """Describe what this source would read, without reading it through (``batsight probe``).

        Called on the main thread, instead of ``open()``; ``close()`` follows. Plugins that can look
        at their input cheaply override it (the PyAV sources report container, streams, rate,
        rotation ...; see README "batsight probe"); values must be JSON-ready.

        Returns:
            At least ``{"mode": "live" | "file"}``.

        Raises:
            SourceError: the input cannot be opened.
        """
        return {"mode": "live" if self.live else "file"}

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

    def queued_frames(self) -> Iterator[Frame | DeferredFrame]:
        """What the engine's reader thread queues: :meth:`frames` unless the source defers images.

        A source may yield :class:`~engine.types.DeferredFrame` here (the built-in live sources
        do) so that a frame is converted to BGR only if the batcher takes it; the reader calls
        this once, after ``open()``, instead of :meth:`frames`. Same rules as :meth:`frames`.
        """
        return self.frames()


def load_source_class(name: str) -> type[Source]:
    """The :class:`Source` subclass registered as ``name`` in ``batsight.sources``.

    Raises:
        PluginError: ``name`` is not registered, cannot be imported, or is no ``Source`` subclass.
    """
    return load(SOURCES, name, Source)


def source_plugin(spec: str) -> tuple[str, type[Source]]:
    """The ``batsight.sources`` plugin that claims ``spec`` most specifically (:meth:`Source.claims`).

    Every registered plugin is asked; the highest claim wins. With the built-in plugins:
    ``default`` -> ``default`` (100); ``rtsp://``, ``http(s)://`` ... -> ``url`` (10);
    ``/dev/videoN`` -> ``webcam`` (10); anything else -> ``file`` (1).

    Args:
        spec: The source spec without its ``ID=`` prefix.

    Returns:
        The plugin's registered name and its class.

    Raises:
        ConfigError: no plugin claims ``spec`` (the message lists the plugins), or two or more share
            the highest claim (the message names them).
        PluginError: no source plugin is registered, a plugin cannot be imported or is no
            :class:`Source`, or its ``claims`` returns something other than an ``int >= 0``.
    """
    available = names(SOURCES)
    if not available:
        msg = "no source plugins are registered (group batsight.sources): is batsight installed (pip install -e .)?"
        raise PluginError(msg)
    classes: dict[str, type[Source]] = {}
    claims: dict[str, int] = {}
    for name in available:
        cls = load_source_class(name)
        claim = cls.claims(spec)
        if isinstance(claim, bool) or not isinstance(claim, int) or claim < 0:
            msg = f"source plugin {name!r}: claims({spec!r}) must return an int >= 0, got {claim!r}"
            raise PluginError(msg)
        classes[name], claims[name] = cls, claim
    top = max(claims.values())
    if top == 0:
        msg = f"no source plugin claims {spec!r} (installed: {', '.join(available)})"
        raise ConfigError(msg)
    winners = [name for name in available if claims[name] == top]
    if len(winners) > 1:
        msg = f"source {spec!r} is claimed equally ({top}) by source plugins {' and '.join(map(repr, winners))}"
        raise ConfigError(msg)
    return winners[0], classes[winners[0]]


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

    A spec may carry its id as ``ID=SPEC`` (``cam1=rtsp://...``), and its mode as ``ID:MODE=SPEC``
    (``clip:file=http://host/clip.mp4``; ``auto``, ``live`` or ``file``; default ``source.mode``): the
    source gets ``config`` with that ``mode`` (:attr:`SourceConfig.mode`). A spec starting with a
    URL scheme (``name://``) never does. The plugin for each spec is the one that claims it most specifically
    (:func:`source_plugin`). Without an explicit id, the id is the file stem (plugin ``file``), the
    device name (``webcam``), ``default`` (``default``), or ``streamN`` (any other plugin, N the
    spec's position). Repeated derived ids get ``_2``, ``_3`` ...

    Raises:
        ConfigError: an explicit id that is not ``[A-Za-z0-9_.-]+``, or given twice; a ``MODE``
            other than ``auto``, ``live``, ``file``; ``ID=`` with nothing after it; a spec with ``=``
            whose prefix is no valid id and that names no file;
            a spec that no plugin claims, or that two plugins claim equally.
        PluginError: no source plugin is installed, or one cannot be imported or answers badly.
    """
    sources: list[Source] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(specs or ["default"]):
        match = _ID_PREFIX_RE.match(raw)
        mode = None
        if match and not _URL_RE.match(raw):
            source_id, mode, spec = match.group(1), match.group(2), match.group(3)
            if mode is not None and mode not in SOURCE_MODES:
                msg = f"source {raw!r}: unknown mode {mode!r} in ID:MODE=SPEC (expected {', '.join(SOURCE_MODES)})"
                raise ConfigError(msg)
        else:
            source_id, spec = None, raw
            _refuse_malformed_id(raw)
        kind, cls = source_plugin(spec)
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
        own = config if mode is None else config.model_copy(update={"mode": mode})
        sources.append(cls.from_spec(spec, source_id, own))
    return sources
