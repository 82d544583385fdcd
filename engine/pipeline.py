"""The pipeline: reader threads -> batcher + inference thread -> analytics + publisher thread.

The work of each frame is done by the per-source steps of :mod:`engine.steps`; this module only
runs them. :class:`Pipeline` runs them on threads that talk through bounded queues: a stage that
fails puts a failure marker downstream in ``finally`` and :meth:`Pipeline.join` re-raises it, so
nothing hangs and nothing dies silently (DESIGN §2). Only the publisher thread touches the ZeroMQ
socket. :func:`run_inline` runs the same steps on the calling thread, without threads or ZeroMQ.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.batching import Batcher, FrameBudget, SourceReader, fix_mmap_threshold
from engine.clock import Clock, SystemClock
from engine.config import Config
from engine.frames import FrameEncoder
from engine.messages import FrameImage, Health, Message, SourceHealth
from engine.models.base import KeypointModel
from engine.publisher import Publisher
from engine.shots import ShotClassifier
from engine.sources import Source
from engine.stats import RunSummary, SourceStats, SourceSummary
from engine.steps import SourceState, health_message, refine_batters
from engine.types import EndOfStream, Frame, Persons, PoseResult

log = logging.getLogger(__name__)

_POLL_S = 0.1

__all__ = ["Pipeline", "RunSummary", "SourceSummary", "run_inline"]


@dataclass
class _Failure:
    """Marker a failed stage sends downstream."""

    stage: str
    error: BaseException


def _eos_reason(eos: EndOfStream) -> str:
    return "error" if eos.error else "stopped" if eos.stopped else "end"


class _ModelTimer:
    """Runs the model's ``infer`` on a batch of frames and keeps the time spent in the model."""

    def __init__(self, model: KeypointModel, clock: Clock) -> None:
        self.model = model
        self.clock = clock
        self.model_s = 0.0
        self.first_call_s: float | None = None

    def infer(self, frames: list[Frame]) -> tuple[list[Persons], float]:
        """``(persons per frame, model ms per frame)``; nothing is called for an empty batch."""
        if not frames:
            return [], 0.0
        t = self.clock.monotonic()
        if self.first_call_s is None:
            self.first_call_s = t
        persons = self.model.infer([f.image for f in frames])
        dt = self.clock.monotonic() - t
        self.model_s += dt
        return persons, dt * 1000.0 / len(frames)

    def track_and_refine(self, states: dict[str, SourceState], frames: list[Frame]) -> list[PoseResult]:
        """Steps 1-2 of :mod:`engine.steps` for a batch of frames (any sources, in batch order)."""
        persons_list, per_frame_ms = self.infer(frames)
        results = [
            states[frame.source_id].track(frame, persons, self.model.heatmap_source, per_frame_ms)
            for frame, persons in zip(frames, persons_list, strict=True)
        ]
        results, refine_s = refine_batters(self.model, results, self.clock)
        self.model_s += refine_s
        return results


