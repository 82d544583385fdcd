"""Plugins loaded lazily by name from entry-point groups, typed by the contract they implement.

Groups: ``batsight.sources`` (:class:`engine.sources.Source` subclasses), ``batsight.models``
(:class:`engine.models.base.KeypointModel` subclasses), ``batsight.sinks`` (sink classes; the engine
sees them through :class:`SinkPlugin`). The engine never imports ``stream`` or ``sinks`` directly: it
asks this module for them by name, so a third-party package can add its own by declaring an entry
point. Mechanism: ``importlib.metadata.entry_points`` (Python packaging entry-points specification).

The entry points of a group are read once per process and cached; :func:`refresh` forgets them (for
a test or a long-lived process that installs a plugin while it runs).
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from engine.errors import PluginError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

SOURCES = "batsight.sources"
MODELS = "batsight.models"
SINKS = "batsight.sinks"

T = TypeVar("T")


@runtime_checkable
class SinkPlugin(Protocol):
    """What the engine's command line calls on a ``batsight.sinks`` class and its instances.

    The full contract (lifecycle, threads, options) is ``sinks.base.Sink``, which the engine may not
    import; this protocol names the methods :mod:`engine.cli` calls, with ``Sink``'s signatures, so
    :func:`load` can check a sink plugin before it is used. A runtime-checkable protocol can check
    only methods, so the attributes the command line reads (``writes_stdout``, ``primary_option``,
    ``user_option_values``, ``needs_frames``, ``output_paths()``) are read with ``getattr`` and a default.
    """

    @classmethod
    def from_spec(cls, spec: str) -> SinkPlugin:
        """Build the sink from a ``--sink NAME[:ARG]`` spec, opening nothing."""
        ...

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None, name: str | None = None) -> SinkPlugin:
        """Build the sink from parsed ``-o key=value`` options, opening nothing."""
        ...

    def run_in_thread(
        self,
        endpoint: str,
        expected_sources: set[str] | None = None,
        topics: tuple = ("",),
        curve: Any = None,
        on_error: str = "stop",
        on_fail: Any = None,
    ) -> Any:
        """Subscribe to ``endpoint`` now and run on a daemon thread; returns the thread handle."""
        ...

    def run_forever(self, endpoint: str, topics: tuple = ("",), exit_on_stop: bool = True, curve: Any = None) -> int:
        """Subscribe to ``endpoint`` and run in the foreground until the engine stops; returns the exit status."""
        ...


@runtime_checkable
class OfflineReport(Protocol):
    """A sink plugin that also draws figures from files of earlier runs (``batsight report``)."""

    @classmethod
    def report_files(
        cls,
        paths: list[str],
        out_dir: str,
        video: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        dpi: int = 150,
    ) -> list[Path]:
        """Draw the figures of the jsonl files ``paths`` into ``out_dir``; returns the files written."""
        ...


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def refresh() -> None:
    """Forget the cached entry points, so plugins installed since are found (tests, long-lived processes)."""
    _entry_points.cache_clear()


def names(group: str) -> list[str]:
    """Sorted names registered in ``group`` (empty when the package is not installed)."""
    return sorted(_entry_points(group))


def load(group: str, name: str, kind: type[T]) -> type[T]:
    """Import and return the class registered as ``name`` in ``group``, checked against ``kind``.

    Args:
        group: Entry-point group, e.g. :data:`SINKS`.
        name: Registered name, e.g. ``"jsonl"``.
        kind: The contract: a base class the plugin must subclass (``Source``, ``KeypointModel``), or
            a ``runtime_checkable`` protocol of methods it must have (:class:`SinkPlugin`). The return
            type is ``type[kind]``, so callers need no cast. Passing an abstract class here makes mypy
            report ``type-abstract`` (python/mypy#4717); callers silence that one code where they pass
            their contract.

    Returns:
        The plugin class.

    Raises:
        PluginError: ``name`` is not registered (the message lists the registered names), the module
            cannot be imported, or the object is not a class satisfying ``kind``.
    """
    eps = _entry_points(group)
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none: is batsight installed (pip install -e .)?"
        msg = f"unknown {group.rsplit('.', 1)[-1][:-1]} {name!r}; available: {known}"
        raise PluginError(msg)
    try:
        obj = eps[name].load()
    except Exception as exc:  # noqa: BLE001 - third-party code: ImportError, AttributeError, errors at import
        msg = f"cannot import plugin {name!r} ({eps[name].value}) of {group}: {type(exc).__name__}: {exc}"
        raise PluginError(msg) from exc
    if not (isinstance(obj, type) and issubclass(obj, kind)):
        relation = "a class implementing" if getattr(kind, "_is_protocol", False) else "a subclass of"
        msg = f"plugin {name!r} of {group} must be {relation} {kind.__name__}, got {obj!r}"
        raise PluginError(msg)
    return obj
