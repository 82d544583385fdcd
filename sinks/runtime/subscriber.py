"""The SUB socket of every sink: receives wire messages and decodes them, skipping malformed ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from types import TracebackType

import zmq
from zmq.utils.monitor import recv_monitor_message

from engine.errors import SinkError, WireFormatError
from engine.messages import AnyMessage
from engine.security import ClientCurve
from engine.wire import MAX_HEADER_BYTES, MAX_MESSAGE_BYTES, decode_message

logger = logging.getLogger(__name__)

#: Default receive high-water mark of a subscriber, messages.
DEFAULT_RCVHWM = 100_000


def check_topics(topics: Iterable[str]) -> tuple[str, ...]:
    """``topics`` as a tuple of topic prefixes.

    Raises:
        SinkError: ``topics`` is empty or holds something other than a str.
    """
    out = tuple(topics)
    if not out or not all(isinstance(t, str) for t in out):
        msg = f"topics must be a non-empty sequence of str prefixes (e.g. '', 'pose/cam1/'), got {out!r}"
        raise SinkError(msg)
    return out


class Subscriber:
    """A SUB socket that yields decoded typed messages (:mod:`engine.messages`).

    Use from one thread at a time (a ZeroMQ socket may move to another thread between calls, as
    :class:`SinkRunner` does after :meth:`open`). Every call is bounded by its timeout; :meth:`close`
    does not wait (``LINGER`` 0).

    Args:
        endpoint: Publisher endpoint to connect to, e.g. ``"tcp://127.0.0.1:5556"``.
        topics: Topic prefixes to subscribe to; ``""`` is everything, ``"pose/"`` every pose message,
            ``"pose/cam1/"`` pose of one source.
        context: ZeroMQ context; when ``None`` one is created in :meth:`open` and terminated in
            :meth:`close`.
        rcvhwm: Messages queued before ZeroMQ drops (the publisher then counts drops).
        max_message_bytes: Largest accepted message, bytes; larger ones are dropped as malformed.
        max_header_bytes: Largest accepted header part, bytes.
        curve: Client CURVE keys when the publisher requires CURVE authentication; a subscriber
            with a wrong or missing key connects but receives nothing.

    Attributes:
        malformed: Messages skipped because they failed :func:`engine.wire.decode_message`.
        received: Messages decoded and returned.
        connected: A TCP / IPC connection to the publisher is up (the socket's monitor events, read
            by :meth:`publisher_gone`; never set for ``inproc://``).
        disconnects: Connections to the publisher that closed.
    """

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str] = ("",),
        context: zmq.Context | None = None,
        rcvhwm: int = DEFAULT_RCVHWM,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
        curve: ClientCurve | None = None,
    ) -> None:
        if not isinstance(endpoint, str) or not endpoint:
            msg = f"endpoint must be a non-empty str like 'tcp://127.0.0.1:5556', got {endpoint!r}"
            raise SinkError(msg)
        if isinstance(rcvhwm, bool) or not isinstance(rcvhwm, int) or rcvhwm < 0:
            msg = f"rcvhwm must be an int >= 0, got {rcvhwm!r}"
            raise SinkError(msg)
        self.endpoint = endpoint
        self.topics = check_topics(topics)
        self._context = context
        self._owns_context = False
        self._rcvhwm = rcvhwm
        self._max_message_bytes = max_message_bytes
        self._max_header_bytes = max_header_bytes
        self._socket: zmq.Socket | None = None
        self._curve = curve
        self.malformed = 0
        self.received = 0
        self._monitor: zmq.Socket | None = None
        self.connected = False
        self.disconnects = 0

    @property
    def is_open(self) -> bool:
        """Whether the socket exists (between :meth:`open` and :meth:`close`)."""
        return self._socket is not None

    def open(self) -> None:
        """Create the SUB socket, connect and subscribe.

        ZeroMQ connects in the background; the subscriptions reach the publisher once the TCP
        connection is up (see :meth:`engine.publisher.Publisher.wait_for_subscribers`).

        Raises:
            SinkError: already open, or the endpoint is malformed / its transport unsupported.
        """
        if self._socket is not None:
            msg = f"subscriber to {self.endpoint!r} is already open"
            raise SinkError(msg)
        context = self._context
        owns = context is None
        if context is None:
            context = zmq.Context()
        socket = context.socket(zmq.SUB)
        monitor: zmq.Socket | None = None
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, self._rcvhwm)
            socket.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
            if self._curve is not None:
                self._curve.apply(socket)
            monitor = socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
            socket.connect(self.endpoint)
            for topic in self.topics:
                socket.setsockopt(zmq.SUBSCRIBE, topic.encode("latin-1" if topic.startswith("\x00") else "utf-8"))
        except zmq.ZMQError as exc:
            if monitor is not None:
                socket.disable_monitor()
                monitor.close(linger=0)
            socket.close(linger=0)
            if owns:
                context.term()
            msg = f"cannot connect subscriber to {self.endpoint!r}: {exc.strerror}"
            raise SinkError(msg) from exc
        self._socket, self._monitor = socket, monitor
        if owns:
            self._context = context
            self._owns_context = True

    def publisher_gone(self) -> bool:
        """Whether the connection to the publisher was up and has closed since (the engine went away).

        Reads the socket's monitor events without waiting. ZeroMQ reads everything the publisher
        sent before it sees the connection close, so once :meth:`recv` returns ``None`` after this
        is true, nothing more is coming from that publisher (unless it comes back: ZeroMQ reconnects).
        """
        monitor = self._monitor
        while monitor is not None and monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            self.connected = event == zmq.EVENT_CONNECTED
            self.disconnects += event == zmq.EVENT_DISCONNECTED
        return self.disconnects > 0 and not self.connected

    def recv(self, timeout_ms: int) -> AnyMessage | None:
        """Next decoded message, or ``None`` when none arrives within ``timeout_ms``.

        A malformed message is logged (warning, with the reason), counted in :attr:`malformed` and
        skipped; waiting continues for the rest of the timeout.

        Args:
            timeout_ms: Longest wait, ms; 0 returns at once (only what is already queued).

        Raises:
            SinkError: the subscriber is not open.
        """
        socket = self._socket
        if socket is None:
            msg = f"subscriber to {self.endpoint!r} must be open to receive"
            raise SinkError(msg)
        deadline = time.monotonic() + max(0, timeout_ms) / 1000.0
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not socket.poll(remaining_ms, zmq.POLLIN):
                return None
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            try:
                message = decode_message(parts, self._max_message_bytes, self._max_header_bytes)
            except WireFormatError as exc:
                self.malformed += 1
                logger.warning("skipping malformed message (topic %r): %s", parts[0][:80], exc)
                if time.monotonic() >= deadline:
                    return None
                continue
            self.received += 1
            return message

    def close(self) -> None:
        """Close the socket without lingering, and an owned context. Idempotent."""
        socket, self._socket = self._socket, None
        monitor, self._monitor = self._monitor, None
        if socket is not None and monitor is not None:
            socket.disable_monitor()
            monitor.close(linger=0)
        if socket is not None:
            socket.close(linger=0)
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None
            self._owns_context = False

    def __enter__(self) -> Subscriber:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
