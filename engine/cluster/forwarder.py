"""The driver's forwarder: the messages of every worker out of one XPUB endpoint, as from one machine.

Each worker binds an ordinary engine :class:`~engine.publisher.Publisher`; the forwarder connects
one XSUB socket to each worker incarnation and relays what it receives to its own XPUB socket,
which subscribers connect to. Subscriptions flow the other way: a subscriber's ``frame/``
subscription reaches every worker, so ``publisher.frames: auto`` works as on one machine. Pattern:
the XSUB/XPUB proxy of the ZeroMQ guide, chapter 2 ("The Dynamic Discovery Problem") and
``zmq.proxy``; it is a poll loop of its own instead of ``zmq.proxy`` because it also

* renumbers ``seq`` per ``(kind, source_id)``, so a subscriber sees 0, 1, 2, ... across worker
  restarts (a message lost between a worker and the forwarder still shows as a gap);
* drops a per-frame message whose ``frame_index`` is not above the last one forwarded for its kind
  and source (a restarted worker repeating a frame), so every frame arrives once, in order;
* remembers the last ``pose/`` ``frame_index`` per source: a restarted file source resumes after it;
* keeps the workers' ``health/`` to itself and publishes one merged ``health/`` naming each
  source's worker and Ray node.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import msgpack
import zmq

from engine.config import PublisherConfig
from engine.errors import PublishError, WireFormatError
from engine.messages import EndOfStream, Health, Message, SourceHealth
from engine.security import ClientCurve, CurveServer
from engine.wire import READY_TOPIC_PREFIX, decode_message, encode_message

log = logging.getLogger(__name__)

_SUBSCRIBE = b"\x01"
_HEALTH_TOPIC = b"health/"
_FRAME_PREFIX = b"frame/"
_POLL_MS = 20
#: Messages read from one worker per poll round, so one busy worker cannot starve the others.
_BURST = 256
#: A detached worker's socket is read until it stays quiet this long (what the dead worker sent is in).
_DRAIN_QUIET_S = 0.2
_CALL_TIMEOUT_S = 30.0

T = TypeVar("T")


@dataclass
class _Track:
    """What the forwarder knows about one source (loop thread only)."""

    worker: str
    node: str | None = None
    last_index: dict[str, int] = field(default_factory=dict)  # kind -> last frame_index forwarded
    next_seq: dict[str, int] = field(default_factory=dict)  # kind -> next seq published
    poses: int = 0  # pose/ messages forwarded, all incarnations
    pose_offset: int = 0  # of those, forwarded before the current incarnation
    batter_frames: int = 0  # of the poses, those with a batter
    shots: int = 0  # shot/ messages forwarded
    ended: bool = False
    error: str | None = None
    health: SourceHealth | None = None
    eos: dict[str, Any] = field(default_factory=dict)  # dropped, corrupt, concealed, reason of its eos/

    def last_seq(self) -> dict[str, int]:
        """``kind -> seq`` of the last message of each kind forwarded for the source (``eos/``'s ``last_seq``)."""
        return {kind: nxt - 1 for kind, nxt in self.next_seq.items() if kind != "eos" and nxt > 0}


@dataclass
class _Link:
    """One XSUB socket connected to one worker incarnation."""

    worker: str
    node: str | None
    socket: zmq.Socket
    in_seq: dict[tuple[str, str], int] = field(default_factory=dict)  # last seq received per (kind, source)


@dataclass(frozen=True)
class SourceProgress:
    """Where one source stands at the forwarder.

    Attributes:
        last_pose_index: ``frame_index`` of the last ``pose/`` forwarded, ``None`` before the first.
        poses: ``pose/`` messages forwarded (all worker incarnations).
        ended: Its ``eos/`` was forwarded (or published by the driver).
        worker: The worker it was last given to.
        error: The ``error`` of its ``eos/``, ``None`` when it ended well or has not ended.
        batter_frames: Of the ``pose/`` forwarded, those with a batter; shots: ``shot/`` forwarded.
        dropped, corrupt, concealed: Those of its ``eos/`` (the last worker incarnation's), 0 before it.
        truncated: Its ``eos/`` said ``reason: truncated``.
    """

    last_pose_index: int | None
    poses: int
    ended: bool
    worker: str
    error: str | None
    batter_frames: int = 0
    shots: int = 0
    dropped: int = 0
    corrupt: int = 0
    concealed: int = 0
    truncated: bool = False


class Forwarder:
    """XSUB (one per worker) -> XPUB relay of wire-format messages, run by one thread of its own.

    Lifecycle: construct, :meth:`open` (binds ``config.endpoint``, CURVE as in
    :class:`~engine.publisher.Publisher`), optionally :meth:`wait_for_subscribers` on the calling
    thread, :meth:`start` (the relay thread), then :meth:`attach` / :meth:`detach` /
    :meth:`progress` / :meth:`end_source` from any one thread (each runs on the relay thread and
    waits at most 30 s for it), and :meth:`close` (final ``health/`` with ``engine_state: stopped``,
    then sockets closed with ``config.linger_ms``). Nothing blocks the relay: sends are
    non-blocking and a slow subscriber loses messages for itself only (it sees the ``seq`` gap).

    Args:
        config: The subscriber-facing endpoint (and its CURVE keys, high-water mark, linger).
        sources: Every source id of the run and the worker it is first given to.
        now_ns: Unix epoch ns clock for ``publish_time_ns`` of the forwarder's own messages.

    Attributes:
        relayed: Messages forwarded; duplicates: per-frame messages dropped as repeated after a
            restart; malformed: worker messages that could not be read (dropped).
        relay_s: Seconds the relay thread spent handling worker messages (overhead per message =
            ``relay_s / (relayed + duplicates)``).
    """

    def __init__(
        self, config: PublisherConfig, sources: dict[str, str], now_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._config = config
        self._now_ns = now_ns
        self._tracks = {sid: _Track(worker) for sid, worker in sources.items()}
        self._links: dict[str, _Link] = {}
        self._links_version = 0  # changes with every attach and detach
        self._models: dict[str, tuple[str, str]] = {}  # worker -> (model, device) of its last health/
        self._subscriptions: Counter[bytes] = Counter()
        self._context: zmq.Context | None = None
        self._xpub: zmq.Socket | None = None
        self._curve: CurveServer | None = None
        self._health_seq = 0
        self._calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_ns = now_ns()
        self.relayed = self.duplicates = self.malformed = 0
        self.relay_s = 0.0

    # ------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        """The bound endpoint once open (``tcp://127.0.0.1:*`` reports its port), else ``config.endpoint``."""
        if self._xpub is None:
            return self._config.endpoint
        return self._xpub.getsockopt_string(zmq.LAST_ENDPOINT)

    def client_curve(self) -> ClientCurve | None:
        """Client keys for an in-process sink (``None`` without CURVE); see ``Publisher.client_curve``."""
        if self._curve is None and self._config.curve_secret_key_file is not None:
            self._curve = CurveServer(self._config.curve_secret_key_file, self._config.curve_clients_dir)
        return None if self._curve is None else self._curve.client_for_in_process_sink()

    def open(self) -> None:
        """Bind the subscriber-facing XPUB socket.

        Raises:
            PublishError: the bind fails (address in use, malformed endpoint); names the endpoint.
            ConfigError: unreadable CURVE certificates.
        """
        self.client_curve()  # loads the server keys when CURVE is configured
        context = zmq.Context()
        xpub = context.socket(zmq.XPUB)
        try:
            xpub.setsockopt(zmq.SNDHWM, self._config.sndhwm)
            xpub.setsockopt(zmq.LINGER, self._config.linger_ms)
            xpub.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription, to count and pass them on
            if self._curve is not None:
                self._curve.start(context, xpub)
            xpub.bind(self._config.endpoint)
        except zmq.ZMQError as exc:
            xpub.close(linger=0)
            if self._curve is not None:
                self._curve.stop()
            context.term()
            msg = f"cannot bind the cluster forwarder to {self._config.endpoint!r}: {exc.strerror}"
            raise PublishError(msg) from exc
        self._context, self._xpub = context, xpub

    def wait_for_subscribers(self, count: int, timeout_s: float, ready_topics: int = 0,
                             ready_sink_topics: int | None = None) -> tuple[int, int]:
        """Wait for in-process sink markers and other subscriptions, as ``Publisher.wait_for_subscribers``.

        Call before :meth:`start`, on the thread that opened the forwarder.

        Returns:
            ``(ready markers seen, other subscriptions seen)``.
        """
        xpub = self._require_open()
        deadline = time.monotonic() + max(0.0, timeout_s)
        ready = others = 0
        own = ready_topics if ready_sink_topics is None else ready_sink_topics
        while ready < ready_topics or others < count + own:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not xpub.poll(remaining_ms, zmq.POLLIN):
                break
            frame = xpub.recv()
            self._note_subscription(frame)
            if frame.startswith(_SUBSCRIBE + READY_TOPIC_PREFIX):
                ready += 1
            elif frame[:1] == _SUBSCRIBE:
                others += 1
        return ready, max(0, others - own)

    def start(self) -> None:
        """Start the relay thread."""
        self._require_open()
        self._start_ns = self._now_ns()
        self._thread = threading.Thread(target=self._loop, name="cluster-forwarder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Publish the final ``health/`` (``stopped``), stop the relay thread, close every socket. Idempotent."""
        if self._thread is not None and self._thread.is_alive():
            self.call(self._final_health)
            self._stop.set()
            self._thread.join(_CALL_TIMEOUT_S)
        for link in self._links.values():
            link.socket.close(linger=0)
        self._links.clear()
        if self._xpub is not None:
            self._xpub.close(linger=self._config.linger_ms)
            self._xpub = None
        if self._curve is not None:
            self._curve.stop()
        if self._context is not None:
            self._context.term()
            self._context = None

    def _require_open(self) -> zmq.Socket:
        if self._xpub is None:
            msg = "the cluster forwarder must be open, got it not opened or closed"
            raise PublishError(msg)
        return self._xpub

    # ------------------------------------------------------------------------------- driver calls
    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the relay thread (directly when it is not running) and return its result.

        Raises:
            TimeoutError: the relay thread did not run it within 30 s.
        """
        if self._thread is None or not self._thread.is_alive():
            return fn()
        future: Future[T] = Future()
        self._calls.put((fn, future))
        return future.result(timeout=_CALL_TIMEOUT_S)

    def attach(self, worker: str, endpoint: str, node: str | None, sources: list[str],
               curve: ClientCurve | None = None) -> None:
        """Connect to a worker (incarnation) publishing ``sources`` at ``endpoint`` and relay what it sends.

        Subscribes to everything, plus every ``frame/`` subscription a subscriber holds now.
        """
        def attach() -> None:
            if self._context is None:
                return
            old = self._links.pop(worker, None)
            if old is not None:  # attached twice without a detach: the new incarnation replaces it
                old.socket.close(linger=0)
            socket = self._context.socket(zmq.XSUB)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, self._config.sndhwm)
            if curve is not None:
                curve.apply(socket)
            socket.connect(endpoint)
            socket.send(_SUBSCRIBE)  # everything: pose/ for the resume points, health/ to merge
            for topic, count in self._subscriptions.items():
                if count > 0 and topic.startswith(_FRAME_PREFIX):
                    socket.send(_SUBSCRIBE + topic)
            self._links[worker] = _Link(worker, node, socket)
            self._links_version += 1
            for sid in sources:
                track = self._tracks[sid]
                track.worker, track.node, track.pose_offset = worker, node, track.poses

        self.call(attach)

    def detach(self, worker: str) -> None:
        """Read what a (dead or finished) worker still has in flight, then close its socket."""
        def detach() -> None:
            link = self._links.pop(worker, None)
            if link is None:
                return
            self._links_version += 1
            quiet_until = time.monotonic() + _DRAIN_QUIET_S
            while time.monotonic() < quiet_until:
                if link.socket.poll(int(_DRAIN_QUIET_S * 1000), zmq.POLLIN):
                    self._relay(link, link.socket.recv_multipart())
                    quiet_until = time.monotonic() + _DRAIN_QUIET_S
            link.socket.close(linger=0)

        self.call(detach)

    def progress(self) -> dict[str, SourceProgress]:
        """Every source's :class:`SourceProgress` as of now."""
        def snapshot() -> dict[str, SourceProgress]:
            return {
                sid: SourceProgress(
                    t.last_index.get("pose"), t.poses, t.ended, t.worker, t.error, t.batter_frames, t.shots,
                    t.eos.get("dropped", 0), t.eos.get("corrupt", 0), t.eos.get("concealed", 0),
                    t.eos.get("reason") == "truncated",
                )
                for sid, t in self._tracks.items()
            }

        return self.call(snapshot)

    def end_source(self, source_id: str, reason: str, error: str | None) -> None:
        """Publish ``eos/<source_id>/`` for a source no worker can finish (no-op once it ended)."""
        def end() -> None:
            track = self._tracks[source_id]
            if track.ended:
                return
            track.ended, track.error = True, error
            health = track.health
            track.eos = {"dropped": health.dropped if health else 0, "corrupt": health.corrupt if health else 0,
                         "reason": reason}
            self._publish(EndOfStream(
                source_id=source_id, frames=track.poses, error=error, **track.eos,
            ))

        self.call(end)

    # ------------------------------------------------------------------------------- relay thread
    def _loop(self) -> None:
        try:
            self._relay_until_stopped()
        except BaseException:
            log.exception("the cluster forwarder stopped relaying")
            raise

    def _relay_until_stopped(self) -> None:
        xpub = self._require_open()
        health_period_s = self._config.health_period_s
        next_health = time.monotonic()
        poller, polled, links = zmq.Poller(), -1, []
        while not self._stop.is_set():
            self._run_calls()
            if polled != self._links_version:  # a worker attached or detached: poll the current sockets
                poller, polled, links = zmq.Poller(), self._links_version, list(self._links.values())
                poller.register(xpub, zmq.POLLIN)
                for link in links:
                    poller.register(link.socket, zmq.POLLIN)
            ready = dict(poller.poll(_POLL_MS))
            if xpub in ready:
                self._pass_subscriptions()
            for link in links:
                if link.socket in ready:
                    self._relay_burst(link)
            if time.monotonic() >= next_health:
                self._publish(self._merged_health("running"))
                next_health = time.monotonic() + max(0.1, health_period_s)
        self._run_calls()

    def _run_calls(self) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def _pass_subscriptions(self) -> None:
        """Count subscribers' (un)subscriptions and pass the ``frame/`` ones to every worker."""
        xpub = self._require_open()
        while True:
            try:
                frame = xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._note_subscription(frame)
            if frame[1:].startswith(_FRAME_PREFIX):
                for link in self._links.values():
                    link.socket.send(frame)

    def _note_subscription(self, frame: bytes) -> None:
        topic = frame[1:]
        if frame[:1] == _SUBSCRIBE:
            self._subscriptions[topic] += 1
        elif self._subscriptions[topic] > 0:
            self._subscriptions[topic] -= 1

    def _relay_burst(self, link: _Link) -> None:
        t0 = time.perf_counter()
        for _ in range(_BURST):
            try:
                parts = link.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._relay(link, parts)
        self.relay_s += time.perf_counter() - t0

    def _relay(self, link: _Link, parts: list[bytes]) -> None:
        """Forward one worker message with its ``seq`` renumbered, or keep / drop it (see the module)."""
        if parts[0] == _HEALTH_TOPIC:
            self._take_health(link, parts)
            return
        try:
            header = msgpack.unpackb(parts[1], raw=False)
            kind, sid, seq, index = header["kind"], header["source_id"], header["seq"], header["frame_index"]
            track = self._tracks[sid]
        except (ValueError, KeyError, TypeError, IndexError, msgpack.UnpackException):
            self.malformed += 1
            return
        last_seq = link.in_seq.get((kind, sid), -1)
        link.in_seq[(kind, sid)] = seq
        if track.ended or (index is not None and index <= track.last_index.get(kind, -1)):
            self.duplicates += 1
            return
        if index is not None:
            track.last_index[kind] = index
        out_seq = track.next_seq.get(kind, 0) + max(0, seq - last_seq - 1)  # a loss upstream stays a gap
        track.next_seq[kind] = out_seq + 1
        header["seq"] = out_seq
        if kind == "pose":
            track.poses += 1
            track.batter_frames += bool(header.get("batter_found"))
        elif kind == "shot":
            track.shots += 1
        elif kind == "eos":
            track.ended = True
            track.error = header.get("error")
            track.eos = {key: header.get(key, 0) for key in ("dropped", "corrupt", "concealed")}
            track.eos["reason"] = header.get("reason")
            header["frames"] += track.pose_offset  # frames published by every incarnation
            header["last_seq"] = track.last_seq()  # in the forwarder's numbering, which subscribers see
        parts[1] = msgpack.packb(header, use_bin_type=True)
        self._require_open().send_multipart(parts, zmq.NOBLOCK)
        self.relayed += 1

    def _take_health(self, link: _Link, parts: list[bytes]) -> None:
        try:
            health = decode_message(parts)
        except WireFormatError:
            self.malformed += 1
            return
        if not isinstance(health, Health):
            self.malformed += 1
            return
        self._models[link.worker] = (health.model, health.device)
        for sid, entry in health.sources.items():
            track = self._tracks.get(sid)
            if track is not None and track.worker == link.worker:
                track.health = replace(
                    entry, worker=link.worker, node=link.node,
                    frames_in=entry.frames_in + track.pose_offset, frames_out=entry.frames_out + track.pose_offset,
                )

    def _merged_health(self, engine_state: str) -> Health:
        sources = {}
        for sid, track in self._tracks.items():
            entry = track.health or SourceHealth(
                state="connecting", reconnects=0, frames_in=track.poses, frames_out=track.poses, dropped=0,
                corrupt=0, queue_depth=0, fps_in=0.0, fps_out=0.0, batter_frames=0,
            )
            if track.ended and entry.state not in ("ended", "failed"):
                entry = replace(entry, state="failed" if track.error is not None else "ended")
            sources[sid] = replace(entry, worker=track.worker, node=track.node)
        models = self._models.values()
        return Health(
            engine_state=engine_state,  # type: ignore[arg-type]
            uptime_s=round((self._now_ns() - self._start_ns) / 1e9, 3),
            model=",".join(sorted({model for model, _ in models})),
            device=",".join(sorted({device for _, device in models})),
            sources=sources,
        )

    def _final_health(self) -> None:
        self._publish(self._merged_health("stopped"))

    def _publish(self, message: Message) -> None:
        """Publish one of the forwarder's own messages (``health/``, a driver-made ``eos/``)."""
        xpub = self._require_open()
        if isinstance(message, Health):
            seq, self._health_seq = self._health_seq, self._health_seq + 1
        else:
            track = self._tracks[message.source_id]
            if isinstance(message, EndOfStream):
                message = replace(message, last_seq=track.last_seq())
            seq = track.next_seq.get(message.KIND, 0)
            track.next_seq[message.KIND] = seq + 1
        xpub.send_multipart(encode_message(message, seq, publish_time_ns=self._now_ns()), zmq.NOBLOCK, copy=True)
