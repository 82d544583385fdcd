"""Subscriber runtime shared by in-process sink threads and ``batsight sink NAME --connect EP``.

:class:`Subscriber` receives and decodes wire messages (:func:`engine.wire.decode`), skipping
malformed ones. :class:`SinkRunner` feeds a :class:`~sinks.base.Sink` in batches until told to stop,
until every expected source has sent ``eos``, or until the engine announces ``engine_state ==
"stopped"`` on ``health/``; it subscribes to those control topics itself when the user's topic filter
leaves them out, and passes the sink only what the filter selects. :class:`SinkThread` runs a runner
on a daemon thread and keeps its error.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

import zmq

from engine.errors import SinkError, WireFormatError
from engine.security import ClientCurve
from engine.wire import MAX_HEADER_BYTES, MAX_MESSAGE_BYTES, READY_TOPIC_PREFIX, Message, decode
from sinks.base import Sink, create_sink

logger = logging.getLogger(__name__)

#: Default receive high-water mark of a subscriber, messages.
DEFAULT_RCVHWM = 100_000

#: Seconds a runner waits, after the ``eos`` of every expected source, for the final ``health/``.
EOS_GRACE_S = 2.0

#: Per-sink error policies (see :class:`SinkRunner`).
SINK_ERROR_POLICIES = ("stop", "skip", "fail")

#: Control topics a runner reads to know when to end: the engine's ``stopped`` state, and ``eos``.
HEALTH_TOPIC, EOS_TOPIC = "health/", "eos/"


def _check_topics(topics: Iterable[str]) -> tuple[str, ...]:
    out = tuple(topics)
    if not out or not all(isinstance(t, str) for t in out):
        msg = f"topics must be a non-empty sequence of str prefixes (e.g. '', 'pose/cam1/'), got {out!r}"
        raise SinkError(msg)
    return out


class Subscriber:
    """A SUB socket that yields decoded :class:`~engine.wire.Message` values.

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
        malformed: Messages skipped because they failed :func:`engine.wire.decode`.
        received: Messages decoded and returned.
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
        self.topics = _check_topics(topics)
        self._context = context
        self._owns_context = False
        self._rcvhwm = rcvhwm
        self._max_message_bytes = max_message_bytes
        self._max_header_bytes = max_header_bytes
        self._socket: zmq.Socket | None = None
        self._curve = curve
        self.malformed = 0
        self.received = 0

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
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, self._rcvhwm)
            socket.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
            if self._curve is not None:
                self._curve.apply(socket)
            socket.connect(self.endpoint)
            for topic in self.topics:
                socket.setsockopt(zmq.SUBSCRIBE, topic.encode("latin-1" if topic.startswith("\x00") else "utf-8"))
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            if owns:
                context.term()
            msg = f"cannot connect subscriber to {self.endpoint!r}: {exc.strerror}"
            raise SinkError(msg) from exc
        self._socket = socket
        if owns:
            self._context = context
            self._owns_context = True

    def recv(self, timeout_ms: int) -> Message | None:
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
                message = decode(parts, self._max_message_bytes, self._max_header_bytes)
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