class Pipeline:
    """Runs sources through the model and analytics and publishes every result.

    Lifecycle: construct (stores collaborators), ``start()`` (opens the publisher, waits for
    ``expected_subscribers`` in-process sinks to subscribe, starts all threads), then ``join()``
    (blocks until every source has ended and its ``eos/`` is published, re-raising the first stage
    failure), or ``stop()`` from any thread to end early: sources stop, frames already queued are
    finished, ``eos/`` still goes out per source.

    Args:
        config: Validated configuration.
        sources: Unopened sources (their reader threads open them).
        model: Keypoint model, already built (``model.build()``).
        publisher: Unopened publisher; built from ``config.publisher`` when ``None``.
        clock: Monotonic and wall clock (:class:`engine.clock.SystemClock` by default), injectable
            for tests.

    Raises:
        ModelError: from the constructor, when ``config.shots.enabled`` and the shot classifier file
            cannot be loaded (it is loaded once, for every source).
    """

    def __init__(
        self,
        config: Config,
        sources: list[Source],
        model: KeypointModel,
        publisher: Publisher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.sources = sources
        self.model = model
        self.clock = clock or SystemClock()
        self.publisher = publisher or Publisher(config.publisher, now_ns=self.clock.time_ns)
        self._notify = threading.Event()
        self.frame_budget = FrameBudget.from_mib(config.source.queue_budget_mib)  # shared by every queue
        fix_mmap_threshold()  # freed frames go back to the OS, so the budget bounds the RSS
        self.readers = [
            SourceReader(
                s,
                config.source.file_queue_size,
                self._notify,
                live_queue_size=config.source.live_queue_size,
                budget=self.frame_budget,
            )
            for s in sources
        ]
        # loaded once here: every source's shot analyzer shares it (a bad file fails before anything opens)
        classifier = ShotClassifier.load(config.shots.classifier or None) if config.shots.enabled else None
        self._states = {r.source_id: SourceState(r.source, r, config, classifier) for r in self.readers}
        # results hold their frames' images too: a few batches, not a fixed count (4K frames are 24 MiB)
        self._results: queue.Queue[PoseResult | EndOfStream | _Failure] = queue.Queue(
            maxsize=2 * config.batch.max_batch
        )
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._failure: _Failure | None = None
        self._inference_thread: threading.Thread | None = None
        self._publisher_thread: threading.Thread | None = None
        self._timer = _ModelTimer(model, self.clock)
        self.frame_encoder = FrameEncoder(config.publisher)
        self._t_end: float | None = None
        self._start_ns = 0
        self._end_ns = 0

    @property
    def stats(self) -> dict[str, SourceStats]:
        """``{source_id: SourceStats}`` counters of every source (read-only use)."""
        return {sid: state.stats for sid, state in self._states.items()}

    @property
    def model_s(self) -> float:
        """Seconds spent inside the model so far."""
        return self._timer.model_s

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self, expected_subscribers: int = 0, sink_subscriptions: int | None = None) -> None:
        """Open the publisher (unless already open), wait for subscribers, start every thread.

        ``expected_subscribers`` in-process sinks (their marker subscriptions) and
        ``config.publisher.min_subscribers`` external subscriptions are awaited for at most
        ``config.publisher.wait_subscribers_s``, so they see the run from its first message.
        ``sink_subscriptions`` is the number of ordinary topic subscriptions those sinks make in
        all (default one each), which are not counted as external ones.

        Raises:
            PublishError: before any source is opened, so nothing is half-started.
        """
        if not self.publisher.is_open:  # the CLI opens it early to fail fast on a taken port
            self.publisher.open()
        pub = self.config.publisher
        if expected_subscribers or pub.min_subscribers:
            ready, others = self.publisher.wait_for_subscribers(
                pub.min_subscribers, pub.wait_subscribers_s, ready_topics=expected_subscribers,
                ready_sink_topics=sink_subscriptions,
            )
            if ready < expected_subscribers or others < pub.min_subscribers:
                log.warning(
                    "starting after %.1f s with %d of %d in-process sinks and %d of %d external subscriptions",
                    pub.wait_subscribers_s, ready, expected_subscribers, others, pub.min_subscribers,
                )
        self._start_ns = self.clock.time_ns()
        for reader in self.readers:
            reader.start()
        self._inference_thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._publisher_thread = threading.Thread(target=self._publish_loop, name="publisher", daemon=True)
        self._inference_thread.start()
        self._publisher_thread.start()

    def stop(self) -> None:
        """End early: stop the sources; queued frames still finish and ``eos/`` goes out.

        A source that has not ended ``config.source.read_timeout_s + 2`` seconds later (stuck in
        I/O) gets its ``eos/`` anyway, with ``reason: "timeout"``, so shutdown time is bounded.
        """
        if self._stop_deadline is None:
            self._stop_deadline = self.clock.monotonic() + self.config.source.read_timeout_s + 2.0
        for reader in self.readers:
            reader.stop()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the run to finish; True when finished. Re-raises the first stage failure."""
        deadline = None if timeout_s is None else self.clock.monotonic() + timeout_s
        for t in (self._inference_thread, self._publisher_thread):
            if t is None:
                continue
            remaining = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
            t.join(remaining)
            if t.is_alive():
                return False
        for reader in self.readers:
            reader.abandon()  # nobody reads the queues any more
            reader.join(0.2)  # ended already, or stuck in I/O (a daemon thread, abandoned)
        self.publisher.close()
        if self._failure is not None:
            raise self._failure.error
        return True

    # ----------------------------------------------------------------------------------- stages
    def _inference_loop(self) -> None:
        batcher = Batcher(self.readers, self.config.batch.max_batch, self.config.batch.max_wait_ms, self._notify)
        open_sources = set(self._states)
        try:
            while open_sources and not self._stop.is_set():
                batch = batcher.next_batch(_POLL_S)
                results = iter(self._timer.track_and_refine(self._states, [i for i in batch if isinstance(i, Frame)]))
                for item in batch:  # frames and end markers keep their order
                    if isinstance(item, EndOfStream):
                        open_sources.discard(item.source_id)
                        self._put_result(item)
                    else:
                        self._put_result(next(results))
        except BaseException as exc:  # noqa: BLE001 - forwarded to join()
            log.exception("inference stage failed")
            self.stop()
            self._put_result(_Failure("inference", exc))

    def _put_result(self, item: PoseResult | EndOfStream | _Failure) -> None:
        """Queue for the publisher thread; gives up only when that thread is gone (never hangs)."""
        while True:
            try:
                self._results.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if self._publisher_thread is None or not self._publisher_thread.is_alive():
                    return

    def _publish(self, messages: list[Message]) -> None:
        for message in messages:
            self.publisher.publish(message)

    def _publish_loop(self) -> None:
        open_sources = set(self._states)
        next_health = self.clock.monotonic()
        try:
            while open_sources:
                if self.clock.monotonic() >= next_health:
                    self.publisher.publish(self._health("running"))
                    next_health = self.clock.monotonic() + self.config.publisher.health_period_s
                try:
                    item = self._results.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._stop_deadline is not None and self.clock.monotonic() > self._stop_deadline:
                        for source_id in sorted(open_sources):
                            log.warning("source %s did not stop in time; ending it", source_id)
                            self._publish(self._states[source_id].finish("timeout", flush_shot=False))
                        open_sources.clear()
                    continue
                if isinstance(item, _Failure):
                    self._failure = self._failure or item
                    for source_id in sorted(open_sources):
                        self._publish(self._states[source_id].finish("error", item.error, flush_shot=False))
                    open_sources.clear()
                    break
                if isinstance(item, EndOfStream):
                    if item.error:  # said now, not only in the summary: a live run may go on for hours
                        log.error("source %s failed: %s (the other sources go on)", item.source_id, item.error)
                    self._publish(self._states[item.source_id].finish(_eos_reason(item), item.error))
                    open_sources.discard(item.source_id)
                    continue
                frame_message = self._frame_message(item.frame)
                if frame_message is not None:  # before the frame's pose/, so a drawing sink has the picture
                    self.publisher.publish(frame_message)
                self._publish(self._states[item.frame.source_id].analyse(item))
        except BaseException as exc:  # noqa: BLE001 - forwarded to join()
            log.exception("publisher stage failed")
            self._failure = self._failure or _Failure("publisher", exc)
            self.stop()
        finally:
            self._t_end = self.clock.monotonic()
            self._end_ns = self.clock.time_ns()
            self._stop.set()  # the inference thread ends with this thread
            try:
                self.publisher.publish(self._health("stopped"))
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.exception("final health message failed")

    def _frame_message(self, frame: Frame) -> FrameImage | None:
        """The ``frame/`` message of ``frame`` when frames are on (or asked for) and it is due, else ``None``."""
        mode = self.config.publisher.frames
        if mode == "off":
            return None
        if mode == "auto":
            self.publisher.poll_subscriptions()
            if not self.publisher.wants_frames(frame.source_id):
                return None
        return self.frame_encoder.encode(frame) if self.frame_encoder.due(frame) else None

    # ----------------------------------------------------------------------------------- health
    def source_health(self) -> dict[str, SourceHealth]:
        """Per-source health entries (also used by the CLI's status)."""
        now_s = self.clock.monotonic()
        window_s = max(1.0, self.config.publisher.health_period_s)
        return {sid: state.health(now_s, window_s) for sid, state in self._states.items()}

    def _health(self, engine_state: str) -> Health:
        return health_message(
            list(self._states.values()),
            engine_state,
            (self.clock.time_ns() - self._start_ns) / 1e9,
            self.model,
            self.clock.monotonic(),
            max(1.0, self.config.publisher.health_period_s),
        )

    # ----------------------------------------------------------------------------------- results
    def summary(self) -> RunSummary:
        """Counters of the run so far (complete after ``join()``)."""
        return _summary(
            list(self._states.values()),
            self._timer,
            (self._t_end if self._t_end is not None else self.clock.monotonic()),
            ((self._end_ns or self.clock.time_ns()) - self._start_ns) / 1e9 if self._start_ns else 0.0,
        )


def _summary(states: list[SourceState], timer: _ModelTimer, end_s: float, run_s: float) -> RunSummary:
    frames = sum(s.stats.frames_out for s in states)
    wall = end_s - timer.first_call_s if timer.first_call_s is not None else 0.0
    per_source = {
        s.source_id: SourceSummary(
            frames=s.stats.frames_out,
            batter_frames=s.stats.batter_frames,
            shots=s.stats.shots,
            dropped=s.reader.dropped,
            corrupt=s.source.corrupt,
            error=s.stats.error,
            concealed=s.source.concealed,
            truncated=s.source.truncated,
        )
        for s in states
    }
    return RunSummary(
        frames=frames,
        wall_s=wall,
        fps=frames / wall if wall > 0 else 0.0,
        model_s=timer.model_s,
        model_fps=frames / timer.model_s if timer.model_s > 0 else 0.0,
        dropped=sum(s.reader.dropped for s in states),
        corrupt=sum(s.source.corrupt for s in states),
        concealed=sum(s.source.concealed for s in states),
        run_s=run_s,
        per_source=per_source,
    )


def _inline_batches(
    sources: list[Source], max_batch: int
) -> Iterator[tuple[Source, list[Frame], BaseException | None]]:
    """Each source in turn, opened, read in batches of ``max_batch``; the error that ended it last."""
    for source in sources:
        batch: list[Frame] = []
        error: BaseException | None = None
        try:
            source.open()
            for frame in source.frames():
                batch.append(frame)
                if len(batch) == max_batch:
                    yield source, batch, None
                    batch = []
        except Exception as exc:  # noqa: BLE001 - a failed source ends with reason "error", as on threads
            error = exc
        finally:
            source.close()
        yield source, batch, error


def run_inline(
    config: Config,
    sources: list[Source],
    model: KeypointModel,
    emit: Callable[[Message], None] | None = None,
    clock: Clock | None = None,
) -> list[Message]:
    """Run sources through the same steps as :class:`Pipeline` on the calling thread, without ZeroMQ.

    Sources are read one after the other, each in batches of ``config.batch.max_batch`` frames (so
    batching across sources and live drop policies do not apply); every message a threaded run
    would publish for them is produced, in the same per-source order, with ``seq`` left at 0, plus
    one final ``health/`` (``engine_state: "stopped"``). ``frame/`` messages are produced when
    ``config.publisher.frames`` is ``"on"`` (there is no subscriber to ask for them).

    Args:
        config: Validated configuration.
        sources: Unopened sources; each is opened, read to its end and closed.
        model: Keypoint model, already built.
        emit: Called with each message as it is produced (default: nothing).
        clock: Clock (default :class:`engine.clock.SystemClock`).

    Returns:
        Every message, in production order.
    """
    clock = clock or SystemClock()
    classifier = ShotClassifier.load(config.shots.classifier or None) if config.shots.enabled else None
    states = {
        s.source_id: SourceState(s, SourceReader(s, 1), config, classifier) for s in sources
    }
    timer = _ModelTimer(model, clock)
    encoder = FrameEncoder(config.publisher) if config.publisher.frames == "on" else None
    out: list[Message] = []
    start_ns = clock.time_ns()

    def publish(messages: list[Message]) -> None:
        for message in messages:
            out.append(message)
            if emit is not None:
                emit(message)

    for source, frames, error in _inline_batches(sources, config.batch.max_batch):
        state = states[source.source_id]
        state.reader.frames_in += len(frames)
        for result in timer.track_and_refine(states, frames):
            if encoder is not None and encoder.due(result.frame):
                publish([encoder.encode(result.frame)])
            publish(state.analyse(result))
        if len(frames) < config.batch.max_batch or error is not None:  # the source's last batch
            publish(state.finish("error" if error is not None else "end", error))
    publish([health_message(list(states.values()), "stopped", (clock.time_ns() - start_ns) / 1e9, model,
                            clock.monotonic(), max(1.0, config.publisher.health_period_s))])
    return out
