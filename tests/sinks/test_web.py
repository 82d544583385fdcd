"""The ``web`` sink: options, the server (``/ws``, ``/api/state``, ``/api/frame``), the slow-client policy.

The pages themselves are tested in a real headless Chromium in ``test_web_browser.py``. Here an
aiohttp client (a library independent of the sink's server code) talks to the running sink; expected
values come from the messages the test built, never from the sink.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time

import aiohttp
import cv2
import numpy as np
import pytest

from engine.errors import SinkError
from engine.messages import FrameImage
from engine.testing import make_eos, make_fit, make_health, make_pose, make_source_health
from sinks.web import WebSink
from sinks.web.hub import ClientQueue, Item
from tests.helpers import wait_until


def make_frame(frame_index: int = 0, source_id: str = "cam1", size: tuple[int, int] = (1280, 720)) -> FrameImage:
    """A ``frame/`` message whose JPEG is a 64x36 image with a gradient (decodable by any JPEG reader)."""
    image = np.zeros((36, 64, 3), np.uint8)
    image[..., 1] = np.arange(64, dtype=np.uint8)[None, :] * 4
    jpeg = np.frombuffer(cv2.imencode(".jpg", image)[1], np.uint8)
    return FrameImage(
        source_id=source_id, frame_index=frame_index, pts_s=frame_index / 30, capture_time_ns=1_000 + frame_index,
        frame_width=size[0], frame_height=size[1], width=64, height=36, quality=90, jpeg=jpeg,
    )


@pytest.fixture
def web_sink():
    """An open :class:`WebSink` on a free loopback port (stderr captured); closed afterwards."""
    stderr = io.StringIO()
    sink = WebSink(port=0, title="nets 2", _stderr=stderr)
    sink.open()
    try:
        yield sink, stderr
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, None),
        ({"port": "0"}, None),
        ({"port": "65535"}, None),
        ({"host": "::1"}, None),
        ({"host": "localhost"}, None),
        ({"host": "0.0.0.0", "allow_public": "true"}, None),
        ({"port": "65536"}, "'port' must be an integer in [0, 65535], got '65536'"),
        ({"port": "http"}, "'port' must be an integer"),
        ({"host": "0.0.0.0"}, "'0.0.0.0' is not a loopback address"),
        ({"host": "192.168.1.4", "allow_public": "no"}, "add allow_public=true"),
        ({"allow_public": "maybe"}, "'allow_public' must be true or false, got 'maybe'"),
        ({"max_frames_queued": "0"}, "'max_frames_queued' must be an integer in [1, 1000]"),
    ],
)
def test_options(options: dict, error: str | None) -> None:
    if error is None:
        assert WebSink.from_options(options, name="web").needs_frames
    else:
        with pytest.raises(SinkError, match=None) as info:
            WebSink(**options)
        assert error in str(info.value)


def test_port_in_use_is_one_line_error_naming_host_and_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = WebSink(port=port, _stderr=io.StringIO())
        with pytest.raises(SinkError) as info:
            sink.open()
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "\n" not in text
    assert sink.server is None


def test_open_prints_each_url_with_the_bound_port(web_sink) -> None:
    sink, stderr = web_sink
    port = sink.server.port
    assert port > 0
    lines = stderr.getvalue().splitlines()
    assert lines[0] == f"batsight web: coach view http://127.0.0.1:{port}/"
    assert lines[1] == f"batsight web: broadcast overlay http://127.0.0.1:{port}/overlay?source=ID"
    assert f"ws://127.0.0.1:{port}/ws" in lines[2] and f"http://127.0.0.1:{port}/api/state" in lines[2]


async def _receive(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict]:
    return [json.loads((await ws.receive(timeout=10)).data) for _ in range(count)]


def test_websocket_state_and_frame_api(web_sink) -> None:
    sink, _ = web_sink
    base = sink.base_url
    frame0, pose0 = make_frame(0), make_pose(frame_index=0)
    shot = make_shot()
    sink.write_batch([make_health(sources={"cam1": make_source_health(frames=1)}), frame0, pose0, shot])
    wait_until(lambda: sink.server.call(lambda: sink.server.hub.published) == 4, 10, "messages reach the loop")
    frame1, pose1, fit1 = make_frame(1), make_pose(frame_index=1, seq=1), make_fit(frame_index=1, seq=1)

    async def session() -> tuple[list[dict], list[dict], list[dict], dict, bytes, int, str]:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{base}/ws?kinds=pose,frame,shot") as ws, \
                    http.ws_connect(f"{base}/ws?source=cam2") as other:
                replay = await _receive(ws, 3)  # the snapshot: shots, then frame, pose
                sink.write_batch([frame1, pose1, fit1, make_pose("cam2", frame_index=7)])
                live = await _receive(ws, 2)  # fit filtered out by kinds
                cam2 = await _receive(other, 2)  # health (any source) in the snapshot, then cam2's pose
            async with http.get(f"{base}/api/state") as response:
                state = await response.json()
            async with http.get(f"{base}/api/frame?source=cam1") as response:
                jpeg = await response.read()
            async with http.get(f"{base}/api/frame?source=nope") as response:
                missing, text = response.status, await response.text()
        return replay, live, cam2, state, jpeg, missing, text

    replay, live, cam2, state, jpeg, missing, text = asyncio.run(session())
    assert [(m["kind"], m["frame_index"], m.get("replay")) for m in replay] == [
        ("shot", shot.frame_index, True), ("frame", 0, True), ("pose", 0, True)]
    assert [(m["kind"], m["frame_index"], "replay" in m) for m in live] == [("frame", 1, False), ("pose", 1, False)]
    # frames: the JPEG file base64-encoded, every header field as in the README table
    assert base64.b64decode(live[0]["arrays"]["jpeg"]) == frame1.jpeg.tobytes()
    assert {k: live[0][k] for k in ("frame_width", "frame_height", "width", "height", "quality")} == {
        "frame_width": 1280, "frame_height": 720, "width": 64, "height": 36, "quality": 90}
    np.testing.assert_array_equal(np.array(live[1]["arrays"]["keypoints_xy"], np.float32), pose1.keypoints_xy)
    assert live[1]["topic"] == "pose/cam1/" and live[1]["capture_time_ns"] == pose1.capture_time_ns
    assert [(m["kind"], m["source_id"]) for m in cam2] == [("health", ""), ("pose", "cam2")]
    assert state["title"] == "nets 2"
    cam1 = state["sources"]["cam1"]
    assert cam1["pose"]["frame_index"] == 1 and cam1["fit"]["frame_index"] == 1 and cam1["sim"] is None
    assert [s["label"] for s in cam1["shots"]] == [shot.label] and cam1["shots_total"] == 1
    assert cam1["health"]["frames_out"] == 1 and cam1["frame"]["frame_index"] == 1 and "arrays" not in cam1["frame"]
    assert jpeg == frame1.jpeg.tobytes()
    assert missing == 404 and "nope" in text


def test_client_queue_drops_oldest_frames_never_results() -> None:
    queue = ClientQueue(max_frames=2, max_results=5)

    def item(kind: str, index: int) -> Item:
        return Item(kind, "cam1", {"frame_index": index}, str(index))

    for i in range(4):
        queue.put(item("frame", i))
        queue.put(item("pose", i))
    kept = asyncio.run(_drain(queue, len(queue)))
    assert kept == [("pose", 0), ("pose", 1), ("frame", 2), ("pose", 2), ("frame", 3), ("pose", 3)]
    assert queue.dropped_frames == 2 and not queue.overflowed
    for i in range(6):
        queue.put(item("pose", i))
    assert queue.overflowed and len(queue) == 6  # told to go, never silently losing a result


async def _drain(queue: ClientQueue, count: int) -> list[tuple[str, int]]:
    return [(i.kind, i.data["frame_index"]) for i in [await queue.get() for _ in range(count)]]


def test_a_client_that_never_reads_neither_blocks_the_runner_nor_grows_frames(web_sink) -> None:
    sink, _ = web_sink
    big = make_frame(0)
    big = FrameImage(**{**{f: getattr(big, f) for f in ("source_id", "pts_s", "capture_time_ns", "frame_width",
                                                          "frame_height", "width", "height", "quality")},
                        "frame_index": 0, "jpeg": np.full(512 * 1024, 7, np.uint8)})
    reader = socket.create_connection(("127.0.0.1", sink.server.port))
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(b"0123456789abcdef").decode()
    reader.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    try:
        wait_until(lambda: sink.server.call(lambda: len(sink.server.hub.clients)) == 1, 10, "client registered")
        started = time.monotonic()
        for i in range(60):  # 60 x 0.7 MB of base64 JSON, far more than the socket buffers hold
            sink.write_batch([big, make_pose(frame_index=i, seq=i)])
        write_s = time.monotonic() - started
        wait_until(lambda: sink.server.call(lambda: sink.server.hub.published) == 120, 30, "messages reach the loop")
        queued = sink.server.call(lambda: [(len(c.queue), c.queue.dropped_frames) for c in sink.server.hub.clients])
    finally:
        reader.close()
    assert write_s < 20  # safety bound only: never waiting for the client (each write_batch only serialises)
    (length, dropped), = queued
    assert dropped >= 50 and length <= 60 + 2  # at most 2 frames wait; every pose is still queued or sent


def make_shot():
    """A ``shot/`` message (the engine's own type) with a 3-point segment."""
    from engine.messages import FitStats, Shot

    n = 3
    zeros = {name: 0.0 for name in FitStats.__dataclass_fields__}
    return Shot(
        source_id="cam1", frame_index=12, pts_s=0.4, capture_time_ns=1_012, seq=0, shot_index=0, start_frame=10,
        end_frame=12, start_s=1 / 3, end_s=0.4, duration_s=0.4 - 1 / 3, label="cover_drive", confidence=0.8,
        probabilities={"pull": 0.1, "cover_drive": 0.8, "other": 0.1}, handedness="right",
        handedness_source="inferred", handedness_confidence=0.9, wrist="left_wrist", shoulder="left_shoulder",
        n_points=n, degree_xy=2,
        basis="legendre", t_start_s=1 / 3, t_end_s=0.4, stats=FitStats(**zeros), classifier_version="test",
        dx_coef=np.zeros(3), dy_coef=np.zeros(3), r_coef=np.zeros(3), t_s=np.linspace(1 / 3, 0.4, n),
        dx=np.zeros(n), dy=np.zeros(n), pair_similarity=np.zeros(n, np.float32),
    )


def test_eos_kept_in_state(web_sink) -> None:
    sink, _ = web_sink
    sink.write_batch([make_pose(), make_eos(frames=1)])
    wait_until(lambda: sink.server.call(lambda: sink.server.hub.published) == 2, 10, "messages reach the loop")
    state = sink.server.call(sink.server.hub.state_json)
    assert state["sources"]["cam1"]["eos"]["reason"] == "end"
