"""Plugins loaded lazily by name from entry-point groups.

Groups: ``batsight.sources`` (classes with ``from_spec``), ``batsight.models`` (keypoint backends),
``batsight.sinks`` (sink classes). The engine never imports ``stream`` or ``sinks`` directly: it asks
this module for them by name, so a third-party package can add its own by declaring an entry point.
Mechanism: ``importlib.metadata.entry_points`` (Python packaging entry-points specification).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from engine.errors import PluginError

SOURCES = "batsight.sources"
MODELS = "batsight.models"
SINKS = "batsight.sinks"


def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    """Sorted names registered in ``group`` (empty when the package is not installed)."""
    return sorted(_entry_points(group))


def load(group: str, name: str, kind: type | None = None) -> type:
    """Import and return the class registered as ``name`` in ``group``.

    Args:
        group: Entry-point group, e.g. :data:`SINKS`.
        name: Registered name, e.g. ``"jsonl"``.
        kind: When given, the loaded object must be a class and a subclass of ``kind``.

    Raises:
        PluginError: ``name`` is not registered (the message lists the registered names), the module
            cannot be imported, or the object has the wrong type.
    """
    eps = _entry_points(group)
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none: is batsight installed (pip install -e .)?"
        msg = f"unknown {group.rsplit('.', 1)[-1][:-1]} {name!r}; available: {known}"
        raise PluginError(msg)
    try:
        obj = eps[name].load()
    except ImportError as exc:
        msg = f"cannot import plugin {name!r} ({eps[name].value}) of {group}: {exc}"
        raise PluginError(msg) from exc
    if kind is not None and not (isinstance(obj, type) and issubclass(obj, kind)):
        msg = f"plugin {name!r} of {group} must be a subclass of {kind.__name__}, got {obj!r}"
        raise PluginError(msg)
    return obj
