"""Reader threads with per-source bounded queues, and the cross-source batcher.

Queue policy (DESIGN §2): a file source blocks when its queue is full, so every decoded frame is
processed exactly once and in order (backpressure reaches the decoder); a live source drops the
oldest queued frame instead, so the newest frame wins and latency cannot grow. Drops are counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from engine.errors import SourceError
from engine.sources import Source
from engine.types import EndOfStream, Frame

log = logging.getLogger(__name__)

Item = Frame | EndOfStream



class SourceReader:
    """Owns one source and the thread that reads it into a bounded queue.

    The reader thread calls ``source.open()`` then iterates ``source.frames()``; it always ends by
    queueing one :class:`~engine.types.EndOfStream` (carrying the exception if the source failed),
    and always calls ``source.close()``. ``stop()`` may be called from any thread; the thread then
    ends within the source's read timeout.

    Attributes:
        frames_in: Frames read from the source.
        dropped: Frames dropped by the live drop-oldest policy.
        state: ``"connecting"``, ``"live"`` (frames flowing), ``"ended"`` or ``"failed"``.
    """

    def __init__(self, source: Source, queue_size: int, notify: threading.Event | None = None) -> None:
        self.source = source
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self.notify = notify or threading.Event()
        self.frames_in = 0
        self.dropped = 0
        self.state = "connecting"
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{source.source_id}", daemon=True)

    @property
    def source_id(self) -> str:
        """The source's id."""
        return self.source.source_id

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and close the source (idempotent, any thread)."""
        self._stop.set()
        self.source.close()

    def abandon(self) -> None:
        """The consumer is gone: stop, and let a blocked end marker give up (any thread)."""
        self._abandoned.set()
        self.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader thread to end."""
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the reader thread is still running."""
        return self._thread.is_alive()

    def _put(self, item: Item, drop_oldest: bool, until_abandoned: bool = False) -> bool:
        """Queue ``item``, dropping the oldest frame or blocking.

        Blocking gives up (returns False) when ``stop()`` is called or, with ``until_abandoned``,
        only when ``abandon()`` is called (the consumer is gone).
        """
        if drop_oldest:
            while True:
                try:
                    self.queue.put_nowait(item)
                    break
                except queue.Full:
                    try:
                        self.queue.get_nowait()  # the oldest frame makes room for the newest
                    except queue.Empty:
                        continue
                    self.dropped += 1
        else:
            while True:
                if self._abandoned.is_set() or (self._stop.is_set() and not until_abandoned):
                    return False
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
        self.notify.set()
        return True

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self.source.open()
            self.state = "live"
            for frame in self.source.frames():
                if self._stop.is_set():
                    break
                self.frames_in += 1
                if not self._put(frame, drop_oldest=self.source.live):
                    break
        except SourceError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - any reader failure must reach the pipeline as EOS
            log.exception("source %s failed", self.source_id)
            error = SourceError(f"source {self.source_id} failed: {exc.__class__.__name__}: {exc}")
        finally:
            self.state = "failed" if error is not None else "ended"
            self.source.close()
            eos = EndOfStream(
                source_id=self.source_id,
                frames=self.frames_in,
                dropped=self.dropped,
                corrupt=self.source.corrupt,
                error=error,
                stopped=self._stop.is_set(),
            )
            # The end marker waits for room, also after stop(): the batcher drains every queue until
            # it has seen each marker, so no queued frame is ever dropped for it. It gives up only
            # when the pipeline abandons the reader (its consumer is gone).
            self._put(eos, drop_oldest=False, until_abandoned=True)


class Batcher:
    """Groups queued items from all readers into batches (DESIGN §2).

    Fairness: each round takes at most one item per source, starting from a rotating source, so a
    fast source cannot starve a slow one. A batch closes when it holds ``max_batch`` frames or
    ``max_wait_ms`` after its first item. Called from the single inference thread only.
    """

    def __init__(
        self,
        readers: list[SourceReader],
        max_batch: int,
        max_wait_ms: float,
        notify: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.readers = readers
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.notify = notify
        self.clock = clock
        self._start = 0

    def _take_round(self, batch: list[Item]) -> bool:
        took = False
        n = len(self.readers)
        for k in range(n):
            if len(batch) >= self.max_batch:
                break
            reader = self.readers[(self._start + k) % n]
            try:
                batch.append(reader.queue.get_nowait())
                took = True
            except queue.Empty:
                continue
        self._start = (self._start + 1) % max(n, 1)
        return took

    def next_batch(self, timeout_s: float) -> list[Item]:
        """Return up to ``max_batch`` items; an empty list when nothing arrived within ``timeout_s``."""
        batch: list[Item] = []
        deadline = self.clock() + timeout_s
        while not batch:
            self.notify.clear()
            while self._take_round(batch):
                pass
            if batch:
                break
            remaining = deadline - self.clock()
            if remaining <= 0:
                return batch
            self.notify.wait(remaining)
        close_at = self.clock() + self.max_wait_s
        while len(batch) < self.max_batch:
            self.notify.clear()
            if self._take_round(batch):
                continue
            remaining = close_at - self.clock()
            if remaining <= 0:
                break
            self.notify.wait(remaining)
        return batch
