"""A cluster worker: one Ray actor running an ordinary batsight pipeline for some of the sources.

The actor is this plain class, wrapped by :mod:`engine.cluster.driver` with ``ray.remote``; this
module does not import Ray, so it is tested without a cluster. Ray calls the methods from its own
threads: ``open`` then ``run`` once per incarnation (``run`` blocks until the sources end),
``stop`` from another call while ``run`` blocks (the actor has ``max_concurrency=2``).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from pydantic import ValidationError

from engine.config import Config, PublisherConfig, SourceConfig
from engine.errors import ConfigError, PublishError
from engine.security import is_loopback_endpoint
from engine.sources import Source, build_sources, source_plugin
from engine.types import Frame

log = logging.getLogger(__name__)


def link_endpoint(node_ip: str, driver_ip: str) -> str:
    """The endpoint a worker binds for the driver's forwarder: loopback on the driver's machine.

    Args:
        node_ip: IP address of the worker's Ray node.
        driver_ip: IP address of the driver's machine.

    Returns:
        ``tcp://127.0.0.1:*`` when both are the same machine, else ``tcp://<node_ip>:*``.
    """
    host = "127.0.0.1" if node_ip == driver_ip else node_ip
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"tcp://{host}:*"


def write_client_certificate(folder: Path, public_key: bytes) -> Path:
    """Write ``public_key`` (Z85) as a ZeroMQ ``.key`` certificate in ``folder``; return the folder.

    The format is ``zmq.auth.create_certificates``'s public file, which ``zmq.auth.load_certificate``
    reads back.
    """
    folder.mkdir(parents=True, exist_ok=True)
    text = f'metadata\ncurve\n    public-key = "{public_key.decode("ascii")}"\n'
    (folder / "driver.key").write_text(text, encoding="ascii")
    return folder


def worker_publisher(config: PublisherConfig, endpoint: str, driver_key: bytes | None,
                     key_dir: Path) -> tuple[PublisherConfig, bytes | None]:
    """The worker's publisher settings: ``endpoint``, CURVE with fresh keys unless it is loopback.

    Off the loopback the link to the forwarder carries every message across the network, so it is a
    CURVE server with a new keypair that accepts only the driver's key (ironhouse pattern, pyzmq
    ``examples/security/ironhouse.py``), unless ``config.allow_public_without_curve``.

    Args:
        config: The run's publisher section (linger, high-water mark, frames, health period).
        endpoint: What to bind (:func:`link_endpoint`).
        driver_key: The driver's public CURVE key (Z85), ``None`` when it sent none.
        key_dir: Folder for the worker's certificates.

    Returns:
        The settings, and the worker's public key for the driver (``None`` without CURVE).

    Raises:
        ConfigError: a non-loopback endpoint without a driver key and without
            ``allow_public_without_curve``.
    """
    update: dict[str, Any] = {"endpoint": endpoint, "min_subscribers": 0}
    public = None
    if not is_loopback_endpoint(endpoint) and driver_key is not None:
        key_dir.mkdir(parents=True, exist_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(str(key_dir), "worker")
        public, _ = zmq.auth.load_certificate(public_file)
        update.update(curve_secret_key_file=secret_file,
                      curve_clients_dir=str(write_client_certificate(key_dir / "clients", driver_key)))
    else:
        update.update(curve_secret_key_file=None, curve_clients_dir=None)
    return _validated(config, update), public


def _validated(config: PublisherConfig, update: dict[str, Any]) -> PublisherConfig:
    """``config`` with ``update`` applied and validated again (a public endpoint needs CURVE).

    Raises:
        ConfigError: the settings are refused (the message names the first reason).
    """
    try:
        return PublisherConfig.model_validate({**config.model_dump(), **update})
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        msg = f"worker publisher on {update.get('endpoint')!r} refused: {reason}"
        raise ConfigError(msg) from None


class ResumedSource(Source):
    """A file source that resumes after frame ``after_index``: earlier frames are decoded and dropped.

    ``frame_index`` keeps its value from the start of the file (the wrapped source still counts
    from 0), so a subscriber cannot tell a resumed source from an uninterrupted one. The dropped
    frames cost their decoding time (a keyframe seek would not give exact ``frame_index`` values
    for files with B-frames or missing timestamps).

    Args:
        inner: The unopened file source.
        after_index: Last ``frame_index`` already published; ``-1`` drops nothing.
    """

    def __init__(self, inner: Source, after_index: int) -> None:
        self.inner = inner
        self.after_index = after_index
        self.source_id = inner.source_id
        self.live = inner.live
        self.skipped = 0

    @classmethod
    def from_spec(cls, spec: str, source_id: str, config: SourceConfig) -> ResumedSource:
        """The source the installed plugins build for ``spec``, resuming from its first frame."""
        return cls(source_plugin(spec)[1].from_spec(spec, source_id, config), -1)

    @property
    def state(self) -> str | None:
        """The wrapped source's state."""
        return self.inner.state

    def open(self) -> None:
        """Open the wrapped source; ``total_frames`` counts the frames still to come."""
        self.inner.open()
        self.fps = self.inner.fps
        total = self.inner.total_frames
        self.total_frames = None if total is None else max(0, total - self.after_index - 1)

    def frames(self) -> Iterator[Frame]:
        """The wrapped source's frames after ``after_index``."""
        for frame in self.inner.frames():
            self.corrupt, self.reconnects = self.inner.corrupt, self.inner.reconnects
            if frame.frame_index <= self.after_index:
                self.skipped += 1
                continue
            yield frame
        self.corrupt = self.inner.corrupt

    def close(self) -> None:
        """Close the wrapped source."""
        self.inner.close()


