"""Test doubles and helpers shared by several test modules.

Doubles of the engine's own parts (sources, model, clock, publisher, message factories) live in
:mod:`engine.testing`; this module holds what the engine must not import: a recording sink, a
pipeline run with an independent subscriber, and synthetic video files written with PyAV.
Test modules import shared helpers from here, never from each other.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import av
import numpy as np
import pytest
from pydantic import Field

from engine import plugins
from engine.config import BackendOptions, Config, ModelConfig, load_config
from engine.errors import SinkError
from engine.messages import AnyMessage, Health
from engine.models.base import KeypointModel
from engine.pipeline import Pipeline
from engine.sources import Source
from engine.testing import FakeKeypointModel
from sinks.base import Sink
from sinks.runtime import Subscriber

#: Publisher endpoint that binds any free loopback port; read the port back from ``Publisher.endpoint``.
ANY_PORT = "tcp://127.0.0.1:*"


# --- sinks ------------------------------------------------------------------------------------


class RecordingSink(Sink):
    """Test double: keeps every batch; counts open/close; optionally fails.

    Args:
        fail_on_write: :meth:`write_batch` raises :class:`SinkError` ``"disk full"``.
        fail_on_open: :meth:`open` raises :class:`SinkError` ``"cannot open recording sink"``.

    Attributes:
        batches: Every batch written, in order.
        opened, closed: Calls of :meth:`open` (successful) and :meth:`close`.
        thread_ids: Threads that called open / write_batch / close.
        written: Set after every :meth:`write_batch` (a test waits on it instead of sleeping).
    """

    def __init__(self, fail_on_write: bool = False, fail_on_open: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.fail_on_write = fail_on_write
        self.fail_on_open = fail_on_open
        self.batches: list[list[AnyMessage]] = []
        self.opened = 0
        self.closed = 0
        self.thread_ids: set[int] = set()
        self.written = threading.Event()

    def open(self) -> None:
        """Count the call; raise when ``fail_on_open``."""
        self.thread_ids.add(threading.get_ident())
        if self.fail_on_open:
            msg = "cannot open recording sink"
            raise SinkError(msg)
        self.opened += 1

    def write_batch(self, messages: list[AnyMessage]) -> None:
        """Keep ``messages``; raise when ``fail_on_write``; a write after close is a test failure."""
        self.thread_ids.add(threading.get_ident())
        if self.closed:
            msg = "write_batch after close"
            raise AssertionError(msg)
        if self.fail_on_write:
            msg = "disk full"
            raise SinkError(msg)
        self.batches.append(list(messages))
        self.written.set()

    def close(self) -> None:
        """Count the call."""
        self.thread_ids.add(threading.get_ident())
        self.closed += 1

    @property
    def messages(self) -> list[AnyMessage]:
        """Every message written, in order."""
        return [m for batch in self.batches for m in batch]


# --- pipeline runs ----------------------------------------------------------------------------


def free_endpoint() -> str:
    """A loopback TCP endpoint whose port was free a moment ago (another process may take it since).

    Only for a publisher in another process (the CLI), whose endpoint the test must name up front
    (use it through :func:`retry_if_port_taken`); an in-process publisher binds :data:`ANY_PORT` and
    reports its port in ``Publisher.endpoint``.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Collector:
    """Independent test subscriber: collects every decoded message until the engine stops."""

    def __init__(self, endpoint: str) -> None:
        self.subscriber = Subscriber(endpoint, ("",))
        self.subscriber.open()
        self.messages: list[AnyMessage] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # model builds and loaded machines may take a while to start
        while time.monotonic() < deadline:
            message = self.subscriber.recv(200)
            if message is None:
                continue
            self.messages.append(message)
            if isinstance(message, Health) and message.engine_state == "stopped":
                return

    def join(self) -> list[AnyMessage]:
        """Wait (at most 30 s) for the engine's stop; every message received."""
        self.thread.join(30)
        self.subscriber.close()
        return self.messages


def pipeline_config(overrides: Iterable[str] = ()) -> Config:
    """The default config, ``publisher.endpoint`` :data:`ANY_PORT`, ``publisher.min_subscribers=1``, ``overrides``."""
    return load_config(None, [f"publisher.endpoint={ANY_PORT}", "publisher.min_subscribers=1", *overrides])


def open_pipeline(
    config: Config, sources: list[Source], model: KeypointModel, **kwargs: Any
) -> tuple[Pipeline, Collector]:
    """A pipeline whose publisher is already bound (``config.publisher.endpoint``), and a :class:`Collector` on it.

    With ``config.publisher.endpoint`` :data:`ANY_PORT` the port is read back from
    ``pipeline.publisher.endpoint``. ``kwargs`` go to :class:`Pipeline` (e.g. ``clock``). Start the
    pipeline with ``pipeline.start(...)``.

    Raises:
        PublishError: the publisher cannot bind.
    """
    pipeline = Pipeline(config, sources, model, **kwargs)
    pipeline.publisher.open()
    return pipeline, Collector(pipeline.publisher.endpoint)


