"""The web sink's aiohttp server on its own asyncio loop and thread.

Routes: ``/`` (coach's live view), ``/overlay`` (broadcast overlay), ``/static/...`` (the page's
JS and CSS, shipped in ``sinks/web/static``), ``/ws`` (WebSocket of the messages as JSON),
``/api/state`` (latest state per source), ``/api/frame?source=ID`` (the latest JPEG). Pattern:
aiohttp docs "Application runners" (``AppRunner`` + ``TCPSite`` started on a loop we own) and
"Server WebSockets".

Threading: :meth:`WebServer.start`, :meth:`WebServer.submit` and :meth:`WebServer.stop` are called
from the sink's runner thread; everything else runs on the server's loop thread. ``submit`` only
schedules (``loop.call_soon_threadsafe``), it never waits for a client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sinks.web.hub import Client, ClientQueue, Hub, Item

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Seconds :meth:`WebServer.start` / :meth:`WebServer.stop` wait for the loop thread.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
#: Seconds :meth:`WebServer.stop` lets clients receive what is queued for them before closing.
DRAIN_TIMEOUT_S = 2.0


def _filter(value: str | None) -> frozenset[str] | None:
    """``"a,b"`` -> ``{"a", "b"}``; empty or missing -> ``None`` (no filter)."""
    names = frozenset(part.strip() for part in (value or "").split(",") if part.strip())
    return names or None


class WebServer:
    """One aiohttp application served on ``host:port`` from a private event loop on a daemon thread.

    Args:
        host: Interface to bind (``127.0.0.1``; the sink checks non-loopback hosts).
        port: TCP port; ``0`` picks a free one (read it back from :attr:`port`).
        max_frames_queued: Frame messages at most waiting per client (:class:`ClientQueue`).
        heartbeat_s: WebSocket ping interval, seconds (dead clients are found and dropped).
        title: Shown on the coach's page (``/api/state`` ``title``).

    Attributes:
        port: The bound port once :meth:`start` returned.
        hub: The state and clients (touch only from the loop thread).
    """

    def __init__(
        self, host: str, port: int, max_frames_queued: int = 2, heartbeat_s: float = 10.0, title: str = "batsight"
    ) -> None:
        self.host = host
        self.title = title
        self.port = port
        self.max_frames_queued = max_frames_queued
        self.heartbeat_s = heartbeat_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hub: Hub | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    # ------------------------------------------------------------------ runner-thread side
    def start(self) -> None:
        """Start the loop thread and bind; returns once the server listens.

        Raises:
            OSError: the address cannot be bound (in use, not an interface of this host).
            TimeoutError: the server did not start within :data:`START_TIMEOUT_S`.
        """
        loop = asyncio.new_event_loop()
        self.loop = loop
        self._thread = threading.Thread(target=self._run_loop, name="batsight-web", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), loop)
        try:
            future.result(START_TIMEOUT_S)
        except BaseException:
            self._stop_loop()
            raise

    def submit(self, items: list[Item]) -> None:
        """Hand ``items`` to the loop (returns at once; safe from any thread)."""
        if self.loop is None or self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped between the check and the call
            self.loop.call_soon_threadsafe(self._publish, items)

    def call(self, fn: Any, timeout_s: float = STOP_TIMEOUT_S) -> Any:
        """Run ``fn()`` on the loop thread and return its result (tests and :attr:`hub` readers)."""
        if self.loop is None:
            msg = "web server is not started"
            raise RuntimeError(msg)
        future: Future[Any] = Future()

        def _call() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(_call)
        return future.result(timeout_s)

    def stop(self) -> None:
        """Close every WebSocket (1001 going away), stop listening, end the thread (bounded)."""
        if self.loop is None:
            return
        if self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            try:
                future.result(STOP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - shutdown goes on; the thread is a daemon
                logger.warning("web sink: server shutdown incomplete: %s", exc)
        self._stop_loop()

    def _run_loop(self) -> None:
        assert self.loop is not None  # noqa: S101 - set before the thread starts
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _stop_loop(self) -> None:
        loop, thread = self.loop, self._thread
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(STOP_TIMEOUT_S)
            if thread is None or not thread.is_alive():
                loop.close()

    # ------------------------------------------------------------------ loop-thread side
    async def _start(self) -> None:
        self.hub = Hub()
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._page("coach.html")),
                web.get("/overlay", self._page("overlay.html")),
                web.get("/ws", self._websocket),
                web.get("/api/state", self._state),
                web.get("/api/frame", self._frame),
                web.static("/static", STATIC_DIR),
            ]
        )
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        addresses = self._runner.addresses  # (host, port, ...) of the bound sockets: the real port for port=0
        if addresses:
            self.port = int(addresses[0][1])

    async def _shutdown(self) -> None:
        # Let the clients receive what is queued (the last shot, eos/) before saying goodbye; bounded.
        deadline = self.loop.time() + DRAIN_TIMEOUT_S if self.loop is not None else 0.0
        while self.hub is not None and any(len(c.queue) for c in self.hub.clients) and self.loop is not None:
            if self.loop.time() > deadline:
                break
            await asyncio.sleep(0.02)
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"batsight stopped")
        if self._runner is not None:
            await self._runner.cleanup()

    def _publish(self, items: list[Item]) -> None:
        assert self.hub is not None  # noqa: S101 - set in _start before any submit
        for item in items:
            self.hub.publish(item)

    @staticmethod
    def _page(name: str) -> Any:
        path = STATIC_DIR / name

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

        return handler

    async def _state(self, request: web.Request) -> web.Response:
        assert self.hub is not None  # noqa: S101
        return web.json_response({"title": self.title, **self.hub.state_json()}, headers={"Cache-Control": "no-cache"})

    async def _frame(self, request: web.Request) -> web.Response:
        assert self.hub is not None  # noqa: S101
        source_id = request.query.get("source") or next(iter(self.hub.sources), "")
        state = self.hub.sources.get(source_id)
        if state is None or state.frame is None:
            raise web.HTTPNotFound(text=f"no frame of source {source_id!r} yet (is the frame/ topic on?)")
        jpeg = base64.b64decode(state.frame.data["arrays"]["jpeg"])
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        assert self.hub is not None  # noqa: S101
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s, compress=False)
        await ws.prepare(request)
        client = Client(
            ClientQueue(max_frames=self.max_frames_queued),
            sources=_filter(request.query.get("source")),
            kinds=_filter(request.query.get("kinds")),
        )
        self._sockets.add(ws)
        self.hub.add(client)
        sender = asyncio.ensure_future(self._send_loop(ws, client))
        try:
            async for message in ws:  # the pages send nothing; reading keeps pings and closes flowing
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self.hub.remove(client)
            self._sockets.discard(ws)
        return ws

    async def _send_loop(self, ws: web.WebSocketResponse, client: Client) -> None:
        while not ws.closed:
            item = await client.queue.get()
            if client.queue.overflowed:
                await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"client too slow")
                return
            await ws.send_str(item.text)
