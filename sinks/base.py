"""The sink contract, and how a ``--sink NAME[:ARG]`` spec becomes a configured sink.

Sinks are found by name in the ``batsight.sinks`` entry-point group (:mod:`engine.plugins`), so a
third-party package adds one by declaring an entry point. Pattern: bytewax ``outputs.py``
(``DynamicSink.build`` -> ``StatelessSinkPartition.write_batch`` / ``close``).
"""

from __future__ import annotations

import inspect
import logging
import re
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from engine.errors import SinkError, SinkOptionError
from engine.messages import AnyMessage
from engine.plugins import SINKS, load

logger = logging.getLogger(__name__)

#: One ``OPTION=VALUE`` piece of a ``--sink NAME:ARG`` spec (OPTION a Python identifier).
_OPTION_PIECE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.DOTALL)


class Sink(ABC):
    """A consumer of typed messages (:mod:`engine.messages`).

    Each message is one of ``FrameImage`` (only for a sink with :attr:`needs_frames`), ``Pose``,
    ``Similarity``, ``Fit``, ``Shot``, ``Health``, ``EndOfStream``;
    sinks read their typed attributes (``message.batter_found``), never header strings.

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
    to ``super().__init__(**options)``, which refuses it. Parameters meant for code only (an output
    stream, a clock for tests) are kept out of the user's reach (``-o KEY=VALUE``, ``NAME:KEY=VALUE``)
    by listing the user options in :attr:`user_options`, or by starting their names with ``_``.

    Attributes:
        primary_option: Option filled by the short form ``--sink NAME:ARG`` (``"path"`` for
            ``jsonl``), or ``None`` when the sink takes no short argument.
        user_options: The ``__init__`` parameters a user may set, in the order error messages list
            them; ``None``: every keyword parameter whose name does not start with ``_``.
        needs_frames: The sink receives ``frame/`` messages (:class:`~engine.messages.FrameImage`);
            others never see them unless subscribed to ``frame/`` explicitly.
    """

    primary_option: ClassVar[str | None] = None
    #: The sink draws on the video: it receives ``frame/`` messages (JPEG frames, README wire table),
    #: and attaching it makes the engine publish them (``publisher.frames: auto``).
    needs_frames: ClassVar[bool] = False
    user_options: ClassVar[tuple[str, ...] | None] = None
    _plugin_name: str | None = None  # set by from_options(name=...)
    #: The user options it was created with by :meth:`from_options` (``{}`` otherwise); two sinks
    #: of one plugin with equal values would write the same output.
    user_option_values: dict[str, Any] = {}  # replaced per instance, never mutated

    def __init__(self, **options: Any) -> None:
        if options:
            known = option_names(type(self))
            name = next(iter(options))
            msg = (
                f"unknown option {name!r} for sink {type(self).__name__}; "
                f"expected one of: {', '.join(known) or 'no options'}"
            )
            raise SinkError(msg)

    @property
    def plugin_name(self) -> str:
        """The name the sink is known by in logs and errors (``"jsonl"``).

        The name it was created under (:func:`create_sink`, :meth:`from_options` with ``name``), else
        the ``batsight.sinks`` entry point registered for its class, else its class name.
        """
        return self._plugin_name or _registered_name(type(self)) or type(self).__name__

    def output_paths(self) -> list[Path]:
        """Files and folders the sink writes (as given, not resolved); ``[]`` for none (the default).

        The command line refuses two sinks whose outputs are the same path, whatever the sinks.
        """
        return []

    @property
    def writes_stdout(self) -> bool:
        """Whether the sink writes its output to standard output (the CLI then keeps its own text off it)."""
        return False

    @abstractmethod
    def open(self) -> None:
        """Acquire the sink's resources (files, sockets, windows).

        Raises:
            SinkError: the resource cannot be acquired; the message gives the reason.
        """

    @abstractmethod
    def write_batch(self, messages: list[AnyMessage]) -> None:
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

        Only :attr:`user_options` are accepted (see :func:`option_names`); ``name`` (the plugin
        name) labels error messages and becomes the sink's :attr:`plugin_name`.

        Raises:
            SinkOptionError: a required option is missing, or an option is unknown or invalid.
        """
        given_name = name
        name = name or cls.__name__
        options = dict(options or {})
        known = option_names(cls)
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
            sink = cls(**options)
        except SinkError as exc:  # constructors only validate: a bad value is a configuration error
            raise SinkOptionError(str(exc)) from None
        if given_name:
            sink._plugin_name = given_name
        sink.user_option_values = dict(options)
        return sink

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


def _keyword_parameters(cls: type) -> dict[str, inspect.Parameter]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p for p in inspect.signature(cls).parameters.values() if p.kind in kinds}


def option_names(cls: type) -> list[str]:
    """The options a user may give sink class ``cls`` (``-o KEY=VALUE``, ``--sink NAME:KEY=VALUE``).

    Its :attr:`Sink.user_options` when set, else the keyword parameters of its ``__init__`` whose
    names do not start with ``_`` (``**options`` excluded).

    Raises:
        SinkError: ``user_options`` names a parameter that ``__init__`` does not take (a plugin bug).
    """
    params = _keyword_parameters(cls)
    declared = getattr(cls, "user_options", None)
    if declared is None:
        return [name for name in params if not name.startswith("_")]
    missing = [name for name in declared if name not in params]
    if missing:
        msg = (
            f"sink class {cls.__name__} lists user option {missing[0]!r} that its __init__ does not take; "
            f"expected some of: {', '.join(params) or 'no parameters'}"
        )
        raise SinkError(msg)
    return list(declared)


def _required_options(cls: type) -> list[str]:
    params = _keyword_parameters(cls)
    return [name for name in option_names(cls) if params[name].default is inspect.Parameter.empty]


def _registered_name(cls: type) -> str | None:
    """The ``batsight.sinks`` entry-point name whose target is ``cls``, or ``None``."""
    for entry_point in entry_points(group=SINKS):
        if (entry_point.module, entry_point.attr) == (cls.__module__, cls.__qualname__):
            return entry_point.name
    return None


def load_sink_class(name: str) -> type[Sink]:
    """The sink class registered as ``name`` in ``batsight.sinks``.

    Raises:
        PluginError: ``name`` is not registered (the message lists the available sinks), cannot be
            imported, or is not a :class:`Sink` subclass.
    """
    return load(SINKS, name, kind=Sink)


def parse_sink_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split a ``--sink NAME[:ARG]`` spec into the sink name and its options.

    The sink class is loaded to learn its options (:func:`option_names`) and
    :attr:`Sink.primary_option`. ``ARG``, the text after the first ``:``, is either

    * ``OPTION=VALUE[,OPTION=VALUE...]`` when it starts with ``OPTION=``, ``OPTION`` an option of
      the sink: ``"jsonl:path=-"`` gives ``{"path": "-"}``, ``"report:out_dir=figs,dpi=100"`` gives
      ``{"out_dir": "figs", "dpi": "100"}``. A comma-separated piece that is not ``OPTION=VALUE``
      belongs to the previous value, so ``ID=VALUE`` lists keep their commas
      (``"report:out_dir=figs,video=nets=a.mp4,cam2=b.mp4"`` gives ``video`` =
      ``"nets=a.mp4,cam2=b.mp4"``); ``WORD=VALUE`` after a value without ``=`` is refused as an
      unknown option (a typo such as ``out_dir=figs,vidoe=x``);
    * otherwise the whole value of the primary option, ``:``, ``,`` and ``=`` included:
      ``"jsonl:out.jsonl"`` gives ``{"path": "out.jsonl"}``, ``"jsonl:out=1.jsonl"`` gives
      ``{"path": "out=1.jsonl"}`` (``out`` is no option of ``jsonl``), and
      ``"report:/tmp/w/rr:video=x"`` gives ``{"out_dir": "/tmp/w/rr:video=x"}``. To set other options
      too, name the primary one: ``"report:out_dir=/tmp/w/rr,video=nets=x.mp4"``.

    Surrounding whitespace of the name, of each option name and value, and of a bare value is
    dropped (``"jsonl: -"`` writes to standard output). Values stay strings; each sink converts and
    validates its own options.

    Raises:
        SinkOptionError: empty name, an option given twice or unknown, or a bare value for a sink
            without a ``primary_option`` (also a :class:`~engine.errors.SinkError`).
        PluginError: unknown sink name (the message lists the available ones).
    """
    name, sep, arg = spec.partition(":")
    name = name.strip()
    if not name:
        msg = f"sink spec must be NAME or NAME:ARG, got {spec!r}"
        raise SinkOptionError(msg)
    cls = load_sink_class(name)
    if not sep:
        return name, {}
    known = option_names(cls)
    options = _keyed_options(name, spec, arg, known)
    if options is not None:
        return name, options
    if cls.primary_option is None:
        forms = f"{name!r} or {name}:OPTION=VALUE[,...] (options: {', '.join(known)})" if known else repr(name)
        msg = f"sink {name!r} takes no bare argument: expected {forms}, got {spec!r}"
        raise SinkOptionError(msg)
    value = arg.strip()
    hidden = [match.group(1) for piece in value.split(",")[1:] if (match := _OPTION_PIECE.fullmatch(piece))]
    if any(option in known for option in hidden):
        hint = f"{name}:{cls.primary_option}={value}"
        logger.warning(
            "sink %r: %r is taken whole as its %s; write %s to set several options",
            name,
            value,
            cls.primary_option,
            hint,
        )
    return name, {cls.primary_option: value}


