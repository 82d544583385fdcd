"""``metrics`` sink: Prometheus exposition of the engine's health and per-source latencies.

``batsight run clip.mp4 --sink metrics`` (or ``metrics:9200``, ``metrics:port=0,host=127.0.0.1``;
standalone ``batsight sink metrics --connect tcp://127.0.0.1:5556 -o port=9108``) serves
``http://127.0.0.1:9108/metrics`` in the Prometheus text format, written by ``prometheus-client``
(its own registry per sink; ``start_http_server``'s WSGI thread). Two kinds of metric:

* the last ``health/`` message, as it was (a custom collector, the ``prometheus-client`` pattern for
  values owned by another system): ``batsight_engine_uptime_seconds``, ``batsight_engine_running``,
  ``batsight_engine_info{model,device}``, and per source (label ``source``) ``batsight_source_state``
  (one series per state, 1 for the current one), ``batsight_source_{frames_in,frames_out,dropped,
  corrupt,reconnects,batter_frames}_total``, ``batsight_source_fps_in``, ``batsight_source_fps_out``,
  ``batsight_source_queue_depth`` and ``batsight_source_batter_share`` (batter frames / frames out);
* what the sink counts from the messages it receives: the histograms
  ``batsight_capture_to_publish_seconds{source}`` (``publish_time_ns - capture_time_ns`` of each
  ``pose/``) and ``batsight_inference_seconds{source}`` (``pose/`` ``inference_ms``), and the
  counter ``batsight_shots_total{source,label}`` (``shot/``; label ``none`` without a prediction).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any, ClassVar, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.errors import SinkError
from engine.messages import AnyMessage, Health, Pose, Shot, SourceState
from engine.security import is_loopback_endpoint
from sinks.base import Sink

__all__ = ["DEFAULT_PORT", "MetricsSink"]

logger = logging.getLogger(__name__)

#: Default TCP port of the exposition (beside node_exporter's 9100 in Prometheus' port list).
DEFAULT_PORT = 9108
#: Bucket upper bounds of the capture -> publish latency histogram, seconds.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
#: Bucket upper bounds of the per-frame model time histogram, seconds.
INFERENCE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_COUNTERS = ("frames_in", "frames_out", "dropped", "corrupt", "reconnects", "batter_frames")
_GAUGES = ("fps_in", "fps_out", "queue_depth")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class _HealthCollector(Collector):
    """Metric families of the last ``health/`` message (nothing before the first one).

    Threading: :meth:`update` runs on the sink's runner thread, :meth:`collect` on the HTTP server's
    threads; a lock hands over the message (messages are immutable).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health: Health | None = None

    def update(self, health: Health) -> None:
        with self._lock:
            self._health = health

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            health = self._health
        if health is None:
            return
        yield GaugeMetricFamily("batsight_engine_uptime_seconds", "seconds since the pipeline started", health.uptime_s)
        yield GaugeMetricFamily(
            "batsight_engine_running", "1 while the engine runs, 0 once it stopped", health.engine_state == "running"
        )
        info = InfoMetricFamily("batsight_engine", "model class and torch device", labels=["model", "device"])
        info.add_metric([health.model, health.device], {})
        yield info
        state = GaugeMetricFamily(
            "batsight_source_state", "1 for the source's current state", labels=["source", "state"]
        )
        for source_id, src in health.sources.items():
            for name in get_args(SourceState):
                state.add_metric([source_id, name], float(src.state == name))
        yield state
        for field in _COUNTERS:
            counter = CounterMetricFamily(f"batsight_source_{field}", f"health/ {field} per source", labels=["source"])
            for source_id, src in health.sources.items():
                counter.add_metric([source_id], getattr(src, field))
            yield counter
        for field in _GAUGES:
            gauge = GaugeMetricFamily(f"batsight_source_{field}", f"health/ {field} per source", labels=["source"])
            for source_id, src in health.sources.items():
                gauge.add_metric([source_id], getattr(src, field))
            yield gauge
        share = GaugeMetricFamily("batsight_source_batter_share", "batter frames / frames out", labels=["source"])
        for source_id, src in health.sources.items():
            share.add_metric([source_id], src.batter_frames / src.frames_out if src.frames_out else 0.0)
        yield share


