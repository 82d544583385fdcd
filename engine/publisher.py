"""ZeroMQ XPUB publisher of wire-format messages (:mod:`engine.wire`).

The publisher never blocks the engine: every send is non-blocking, and a message that a slow
subscriber's full queue cannot take is discarded for that subscriber only, which sees the drop as a
jump in ``seq``. Pattern: pyzmq ``examples/pubsub/publisher.py`` (XPUB, waiting for subscribers).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import numpy as np
import zmq

from engine.config import PublisherConfig
from engine.errors import PublishError
from engine.messages import Health, Message
from engine.security import ClientCurve, CurveServer
from engine.wire import READY_TOPIC_PREFIX, encode

_SUBSCRIBE, _UNSUBSCRIBE = 1, 0
#: Topic prefix of ``frame/`` messages; a subscription to it (or below it) asks for frames.
FRAME_TOPIC = b"frame/"

log = logging.getLogger(__name__)


class Publisher:
    """Binds an XPUB socket and publishes one message per :meth:`publish` call.

    Threading: a publisher is used by exactly one thread (ZeroMQ sockets are not thread-safe); the
    engine's publishing thread calls :meth:`open`, :meth:`publish`, :meth:`wait_for_subscribers` and
    :meth:`close`. No method blocks for longer than its timeout; :meth:`close` waits at most
    ``config.linger_ms`` for queued messages to flush.

    Drops: ``SNDHWM`` is per subscriber. When one subscriber's queue holds ``config.sndhwm``
    messages, ZeroMQ discards further messages *for that subscriber only*; the engine and every
    other subscriber are unaffected, and the slow subscriber sees the loss as a jump in ``seq``.
    (``XPUB_NODROP`` is deliberately not set: it would make one stalled subscriber refuse each
    message for all of them.) Messages published while no subscriber is connected are discarded.

    End markers: an ``eos/`` message, and a ``health/`` with ``engine_state == "stopped"``, wait up
    to ``config.linger_ms`` for room at every subscriber of their topic (``XPUB_NODROP`` with a send
    timeout, for that message only), so a subscriber that was merely slow still learns how the run
    ended; after the timeout the marker is sent like any other message (dropped for the subscriber
    that is still full, counted in :attr:`markers_dropped`). ZeroMQ leaves a subscriber that already
    lost a message out of that wait until it reads again, so it may lose the markers as well (it then
    knows its run is truncated: no ``eos/``). Each ``eos/`` carries ``last_seq``: the
    ``seq`` of the last message of each kind published for its source, so a subscriber can tell
    a complete run (every ``seq`` up to ``last_seq`` received) from a truncated one.

    Frame requests: every subscription and unsubscription reaches the socket (``XPUB_VERBOSER``); the
    publisher keeps a count of those under ``frame/`` (:meth:`poll_subscriptions`), so
    :meth:`wants_frames` says whether anyone connected asked for a source's ``frame/`` messages (a
    subscriber that disconnects withdraws its subscriptions). A subscription to ``""`` does not ask.

    Args:
        config: Endpoint, high-water mark and linger.
        context: ZeroMQ context to create the socket in; when ``None`` the publisher creates its own
            in :meth:`open` and terminates it in :meth:`close`.
        now_ns: Clock giving Unix epoch ns for ``publish_time_ns`` (injectable for tests).

    Attributes:
        sent: Messages handed to ZeroMQ.
        markers_dropped: End markers that did not find room within ``linger_ms`` (see above).
    """

    def __init__(
        self,
        config: PublisherConfig,
        context: zmq.Context | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not isinstance(config, PublisherConfig):
            msg = f"config must be a PublisherConfig, got {type(config).__name__}"
            raise TypeError(msg)
        self._config = config
        self._context = context
        self._owns_context = False
        self._now_ns = now_ns
        self._socket: zmq.Socket | None = None
        self._seq: dict[tuple[str, str], int] = {}
        self._closed = False
        self._curve: CurveServer | None = None
        self._frame_topics: Counter[bytes] = Counter()
        self.sent = 0
        self.markers_dropped = 0

    def _curve_server(self) -> CurveServer | None:
        if self._curve is None and self._config.curve_secret_key_file is not None:
            self._curve = CurveServer(self._config.curve_secret_key_file, self._config.curve_clients_dir)
        return self._curve

    def client_curve(self) -> ClientCurve | None:
        """Client keys an in-process sink uses to connect (``None`` without CURVE).

        Each call makes a new keypair that this publisher will accept; call it before :meth:`open`
        or after. Raises :class:`~engine.errors.ConfigError` for unreadable certificates.
        """
        server = self._curve_server()
        return None if server is None else server.client_for_in_process_sink()

    @property
    def config(self) -> PublisherConfig:
        """The publisher's configuration."""
        return self._config

    @property
    def is_open(self) -> bool:
        """Whether the socket is bound (between :meth:`open` and :meth:`close`)."""
        return self._socket is not None

    @property
    def endpoint(self) -> str:
        """The bound endpoint once open (``tcp://127.0.0.1:*`` reports its port), else ``config.endpoint``."""
        if self._socket is None:
            return self._config.endpoint
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def open(self) -> None:
        """Create the XPUB socket and bind ``config.endpoint``.

        Raises:
            PublishError: already open or closed, or the bind fails (address in use, malformed
                endpoint, unsupported transport); the message names the endpoint and the reason.
        """
        if self._socket is not None or self._closed:
            msg = "publisher can be opened once: expected a new publisher, got one already opened"
            raise PublishError(msg)
        context = self._context
        owns = context is None
        if context is None:
            context = zmq.Context()
        socket = context.socket(zmq.XPUB)
        try:
            socket.setsockopt(zmq.SNDHWM, self._config.sndhwm)
            socket.setsockopt(zmq.LINGER, self._config.linger_ms)
            # Pass every subscription and unsubscription up (not only the first / last per topic) so
            # wait_for_subscribers counts two sinks that both subscribe to "", and frame requests are
            # counted per subscriber.
            socket.setsockopt(zmq.XPUB_VERBOSER, 1)
            curve = self._curve_server()
            if curve is not None:
                curve.start(context, socket)
            socket.bind(self._config.endpoint)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            if self._curve is not None:
                self._curve.stop()
            if owns:
                context.term()
            msg = f"cannot bind publisher to {self._config.endpoint!r}: {exc.strerror}"
            raise PublishError(msg) from exc
        self._socket = socket
        if owns:
            self._context = context
            self._owns_context = True

    def _require_socket(self) -> zmq.Socket:
        if self._socket is None:
            state = "closed" if self._closed else "not opened"
            msg = f"publisher must be open, got {state}"
            raise PublishError(msg)
        return self._socket

    def publish(self, message: Message) -> int:
        """Encode and send one typed message (:mod:`engine.messages`) without blocking.

        An ``eos/`` message gets ``last_seq`` from this publisher's counters (whatever it held);
        end markers wait for room (see the class docstring).

        Returns:
            The ``seq`` given to the message: 0, 1, 2, ... per ``(kind, source_id)``. A message a
            subscriber misses still consumes its ``seq``, so that subscriber sees the gap.

        Raises:
            PublishError: the publisher is not open.
            WireFormatError: the message cannot be encoded (nothing sent, no ``seq`` consumed).
        """
        fields = message.header_fields()
        if message.KIND == "eos":
            fields["last_seq"] = self.last_seq(message.source_id)
        marker = message.KIND == "eos" or (isinstance(message, Health) and message.engine_state == "stopped")
        wait_ms = self._config.linger_ms if marker else 0
        return self.publish_raw(message.KIND, message.source_id, fields, message.array_fields(), wait_ms=wait_ms)

    def last_seq(self, source_id: str) -> dict[str, int]:
        """``kind -> seq`` of the last message of each kind published so far for ``source_id`` (none: left out)."""
        return {kind: count - 1 for (kind, sid), count in self._seq.items() if sid == source_id}

    @property
    def published(self) -> dict[tuple[str, str], int]:
        """Messages published so far per ``(kind, source_id)`` (also after :meth:`close`)."""
        return dict(self._seq)

    def publish_raw(
        self,
        kind: str,
        source_id: str,
        fields: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray] | None = None,
        wait_ms: int = 0,
    ) -> int:
        """Encode and send one message from plain header fields (no schema check beyond the wire's).

        The engine publishes typed messages (:meth:`publish`); this is the wire-level form, for
        tests and tools that need to send what the schema would refuse.

        Args:
            kind: One of :data:`engine.wire.KINDS`.
            source_id: Source name, ``""`` for ``health``.
            fields: Header fields (see :func:`engine.wire.encode`).
            arrays: ``name -> ndarray`` sent as raw buffers. ZeroMQ copies them before this returns.
            wait_ms: Longest wait for room at every subscriber of the topic, ms; 0 never waits (a full
                subscriber misses the message). After the wait the message is sent without it.

        Returns:
            The ``seq`` given to the message (see :meth:`publish`).

        Raises:
            PublishError: the publisher is not open.
            WireFormatError: the message cannot be encoded (nothing sent, no ``seq`` consumed).
        """
        socket = self._require_socket()
        key = (kind, source_id)
        seq = self._seq.get(key, 0)
        parts = encode(kind, source_id, seq, fields, arrays, publish_time_ns=self._now_ns())
        self._seq[key] = seq + 1
        sent = wait_ms > 0 and self._send_waiting(socket, parts, wait_ms)
        if wait_ms > 0 and not sent:
            self.markers_dropped += 1
            log.warning("%s/%s: a subscriber had no room for %d ms and misses this message", kind, source_id, wait_ms)
        if not sent:
            # copy=True: ZeroMQ copies each buffer once, so callers may reuse their arrays at once.
            # An XPUB socket without XPUB_NODROP never blocks nor raises EAGAIN at the high-water mark.
            socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
        self.sent += 1
        return seq

    @staticmethod
    def _send_waiting(socket: zmq.Socket, parts: list[bytes | memoryview], wait_ms: int) -> bool:
        """Send once every subscriber of the topic has room (``XPUB_NODROP``); False: nothing sent in ``wait_ms``."""
        socket.setsockopt(zmq.XPUB_NODROP, 1)
        socket.setsockopt(zmq.SNDTIMEO, wait_ms)
        try:
            socket.send_multipart(parts, copy=True)
        except zmq.Again:
            return False
        finally:
            socket.setsockopt(zmq.XPUB_NODROP, 0)
            socket.setsockopt(zmq.SNDTIMEO, -1)
        return True

    def wait_for_subscribers(
        self, count: int, timeout_s: float, ready_topics: int = 0, ready_sink_topics: int | None = None
    ) -> tuple[int, int]:
        """Wait for subscriptions: ``ready_topics`` in-process sink markers plus ``count`` others.

        In-process sinks additionally subscribe to a marker topic starting with
        :data:`engine.wire.READY_TOPIC_PREFIX`, which no message ever matches; waiting for those
        markers means every in-process sink is connected, whatever external subscribers do.
        Their ordinary subscriptions (``ready_sink_topics`` in all, default one per sink) are not
        counted among the ``count`` others. Subscriptions queued before this call are counted too;
        unsubscriptions are ignored.

        Args:
            count: Other subscriptions to wait for (a subscriber subscribed to two topics sends two).
            timeout_s: Upper bound on the wait, seconds (``>= 0``).
            ready_topics: Marker subscriptions to wait for (one per in-process sink).
            ready_sink_topics: Ordinary subscriptions the in-process sinks make, in all.

        Returns:
            ``(ready_seen, others_seen)``, others excluding the in-process sinks' ordinary
            subscriptions; less than asked when the wait timed out.

        Raises:
            PublishError: the publisher is not open.
        """
        socket = self._require_socket()
        deadline = time.monotonic() + max(0.0, timeout_s)
        ready = others = 0
        own = ready_topics if ready_sink_topics is None else ready_sink_topics
        marker = bytes([_SUBSCRIBE]) + READY_TOPIC_PREFIX
        while ready < ready_topics or others < count + own:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not socket.poll(remaining_ms, zmq.POLLIN):
                break
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            self._note_subscription(frame)
            if frame.startswith(marker):
                ready += 1
            elif frame[:1] == bytes([_SUBSCRIBE]):
                others += 1
        return ready, max(0, others - own)

    def _note_subscription(self, frame: bytes) -> None:
        """Count a (un)subscription message of the XPUB socket if it is about ``frame/``."""
        topic = frame[1:]
        if not topic.startswith(FRAME_TOPIC):
            return
        if frame[:1] == bytes([_SUBSCRIBE]):
            self._frame_topics[topic] += 1
        elif frame[:1] == bytes([_UNSUBSCRIBE]) and self._frame_topics[topic] > 0:
            self._frame_topics[topic] -= 1
            if not self._frame_topics[topic]:
                del self._frame_topics[topic]

    def poll_subscriptions(self) -> None:
        """Read the (un)subscriptions queued on the socket without waiting (see :meth:`wants_frames`).

        Raises:
            PublishError: the publisher is not open.
        """
        socket = self._require_socket()
        while True:
            try:
                self._note_subscription(socket.recv(zmq.NOBLOCK))
            except zmq.Again:
                return

    def wants_frames(self, source_id: str) -> bool:
        """Whether a connected subscriber asked for ``frame/<source_id>/`` (a ``frame/...`` prefix of it).

        Up to date as of the last :meth:`poll_subscriptions` or :meth:`wait_for_subscribers`.
        """
        topic = FRAME_TOPIC + source_id.encode("ascii", "replace") + b"/"
        return any(topic.startswith(prefix) for prefix in self._frame_topics)

    def close(self) -> None:
        """Close the socket (waiting at most ``config.linger_ms``) and an owned context. Idempotent."""
        self._closed = True
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close(linger=self._config.linger_ms)
        if self._curve is not None:
            self._curve.stop()
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None
            self._owns_context = False

    def __enter__(self) -> Publisher:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