def _keyed_options(name: str, spec: str, arg: str, known: list[str]) -> dict[str, str] | None:
    """``ARG`` as ``OPTION=VALUE[,...]`` (see :func:`parse_sink_spec`), or ``None`` when it is a bare value."""
    pieces = arg.split(",")
    first = _OPTION_PIECE.fullmatch(pieces[0])
    if first is None or first.group(1) not in known:
        return None
    options: dict[str, str] = {}
    key = first.group(1)
    for piece in pieces:
        match = _OPTION_PIECE.fullmatch(piece)
        if match is not None and match.group(1) in known:
            key = match.group(1)
            if key in options:
                msg = f"sink {name!r} option {key!r} is given twice in {spec!r}"
                raise SinkOptionError(msg)
            options[key] = match.group(2)
        elif match is not None and "=" not in options[key]:
            msg = (
                f"unknown option {match.group(1)!r} for sink {name!r} in {spec!r}; expected one of: {', '.join(known)}"
            )
            raise SinkOptionError(msg)
        else:
            options[key] += "," + piece
    return {option: value.strip() for option, value in options.items()}


def create_sink(name: str, options: dict[str, Any] | None = None) -> Sink:
    """Load the sink class registered as ``name`` and construct it with ``options`` (nothing opened).

    Raises:
        PluginError: unknown name (the message lists the available sinks) or wrong type.
        SinkOptionError: a required option is missing, or an option is unknown or invalid (also a
            :class:`~engine.errors.ConfigError` and a :class:`~engine.errors.SinkError`).
    """
    return load_sink_class(name).from_options(options, name=name)