class ClusterWorker:
    """The Ray actor of one worker: builds, runs and stops one pipeline for its sources.

    Args:
        config_data: The run's whole config (``Config.model_dump()``); the sources are taken from
            ``config.sources`` by id in :meth:`open`.
        name: Worker name shown in ``health/`` (``worker0`` ...).
        driver_ip: IP address of the driver's machine (decides loopback or CURVE, :func:`link_endpoint`).
        driver_key: The driver's public CURVE key for the link (Z85), or ``None``.
    """

    def __init__(self, config_data: dict[str, Any], name: str, driver_ip: str, driver_key: bytes | None) -> None:
        self.config = Config.model_validate(config_data)
        self.name = name
        self.driver_ip = driver_ip
        self.driver_key = driver_key
        self._pipeline: Any = None
        self._stopped = False
        # the link's CURVE certificates (off the loopback only); removed with the actor's process
        self._key_dir: tempfile.TemporaryDirectory[str] | None = None

    def open(self, plan: dict[str, int | None], node_ip: str, node_id: str) -> dict[str, Any]:
        """Build the sources of ``plan``, the model and the pipeline; bind the publisher.

        Args:
            plan: ``source_id -> last frame_index already published`` (``None``: from the start;
                live sources always start afresh).
            node_ip: IP address of the Ray node this incarnation runs on.
            node_id: Ray node id of that node (shown in ``health/``).

        Returns:
            ``{"endpoint", "curve_public", "node_id", "pid", "live": {source_id: bool}}``.

        Raises:
            BatsightError: a bad source spec, missing weights, or a publisher that cannot bind.
        """
        from engine.models.base import load_model_class
        from engine.pipeline import Pipeline

        self._end_previous_run()
        built = {s.source_id: s for s in build_sources(list(self.config.sources), self.config.source)}
        sources: list[Source] = []
        for sid, after in plan.items():
            source = built[sid]
            sources.append(ResumedSource(source, after) if after is not None and not source.live else source)
        endpoint = link_endpoint(node_ip, self.driver_ip)
        if self._key_dir is None and not is_loopback_endpoint(endpoint):
            self._key_dir = tempfile.TemporaryDirectory(prefix=f"batsight-{self.name}-")
        key_dir = Path(self._key_dir.name if self._key_dir is not None else tempfile.gettempdir())
        publisher, public = worker_publisher(self.config.publisher, endpoint, self.driver_key, key_dir)
        config = self.config.model_copy(update={"publisher": publisher, "sinks": []})
        model = load_model_class(config.model.name).from_config(config.model)
        model.build()
        pipeline = Pipeline(config, sources, model)
        pipeline.publisher.open()
        self._pipeline = pipeline
        return {
            "endpoint": pipeline.publisher.endpoint, "curve_public": public, "node_id": node_id,
            "pid": os.getpid(), "host": socket.gethostname(), "live": {s.source_id: s.live for s in sources},
        }

    def _end_previous_run(self) -> None:
        """Stop a pipeline still running in this process (the driver lost its ``run`` call, e.g. a network blip)."""
        previous, self._pipeline = self._pipeline, None
        if previous is None:
            return
        previous.stop()
        try:
            previous.join(timeout_s=self.config.source.read_timeout_s + 5.0)
        except Exception:  # noqa: BLE001 - that run is abandoned; its failure was already published
            log.exception("%s: the previous run failed while being replaced", self.name)

    def run(self, subscribe_timeout_s: float) -> dict[str, Any]:
        """Wait for the forwarder's subscription, run the pipeline to its end, return its summary.

        Returns:
            ``{source_id: {"frames", "error"}}`` of this incarnation.

        Raises:
            PublishError: the forwarder did not subscribe within ``subscribe_timeout_s``.
            BatsightError: a failed pipeline stage (every source's ``eos/`` went out first).
        """
        pipeline = self._pipeline
        if pipeline is None:
            msg = "worker run() needs open() first"
            raise PublishError(msg)
        _, seen = pipeline.publisher.wait_for_subscribers(1, subscribe_timeout_s)
        if seen < 1:
            msg = f"{self.name}: the driver's forwarder did not subscribe within {subscribe_timeout_s} s"
            raise PublishError(msg)
        pipeline.start()
        if self._stopped:
            pipeline.stop()
        while not pipeline.join(timeout_s=0.5):
            pass
        summary = pipeline.summary()
        return {sid: {"frames": s.frames, "error": s.error} for sid, s in summary.per_source.items()}

    def stop(self) -> None:
        """End the run early: the sources stop, queued frames finish, every source's ``eos/`` goes out."""
        self._stopped = True
        if self._pipeline is not None:
            self._pipeline.stop()
