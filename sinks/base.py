"""The sink contract, and how a ``--sink NAME[:ARG]`` spec becomes a configured sink.

Sinks are found by name in the ``batsight.sinks`` entry-point group (:mod:`engine.plugins`), so a
third-party package adds one by declaring an entry point. Pattern: bytewax ``outputs.py``
(``DynamicSink.build`` -> ``StatelessSinkPartition.write_batch`` / ``close``).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from engine.errors import SinkError, SinkOptionError
from engine.plugins import SINKS, load
from engine.wire import Message


class Sink(ABC):
    """A consumer of decoded wire messages (:class:`engine.wire.Message`).

    Lifecycle and threading contract:

    * The constructor validates and stores options only; it opens nothing and may be called on any
      thread. An unknown or bad option raises :class:`~engine.errors.SinkError` naming it.
    * :meth:`open`, :meth:`write_batch` and :meth:`close` are called from one thread only, the sink's
      runner thread (:class:`sinks.runtime.SinkRunner`), never concurrently.
    * :meth:`open` is called once, before any batch. If it raises, neither :meth:`write_batch` nor
      :meth:`close` is called, so it must release whatever it acquired before raising.
    * :meth:`write_batch` may block for I/O, but every moment it blocks, messages queue up in the
      subscriber (and are dropped at its high-water mark); it is never called after :meth:`close`.
    * :meth:`close` is called exactly once when :meth:`open` succeeded, also when the runner stops
      because of an error, a signal or the end of the stream. It must flush and release everything.

    Subclasses declare their options as keyword parameters of ``__init__`` and pass anything else on
    to ``super().__init__(**options)``, which refuses it.

    Attributes:
        primary_option: Option filled by the short form ``--sink NAME:ARG`` (``"path"`` for
            ``jsonl``), or ``None`` when the sink takes no short argument.
    """

    primary_option: ClassVar[str | None] = None

    def __init__(self, **options: Any) -> None:
        if options:
            known = _option_names(type(self))
            name = next(iter(options))
            msg = (
                f"unknown option {name!r} for sink {type(self).__name__}; "
                f"expected one of: {', '.join(known) or 'no options'}"
            )
            raise SinkError(msg)

    @abstractmethod
    def open(self) -> None:
        """Acquire the sink's resources (files, sockets, windows).

        Raises:
            SinkError: the resource cannot be acquired; the message gives the reason.
        """

    @abstractmethod
    def write_batch(self, messages: list[Message]) -> None:
        """Consume messages, in arrival order (per ``(kind, source_id)``: increasing ``seq``).

        Args:
            messages: One or more decoded messages; the list and the messages are not reused by
                the caller after the call.

        Raises:
            SinkError: the messages cannot be written.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush and release everything; called exactly once after a successful :meth:`open`."""

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None, name: str | None = None) -> Sink:
        """Construct with ``options``, checking them against the constructor first.

        Raises:
            SinkOptionError: a required option is missing, or an option is unknown or invalid.
        """
        name = name or cls.__name__
        options = dict(options or {})
        known = _option_names(cls)
        unknown = [option for option in options if option not in known]
        if unknown:
            expected = ", ".join(known) or "no options"
            msg = f"unknown option {unknown[0]!r} for sink {name!r}; expected one of: {expected}"
            raise SinkOptionError(msg)
        missing = [option for option in _required_options(cls) if option not in options]
        if missing:
            msg = f"sink {name!r} requires option {missing[0]!r}; got options {sorted(options) or 'none'}"
            raise SinkOptionError(msg)
        try:
            return cls(**options)
        except SinkError as exc:  # constructors only validate: a bad value is a configuration error
            raise SinkOptionError(str(exc)) from None

    @classmethod
    def from_spec(cls, spec: str) -> Sink:
        """Build a sink from ``NAME[:ARG]`` (:func:`parse_sink_spec` then :func:`create_sink`)."""
        name, options = parse_sink_spec(spec)
        return create_sink(name, options)

    # The engine runs sinks through these two methods, so it never imports ``sinks`` itself.
    def run_in_thread(
        self,
        endpoint: str,
        expected_sources: set[str] | None = None,
        topics: tuple = ("",),
        curve: Any = None,
        on_error: str = "stop",
        on_fail: Any = None,
    ) -> Any:
        """Subscribe now and run on a daemon thread (:func:`sinks.runtime.start_thread`)."""
        from sinks.runtime import start_thread

        return start_thread(self, endpoint, topics, expected_sources, curve=curve, on_error=on_error, on_fail=on_fail)

    def run_forever(self, endpoint: str, topics: tuple = ("",), exit_on_stop: bool = True, curve: Any = None) -> int:
        """Run in the foreground until a signal or the engine's stop (:func:`sinks.runtime.serve`)."""
        from sinks.runtime import serve

        return serve(self, endpoint, topics, exit_on_stop, curve=curve)


def _option_names(cls: type) -> list[str]:
    """Keyword options of a sink class's ``__init__`` (``**options`` excluded)."""
    params = inspect.signature(cls).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds]


def _required_options(cls: type) -> list[str]:
    params = inspect.signature(cls).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


def load_sink_class(name: str) -> type[Sink]:
    """The sink class registered as ``name`` in ``batsight.sinks``.

    Raises:
        PluginError: ``name`` is not registered (the message lists the available sinks), cannot be
            imported, or is not a :class:`Sink` subclass.
    """
    return load(SINKS, name, kind=Sink)


def parse_sink_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split a ``--sink`` spec into the sink name and its options.

    ``"console"`` gives ``("console", {})``; ``"jsonl:out.jsonl"`` gives
    ``("jsonl", {"path": "out.jsonl"})``: the text after the first ``:`` fills the sink class's
    :attr:`Sink.primary_option` (so the class is loaded to learn it). Values stay strings; each sink
    converts and validates its own options.

    Raises:
        SinkError: empty name, or an argument for a sink without a ``primary_option``.
        PluginError: unknown sink name (the message lists the available ones).
    """
    name, sep, arg = spec.partition(":")
    name = name.strip()
    if not name:
        msg = f"sink spec must be NAME or NAME:ARG, got {spec!r}"
        raise SinkError(msg)
    cls = load_sink_class(name)
    if not sep:
        return name, {}
    if cls.primary_option is None:
        msg = f"sink {name!r} takes no argument: expected {name!r}, got {spec!r}"
        raise SinkError(msg)
    return name, {cls.primary_option: arg}


def create_sink(name: str, options: dict[str, Any] | None = None) -> Sink:
    """Load the sink class registered as ``name`` and construct it with ``options`` (nothing opened).

    Raises:
        PluginError: unknown name (the message lists the available sinks) or wrong type.
        SinkOptionError: a required option is missing, or an option is unknown or invalid (also a
            :class:`~engine.errors.ConfigError` and a :class:`~engine.errors.SinkError`).
    """
    return load_sink_class(name).from_options(options, name=name)