class SinkRunner:
    """Receives messages and feeds them to one sink in batches.

    Stops, after writing the batch that triggered it, when

    * ``stop_event`` is set: whatever is already queued is drained first (at most
      ``drain_timeout_s``);
    * an ``eos`` message has arrived for every id in ``expected_sources`` (``None`` or empty: never),
      and then the engine's final ``health/`` (or :data:`EOS_GRACE_S` passed);
    * a ``health`` message has ``engine_state == "stopped"`` (unless ``stop_on_engine_stop`` is off).

    Threading: :meth:`connect` is called on the engine's thread before the engine publishes (so the
    publisher can wait for the subscription); :meth:`run` is then called once, on the sink's thread,
    which alone calls the sink's ``open``/``write_batch``/``close``.

    Gaps: the runner remembers the next ``seq`` per ``(kind, source_id)``; a jump counts one gap in
    :attr:`gaps` and the skipped messages in :attr:`missing`, and is logged at INFO. The first message
    of a stream sets the expectation (joining late is not a gap); a ``seq`` going back (publisher
    restart) resets it.

    Topics: the sink receives only messages whose topic starts with one of ``topics``. The runner
    itself also needs ``health/`` (with ``stop_on_engine_stop``) and ``eos/`` (with
    ``expected_sources``) to know when to end; when no prefix in ``topics`` covers one of those, it
    subscribes to it as well (one more subscription at the publisher each) and keeps its messages
    from the sink. With ``topics=("pose/",)`` the sink sees pose messages only, and the run still ends
    on the engine's stop.

    Args:
        sink: The sink, constructed but not opened.
        endpoint: Publisher endpoint.
        topics: Topic prefixes the sink receives (``""``: everything).
        expected_sources: Source ids whose ``eos`` ends the run.
        context: ZeroMQ context for the subscriber (``None``: its own).
        stop_on_engine_stop: Stop on a ``health`` message with ``engine_state == "stopped"``.
        poll_ms: Longest wait for the first message of a batch, ms (bounds reaction to ``stop_event``).
        max_batch: Most messages per :meth:`Sink.write_batch` call.
        rcvhwm: Subscriber receive high-water mark, messages.
        drain_timeout_s: Longest final drain after ``stop_event``, seconds.
        curve: Client CURVE keys (see :class:`Subscriber`).
        on_error: What a ``write_batch`` that raises does: ``"stop"`` ends this sink (closed, the
            error kept for the engine's report; the engine and other sinks go on), ``"skip"`` logs
            and drops that batch and goes on (counted in :attr:`errors`), ``"fail"`` also calls
            ``on_fail`` (the engine's graceful stop) before ending this sink.
        on_fail: Called by the ``"fail"`` policy.

    Attributes:
        topics: The prefixes whose messages the sink receives.
        control_topics: Prefixes subscribed to only for the runner's own stop conditions.
        received: Messages passed to the sink.
        batches: ``write_batch`` calls.
        gaps: ``seq`` jumps seen.
        missing: Messages skipped by those jumps.
        eos_sources: Source ids whose ``eos`` has arrived.
        stop_reason: Why :meth:`run` returned (``None`` while running or when it raised).
    """

    def __init__(
        self,
        sink: Sink,
        endpoint: str,
        topics: Iterable[str] = ("",),
        expected_sources: set[str] | None = None,
        context: zmq.Context | None = None,
        *,
        stop_on_engine_stop: bool = True,
        poll_ms: int = 100,
        max_batch: int = 256,
        rcvhwm: int = DEFAULT_RCVHWM,
        drain_timeout_s: float = 1.0,
        curve: ClientCurve | None = None,
        on_error: str = "stop",
        on_fail: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(sink, Sink):
            msg = f"sink must be a sinks.base.Sink, got {type(sink).__name__}"
            raise SinkError(msg)
        if max_batch < 1:
            msg = f"max_batch must be >= 1, got {max_batch}"
            raise SinkError(msg)
        if poll_ms < 0 or drain_timeout_s < 0:
            msg = f"poll_ms and drain_timeout_s must be >= 0, got {poll_ms} and {drain_timeout_s}"
            raise SinkError(msg)
        self.sink = sink
        self.expected_sources = frozenset(expected_sources or ())
        self.stop_on_engine_stop = stop_on_engine_stop
        self.topics = _check_topics(topics)
        control = ([HEALTH_TOPIC] if stop_on_engine_stop else []) + ([EOS_TOPIC] if self.expected_sources else [])
        self.control_topics = tuple(t for t in control if not any(t.startswith(p) for p in self.topics))
        self._subscriber = Subscriber(
            endpoint, self.topics + self.control_topics, context=context, rcvhwm=rcvhwm, curve=curve
        )
        self._poll_ms = poll_ms
        self._max_batch = max_batch
        self._drain_timeout_s = drain_timeout_s
        self._next_seq: dict[tuple[str, str], int] = {}
        self._ran = False
        self.received = 0
        self.batches = 0
        self.gaps = 0
        self.missing = 0
        self.eos_sources: set[str] = set()
        self.stop_reason: str | None = None
        self.opened = threading.Event()
        if on_error not in SINK_ERROR_POLICIES:
            msg = f"on_error must be one of {', '.join(SINK_ERROR_POLICIES)}, got {on_error!r}"
            raise SinkError(msg)
        self.on_error = on_error
        self.on_fail = on_fail
        self.errors = 0

    @property
    def malformed(self) -> int:
        """Messages skipped because they failed to decode."""
        return self._subscriber.malformed

    def connect(self) -> None:
        """Create the SUB socket, connect and subscribe (returns at once; idempotent).

        Raises:
            SinkError: malformed endpoint.
        """
        if not self._subscriber.is_open:
            self._subscriber.open()

    def close(self) -> None:
        """Close the subscriber; for a runner connected but never run. Idempotent."""
        self._subscriber.close()

    def _track(self, batch: list[Message]) -> str | None:
        """Update gap / eos bookkeeping; return the stop reason the batch triggers, if any."""
        reason = None
        for message in batch:
            key = (message.kind, message.source_id)
            expected = self._next_seq.get(key)
            if expected is not None and message.seq != expected:
                if message.seq > expected:
                    self.gaps += 1
                    self.missing += message.seq - expected
                    logger.info(
                        "gap on %s: expected seq %d, got %d (%d missing)",
                        message.topic,
                        expected,
                        message.seq,
                        message.seq - expected,
                    )
                else:
                    logger.info("seq restarted on %s: expected %d, got %d", message.topic, expected, message.seq)
            self._next_seq[key] = message.seq + 1
            if message.kind == "eos":
                self.eos_sources.add(message.source_id)
                if self.expected_sources and self.expected_sources <= self.eos_sources:
                    reason = "eos from every expected source"
            elif (
                message.kind == "health"
                and self.stop_on_engine_stop
                and message.header.get("engine_state") == "stopped"
            ):
                reason = "engine stopped"
        return reason

    def _next_batch(self, timeout_ms: int) -> list[Message]:
        first = self._subscriber.recv(timeout_ms)
        if first is None:
            return []
        batch = [first]
        while len(batch) < self._max_batch:
            message = self._subscriber.recv(0)
            if message is None:
                break
            batch.append(message)
        return batch

    def _write(self, batch: list[Message]) -> str | None:
        reason = self._track(batch)
        if self.control_topics:  # those were subscribed for the runner only: keep them from the sink
            batch = [message for message in batch if message.topic.startswith(self.topics)]
            if not batch:
                return reason
        try:
            self.sink.write_batch(batch)
        except Exception as exc:  # noqa: BLE001 - third-party sink code; handled by the explicit policy
            if self.on_error != "skip":
                if self.on_error == "fail" and self.on_fail is not None:
                    self.on_fail()
                raise
            self.errors += 1
            logger.warning("sink %s skipped a batch of %d messages: %s", self.sink.plugin_name, len(batch), exc)
            return reason
        self.received += len(batch)
        self.batches += 1
        return reason

    def run(self, stop_event: threading.Event) -> None:
        """Open the sink, feed it until a stop condition, then close it (and the subscriber).

        Args:
            stop_event: Set by another thread (or a signal handler) to stop after a final drain.

        Raises:
            SinkError: run twice, the endpoint is malformed, or raised by the sink.
            Exception: whatever the sink raises; the sink is closed first.
        """
        if self._ran:
            msg = "SinkRunner.run can be called once: expected a new runner, got one already run"
            raise SinkError(msg)
        self._ran = True
        try:
            self.connect()
            self.sink.open()
            self.opened.set()
            try:
                self.stop_reason = self._loop(stop_event)
            except BaseException:
                try:  # the loop's error is the one to report: a close that fails after it is logged
                    self.sink.close()
                except Exception as close_exc:  # noqa: BLE001 - third-party sink code
                    logger.warning("sink %s also failed to close: %s", self.sink.plugin_name, close_exc)
                raise
            self.sink.close()
        finally:
            self._subscriber.close()
        logger.info(
            "sink %s stopped (%s): %d messages in %d batches, %d gaps (%d missing), %d malformed",
            self.sink.plugin_name,
            self.stop_reason,
            self.received,
            self.batches,
            self.gaps,
            self.missing,
            self.malformed,
        )

    def _loop(self, stop_event: threading.Event) -> str:
        eos_deadline: float | None = None
        while not stop_event.is_set():
            batch = self._next_batch(self._poll_ms)
            if batch:
                reason = self._write(batch)
                if reason == "engine stopped":
                    return reason
                if reason is not None and eos_deadline is None:
                    # Every expected source ended: the engine's final health/ follows at once; take it
                    # too (for at most EOS_GRACE_S), so the sink's record ends with the engine's state.
                    eos_deadline = time.monotonic() + EOS_GRACE_S
            if eos_deadline is not None and time.monotonic() > eos_deadline:
                return "eos from every expected source"
        deadline = time.monotonic() + self._drain_timeout_s
        while time.monotonic() < deadline:
            batch = self._next_batch(0)
            if not batch:
                break
            reason = self._write(batch)
            if reason is not None:
                return reason
        return "stop requested"


class SinkThread(threading.Thread):
    """Runs a :class:`SinkRunner` on a daemon thread and keeps the exception that ended it.

    Call ``runner.connect()`` before :meth:`start` so the subscription is on its way before the
    engine publishes. :meth:`stop` sets the stop event; ``join(timeout)`` waits a bounded time
    (check :meth:`is_alive` afterwards).

    Args:
        runner: The runner; its sink is opened and closed on this thread.
        stop_event: Event that stops the runner; a new one when ``None``.
        name: Thread name, also the sink's label in the engine's error report; the sink's
            :attr:`~sinks.base.Sink.plugin_name` (``"jsonl"``) when ``None``.

    Attributes:
        error: The exception raised by the runner or its sink, or ``None``.
    """

    def __init__(
        self,
        runner: SinkRunner,
        stop_event: threading.Event | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or runner.sink.plugin_name, daemon=True)
        self.runner = runner
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Thread body: ``runner.run(stop_event)``, storing its exception in :attr:`error`."""
        try:
            self.runner.run(self.stop_event)
        # Third-party sink code may raise anything; the error is kept for the engine to report and
        # re-raise, not swallowed.
        except Exception as exc:  # noqa: BLE001
            self.error = exc
            logger.debug("sink thread %s failed: %s", self.name, exc, exc_info=exc)

    def stop(self) -> None:
        """Ask the runner to stop after draining what is queued (returns at once)."""
        self.stop_event.set()


def run_standalone(
    name: str,
    options: dict[str, Any],
    endpoint: str,
    topics: Iterable[str] = ("",),
    exit_on_stop: bool = True,
) -> int:
    """Create the sink ``name`` with ``options`` and :func:`serve` it (``batsight sink NAME``).

    Raises:
        PluginError: unknown sink name.
        SinkError: bad options, bad endpoint, or raised by the sink.
    """
    return serve(create_sink(name, options), endpoint, topics, exit_on_stop)


def serve(
    sink: Sink,
    endpoint: str,
    topics: Iterable[str] = ("",),
    exit_on_stop: bool = True,
    curve: ClientCurve | None = None,
) -> int:
    """Run one sink in the foreground until a signal or, with ``exit_on_stop``, the engine's stop.

    Runs until SIGINT / SIGTERM (a second signal raises :class:`KeyboardInterrupt` at once) or, when
    ``exit_on_stop``, until the engine announces ``engine_state == "stopped"``. Signal handlers are
    installed only on the main thread and restored on return.

    Args:
        sink: A constructed, unopened sink.
        endpoint: Publisher endpoint to connect to.
        topics: Topic prefixes the sink receives; ``health/`` is subscribed to for ``exit_on_stop``
            in any case (see :class:`SinkRunner`).
        exit_on_stop: Return when the engine stops; otherwise keep running across engine restarts.
        curve: Client CURVE keys when the publisher requires CURVE authentication.

    Returns:
        Exit status 0.

    Raises:
        SinkError: bad endpoint, or raised by the sink.
    """
    runner = SinkRunner(sink, endpoint, topics, stop_on_engine_stop=exit_on_stop, curve=curve)
    stop_event = threading.Event()
    name = sink.plugin_name

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_event.is_set():
            raise KeyboardInterrupt
        logger.info("signal %d: stopping sink %s", signum, name)
        stop_event.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        runner.run(stop_event)
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)
    return 0


def start_thread(
    sink: Sink,
    endpoint: str,
    topics: Iterable[str] = ("",),
    expected_sources: set[str] | None = None,
    open_timeout_s: float = 10.0,
    curve: ClientCurve | None = None,
    on_error: str = "stop",
    on_fail: Callable[[], None] | None = None,
) -> SinkThread:
    """Subscribe ``sink`` (synchronously, so the publisher can wait for it) and run it on a thread.

    Returns once the sink's ``open()`` succeeded on its thread. The thread stops after ``eos/`` of
    every id in ``expected_sources`` or the engine's ``stopped`` health message, whichever first.

    Raises:
        SinkError: (or whatever the sink raised) ``open()`` failed or took over ``open_timeout_s``;
            nothing has been published yet, so the engine can refuse to start.
    """
    marker = (READY_TOPIC_PREFIX + uuid.uuid4().hex.encode()).decode("latin-1")
    runner = SinkRunner(
        sink, endpoint, (*topics, marker), expected_sources=expected_sources, curve=curve,
        on_error=on_error, on_fail=on_fail,
    )
    runner.connect()
    thread = SinkThread(runner)
    thread.start()
    deadline = time.monotonic() + open_timeout_s
    while not runner.opened.is_set() and thread.is_alive() and time.monotonic() < deadline:
        runner.opened.wait(0.01)
    if thread.error is not None:
        raise thread.error
    if not runner.opened.is_set():
        thread.stop()
        msg = f"sink {sink.plugin_name} did not open within {open_timeout_s} s"
        raise SinkError(msg)
    return thread
