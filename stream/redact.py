"""Credential redaction of URLs and free text, for every log line and error message of a source.

A source URL may carry ``user:password@`` in its authority or a secret in its query string
(``?token=...``); FFmpeg repeats the URL in its own error texts. These functions mask both, keeping
the scheme, host, port and path readable. Pure string logic: no PyAV, no I/O.

Reference: RFC 3986 §3.2.1 (``user:password`` in the userinfo is deprecated; applications should not
render the password as clear text). Here the user name is masked too.
"""

from __future__ import annotations

import re

from engine.errors import safe_text

__all__ = ["error_reason", "redact_text", "redact_url"]

_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_USERINFO_ANYWHERE_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s'\"]*@")
_SECRET_QUERY_RE = re.compile(
    r"([?&;](?:[^=&;#\s]*(?:pass|pwd|token|secret|key|auth|sig)[^=&;#\s]*)=)[^&;#\s'\"]*", re.I
)


def redact_url(url: str) -> str:
    """Return ``url`` with credentials masked, for log and error messages.

    ``user:password@`` (or ``user@``) in the authority becomes ``***@``, and the values of query
    parameters whose name looks secret (``password``, ``token``, ``key``, ``auth``, ``sig`` ...) become
    ``***``. Anything else is kept, so the host, port and path stay readable.

    Args:
        url: Any URL string, e.g. ``"rtsp://admin:pw@10.0.0.1:554/stream1"``.

    Returns:
        The masked URL, e.g. ``"rtsp://***@10.0.0.1:554/stream1"``.
    """
    masked = _USERINFO_RE.sub(r"\1***@", url)
    return _SECRET_QUERY_RE.sub(r"\1***", masked)


def redact_text(text: str) -> str:
    """Mask the credentials of every URL inside free text (an FFmpeg / OS error message, a log line).

    Example: ``"Immediate exit requested: 'rtsp://u:pw@h/x'"`` -> ``"... 'rtsp://***@h/x'"``.
    """
    masked = _USERINFO_ANYWHERE_RE.sub(r"\1***@", text)
    return _SECRET_QUERY_RE.sub(r"\1***", masked)


def error_reason(exc: BaseException) -> str:
    """Short human reason of a PyAV / OS error (its ``strerror`` when it has one), credentials masked, UTF-8 safe."""
    reason = getattr(exc, "strerror", None)
    return redact_text(safe_text(str(reason) if reason else (str(exc) or type(exc).__name__)))
