"""``batsight cluster``'s driver: sources split over Ray actors, one forwarder, restarts (DESIGN §9).

The driver runs where ``batsight cluster`` is started. It connects to Ray, partitions
``config.sources`` into groups of ``cluster.sources_per_worker``, and starts one
:class:`~engine.cluster.worker.ClusterWorker` actor per group with the resources of the
``cluster`` section. Each worker binds a publisher; the driver's
:class:`~engine.cluster.forwarder.Forwarder` connects to it and relays to ``publisher.endpoint``,
so subscribers see one endpoint with the topics of a single-machine run.

Faults: when a worker's process or node dies, Ray restarts the actor (``max_restarts``, on any node
with the resources), the driver reads what the dead worker had already sent, and opens the
restarted actor with the sources that have not ended: a file source resumes after the last
``pose/`` ``frame_index`` that reached the forwarder (:class:`~engine.cluster.worker.ResumedSource`),
a live source reconnects. The other workers are not touched. A worker that cannot be restarted (or
is not ready within ``worker_start_timeout_s``) gets its sources' ``eos/`` from the driver with
``reason: error``. :meth:`ClusterRun.stop` (SIGINT) stops every worker; each source sends ``eos/``.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from engine.cluster.forwarder import Forwarder
from engine.cluster.worker import ClusterWorker
from engine.config import SOURCE_ID_RE, Config
from engine.errors import ClusterError
from engine.security import ClientCurve
from engine.sources import build_sources
from engine.stats import SourceSummary

log = logging.getLogger(__name__)

_WAIT_S = 0.2
#: Grace after stop() for workers to send their sources' eos/, on top of source.read_timeout_s.
_STOP_GRACE_S = 10.0
#: Wait before asking an actor Ray is restarting to open again, seconds.
_RETRY_OPEN_S = 0.5


class RayClusterWorker(ClusterWorker):
    """:class:`ClusterWorker` as Ray runs it: knows its node (Ray's runtime context)."""

    def open_here(self, plan: dict[str, int | None]) -> dict[str, Any]:
        """:meth:`ClusterWorker.open` on this actor's node."""
        import ray

        return self.open(plan, ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id())


@dataclass
class _Worker:
    """The driver's view of one worker actor."""

    name: str
    sources: list[str]
    actor: Any
    phase: str = "opening"  # opening -> running -> done
    ref: Any = None
    deadline_s: float = math.inf
    deaths: int = 0
    retry_at_s: float | None = None  # when to ask a restarting actor again
    node: str | None = None
    plan: dict[str, int | None] = field(default_factory=dict)
    live: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSummary:
    """What a cluster run did.

    Attributes:
        frames: ``pose/`` messages forwarded (all sources), each frame once.
        wall_s: Seconds from :meth:`ClusterRun.start` to the end.
        restarts: Worker restarts after a death (all workers).
        per_source: ``{source_id: SourceSummary}`` as in ``batsight run``, from the messages
            forwarded (``dropped``, ``corrupt``, ``concealed``: the last incarnation's ``eos/``).
        workers: ``{source_id: worker}``, the worker each source was last given to.
    """

    frames: int
    wall_s: float
    restarts: int
    per_source: dict[str, SourceSummary]
    workers: dict[str, str]


def partition(source_ids: list[str], per_worker: int) -> list[list[str]]:
    """Consecutive groups of at most ``per_worker`` source ids, in config order."""
    return [source_ids[i:i + per_worker] for i in range(0, len(source_ids), per_worker)]


def absolute_file_specs(specs: list[str], cwd: Path | None = None) -> list[str]:
    """``specs`` with each relative path of an existing file made absolute (``ID=`` kept).

    Workers do not share the driver's working directory, so ``clips/a.mp4`` becomes
    ``/abs/clips/a.mp4``; the file must then exist at that path on every node. URLs, devices and
    names that are no file here are left as they are.
    """
    base = cwd or Path.cwd()
    out = []
    for raw in specs:
        prefix, sep, rest = raw.partition("=")
        spec = rest if sep and SOURCE_ID_RE.match(prefix) and not (base / raw).exists() else raw
        path = Path(spec)
        if "://" not in spec and not path.is_absolute() and (base / path).is_file():
            raw = raw[: len(raw) - len(spec)] + str((base / path).resolve())
        out.append(raw)
    return out


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` / ``ray://HOST:PORT`` that takes no TCP connection (Ray would retry for minutes).

    Raises:
        ClusterError: nothing accepts a connection there within ``timeout_s``.
    """
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        msg = f"cannot connect to the Ray cluster at cluster.address={address!r}: {exc}"
        raise ClusterError(msg) from None


def connect_ray(address: str) -> bool:
    """Connect to (or, for ``local``, start) the Ray cluster; ``False`` when already connected.

    Raises:
        ClusterError: Ray is not installed, or no cluster answers at ``address``.
    """
    try:
        import ray
    except ImportError:
        msg = "batsight cluster needs Ray: pip install -e '.[ray]'"
        raise ClusterError(msg) from None
    if ray.is_initialized():
        return False
    _check_reachable(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address == "local":
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        msg = f"cannot connect to the Ray cluster at cluster.address={address!r}: {text}"
        raise ClusterError(msg) from None
    return True


class ClusterRun:
    """One ``batsight cluster`` run.

    Lifecycle: construct (validates the sources, partitions them), :meth:`open` (connects to Ray,
    binds the forwarder: sinks may connect now), :meth:`start` (waits for subscribers, starts the
    actors), :meth:`join` until it returns ``True``, :meth:`close` (final ``health/``, actors
    killed, Ray disconnected when this run connected it). :meth:`stop` may be called from a signal
    handler on the joining thread; every other method belongs to one thread.

    Args:
        config: The run's configuration (``sources``, ``cluster``, ``publisher`` ...).

    Raises:
        ConfigError: bad source specs (before anything starts).
    """

    def __init__(self, config: Config) -> None:
        config = config.model_copy(update={"sources": absolute_file_specs(list(config.sources))})
        self.config = config
        ids = [s.source_id for s in build_sources(list(config.sources), config.source)]
        self.groups = partition(ids, config.cluster.sources_per_worker)
        owner = {sid: f"worker{i}" for i, group in enumerate(self.groups) for sid in group}
        self.forwarder = Forwarder(config.publisher, owner)
        self.workers: list[_Worker] = []
        self._public, self._secret = zmq.curve_keypair()  # the driver's key on CURVE worker links
        self._owns_ray = False
        self._stopping = False
        self._stop_deadline_s = math.inf
        self._t0 = time.monotonic()
        self._t_end: float | None = None

    def open(self) -> None:
        """Connect to Ray and bind the forwarder (subscribers may connect from now on).

        Raises:
            ClusterError: Ray missing or unreachable. PublishError: the endpoint cannot be bound.
        """
        self._owns_ray = connect_ray(self.config.cluster.address)
        self.forwarder.open()

    def start(self, expected_subscribers: int = 0, sink_subscriptions: int | None = None) -> None:
        """Wait for subscribers as ``Pipeline.start`` does, start the forwarder and one actor per group."""
        import ray

        pub = self.config.publisher
        if expected_subscribers or pub.min_subscribers:
            ready, others = self.forwarder.wait_for_subscribers(
                pub.min_subscribers, pub.wait_subscribers_s, expected_subscribers, sink_subscriptions
            )
            if ready < expected_subscribers or others < pub.min_subscribers:
                log.warning("starting with %d of %d in-process sinks and %d of %d external subscriptions",
                            ready, expected_subscribers, others, pub.min_subscribers)
        self.forwarder.start()
        self._t0 = time.monotonic()
        c = self.config.cluster
        options: dict[str, Any] = {
            "num_cpus": c.num_cpus, "num_gpus": c.num_gpus, "max_restarts": c.max_restarts,
            "max_task_retries": 0, "max_concurrency": 2,
        }
        if c.resources:
            options["resources"] = dict(c.resources)
        if c.scheduling == "spread":
            options["scheduling_strategy"] = "SPREAD"
        actor_class = ray.remote(RayClusterWorker).options(**options)
        data = self.config.model_dump(mode="json")
        driver_ip = ray.util.get_node_ip_address()
        for i, group in enumerate(self.groups):
            name = f"worker{i}"
            worker = _Worker(name, group, actor_class.remote(data, name, driver_ip, self._public))
            self.workers.append(worker)
            self._open(worker, {sid: None for sid in group})

    def _open(self, worker: _Worker, plan: dict[str, int | None]) -> None:
        worker.phase, worker.plan = "opening", plan
        worker.deadline_s = time.monotonic() + self.config.cluster.worker_start_timeout_s
        worker.ref = worker.actor.open_here.remote(plan)

    # ------------------------------------------------------------------------------- running
    def join(self, timeout_s: float | None = None) -> bool:
        """Handle worker events until every worker is done (``True``) or ``timeout_s`` passed."""
        import ray

        deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
        while True:
            pending = {w.ref: w for w in self.workers if w.phase != "done" and w.ref is not None}
            if all(w.phase == "done" for w in self.workers):
                if self._t_end is None:
                    self._t_end = time.monotonic()
                return True
            wait_s = max(0.0, min(_WAIT_S, deadline - time.monotonic()))
            if not pending:  # only actors between two attempts to open them
                time.sleep(wait_s)
                ready = []
            else:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
            for ref in ready:
                self._on_ready(pending[ref], ref)
            self._check_deadlines()
            if time.monotonic() >= deadline:
                return False

    def _on_ready(self, worker: _Worker, ref: Any) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        try:
            result = ray.get(ref)
        except RayActorError as exc:
            if worker.phase == "opening" and isinstance(exc, ActorUnavailableError):
                # Ray is still restarting the actor and refuses calls until then: ask again shortly
                worker.ref, worker.retry_at_s = None, time.monotonic() + _RETRY_OPEN_S
            else:
                self._died(worker, exc)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            self._fail(worker, " ".join(str(cause).split()))
        else:
            if worker.phase == "opening":
                self._opened(worker, result)
            else:
                self._finished(worker)

    def _opened(self, worker: _Worker, info: dict[str, Any]) -> None:
        worker.node, worker.live = info["node_id"], info["live"]
        curve = None if info["curve_public"] is None else ClientCurve(info["curve_public"], self._public, self._secret)
        self.forwarder.attach(worker.name, info["endpoint"], worker.node, list(worker.plan), curve)
        worker.phase, worker.deadline_s = "running", math.inf
        worker.ref = worker.actor.run.remote(self.config.publisher.wait_subscribers_s + 10.0)
        if self._stopping:
            worker.actor.stop.remote()
        log.info("%s runs %s on node %s (pid %s)", worker.name, ", ".join(worker.plan), worker.node, info["pid"])

    def _finished(self, worker: _Worker) -> None:
        self.forwarder.detach(worker.name)
        worker.phase = "done"
        progress = self.forwarder.progress()
        for sid in worker.plan:
            if not progress[sid].ended:
                self.forwarder.end_source(sid, "error", f"{worker.name} ended without the source's eos/")

    def _remaining(self, worker: _Worker) -> list[str]:
        progress = self.forwarder.progress()
        return [sid for sid in worker.sources if not progress[sid].ended]

    def _give_up(self, worker: _Worker, reason: str, error: str | None) -> None:
        """End ``worker``'s unfinished sources with ``eos/`` ``reason`` from the driver; the worker is done."""
        self.forwarder.detach(worker.name)
        worker.phase, worker.ref, worker.retry_at_s = "done", None, None
        for sid in self._remaining(worker):
            self.forwarder.end_source(sid, reason, error)

    def _fail(self, worker: _Worker, error: str) -> None:
        """End ``worker``'s unfinished sources with ``error`` (the worker itself is given up)."""
        self._give_up(worker, "error", error)
        log.error("%s failed: %s", worker.name, error)

    def _died(self, worker: _Worker, exc: BaseException) -> None:
        """A worker's process or node died: restart it with its unfinished sources, or give them up."""
        self.forwarder.detach(worker.name)  # what it sent before dying is relayed first
        worker.deaths += 1
        remaining = self._remaining(worker)
        max_restarts = self.config.cluster.max_restarts
        if not remaining:
            worker.phase = "done"
        elif self._stopping:
            self._give_up(worker, "stopped", None)
        elif max_restarts != -1 and worker.deaths > max_restarts:
            self._fail(worker, f"{worker.name} died {worker.deaths} times (cluster.max_restarts={max_restarts})")
        else:
            progress = self.forwarder.progress()
            plan = {sid: None if worker.live.get(sid, False) else progress[sid].last_pose_index for sid in remaining}
            log.warning("%s died (%s); restarting it for %s", worker.name, type(exc).__name__,
                        ", ".join(f"{sid} after frame {after}" if after is not None else f"{sid} from its start"
                                  for sid, after in plan.items()))
            self._open(worker, plan)

    def _check_deadlines(self) -> None:
        import ray

        now = time.monotonic()
        for worker in self.workers:
            if worker.phase == "done":
                continue
            if worker.retry_at_s is not None and self._stopping:
                self._give_up(worker, "stopped", None)
                continue
            if worker.retry_at_s is not None and now >= worker.retry_at_s:
                worker.retry_at_s = None
                worker.ref = worker.actor.open_here.remote(worker.plan)
            if worker.phase == "opening" and now > worker.deadline_s:
                ray.kill(worker.actor, no_restart=True)
                limit = self.config.cluster.worker_start_timeout_s
                self._fail(worker, f"{worker.name} was not ready within cluster.worker_start_timeout_s={limit}")
            elif now > self._stop_deadline_s:
                ray.kill(worker.actor, no_restart=True)
                self._give_up(worker, "timeout", None)

    def stop(self) -> None:
        """End early: every worker stops its sources, which send ``eos/`` (bounded, then ``timeout``)."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_deadline_s = time.monotonic() + self.config.source.read_timeout_s + _STOP_GRACE_S
        for worker in self.workers:
            if worker.phase != "done":
                worker.actor.stop.remote()

    def close(self) -> None:
        """Publish the final ``health/``, close the forwarder, kill the actors, leave Ray if this run joined it."""
        self.forwarder.close()
        if not self.workers and not self._owns_ray:
            return  # Ray was never reached (maybe not installed)
        import ray

        for worker in self.workers:
            ray.kill(worker.actor, no_restart=True)
        if self._owns_ray:
            ray.shutdown()

    def summary(self) -> ClusterSummary:
        """The run's :class:`ClusterSummary` (call after :meth:`join` returned ``True``)."""
        progress = self.forwarder.progress()
        end = self._t_end if self._t_end is not None else time.monotonic()
        return ClusterSummary(
            frames=sum(p.poses for p in progress.values()),
            wall_s=end - self._t0,
            restarts=sum(w.deaths for w in self.workers),
            per_source={
                sid: SourceSummary(frames=p.poses, batter_frames=p.batter_frames, shots=p.shots, dropped=p.dropped,
                                   corrupt=p.corrupt, error=p.error, concealed=p.concealed, truncated=p.truncated)
                for sid, p in progress.items()
            },
            workers={sid: p.worker for sid, p in progress.items()},
        )
