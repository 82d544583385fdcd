"""One exception hierarchy for batsight.

Every error is a :class:`BatsightError` and also subclasses the matching builtin, so callers
that only know the standard library (``except OSError``) still catch it. Messages name the
expected and the actual value. Pattern from PyAV's ``av/error.pyi``
(``class InvalidDataError(FFmpegError, builtins.ValueError)``).
"""

from __future__ import annotations


class BatsightError(Exception):
    """Base class of every error batsight raises on purpose."""


class ConfigError(BatsightError, ValueError):
    """A configuration value or command-line option is invalid (refused before start)."""


class SourceError(BatsightError, OSError):
    """A source cannot be opened or read (missing file, no video stream, unreachable URL)."""


class ModelError(BatsightError, RuntimeError):
    """A model cannot be built or its weights cannot be found or loaded."""


class WireFormatError(BatsightError, ValueError):
    """A ZeroMQ message does not follow the wire format (version, dtype, sizes)."""


class SinkError(BatsightError, RuntimeError):
    """A sink cannot be found, configured, opened or written."""


class PluginError(BatsightError, LookupError):
    """A plugin name is not registered in its entry-point group, or has the wrong type."""


class PublishError(BatsightError, OSError):
    """The ZeroMQ publisher cannot bind its endpoint or send."""


class SinkOptionError(ConfigError, SinkError):
    """A sink option is unknown, missing or invalid (a configuration error, refused before start)."""


def safe_text(text: str) -> str:
    r"""``text`` made encodable as UTF-8, for messages, logs and sinks.

    A file name that is not UTF-8 reaches Python as lone surrogates (PEP 383, ``surrogateescape``):
    the bytes ``junk\xe9.mp4`` become the text ``junk\udce9.mp4``, which UTF-8 encoders (msgpack,
    JSON files) refuse. Such bytes are written as ``\xNN`` escapes (the four characters ``\xe9``)
    and any other lone surrogate as ``\uNNNN``; valid text is returned unchanged.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class ClusterError(BatsightError, RuntimeError):
    """``batsight cluster`` cannot reach its Ray cluster, or Ray is not installed."""
