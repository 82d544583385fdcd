"""Feeding one sink: :class:`SinkRunner` and :class:`SinkThread`.

:class:`SinkRunner` passes a sink its messages in batches, counts gaps, applies the sink's error
policy and ends on a stop condition; :class:`SinkThread` runs a runner on a daemon thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import zmq

from engine.errors import SinkError
from engine.messages import AnyMessage, EndOfStream, Health
from engine.schema import topic_for
from engine.security import ClientCurve
from engine.wire import READY_TOPIC_PREFIX
from sinks.base import Sink
from sinks.runtime.subscriber import DEFAULT_RCVHWM, Subscriber, check_topics

logger = logging.getLogger(__name__)

#: Seconds a runner waits, after the ``eos`` of every expected source, for the final ``health/``.
EOS_GRACE_S = 2.0

#: Per-sink error policies (see :class:`SinkRunner`).
SINK_ERROR_POLICIES = ("stop", "skip", "fail")

#: Control topics a runner reads to know when to end: the engine's ``stopped`` state, and ``eos``.
HEALTH_TOPIC, EOS_TOPIC = "health/", "eos/"
#: Topic prefix of the ``frame/`` messages (JPEG frames, opt-in: see :attr:`sinks.base.Sink.needs_frames`).
FRAME_TOPIC = "frame/"


class SinkRunner:
    """Receives messages and feeds them to one sink in batches.

    Stops, after writing the batch that triggered it, when

    * ``stop_event`` is set: whatever is already queued is drained first (at most
      ``drain_timeout_s``);
    * an ``eos`` message has arrived for every id in ``expected_sources`` (``None`` or empty: never),
      and then the engine's final ``health/`` (or :data:`EOS_GRACE_S` passed);
    * a ``health`` message has ``engine_state == "stopped"`` (unless ``stop_on_engine_stop`` is off);
    * with ``stop_on_engine_stop``, after at least one message, the publisher's connection closed
      and everything it sent was read, but no final ``health/`` came (:attr:`truncated`).

    Threading: :meth:`connect` is called on the engine's thread before the engine publishes (so the
    publisher can wait for the subscription); :meth:`run` is then called once, on the sink's thread,
    which alone calls the sink's ``open``/``write_batch``/``close``.

    Gaps: the runner remembers the next ``seq`` per ``(kind, source_id)``; a jump counts one gap in
    :attr:`gaps` and the skipped messages in :attr:`missing`, and is logged at INFO. The first message
    of a stream sets the expectation (joining late is not a gap); a ``seq`` going back (publisher
    restart) resets it. An ``eos/`` whose ``last_seq`` is beyond the last ``seq`` received of a kind
    the sink subscribes to counts the difference in :attr:`missing_at_end`, and so does an ``eos/``
    that never came for a source the final ``health/`` lists and the runner had messages of (one
    each); :attr:`lost` adds both up.

    Topics: the sink receives only messages whose topic starts with one of ``topics``. The runner
    itself also needs ``health/`` (with ``stop_on_engine_stop``) and ``eos/`` (with
    ``expected_sources``) to know when to end; when no prefix in ``topics`` covers one of those, it
    subscribes to it as well (one more subscription at the publisher each) and keeps its messages
    from the sink. With ``topics=("pose/",)`` the sink sees pose messages only, and the run still ends
    on the engine's stop. ``frame/`` messages (JPEG frames) are opt-in: a sink gets them only when its
    class sets :attr:`~sinks.base.Sink.needs_frames` (the runner then subscribes to ``frame/`` too,
    which is what makes the engine publish frames under ``publisher.frames: auto``) or when one of
    ``topics`` starts with ``frame/``; ``""`` alone does not deliver them.

    Args:
        sink: The sink, constructed but not opened.
        endpoint: Publisher endpoint.
        topics: Topic prefixes the sink receives (``""``: everything but ``frame/``, see above).
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
        missing_at_end: Messages missing at the end of a source per its ``eos/`` ``last_seq`` (or its
            ``eos/`` itself, missing per the final ``health/``).
        truncated: With ``stop_on_engine_stop``, the publisher's connection closed before its final
            ``health/`` came (:meth:`Subscriber.publisher_gone`): the runner stops, and what it missed
            at the end cannot be counted.
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
        self.topics = check_topics(topics)
        # Frames are opt-in: an explicit ``frame/...`` subscription is what makes the engine publish them
        # (publisher.frames: auto), so a sink that draws on the video adds one; "" alone does not ask.
        self._frames_explicit = any(t.startswith(FRAME_TOPIC) for t in self.topics if t)
        if sink.needs_frames and not self._frames_explicit:
            self.topics = (*self.topics, FRAME_TOPIC)
            self._frames_explicit = True
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
        self.missing_at_end = 0
        self.truncated = False
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

    def _track(self, batch: list[AnyMessage]) -> str | None:
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
            if isinstance(message, EndOfStream):
                self._check_tail(message)
                if self.expected_sources and self.expected_sources <= self.eos_sources:
                    reason = "eos from every expected source"
            elif isinstance(message, Health) and message.engine_state == "stopped":
                seen = {source_id for _, source_id in self._next_seq}  # a source it never heard of: joined late
                never = [sid for sid in message.sources if sid in seen - self.eos_sources and self._gets("eos", sid)]
                self.missing_at_end += len(never)
                if self.stop_on_engine_stop:
                    reason = "engine stopped"
        return reason

    def _gets(self, kind: str, source_id: str) -> bool:
        """Whether messages of ``kind`` from ``source_id`` reach this runner (its topics or control topics)."""
        topic = topic_for(kind, source_id).decode("ascii")
        if kind == "frame" and not self._frames_explicit:
            return False
        return topic.startswith(self.topics + self.control_topics)

    def _check_tail(self, eos: EndOfStream) -> None:
        """Count what ``eos.last_seq`` says was published after the last ``seq`` received (kinds it gets)."""
        self.eos_sources.add(eos.source_id)
        for kind, last in eos.last_seq.items():
            expected = self._next_seq.get((kind, eos.source_id))
            if expected is not None and last >= expected and self._gets(kind, eos.source_id):
                self.missing_at_end += last + 1 - expected
                logger.info("%s/%s: %d messages missing at the end", kind, eos.source_id, last + 1 - expected)

    @property
    def lost(self) -> int:
        """Messages this runner knows it missed: :attr:`missing` (``seq`` gaps) plus :attr:`missing_at_end`."""
        return self.missing + self.missing_at_end

    def shortfall(self, published: Mapping[tuple[str, str], int], abandoned_after_s: float | None = None) -> str | None:
        """One line saying how many of the messages meant for the sink it did not write, or ``None``.

        Args:
            published: Messages the publisher sent per ``(kind, source_id)``
                (:attr:`engine.publisher.Publisher.published`), all after this runner subscribed.
            abandoned_after_s: The runner's thread was given up after this many seconds (still
                blocked in the sink), or ``None``.
        """
        meant = sum(
            count
            for (kind, source_id), count in published.items()
            if self._gets(kind, source_id) and topic_for(kind, source_id).decode("ascii").startswith(self.topics)
        )
        unwritten = meant - self.received
        if unwritten <= 0 and abandoned_after_s is None:
            return None
        if abandoned_after_s is not None:
            why = f"abandoned after sink_close_timeout_s = {abandoned_after_s:g} s, still writing"
        elif self.errors:
            why = f"{self.errors} batch{'es' if self.errors != 1 else ''} raised (sink_error_policy skip)"
        elif self.lost:
            why = "dropped: the sink fell behind the publisher's queue (publisher.sndhwm)"
        else:
            why = f"stopped early: {self.stop_reason}"
        return f"{unwritten} of {meant} messages not written ({why})"

    def _next_batch(self, timeout_ms: int) -> list[AnyMessage]:
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

    @property
    def subscriptions(self) -> int:
        """Topic subscriptions this runner makes at the publisher (its topics and control topics).

        In-process ready markers (``engine.wire.READY_TOPIC_PREFIX``) are not counted.
        """
        marker = READY_TOPIC_PREFIX.decode("latin-1")
        return sum(not t.startswith(marker) for t in self.topics + self.control_topics)

    def _write(self, batch: list[AnyMessage]) -> str | None:
        reason = self._track(batch)
        if not self._frames_explicit:  # "" matches frame/ too, but only a sink that asked gets frames
            batch = [message for message in batch if message.kind != "frame"]
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
            SinkError: run twice, the endpoint is malformed, raised by the sink, or any error of the
                sink's ``open()`` (wrapped, naming the sink).
            Exception: whatever the sink raises; the sink is closed first.
        """
        if self._ran:
            msg = "SinkRunner.run can be called once: expected a new runner, got one already run"
            raise SinkError(msg)
        self._ran = True
        try:
            self.connect()
            try:
                self.sink.open()
            except SinkError:
                raise
            except Exception as exc:  # third-party sink code: one clear line, not a traceback
                msg = f"sink {self.sink.plugin_name} cannot open: {type(exc).__name__}: {exc}"
                raise SinkError(msg) from exc
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
            # after a message only: a connection that never delivered one (a CURVE key the publisher
            # refuses, a publisher not started yet) is not a run that ended early
            if not batch and self.stop_on_engine_stop and self._next_seq and self._subscriber.publisher_gone():
                self.truncated = True
                return "the publisher went away before its final health/"
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
