"""Running sinks: in the foreground (``batsight sink NAME``) or on a thread beside the engine."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from engine.errors import SinkError
from engine.security import ClientCurve
from engine.wire import READY_TOPIC_PREFIX
from sinks.base import Sink, create_sink
from sinks.runtime.runner import SinkRunner, SinkThread

logger = logging.getLogger(__name__)


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
        SinkError: bad endpoint, raised by the sink, or (after the sink closed) the sink missed
            messages: ``seq`` gaps, a tail missing per an ``eos/`` ``last_seq``, or an ``eos/``
            missing per the final ``health/`` (:attr:`SinkRunner.lost`), or the publisher went away
            before its final ``health/`` (:attr:`SinkRunner.truncated`); one line with the counts.
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
    if runner.truncated:
        msg = (
            f"sink {name}: the publisher went away before the engine's final health/, so the run is truncated "
            f"(it wrote {runner.received} messages; {runner.lost} more known lost)"
        )
        raise SinkError(msg)
    if runner.lost:
        msg = (
            f"sink {name}: {runner.lost} messages lost ({runner.missing} in seq gaps, "
            f"{runner.missing_at_end} at the end of a source); it wrote {runner.received}"
        )
        raise SinkError(msg)
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
