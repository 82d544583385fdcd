"""``web`` sink: a coach's live view, a broadcast overlay, a WebSocket and a state API over HTTP.

``batsight run clip.mp4 --sink web`` serves, on ``http://127.0.0.1:8080`` by default:

* ``/``: the coach's live view (video with the skeleton, the 17x17 dependency matrix with COCO
  names, thesis Fig. 3; the wrist path relative to the shoulder with its Legendre fit and r(t),
  Figs. 4-5; the pair similarity over time, Fig. 6; shots; per-source health and latency);
* ``/overlay?source=ID``: a transparent broadcast overlay (skeleton and shot label) for OBS Browser
  Source, CasparCG or vMix, sized and styled by its query string;
* ``/ws``: every message as JSON (:func:`sinks.web.hub.message_json_dict`); ``/api/state``: the latest
  state per source; ``/api/frame?source=ID``: the latest frame as JPEG.

The pages are plain HTML + JavaScript + canvas in ``sinks/web/static`` (no CDN, no build step), so they
work offline. The server is aiohttp on its own event loop and thread (:mod:`sinks.web.server`).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import IO, Any, ClassVar

from engine.errors import SinkError
from engine.messages import AnyMessage
from sinks.base import Sink
from sinks.web.hub import Item
from sinks.web.server import WebServer

__all__ = ["WebSink"]

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bool_option(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    msg = f"web option {name!r} must be true or false, got {value!r}"
    raise SinkError(msg)


class WebSink(Sink):
    """Serve the live pages, ``/ws`` and ``/api/state`` (``--sink web[:host=...,port=...]``).

    Lifecycle (see :class:`sinks.base.Sink`): :meth:`open` starts the server on its own thread and
    prints one line per URL on stderr; :meth:`write_batch` serialises the messages to JSON on the
    runner thread and hands them to the server loop without waiting (a slow browser loses frames,
    never results, and never slows the runner); :meth:`close` closes the WebSockets (the pages
    then show "reconnecting") and stops the server. The server lives as long as the sink: until the
    engine stops.

    Args:
        host: Interface to listen on; default ``127.0.0.1`` (loopback only). The pages and the API have
            no authentication, so any other host is refused unless ``allow_public`` is true.
        port: TCP port, 0-65535; ``0`` picks a free one (printed on stderr).
        allow_public: Permit a non-loopback ``host`` (``0.0.0.0`` to reach the pages from another
            machine on a trusted network, e.g. the OBS computer).
        title: Title shown on the coach's page.
        max_frames_queued: ``frame`` messages at most waiting for one client (older ones are dropped).
        _stderr: Stream the URLs are printed to (``sys.stderr`` at :meth:`open` when ``None``); code only.

    Raises:
        SinkError: a bad option value, or a non-loopback ``host`` without ``allow_public``.
    """

    primary_option: ClassVar[str | None] = "port"
    user_options: ClassVar[tuple[str, ...] | None] = ("port", "host", "allow_public", "title", "max_frames_queued")
    #: Draws on the video: the runtime also subscribes it to ``frame/`` (which turns frames on).
    needs_frames: ClassVar[bool] = True

    def __init__(
        self,
        port: int | str = 8080,
        host: str = "127.0.0.1",
        allow_public: bool | str = False,
        title: str = "batsight",
        max_frames_queued: int | str = 2,
        _stderr: IO[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.port = self._int_option("port", port, 0, 65535)
        self.max_frames_queued = self._int_option("max_frames_queued", max_frames_queued, 1, 1000)
        if not isinstance(host, str) or not host.strip():
            msg = f"web option 'host' must be a host name or IP address, got {host!r}"
            raise SinkError(msg)
        self.host = host.strip()
        self.allow_public = _bool_option("allow_public", allow_public)
        if not _is_loopback(self.host) and not self.allow_public:
            msg = (
                f"web option 'host' {self.host!r} is not a loopback address; the pages have no authentication, "
                "so add allow_public=true to serve them on it"
            )
            raise SinkError(msg)
        self.title = str(title)
        self._stderr_option = _stderr
        self.server: WebServer | None = None

    @staticmethod
    def _int_option(name: str, value: Any, low: int, high: int) -> int:
        try:
            number = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            msg = f"web option {name!r} must be an integer in [{low}, {high}], got {value!r}"
            raise SinkError(msg)
        return number

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` with the bound port (after :meth:`open`); IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = self.server.port if self.server is not None else self.port
        return f"http://{host}:{port}"

    def open(self) -> None:
        """Start the server and print the URLs (``batsight web: coach view http://...``) on stderr.

        Raises:
            SinkError: ``host:port`` cannot be bound (one line naming it and the reason).
        """
        server = WebServer(self.host, self.port, max_frames_queued=self.max_frames_queued, title=self.title)
        try:
            server.start()
        except OSError as exc:
            msg = f"web sink cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            raise SinkError(msg) from None
        except TimeoutError:
            msg = f"web sink cannot listen on {self.host}:{self.port}: the server did not start in time"
            raise SinkError(msg) from None
        self.server = server
        stream = self._stderr_option if self._stderr_option is not None else sys.stderr
        base = self.base_url
        lines = [
            f"batsight web: coach view {base}/",
            f"batsight web: broadcast overlay {base}/overlay?source=ID",
            f"batsight web: websocket ws{base[4:]}/ws  state {base}/api/state",
        ]
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Serialise ``messages`` (JSON, frames' JPEG as base64) and hand them to the server; never waits.

        Raises:
            SinkError: the sink is not open.
        """
        if self.server is None:
            msg = "web sink must be open to write"
            raise SinkError(msg)
        self.server.submit([Item.of(message) for message in messages])

    def close(self) -> None:
        """Close the WebSockets and stop the server (bounded: a few seconds at most)."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()
