"""The ``metrics`` sink: scraped over HTTP and parsed with ``prometheus_client.parser`` (issue 12 item 8)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.config import PublisherConfig
from engine.errors import SinkError, SinkOptionError
from engine.messages import Health, Shot, SourceHealth
from engine.publisher import Publisher
from engine.testing import make_eos, make_health, make_pose
from sinks.base import create_sink
from sinks.runtime import start_thread
from tests.helpers import ANY_PORT, subprocess_env, wait_until

#: The publisher's clock in these tests: every message is published at this Unix time, ns.
PUBLISH_NS = 5_000_000_000


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of one scrape with a real HTTP client."""
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - a loopback URL of the test
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _shot(label: str | None, shot_index: int) -> Shot:
    """A ``shot/`` message of cam1 without a fit (only its label matters here)."""
    empty = np.zeros((0,), np.float64)
    return Shot(
        source_id="cam1", frame_index=10 * shot_index + 9, shot_index=shot_index, start_frame=10 * shot_index,
        end_frame=10 * shot_index + 9, start_s=0.0, end_s=0.3, duration_s=0.3, label=label,  # type: ignore[arg-type]
        confidence=None, probabilities=None, handedness="right", handedness_source="config", wrist="left_wrist",
        shoulder="left_shoulder", n_points=0, degree_xy=None, basis="legendre", t_start_s=None, t_end_s=None,
        stats=None, classifier_version="test", dx_coef=empty, dy_coef=empty, r_coef=empty, t_s=empty, dx=empty,
        dy=empty, pair_similarity=np.zeros((0,), np.float32),
    )


def _health(uptime_s: float, state: str = "running") -> Health:
    cam1 = SourceHealth(state="live", reconnects=2, frames_in=120, frames_out=117, dropped=3, corrupt=1,
                        queue_depth=1, fps_in=29.5, fps_out=28.25, batter_frames=90)
    nets = SourceHealth(state="reconnecting", reconnects=0, frames_in=0, frames_out=0, dropped=0, corrupt=0,
                        queue_depth=0, fps_in=0.0, fps_out=0.0, batter_frames=0)
    return make_health(engine_state=state, uptime_s=uptime_s, sources={"cam1": cam1, "nets": nets})


def _assert_equals_health(samples: dict, health: Health) -> None:
    assert samples[("batsight_engine_uptime_seconds", ())] == health.uptime_s
    assert samples[("batsight_engine_running", ())] == 1.0
    assert samples[("batsight_engine_info", (("device", health.device), ("model", health.model)))] == 1.0
    for source_id, src in health.sources.items():
        label = (("source", source_id),)
        for field in ("frames_in", "frames_out", "dropped", "corrupt", "reconnects", "batter_frames"):
            assert samples[(f"batsight_source_{field}_total", label)] == getattr(src, field), field
        for field in ("fps_in", "fps_out", "queue_depth"):
            assert samples[(f"batsight_source_{field}", label)] == getattr(src, field), field
        states = {dict(labels)["state"]: v for (name, labels), v in samples.items()
                  if name == "batsight_source_state" and dict(labels)["source"] == source_id}
        assert states[src.state] == 1.0 and sum(states.values()) == 1.0
    assert samples[("batsight_source_batter_share", (("source", "cam1"),))] == 90 / 117
    assert samples[("batsight_source_batter_share", (("source", "nets"),))] == 0.0


