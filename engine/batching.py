"""Reader threads with per-source bounded queues, and the cross-source batcher.

Queue policy (DESIGN §2): a file source blocks when its queue is full, so every decoded frame is
processed exactly once and in order (backpressure reaches the decoder); a live source drops the
oldest queued frame instead, so the newest frame wins and latency cannot grow. Drops are counted.
A live source hands each batch at most one frame, its newest; its frames wait in the queue
unconverted (:class:`~engine.types.DeferredFrame`) and are made BGR only when taken.

Memory: the decoded frames that all queues of a run hold together, and the decoders of its open
sources (``Source.decoder_bytes``), are bounded by one :class:`FrameBudget`
(``source.queue_budget_mib``): a file reader waits for room before it starts decoding and before
it queues a frame, so any number of file sources holds about the budget; more file sources than
fit take turns (each still delivers every frame). Live sources never wait (see
:meth:`FrameBudget.charge`): each adds its decoder and one frame.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import platform
import queue
import threading
import time
from collections.abc import Callable

from engine.errors import SourceError
from engine.sources import Source
from engine.types import DeferredFrame, EndOfStream, Frame

log = logging.getLogger(__name__)

Item = Frame | EndOfStream
#: What a reader queues: a live frame waits unconverted.
Queued = Frame | DeferredFrame | EndOfStream

#: ``source.queue_budget_mib`` auto: this share of the machine's memory, within the bounds below.
AUTO_BUDGET_SHARE = 1 / 32
AUTO_BUDGET_MIN_MIB = 256
AUTO_BUDGET_MAX_MIB = 1024
_MIB = 1 << 20
#: A file source's decoder reservation before the run's first source opened: a 1080p H.264 decoder
#: (26 pictures of 1920 x 1080 YUV 4:2:0, see ``stream.pyav_base.DECODER_PICTURES``).
FIRST_DECODER_BYTES = 80 * _MIB


def auto_budget_mib() -> int:
    """The default queue budget: 1/32 of physical memory, at least 256 and at most 1024 MiB.

    Physical memory is ``os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")``; where the
    platform does not say, the minimum.
    """
    try:
        total_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // _MIB
    except (AttributeError, OSError, ValueError):
        return AUTO_BUDGET_MIN_MIB
    return int(min(AUTO_BUDGET_MAX_MIB, max(AUTO_BUDGET_MIN_MIB, total_mib * AUTO_BUDGET_SHARE)))


#: glibc ``mallopt`` parameter ``M_MMAP_THRESHOLD`` (``malloc.h``), and the value set by
#: :func:`fix_mmap_threshold`: 1 MiB. Lower (glibc's start value, 128 KiB) also maps the model's
#: own temporaries, which cost 15 ms more per YOLO call on CPU; 1 MiB does not.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold, so freed frames go back to the OS; ``True`` when set (glibc only).

    glibc raises its threshold to the size of each large block freed (up to 32 MiB), after which
    decoded pictures and frames (MBs each, freed constantly) come from the per-thread heaps,
    which keep their high-water mark: 100 file sources peaked at 2.25 GB instead of 1.30 GB. A
    fixed threshold (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``) turns that adjustment off
    (glibc ``mallopt(3)``).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def _has_break(item: Queued) -> bool:
    """Whether a queued frame starts a new timeline (``timeline_break``)."""
    return isinstance(item, (Frame, DeferredFrame)) and item.timeline_break


def _with_break(item: Queued) -> Queued:
    """``item`` flagged ``timeline_break`` (a frame; an end marker unchanged)."""
    if isinstance(item, Frame) and not item.timeline_break:
        return dataclasses.replace(item, timeline_break=True)
    if isinstance(item, DeferredFrame) and not item.timeline_break:
        return dataclasses.replace(item, timeline_break=True)
    return item


def queued_bytes(item: Queued) -> int:
    """Bytes of decoded picture an item holds in a queue: the BGR image, the pending planes, 0 for an end."""
    if isinstance(item, Frame):
        return int(item.image.nbytes)
    if isinstance(item, DeferredFrame):
        return item.nbytes
    return 0


class FrameBudget:
    """Bytes of decoded frames that the queues of all readers of one run may hold together.

    A file reader :meth:`acquire` s its decoder's bytes before it opens (an estimate,
    :meth:`decoder_estimate`, made exact by :meth:`adjust` once open), and a frame's bytes
    before queueing it, and waits while they would not fit; a live reader :meth:`charge` s them
    without waiting, apart (``live_bytes``: it holds one frame, waiting would stall its decoder
    behind the stream, and live sources never keep file sources from their turn). The batcher
    :meth:`release` s a frame's bytes when it takes the frame, the reader its decoder's when the
    source ends. Bytes larger than the whole budget are let through when nothing else is held, and
    a reader's frame when its own queue is empty (``alone``), so a small budget slows the run but
    never deadlocks it. Thread-safe.

    Args:
        limit_bytes: The budget in bytes; ``None`` = unbounded.

    Attributes:
        held_bytes: Bytes held now by file sources (bounded by ``limit_bytes``).
        live_bytes: Bytes held now by live sources (outside the limit).
        peak_bytes: Most ``held_bytes`` at once so far.
    """

    def __init__(self, limit_bytes: int | None) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self.live_bytes = 0
        self.peak_bytes = 0
        self._largest_decoder: int | None = None  # None until a source opened
        self._cond = threading.Condition()

    @classmethod
    def from_mib(cls, mib: int | None) -> FrameBudget:
        """A budget of ``mib`` MiB (``source.queue_budget_mib``); ``None`` = :func:`auto_budget_mib`."""
        return cls((auto_budget_mib() if mib is None else mib) * _MIB)

    def acquire(self, nbytes: int, give_up: Callable[[], bool], alone: Callable[[], bool] = lambda: False) -> bool:
        """Take ``nbytes``, waiting while they do not fit; ``False`` (nothing taken) once ``give_up()``.

        ``alone()`` true lets them through at once (the caller holds no frame in its queue).
        """
        with self._cond:
            while (
                self.limit_bytes is not None
                and nbytes > 0
                and self.held_bytes > 0
                and self.held_bytes + nbytes > self.limit_bytes
                and not alone()
            ):
                if give_up():
                    return False
                self._cond.wait(0.1)
            self._take(nbytes)
        return True

    def decoder_estimate(self) -> int:
        """Bytes a file source reserves for its decoder before it opens: the largest decoder seen so far.

        Before any source of the run opened: :data:`FIRST_DECODER_BYTES`.
        """
        with self._cond:
            return FIRST_DECODER_BYTES if self._largest_decoder is None else self._largest_decoder

    def adjust(self, reserved: int, actual: int, live: bool) -> None:
        """Replace a reservation of ``reserved`` bytes by ``actual`` ones (``live``: charged), without waiting."""
        with self._cond:
            self._largest_decoder = max(self._largest_decoder or 0, actual)
            self._take(-reserved)
            if live:
                self.live_bytes += actual
            else:
                self._take(actual)
            self._cond.notify_all()

    def charge(self, nbytes: int) -> None:
        """Take ``nbytes`` for a live source, without waiting and outside the limit."""
        with self._cond:
            self.live_bytes += nbytes

    def release(self, nbytes: int, live: bool = False) -> None:
        """Give back ``nbytes`` (a frame left its queue, a source ended; ``live``: charged) and wake waiting readers."""
        if not nbytes:
            return
        with self._cond:
            if live:
                self.live_bytes -= nbytes
            else:
                self.held_bytes -= nbytes
            self._cond.notify_all()

    def _take(self, nbytes: int) -> None:
        self.held_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)


class SourceReader:
    """Owns one source and the thread that reads it into a bounded queue.

    The reader thread calls ``source.open()`` then iterates ``source.queued_frames()``; it always
    ends by queueing one :class:`~engine.types.EndOfStream` (carrying the exception if the source
    failed), and always calls ``source.close()``. ``stop()`` may be called from any thread; the
    thread then ends within the source's read timeout. The queue policy follows ``source.live`` as
    it reads after ``open()``. Consumers take items with :meth:`take_nowait`, which gives their
    bytes back to the budget and converts a deferred frame. After ``stop()`` no further frame is
    read; a frame already read is still queued (so every frame counted in ``frames_in`` is published
    or counted in ``dropped``) unless :meth:`abandon` is called.

    Args:
        source: The unopened source.
        queue_size: Frames queued for a file source (blocking), and for a live one unless
            ``live_queue_size`` is given.
        notify: Set whenever an item is queued (shared by all readers of a batcher).
        live_queue_size: Frames queued for a live source (drop-oldest); 1 = the newest only.
        budget: The run's shared :class:`FrameBudget`; ``None`` = an unbounded one of its own.

    Attributes:
        frames_in: Frames read from the source.
        dropped: Frames dropped by the live drop-oldest policy.
        state: ``"connecting"``, ``"live"`` (frames flowing), ``"ended"`` or ``"failed"``.
        live: The queue policy in use: ``source.live`` as read after ``open()``.
    """

    def __init__(
        self,
        source: Source,
        queue_size: int,
        notify: threading.Event | None = None,
        *,
        live_queue_size: int | None = None,
        budget: FrameBudget | None = None,
    ) -> None:
        self.source = source
        self.live = source.live
        self.file_queue_size = queue_size
        self.live_queue_size = live_queue_size or queue_size
        self.queue: queue.Queue[Queued] = queue.Queue(maxsize=self._queue_size())
        self.budget = budget or FrameBudget(None)
        self._decoder_bytes = 0  # the source's decoder_bytes while it holds them in the budget
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

    def take_nowait(self) -> Item:
        """The oldest queued item, its bytes given back to the budget, a deferred frame converted.

        Raises:
            queue.Empty: nothing is queued.
        """
        item = self.queue.get_nowait()
        self.budget.release(queued_bytes(item), live=self.live)
        return item.resolve() if isinstance(item, DeferredFrame) else item

    def _queue_size(self) -> int:
        return self.live_queue_size if self.live else self.file_queue_size

    def _put(self, item: Queued, drop_oldest: bool, until_abandoned: bool = False) -> bool:
        """Queue ``item``, dropping the oldest frame or blocking (for room in the queue and the budget).

        Blocking gives up (returns False) when ``stop()`` is called or, with ``until_abandoned``,
        only when ``abandon()`` is called (the consumer is gone).
        """

        def give_up() -> bool:
            return self._abandoned.is_set() or (self._stop.is_set() and not until_abandoned)

        nbytes = queued_bytes(item)
        if drop_oldest:
            self.budget.charge(nbytes)
            while True:
                try:
                    self.queue.put_nowait(item)
                    break
                except queue.Full:
                    try:
                        old = self.queue.get_nowait()  # the oldest frame makes room for the newest
                    except queue.Empty:
                        continue
                    self.budget.release(queued_bytes(old), live=True)
                    self.dropped += 1
                    if _has_break(old):  # the frame that replaces it starts the new timeline instead
                        item = _with_break(item)
        else:
            # a reader whose decoder holds budget may always queue one frame: with the budget full of
            # decoders and no frame queued anywhere, nothing would ever be released
            alone = self.queue.empty if self._decoder_bytes else (lambda: False)
            if not self.budget.acquire(nbytes, give_up, alone=alone):
                return False
            while True:
                if give_up():
                    self.budget.release(nbytes)
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
            if not self.live:  # a file takes its turn before it opens: opening decodes already
                self._decoder_bytes = self.budget.decoder_estimate()
                if not self.budget.acquire(self._decoder_bytes, self._stop.is_set):
                    self._decoder_bytes = 0
                    return
            self.source.open()
            self.live = self.source.live  # a source may decide at open (mode auto)
            self.queue.maxsize = self._queue_size()  # nothing was queued yet (Queue reads it per put)
            self.budget.adjust(self._decoder_bytes, self.source.decoder_bytes, self.live)  # estimate -> real size
            self._decoder_bytes = self.source.decoder_bytes
            self.state = "live"
            for frame in self.source.queued_frames():
                if self._stop.is_set():
                    break
                self.frames_in += 1
                # A frame read is queued even when stop() comes while it waits for room (it waits, like
                # the end marker, until the consumer is gone), so frames_in == frames_out + dropped.
                if not self._put(frame, drop_oldest=self.live, until_abandoned=True) or self._stop.is_set():
                    break
        except SourceError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - any reader failure must reach the pipeline as EOS
            log.exception("source %s failed", self.source_id)
            error = SourceError(f"source {self.source_id} failed: {exc.__class__.__name__}: {exc}")
        finally:
            self.state = "failed" if error is not None else "ended"
            self.source.close()
            self.budget.release(self._decoder_bytes, live=self.live)
            self._decoder_bytes = 0
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
    fast source cannot starve a slow one. A live source gives a batch at most one frame (a newer
    one arriving meanwhile waits for the next batch, replacing older ones), so the model never
    works on a frame that is already stale. A batch closes when it holds ``max_batch`` frames, when
    every source is live and gave it a frame, or ``max_wait_ms`` after its first item. Called from
    the single inference thread only.
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

    def _take_round(self, batch: list[Item], live_done: set[str]) -> bool:
        """One item from each reader that has one; ``live_done``: live sources with a frame in ``batch``."""
        took = False
        n = len(self.readers)
        for k in range(n):
            if len(batch) >= self.max_batch:
                break
            reader = self.readers[(self._start + k) % n]
            if reader.source_id in live_done:
                continue
            try:
                item = reader.take_nowait()
            except queue.Empty:
                continue
            batch.append(item)
            took = True
            if reader.live and isinstance(item, Frame):
                live_done.add(reader.source_id)
        self._start = (self._start + 1) % max(n, 1)
        return took

    def next_batch(self, timeout_s: float) -> list[Item]:
        """Return up to ``max_batch`` items; an empty list when nothing arrived within ``timeout_s``."""
        batch: list[Item] = []
        live_done: set[str] = set()
        deadline = self.clock() + timeout_s
        while not batch:
            self.notify.clear()
            while self._take_round(batch, live_done):
                pass
            if batch:
                break
            remaining = deadline - self.clock()
            if remaining <= 0:
                return batch
            self.notify.wait(remaining)
        close_at = self.clock() + self.max_wait_s
        while len(batch) < self.max_batch and len(live_done) < len(self.readers):  # else nothing can join
            self.notify.clear()
            if self._take_round(batch, live_done):
                continue
            remaining = close_at - self.clock()
            if remaining <= 0:
                break
            self.notify.wait(remaining)
        return batch
