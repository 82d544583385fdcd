"""CURVE authentication: right key receives, wrong or missing key receives nothing; safe binds."""

from __future__ import annotations

import time

import pytest
import zmq
import zmq.auth

from engine.config import PublisherConfig, load_config
from engine.errors import ConfigError
from engine.publisher import Publisher
from engine.security import ClientCurve, is_loopback_endpoint
from engine.testing import make_eos, make_pose
from sinks.jsonl import JsonlSink
from sinks.runtime import Subscriber


@pytest.fixture
def certs(tmp_path):
    keys = tmp_path / "keys"
    clients = tmp_path / "clients"
    keys.mkdir()
    clients.mkdir()
    for name in ("server", "client_ok", "client_bad"):
        zmq.auth.create_certificates(str(keys), name)
    (clients / "client_ok.key").write_bytes((keys / "client_ok.key").read_bytes())
    return keys, clients


def _receive_during(publisher: Publisher, subscribers: dict[str, Subscriber], seconds: float) -> dict[str, int]:
    got = {name: 0 for name in subscribers}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        publisher.publish(make_pose("cam1", i))
        i += 1
        for name, sub in subscribers.items():
            while sub.recv(0) is not None:
                got[name] += 1
        time.sleep(0.01)
    return got


def test_only_authorised_keys_receive(certs):
    keys, clients = certs
    config = PublisherConfig(
        endpoint="tcp://127.0.0.1:*",
        curve_secret_key_file=str(keys / "server.key_secret"),
        curve_clients_dir=str(clients),
    )
    server_key = str(keys / "server.key")
    with Publisher(config) as publisher:
        endpoint = publisher.endpoint
        subscribers = {
            "ok": Subscriber(endpoint, curve=ClientCurve.from_files(server_key, str(keys / "client_ok.key_secret"))),
            "wrong_client_key": Subscriber(
                endpoint, curve=ClientCurve.from_files(server_key, str(keys / "client_bad.key_secret"))
            ),
            "no_curve": Subscriber(endpoint),
            "wrong_server_key": Subscriber(
                endpoint, curve=ClientCurve.from_files(str(keys / "client_bad.key"), str(keys / "client_ok.key_secret"))
            ),
        }
        for sub in subscribers.values():
            sub.open()
        try:
            got = _receive_during(publisher, subscribers, 1.5)
        finally:
            for sub in subscribers.values():
                sub.close()
    assert got["ok"] > 20
    assert got["wrong_client_key"] == 0 and got["no_curve"] == 0 and got["wrong_server_key"] == 0


def test_without_clients_dir_any_client_with_the_server_key_is_accepted(certs):
    keys, _ = certs
    config = PublisherConfig(endpoint="tcp://127.0.0.1:*", curve_secret_key_file=str(keys / "server.key_secret"))
    with Publisher(config) as publisher:
        endpoint = publisher.endpoint
        ephemeral = Subscriber(endpoint, curve=ClientCurve.from_files(str(keys / "server.key")))
        plain = Subscriber(endpoint)
        ephemeral.open()
        plain.open()
        try:
            got = _receive_during(publisher, {"ephemeral": ephemeral, "plain": plain}, 1.0)
        finally:
            ephemeral.close()
            plain.close()
    assert got["ephemeral"] > 10 and got["plain"] == 0


def test_in_process_sinks_get_accepted_keys(certs, tmp_path):
    keys, clients = certs
    config = PublisherConfig(
        endpoint="tcp://127.0.0.1:*",
        curve_secret_key_file=str(keys / "server.key_secret"),
        curve_clients_dir=str(clients),
    )
    publisher = Publisher(config)
    out = tmp_path / "out.jsonl"
    publisher.open()
    thread = JsonlSink(str(out)).run_in_thread(
        publisher.endpoint, expected_sources={"cam1"}, curve=publisher.client_curve()
    )
    try:
        assert publisher.wait_for_subscribers(0, 5.0, ready_topics=1)[0] == 1
        for i in range(5):
            publisher.publish(make_pose("cam1", i))
        publisher.publish(make_eos("cam1", frames=5))
        thread.join(10)
    finally:
        publisher.close()
    assert not thread.is_alive() and thread.error is None
    assert len(out.read_text().splitlines()) == 6


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://localhost:5556", True),
        ("tcp://[::1]:5556", True),
        ("tcp://127.0.0.2:5556", True),
        ("inproc://x", True),
        ("ipc:///tmp/x", True),
        ("tcp://*:5556", False),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://192.168.1.10:5556", False),
        ("tcp://eth0:5556", False),
    ],
)
def test_loopback_detection(endpoint, local):
    assert is_loopback_endpoint(endpoint) is local


def test_public_bind_needs_curve_or_explicit_consent(certs):
    keys, _ = certs
    with pytest.raises(ConfigError, match="is not loopback"):
        load_config(None, ["publisher.endpoint=tcp://*:5556"])
    assert load_config(None, ["publisher.endpoint=tcp://*:5556", "publisher.allow_public_without_curve=true"])
    config = load_config(
        None, ["publisher.endpoint=tcp://0.0.0.0:5556", f"publisher.curve_secret_key_file={keys / 'server.key_secret'}"]
    )
    assert config.publisher.curve_secret_key_file.endswith("server.key_secret")
    with pytest.raises(ConfigError, match="has no secret key"):
        Publisher(PublisherConfig(curve_secret_key_file=str(keys / "server.key"))).open()
    with pytest.raises(ConfigError, match="cannot read CURVE certificate"):
        ClientCurve.from_files(str(keys / "nothere.key"))
