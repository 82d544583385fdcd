"""``batsight cluster`` on a real local Ray cluster (``ray.cluster_utils.Cluster``).

A head node without CPUs (the driver's) and two worker nodes with their own resources, all on this
machine. Workers load the ``test_fake`` model (tests/helpers.py) through the ``PYTHONPATH`` the raylets
inherit, so no test spends CPU on YOLO. The module's tests share one cluster (about 8 s to start);
the node test removes a node, so it runs last.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from engine.cluster.driver import ClusterRun  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.messages import EndOfStream, Health, Pose  # noqa: E402
from tests.helpers import ANY_PORT, REPO_ROOT, Collector, by_kind, free_endpoint, wait_until, write_video  # noqa: E402

N_FRAMES = 120


@pytest.fixture(scope="module")
def ray_cluster(fake_model_site: Path) -> Iterator[Cluster]:
    """Head (0 CPUs: no worker there) + 2 nodes of 2 CPUs, each with its own `net_a` / `net_b` label."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(fake_model_site), str(REPO_ROOT), saved) if p)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        # a killed node is noticed in about 1 s (default 15 s)
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                           "health_check_failure_threshold": 3},
    })
    try:
        cluster.add_node(num_cpus=2, resources={"net_a": 1})
        cluster.add_node(num_cpus=2, resources={"net_b": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 120-frame synthetic clips (64x48, 25 fps)."""
    folder = tmp_path_factory.mktemp("clips")
    return [write_video(folder / f"net{i}.mp4", "h264", N_FRAMES) for i in range(4)]


def _overrides(clips: list[Path], address: str, endpoint: str = ANY_PORT) -> list[str]:
    """4 sources, 2 per worker, the fake model at about 25 frames per second per source."""
    return [
        f"sources={[f'net{i}={p}' for i, p in enumerate(clips)]}", f"publisher.endpoint={endpoint}",
        "model.name=test_fake", "model.fake_delay_s=0.04", "batch.max_batch=2", "shots.enabled=false",
        f"cluster.address={address}", "cluster.sources_per_worker=2", "publisher.health_period_s=0.2",
        "cluster.worker_start_timeout_s=60",
    ]


def _poses(messages, source_id: str) -> list[int]:
    return [m.frame_index for m in by_kind(messages, "pose", source_id)]


def test_sigint_stops_every_worker_and_every_source_sends_eos(ray_cluster, clips, fake_model, cli) -> None:
    endpoint = free_endpoint()
    collector = Collector(endpoint)

    def interrupt_once_every_source_published() -> None:
        wait_until(lambda: all(any(isinstance(m, Pose) and m.source_id == f"net{i}" for m in list(collector.messages))
                               for i in range(4)), 90, "a pose/ of every source")
        if not returned.is_set():  # never after the command (pytest itself would be interrupted)
            os.kill(os.getpid(), signal.SIGINT)

    returned = threading.Event()
    killer = threading.Thread(target=interrupt_once_every_source_published, daemon=True)
    killer.start()
    result = cli("cluster", "--no-progress", "--set", "sinks=[]",
                 *[a for kv in _overrides(clips, ray_cluster.address, endpoint) for a in ("--set", kv)])
    returned.set()
    killer.join(5)
    messages = collector.join()
    assert result.returncode == 0, result.stderr
    for i in range(4):
        eos = by_kind(messages, "eos", f"net{i}")
        assert [e.reason for e in eos] == ["stopped"]
        frames = _poses(messages, f"net{i}")
        assert 0 < len(frames) < N_FRAMES and frames == list(range(len(frames)))  # stopped early, no gap
        assert eos[0].frames == len(frames)
        worker = "worker0" if i < 2 else "worker1"  # 2 sources per worker, in config order
        assert (f"  net{i}: {len(frames)} frames, batter found 100.0%, shots 0, dropped 0, corrupt 0, on {worker}"
                in result.stdout.splitlines())  # batsight run's line (the fake model always finds the batter)
    final = messages[-1]
    assert isinstance(final, Health) and final.engine_state == "stopped"
    for i in range(4):  # every frame read was published or dropped, also at the stop
        [eos] = by_kind(messages, "eos", f"net{i}")
        assert final.sources[f"net{i}"].frames_in == eos.frames + eos.dropped


def test_a_worker_out_of_restarts_gets_its_sources_eos_from_the_driver(ray_cluster, clips, fake_model) -> None:
    overrides = [*_overrides(clips[:2], ray_cluster.address), "cluster.sources_per_worker=1", "cluster.max_restarts=0"]
    run = ClusterRun(load_config(None, overrides))
    run.open()
    collector = Collector(run.forwarder.endpoint)
    run.start(sink_subscriptions=0)
    try:
        w0, w1 = run.workers
        wait_until(lambda: run.join(timeout_s=0.05) or (w0.phase == "running" and run.forwarder.progress()["net0"].poses
                                                         >= 10), 90, "worker0 running")
        ray.kill(w0.actor, no_restart=False)  # no restart left: Ray gives the actor up
        wait_until(lambda: run.join(timeout_s=0.2), 90, "the end of both sources")
    finally:
        run.close()
    messages = collector.join()
    [eos0] = by_kind(messages, "eos", "net0")
    assert (eos0.reason, eos0.error) == ("error", "worker0 died 1 times (cluster.max_restarts=0)")
    assert eos0.frames == len(_poses(messages, "net0")) < N_FRAMES
    assert eos0.last_seq["pose"] == eos0.frames - 1  # the driver's eos/ counts what was forwarded
    assert _poses(messages, "net1") == list(range(N_FRAMES))  # the other worker went on to the end
    assert [(e.reason, e.frames) for e in by_kind(messages, "eos", "net1")] == [("end", N_FRAMES)]
    assert messages[-1].sources["net0"].state == "failed" and messages[-1].sources["net1"].state == "ended"


def test_killed_worker_then_killed_node_every_frame_arrives_once_in_order(ray_cluster, clips, fake_model) -> None:
    run = ClusterRun(load_config(None, _overrides(clips, ray_cluster.address)))
    run.open()
    collector = Collector(run.forwarder.endpoint)
    run.start(sink_subscriptions=0)
    try:
        def poses_of(worker) -> int:
            return sum(p.poses for sid, p in run.forwarder.progress().items() if sid in worker.sources)

        def step_until(condition, what: str) -> None:
            wait_until(lambda: run.join(timeout_s=0.05) or condition(), 90, what)

        w0, w1 = run.workers
        step_until(lambda: all(w.phase == "running" and poses_of(w) >= 20 for w in (w0, w1)), "both workers running")
        nodes_at_start = {w0.node, w1.node}
        ray.kill(w0.actor, no_restart=False)  # the process dies; Ray restarts the actor
        step_until(lambda: w0.deaths == 1, "worker0's death seen")
        victim = next(n for n in ray_cluster.worker_nodes if n.node_id == w1.node)
        assert w1.phase == "running" and poses_of(w1) < 2 * N_FRAMES - 20  # well before its sources end
        ray_cluster.remove_node(victim, allow_graceful=False)  # worker1's node dies while its sources run
        wait_until(lambda: run.join(timeout_s=0.2), 90, "the end of every source")
    finally:
        run.close()
    messages = collector.join()
    assert len(nodes_at_start) == 2  # the two workers started on two nodes
    assert w1.node != victim.node_id  # worker1 moved to the remaining node
    for i in range(4):
        sid = f"net{i}"
        poses = by_kind(messages, "pose", sid)
        assert [m.frame_index for m in poses] == list(range(N_FRAMES)), sid
        assert [m.seq for m in poses] == list(range(N_FRAMES))  # seq continues across the restarts
        eos = by_kind(messages, "eos", sid)
        assert [(e.reason, e.frames, e.error) for e in eos] == [("end", N_FRAMES, None)]
        # eos/ last_seq is in the numbering the subscriber saw: the last seq received per kind
        received = {m.kind: m.seq for m in messages if m.kind not in ("eos", "health") and m.source_id == sid}
        assert eos[0].last_seq == received and received["pose"] == N_FRAMES - 1
    healths = [m for m in messages if isinstance(m, Health)]
    assert {h.sources["net0"].worker for h in healths} == {"worker0"}
    assert {h.sources["net3"].worker for h in healths} == {"worker1"}
    assert nodes_at_start <= {h.sources["net2"].node for h in healths}  # worker1's node, before and after
    assert healths[-1].engine_state == "stopped" and [m.kind for m in messages[-1:]] == ["health"]
    assert not any(isinstance(m, EndOfStream) and m.reason != "end" for m in messages)
    # worker0 may have been restarting on the removed node too; each worker died at least once
    assert w0.deaths >= 1 and w1.deaths >= 1 and run.summary().restarts == w0.deaths + w1.deaths