def _bool_option(name: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if isinstance(value, bool) or text in _TRUE | _FALSE:
        return value if isinstance(value, bool) else text in _TRUE
    msg = f"metrics option {name!r} must be true or false, got {value!r}"
    raise SinkError(msg)


class MetricsSink(Sink):
    """Serve Prometheus metrics of the run on ``http://HOST:PORT/metrics`` (``--sink metrics[:PORT]``).

    Lifecycle (see :class:`sinks.base.Sink`): :meth:`open` binds the port and starts
    ``prometheus-client``'s HTTP server on a daemon thread and prints its URL on stderr;
    :meth:`write_batch` updates the metrics (never blocks on HTTP); :meth:`close` stops the server.
    A scrape sees the last ``health/`` the sink received and every message before it.

    Args:
        port: TCP port, 0-65535 (0: a free one, printed); default :data:`DEFAULT_PORT`.
        host: Interface to listen on; default ``127.0.0.1``. The endpoint has no authentication, so a
            non-loopback host is refused unless ``allow_public`` is true.
        allow_public: Permit a non-loopback ``host``.

    Raises:
        SinkError: a bad option value, or a non-loopback ``host`` without ``allow_public``.
    """

    primary_option: ClassVar[str | None] = "port"
    user_options: ClassVar[tuple[str, ...] | None] = ("port", "host", "allow_public")

    def __init__(
        self,
        port: int | str = DEFAULT_PORT,
        host: str = "127.0.0.1",
        allow_public: bool | str = False,
        _stderr: IO[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        text = str(port).strip()
        if isinstance(port, bool) or not text.isdigit() or int(text) > 65535:
            msg = f"metrics option 'port' must be an integer in [0, 65535], got {port!r}"
            raise SinkError(msg)
        self.port = int(text)
        if not isinstance(host, str) or not host.strip():
            msg = f"metrics option 'host' must be a host name or IP address, got {host!r}"
            raise SinkError(msg)
        self.host = host.strip()
        self.allow_public = _bool_option("allow_public", allow_public)
        if not is_loopback_endpoint(f"tcp://{self.host}:{self.port}") and not self.allow_public:
            msg = (
                f"metrics option 'host' {self.host!r} is not a loopback address; the endpoint has no "
                "authentication, so add allow_public=true to serve it there"
            )
            raise SinkError(msg)
        self._stderr = _stderr
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        # The registry and its metrics hold no OS resource: made here, served from open().
        self.registry = CollectorRegistry(auto_describe=True)
        self._health = _HealthCollector()
        self.registry.register(self._health)
        self._latency = Histogram(
            "batsight_capture_to_publish_seconds", "pose/ publish_time_ns - capture_time_ns, seconds",
            ["source"], registry=self.registry, buckets=LATENCY_BUCKETS_S,
        )
        self._inference = Histogram(
            "batsight_inference_seconds", "model time per frame (pose/ inference_ms), seconds",
            ["source"], registry=self.registry, buckets=INFERENCE_BUCKETS_S,
        )
        self._shots = Counter("batsight_shots", "shots per label (shot/)", ["source", "label"], registry=self.registry)

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics`` with the bound port once open."""
        port = self._server.server_port if self._server is not None else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/metrics"

    def open(self) -> None:
        """Start the HTTP server on its own thread and print its URL on stderr.

        Raises:
            SinkError: ``host:port`` cannot be bound (one line naming it and the reason).
        """
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            msg = f"metrics sink cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            raise SinkError(msg) from None
        stream = self._stderr if self._stderr is not None else sys.stderr
        stream.write(f"batsight metrics: {self.url}\n")
        stream.flush()

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Update the metrics from ``health/``, ``pose/`` and ``shot/`` messages (others are ignored).

        Raises:
            SinkError: the sink is not open.
        """
        if self._server is None:
            msg = "metrics sink must be open to write"
            raise SinkError(msg)
        for message in messages:
            if isinstance(message, Health):
                self._health.update(message)
            elif isinstance(message, Pose):
                if message.capture_time_ns is not None:
                    latency_s = (message.publish_time_ns - message.capture_time_ns) / 1e9
                    self._latency.labels(message.source_id).observe(latency_s)
                self._inference.labels(message.source_id).observe(message.inference_ms / 1e3)
            elif isinstance(message, Shot):
                self._shots.labels(message.source_id, message.label or "none").inc()

    def close(self) -> None:
        """Stop the HTTP server and wait for its thread (bounded). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