def test_a_scrape_equals_the_last_health_and_counts_poses_and_shots():
    publisher = Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=1000), now_ns=lambda: PUBLISH_NS)
    publisher.open()
    sink = create_sink("metrics", {"port": "0"})
    thread = start_thread(sink, publisher.endpoint)
    try:
        assert publisher.wait_for_subscribers(1, timeout_s=30)[1] >= 1
        latencies_s = []
        for i in range(6):  # capture times 40 ms apart before the fixed publish time
            pose = make_pose(frame_index=i)
            pose = type(pose)(**{**pose.__dict__, "capture_time_ns": PUBLISH_NS - (i + 1) * 40_000_000})
            latencies_s.append((i + 1) * 0.04)
            publisher.publish(pose)
        for i, label in enumerate(("pull", "pull", "cover_drive", None)):
            publisher.publish(_shot(label, i))
        health = _health(uptime_s=12.5)
        publisher.publish(health)
        samples: dict = {}

        def health_arrived() -> bool:
            samples.update(_scrape(sink.url))
            return samples.get(("batsight_engine_uptime_seconds", ())) == 12.5

        wait_until(health_arrived, 60, "the scrape to show the published health/")
        _assert_equals_health(samples, health)
        cam1 = (("source", "cam1"),)
        assert samples[("batsight_capture_to_publish_seconds_count", cam1)] == 6
        assert samples[("batsight_capture_to_publish_seconds_sum", cam1)] == pytest.approx(sum(latencies_s))
        le_100ms = (("le", "0.1"), ("source", "cam1"))
        assert samples[("batsight_capture_to_publish_seconds_bucket", le_100ms)] == 2  # 40 and 80 ms
        pose_ms = make_pose().inference_ms
        assert samples[("batsight_inference_seconds_sum", cam1)] == pytest.approx(6 * pose_ms / 1e3)
        assert samples[("batsight_shots_total", (("label", "pull"), ("source", "cam1")))] == 2
        assert samples[("batsight_shots_total", (("label", "cover_drive"), ("source", "cam1")))] == 1
        assert samples[("batsight_shots_total", (("label", "none"), ("source", "cam1")))] == 1  # no prediction
        publisher.publish(_health(uptime_s=13.0, state="stopped"))
        thread.join(60)
    finally:
        thread.stop()
        thread.join(10)
        publisher.close()
    assert not thread.is_alive() and thread.error is None


def test_standalone_metrics_sink_serves_the_health_it_receives(tmp_path):
    publisher = Publisher(PublisherConfig(endpoint=ANY_PORT, linger_ms=1000))
    publisher.open()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sink", "metrics", "--connect", publisher.endpoint, "-o", "port=0"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=subprocess_env(),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once the port is bound
        match = re.fullmatch(r"batsight metrics: (http://127\.0\.0\.1:\d+/metrics)\n", line)
        assert match is not None, line
        assert publisher.wait_for_subscribers(1, timeout_s=60)[1] >= 1
        health = _health(uptime_s=3.25)
        samples: dict = {}

        def health_arrived() -> bool:
            publisher.publish(health)  # again until it shows: the SUB connection may still be on its way
            samples.update(_scrape(match.group(1)))
            return samples.get(("batsight_engine_uptime_seconds", ())) == 3.25

        wait_until(health_arrived, 60, "the scrape to show the published health/")
        _assert_equals_health(samples, health)
        for source_id in health.sources:  # each source ended: nothing lost, so the sink exits 0
            publisher.publish(make_eos(source_id))
        publisher.publish(_health(uptime_s=4.0, state="stopped"))
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)
        publisher.close()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"host": "0.0.0.0"}, "'0.0.0.0' is not a loopback address"),  # noqa: S104 - the refused case
        ({"port": "99999"}, "must be an integer in [0, 65535], got '99999'"),
        ({"port": "0", "allow_public": "maybe"}, "'allow_public' must be true or false"),
    ],
)
def test_bad_options_are_refused(options, fragment):
    with pytest.raises(SinkOptionError) as info:
        create_sink("metrics", options)
    assert fragment in str(info.value)


def test_a_public_host_is_allowed_when_asked():
    sink = create_sink("metrics", {"host": "0.0.0.0", "allow_public": "true"})  # noqa: S104 - constructed only
    assert sink.url.startswith("http://0.0.0.0:9108")  # the default port, nothing bound


def test_a_taken_port_is_one_line():
    first = create_sink("metrics", {"port": "0"})
    first.open()
    try:
        port = first.url.rsplit(":", 1)[1].split("/")[0]
        with pytest.raises(SinkError) as info:
            create_sink("metrics", {"port": port}).open()
        assert str(info.value).startswith(f"metrics sink cannot listen on 127.0.0.1:{port}: ")
        assert "\n" not in str(info.value)
    finally:
        first.close()