def run_pipeline(
    sources: list[Source],
    model: KeypointModel,
    tmp_path: Path,
    overrides: Sequence[str] = (),
    sinks: Sequence[Sink] = (),
) -> tuple[Pipeline, list[AnyMessage], BaseException | None]:
    """Run ``sources`` through ``model`` to the end with in-process ``sinks`` and a :class:`Collector`.

    Returns:
        ``(pipeline, every message the collector received, the error pipeline.join raised or None)``.
    """
    model.build()
    pipeline, collector = open_pipeline(pipeline_config(overrides), sources, model)
    endpoint = pipeline.publisher.endpoint
    threads = [sink.run_in_thread(endpoint, expected_sources={s.source_id for s in sources}) for sink in sinks]
    pipeline.start(expected_subscribers=len(threads), sink_subscriptions=sum(t.runner.subscriptions for t in threads))
    error = None
    try:
        assert pipeline.join(timeout_s=60)
    except Exception as exc:  # noqa: BLE001 - returned to the test
        error = exc
    for t in threads:
        t.join(10)
    return pipeline, collector.join(), error


def by_kind(messages: Iterable[AnyMessage], kind: str, source_id: str | None = None) -> list[AnyMessage]:
    """The messages of ``kind`` (and of ``source_id`` when given), in order."""
    return [m for m in messages if m.kind == kind and (source_id is None or m.source_id == source_id)]


# --- synthetic video --------------------------------------------------------------------------

#: Width and height of synthetic video frames, pixels.
W, H = 64, 48


def gray_level(i: int, n: int) -> int:
    """Gray level of synthetic frame ``i`` of ``n``: 16 .. 236, far enough apart to check order."""
    return 16 + round(i * 220 / max(n - 1, 1))


#: Fixed zero-mean texture added to every synthetic frame, so keyframes carry real data.
TEXTURE = np.random.default_rng(1).integers(-20, 21, (H, W, 1)).astype(np.int16)


def write_video(path: Path, codec: str, n: int, fps: int = 25, fmt: str | None = None) -> Path:
    """Write ``n`` textured frames of mean ``gray_level(i, n)``, ``W x H`` pixels, at ``fps``; return ``path``."""
    if codec not in av.codecs_available:
        pytest.skip(f"codec {codec} not in this PyAV build")
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = W, H
        stream.pix_fmt = "gray" if codec == "gif" else "yuv420p"
        if codec != "gif":
            stream.bit_rate = 4_000_000  # near-lossless, so frame means identify frames
            stream.codec_context.gop_size = 10  # a keyframe at least every 10 frames
        for i in range(n):
            image = np.clip(gray_level(i, n) + TEXTURE, 0, 255).astype(np.uint8).repeat(3, axis=2)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ==== fasttests: taken ports, event waits, a fake model backend, the command line in-process =====

REPO_ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


def port_taken(result: Any) -> bool:
    """Whether a ``batsight run`` result (``returncode``, ``stderr``) failed because its port was taken."""
    return result.returncode == 1 and "Address already in use" in result.stderr


