"""The cluster's parts without Ray.

The forwarder (seq, duplicates, health, subscriptions, CURVE links), the worker actor's class run
in-process (its plan, resumed sources, link settings), partitioning, the ``cluster:`` config section
and the command's refusals.
Workers are stood in for by raw XPUB sockets sending wire-format messages with chosen ``seq``
values, so a restart, a repeated frame and a loss upstream are exact.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq

from engine.cluster.driver import absolute_file_specs, partition
from engine.cluster.forwarder import Forwarder
from engine.cluster.worker import ClusterWorker, ResumedSource, link_endpoint, worker_publisher
from engine.config import PublisherConfig, load_config
from engine.errors import ConfigError
from engine.messages import Health
from engine.publisher import Publisher
from engine.security import ClientCurve
from engine.testing import ListSource, make_eos, make_health, make_pose, make_shot, make_source_health
from engine.wire import encode_message
from sinks.runtime import Subscriber
from tests.helpers import ANY_PORT, Collector, by_kind, free_endpoint, wait_until, write_video


class FakeWorker:
    """A worker's XPUB socket on a free loopback port; ``send`` chooses each message's ``seq``."""

    def __init__(self, context: zmq.Context) -> None:
        self.socket = context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ANY_PORT)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def subscriptions(self, n: int) -> list[bytes]:
        """The next ``n`` (un)subscription messages (at most 10 s)."""
        out = []
        for _ in range(n):
            if not self.socket.poll(10_000):
                break
            out.append(self.socket.recv())
        return out

    def send(self, message, seq: int) -> None:
        self.socket.send_multipart(encode_message(message, seq))


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    fwd = Forwarder(PublisherConfig(endpoint=ANY_PORT, health_period_s=3600, linger_ms=1000), {"cam1": "worker0"})
    fwd.open()
    yield fwd
    fwd.close()


def _started(forwarder: Forwarder) -> Collector:
    collector = Collector(forwarder.endpoint)
    assert forwarder.wait_for_subscribers(1, 10) == (0, 1)
    forwarder.start()
    return collector


def test_a_restart_repeats_nothing_and_seq_runs_on_across_it(forwarder, context) -> None:
    collector = _started(forwarder)
    first = FakeWorker(context)
    forwarder.attach("worker0", first.endpoint, "node-a", ["cam1"])
    assert first.subscriptions(1) == [b"\x01"]  # everything
    for i in range(5):
        first.send(make_pose("cam1", i), seq=i)
    first.send(make_health(sources={"cam1": make_source_health(frames=5)}), seq=0)  # kept by the forwarder
    wait_until(lambda: forwarder.progress()["cam1"].poses == 5, 10, "5 poses relayed")
    forwarder.detach("worker0")  # the worker died
    assert forwarder.progress()["cam1"].last_pose_index == 4

    second = FakeWorker(context)  # the restarted worker, on another node, counting seq from 0 again
    forwarder.attach("worker0", second.endpoint, "node-b", ["cam1"])
    assert second.subscriptions(1) == [b"\x01"]
    for seq, i in enumerate([3, 4, 5, 6, 8]):  # repeats frames 3 and 4; frame 7 is lost on the way (seq 4 skipped)
        second.send(make_pose("cam1", i), seq=seq + (seq >= 4))
    second.send(make_eos("cam1", frames=4), seq=0)
    wait_until(lambda: forwarder.progress()["cam1"].ended, 10, "eos relayed")
    forwarder.close()
    messages = collector.join()

    poses = by_kind(messages, "pose", "cam1")
    assert [m.frame_index for m in poses] == [0, 1, 2, 3, 4, 5, 6, 8]
    assert [m.seq for m in poses] == [0, 1, 2, 3, 4, 5, 6, 8]  # 7 missing: the loss still shows as a gap
    assert forwarder.duplicates == 2
    [eos] = by_kind(messages, "eos", "cam1")
    assert (eos.frames, eos.seq) == (5 + 4, 0)  # frames of both incarnations
    healths = [m for m in messages if isinstance(m, Health)]
    assert healths and all(h.sources["cam1"].worker == "worker0" for h in healths)  # never a worker's own
    assert healths[-1].engine_state == "stopped" and healths[-1].sources["cam1"].node == "node-b"
    assert healths[-1].sources["cam1"].state == "ended"
    assert [h.seq for h in healths] == list(range(len(healths)))


def test_frame_subscriptions_reach_every_worker_also_one_attached_later(forwarder, context) -> None:
    collector = _started(forwarder)
    early = FakeWorker(context)
    forwarder.attach("worker0", early.endpoint, None, ["cam1"])
    assert early.subscriptions(1) == [b"\x01"]
    viewer = Subscriber(forwarder.endpoint, ("frame/cam1/",))
    viewer.open()
    try:
        assert early.subscriptions(1) == [b"\x01frame/cam1/"]
        late = FakeWorker(context)
        forwarder.attach("worker1", late.endpoint, None, [])
        assert sorted(late.subscriptions(2)) == [b"\x01", b"\x01frame/cam1/"]
    finally:
        viewer.close()
    assert early.subscriptions(1) == [b"\x00frame/cam1/"]  # the viewer left
    forwarder.close()
    collector.join()


def test_a_worker_link_off_the_loopback_is_a_curve_server_that_accepts_only_the_driver(tmp_path: Path) -> None:
    driver_public, driver_secret = zmq.curve_keypair()
    config, worker_key = worker_publisher(PublisherConfig(), "tcp://192.0.2.7:*", driver_public, tmp_path / "w")
    assert config.endpoint == "tcp://192.0.2.7:*" and config.curve_secret_key_file and worker_key
    # the same keys on a loopback port, so this machine can try them
    publisher = Publisher(config.model_copy(update={"endpoint": ANY_PORT}))
    publisher.open()
    try:
        stranger = Subscriber(publisher.endpoint, ("",), curve=ClientCurve(worker_key, *zmq.curve_keypair()))
        stranger.open()
        assert publisher.wait_for_subscribers(1, 1.0) == (0, 0)  # refused by the ZAP handler
        stranger.close()
        driver = Subscriber(publisher.endpoint, ("",), curve=ClientCurve(worker_key, driver_public, driver_secret))
        driver.open()
        assert publisher.wait_for_subscribers(1, 10.0) == (0, 1)
        publisher.publish(make_pose("cam1", 0))
        received = driver.recv(10_000)
        driver.close()
    finally:
        publisher.close()
    assert received is not None and received.frame_index == 0


def test_a_worker_link_off_the_loopback_without_curve_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not loopback"):
        worker_publisher(PublisherConfig(), "tcp://192.0.2.7:*", None, tmp_path)
    config, key = worker_publisher(PublisherConfig(), "tcp://127.0.0.1:*", b"x" * 40, tmp_path)
    assert key is None and config.curve_secret_key_file is None  # loopback: no CURVE cost


@pytest.mark.parametrize(("node_ip", "driver_ip", "expected"), [
    ("10.0.0.5", "10.0.0.5", "tcp://127.0.0.1:*"),
    ("10.0.0.6", "10.0.0.5", "tcp://10.0.0.6:*"),
    ("fd00::6", "fd00::5", "tcp://[fd00::6]:*"),
])
def test_link_endpoint(node_ip: str, driver_ip: str, expected: str) -> None:
    assert link_endpoint(node_ip, driver_ip) == expected


def test_a_resumed_source_yields_the_frames_after_the_last_published_one() -> None:
    source = ResumedSource(ListSource("cam1", n_frames=10), after_index=3)
    source.open()
    frames = list(source.frames())
    assert [f.frame_index for f in frames] == [4, 5, 6, 7, 8, 9]
    assert [int(f.image[0, 0, 0]) for f in frames] == [4, 5, 6, 7, 8, 9]  # the frames themselves, not renumbered
    assert (source.total_frames, source.skipped, source.source_id) == (6, 4, "cam1")


def test_partition_keeps_config_order_in_groups_of_sources_per_worker() -> None:
    assert partition(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]


@pytest.mark.parametrize(("override", "fragment"), [
    ("cluster.address=nowhere", "cluster.address: must be 'auto', 'local'"),
    ("cluster.sources_per_worker=0", "cluster.sources_per_worker"),
    ("cluster.resources={CPU: 1}", "cluster.resources: custom resources must be named other than CPU"),
    ("cluster.max_restarts=-2", "cluster.max_restarts"),
])
def test_bad_cluster_settings_are_refused_with_their_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_good_cluster_settings() -> None:
    config = load_config(None, ["cluster.address=ray://head:10001", "cluster.resources={nets: 1}"])
    assert config.cluster.address == "ray://head:10001" and config.cluster.resources == {"nets": 1.0}


def test_relative_file_paths_become_absolute_for_the_workers(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    specs = ["clips/a.mp4", "net=clips/a.mp4", "rtsp://cam/x", "clips/missing.mp4", "default"]
    assert absolute_file_specs(specs, tmp_path) == [
        str(tmp_path / "clips" / "a.mp4"), f"net={tmp_path / 'clips' / 'a.mp4'}", "rtsp://cam/x",
        "clips/missing.mp4", "default",
    ]


def test_an_unreachable_ray_address_fails_at_once_in_one_line(cli) -> None:
    port = free_endpoint().rsplit(":", 1)[1]  # nothing listens there
    result = cli("cluster", "x.mp4", "--set", f"cluster.address=127.0.0.1:{port}", "--set", "sinks=[]")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"batsight: error: cannot connect to the Ray cluster at cluster.address='127.0.0.1:{port}': "
        "[Errno 111] Connection refused"
    ]


def test_a_malformed_ray_address_is_a_usage_error(cli) -> None:
    result = cli("cluster", "x.mp4", "--set", "cluster.address=head")
    assert result.returncode == 2 and "cluster.address: must be 'auto', 'local'" in result.stderr


def test_a_worker_runs_its_plan_resuming_a_file_after_the_given_frame(fake_model, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "a.mp4", "h264", 30)
    config = load_config(None, [f"sources=[a={clip}, b={clip}, c={clip}]", "model.name=test_fake",
                                "shots.enabled=false", "publisher.health_period_s=0.1"])
    worker = ClusterWorker(config.model_dump(mode="json"), "worker0", "10.0.0.1", None)
    info = worker.open({"a": 19, "b": None}, "10.0.0.1", "node-x")  # c belongs to another worker
    assert info["endpoint"].startswith("tcp://127.0.0.1:")  # the driver's machine: loopback, no CURVE
    assert (info["curve_public"], info["live"], info["node_id"]) == (None, {"a": False, "b": False}, "node-x")
    subscriber = Subscriber(info["endpoint"], ("",))
    subscriber.open()
    try:
        summary = worker.run(subscribe_timeout_s=10)
        messages = []
        while (message := subscriber.recv(2000)) is not None:
            messages.append(message)
    finally:
        subscriber.close()
    assert summary == {"a": {"frames": 10, "error": None}, "b": {"frames": 30, "error": None}}
    assert [m.frame_index for m in by_kind(messages, "pose", "a")] == list(range(20, 30))
    assert [m.frame_index for m in by_kind(messages, "pose", "b")] == list(range(30))
    assert not by_kind(messages, "pose", "c")


def test_the_forwarder_counts_what_the_run_summary_lists_per_source(context) -> None:
    """Batter frames and shots from the messages forwarded; drops, damage and truncation from each eos/."""
    forwarder = Forwarder(PublisherConfig(endpoint=ANY_PORT, health_period_s=3600, linger_ms=1000),
                          {"cam1": "worker0", "cam2": "worker0"})
    forwarder.open()
    try:
        collector = _started(forwarder)
        worker = FakeWorker(context)
        forwarder.attach("worker0", worker.endpoint, "node-a", ["cam1", "cam2"])
        assert worker.subscriptions(1) == [b"\x01"]
        for i in range(6):  # a batter in frames 0, 2, 4
            worker.send(make_pose("cam1", i, batter_found=i % 2 == 0), seq=i)
        worker.send(make_shot("cam1", 0), seq=0)
        worker.send(make_eos("cam1", frames=6, reason="truncated", dropped=2, corrupt=1), seq=0)
        worker.send(make_health(sources={"cam2": make_source_health(frames=0, dropped=3, corrupt=4)}), seq=0)
        wait_until(lambda: forwarder.progress()["cam1"].ended, 10, "cam1's eos relayed")
        forwarder.detach("worker0")
        forwarder.end_source("cam2", "error", "worker0 died")  # the driver's eos/ takes the last health/
        progress = forwarder.progress()
    finally:
        forwarder.close()
    collector.join()
    cam1, cam2 = progress["cam1"], progress["cam2"]
    assert (cam1.poses, cam1.batter_frames, cam1.shots) == (6, 3, 1)
    assert (cam1.dropped, cam1.corrupt, cam1.truncated, cam1.error) == (2, 1, True, None)
    assert (cam2.poses, cam2.dropped, cam2.corrupt, cam2.truncated, cam2.error) == (0, 3, 4, False, "worker0 died")


def test_cluster_takes_no_progress_and_prints_run_s_lines_per_source() -> None:
    from engine.cli import build_parser
    from engine.cluster.cli import _print_summary
    from engine.cluster.driver import ClusterSummary
    from engine.stats import SourceSummary

    assert build_parser().parse_args(["cluster", "a.mp4", "--no-progress"]).no_progress is True
    summary = ClusterSummary(frames=50, wall_s=2.0, restarts=1, per_source={
        "net0": SourceSummary(frames=40, batter_frames=30, shots=2, dropped=1, corrupt=3, error=None, truncated=True),
        "net1": SourceSummary(frames=10, batter_frames=0, shots=0, dropped=0, corrupt=0, error="gone", concealed=4),
    }, workers={"net0": "worker0", "net1": "worker1"})
    out = io.StringIO()
    _print_summary(summary, out)
    assert out.getvalue().splitlines() == [
        "batsight cluster: 50 frames in 2.00 s -> 25.00 fps, 1 worker restarts, dropped 1, corrupt 3",
        "  net0: 40 frames, batter found 75.0%, shots 2, dropped 1, corrupt 3, truncated, on worker0",
        "  net1: 10 frames, batter found 0.0%, shots 0, dropped 0, corrupt 0, concealed 4, on worker1, error: gone",
    ]


class _StubRun:
    """A ``ClusterRun`` stand-in for the command's wait loop: one opened worker with one file source."""

    def __init__(self, frames: list[int]) -> None:
        self.workers = [SimpleNamespace(phase="running", live={"net0": False})]
        self._frames = frames  # frames forwarded at each join(); the run ends after the last

    def join(self, timeout_s: float) -> bool:
        if len(self._frames) > 1:
            self._frames.pop(0)
        return len(self._frames) == 1

    def summary(self) -> SimpleNamespace:
        return SimpleNamespace(frames=self._frames[0])


@pytest.mark.parametrize("progress", [True, False])
def test_the_cluster_progress_bar_counts_the_frames_forwarded_unless_turned_off(capsys, progress) -> None:
    from engine.cluster.cli import _join

    _join(_StubRun([0, 5, 12, 30]), progress)
    bar = capsys.readouterr().err
    assert ("batsight: 30frame" in bar) is progress  # tqdm without a total: the count, then the rate