def retry_if_port_taken(attempt: Callable[[str], T], taken: Callable[[T], bool] = port_taken, attempts: int = 5) -> T:
    """``attempt(endpoint)`` on a :func:`free_endpoint`, again on a new one while ``taken(result)``.

    The race of :func:`free_endpoint` (the port is handed out after it was closed) is lost only when
    another process binds that port in between; the engine then fails at once with "Address already
    in use" before any frame, and a new port is tried.

    Raises:
        AssertionError: every one of ``attempts`` ports was taken.
    """
    for _ in range(attempts):
        result = attempt(free_endpoint())
        if not taken(result):
            return result
    msg = f"every one of {attempts} free loopback ports was taken before the engine could bind it"
    raise AssertionError(msg)


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` every 20 ms until true; a generous safety bound, not a speed assertion.

    Raises:
        AssertionError: still false after ``timeout_s`` seconds (names ``what``).
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            msg = f"{what} not reached within {timeout_s} s"
            raise AssertionError(msg)
        time.sleep(0.02)


# --- a fake model backend, installed through an entry point -----------------------------------------

#: Name of the fake backend in ``batsight.models`` while :func:`fake_model_plugin` is active.
FAKE_MODEL = "test_fake"


class FakeModelOptions(BackendOptions):
    """The fake backend's own ``model.*`` keys."""

    fake_delay_s: float = Field(0.0, ge=0, description="test: seconds each infer call sleeps (a slow model)")
    fake_no_person: bool = Field(False, description="test: the model never sees a person")


class FakeModelPlugin(FakeKeypointModel):
    """:class:`engine.testing.FakeKeypointModel` as a ``batsight.models`` backend (``model.name=test_fake``).

    Loads nothing, so a ``batsight run`` with it neither imports torch for the model nor reads
    weights. ``instances`` records every model the command line created (a test checks ``built``).
    """

    options = FakeModelOptions
    instances: ClassVar[list[FakeModelPlugin]] = []

    @classmethod
    def from_config(cls, config: ModelConfig) -> FakeModelPlugin:
        """A fake model configured by ``model.fake_delay_s`` and ``model.fake_no_person``."""
        options = FakeModelOptions.from_model_config(config)
        model = cls(delay_s=options.fake_delay_s, no_person_every=1 if options.fake_no_person else 0)
        cls.instances.append(model)
        return model


def write_fake_model_site(folder: Path) -> Path:
    """Write a ``dist-info`` declaring :class:`FakeModelPlugin` as the ``test_fake`` model; return ``folder``.

    A folder with such a ``dist-info`` on ``sys.path`` (or ``PYTHONPATH``) is how an installed
    distribution looks to ``importlib.metadata`` (Python packaging entry-points specification).
    """
    dist_info = folder / "batsight_test_plugins-0.1.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: batsight-test-plugins\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[batsight.models]\n{FAKE_MODEL} = tests.helpers:FakeModelPlugin\n")
    return folder


@contextmanager
def fake_model_installed(site: Path) -> Iterator[None]:
    """:func:`write_fake_model_site`'s ``site`` on ``sys.path`` (entry points re-read) for the block."""
    FakeModelPlugin.instances.clear()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    plugins.refresh()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        plugins.refresh()
        FakeModelPlugin.instances.clear()


def subprocess_env(site: Path | None = None) -> dict[str, str]:
    """Environment for a ``python -m engine.cli`` subprocess: this checkout first, and ``site`` when given.

    With ``site`` (see :func:`write_fake_model_site`) the subprocess sees the ``test_fake`` backend.
    """
    env = dict(os.environ)
    paths = [str(site)] if site is not None else []
    paths.append(str(REPO_ROOT))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# --- the command line in-process ------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """What one ``batsight`` run left: the exit status a shell would see and the captured output."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """Run ``engine.cli.main(argv)`` in this process as the console script would; capture its output.

    As in the console script, ``main``'s logging goes to (captured) stderr: pytest's own log handlers
    are taken off the root logger for the call, so ``logging.basicConfig`` installs the CLI's handler,
    which is removed afterwards. A ``SystemExit`` (argparse: ``--version``, usage errors) becomes the
    exit status. The SIGINT / SIGTERM handlers ``batsight run`` installs are put back afterwards.
    """
    from engine.cli import main

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_signals = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    capsys.readouterr()  # what the test printed before is not the command's
    root.handlers = []
    try:
        try:
            status = main(list(argv))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
    out, err = capsys.readouterr()
    return CliResult(status, out, err)


# --- fit degree ---------------------------------------------------------------------------------


def _lebesgue_by_numpy(u: np.ndarray, degree: int, grid: np.ndarray) -> float:
    """Largest over ``grid`` of sum_i |l_i(x)|: ``legfit`` of each unit vector is the fit's ``l_i`` at ``u``."""
    coef = np.polynomial.legendre.legfit(u, np.eye(u.shape[0]), degree)  # [degree + 1, n]
    return float(np.abs(np.polynomial.legendre.legval(grid, coef)).sum(axis=0).max())


def reference_fit_degree(t_s: np.ndarray, degree: int = 10, ratio: float = 1.1) -> int:
    """The README's degree rule recomputed with ``numpy.polynomial.legendre.legfit`` (not the engine).

    Largest ``d <= min(degree, n - 2)`` (``n - 1`` for two points) whose least-squares fit at the
    distinct times has a Lebesgue constant at most ``ratio`` times the same degree's on 801 evenly
    spaced points; 1 when none.
    """
    t = np.unique(np.asarray(t_s, np.float64))
    u = 2.0 * (t - t[0]) / (t[-1] - t[0]) - 1.0
    grid = np.linspace(-1.0, 1.0, 1001)
    n = t.shape[0]
    for d in range(min(degree, n - 1 if n < 3 else n - 2), 1, -1):
        if _lebesgue_by_numpy(u, d, grid) <= ratio * _continuum_lebesgue(d):
            return d
    return 1


_CONTINUUM: dict[int, float] = {}


def _continuum_lebesgue(degree: int) -> float:
    if degree not in _CONTINUUM:
        _CONTINUUM[degree] = _lebesgue_by_numpy(np.linspace(-1.0, 1.0, 801), degree, np.linspace(-1.0, 1.0, 401))
    return _CONTINUUM[degree]
