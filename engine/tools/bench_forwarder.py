"""Cost of ``batsight cluster``'s forwarder per message: direct XPUB -> SUB against XPUB -> forwarder -> SUB.

Run ``python -m engine.tools.bench_forwarder [--messages 20000] [--persons 2] [--repeats 3]``. A
stand-in worker (an XPUB socket on loopback) sends the same pre-encoded ``pose/`` messages as fast
as it can, (a) to a subscriber connected to it directly and (b) through a
:class:`~engine.cluster.forwarder.Forwarder` (seq renumbering, duplicate check, msgpack header
re-encoding), alternating so background load hits both alike. Prints the message size, the
messages per second each path delivered and the forwarder thread's own time per message
(``Forwarder.relay_s / messages``), i.e. one core's worth of forwarding capacity.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import zmq

from engine.cluster.forwarder import Forwarder
from engine.config import PublisherConfig
from engine.testing import make_pose
from engine.wire import encode_message

_ANY_PORT = "tcp://127.0.0.1:*"


def _receive(sub: zmq.Socket, n: int, timeout_s: float = 60.0) -> int:
    """Receive up to ``n`` messages (stops after ``timeout_s`` of silence); the count received."""
    got = 0
    while got < n and sub.poll(int(timeout_s * 1000)):
        sub.recv_multipart()
        got += 1
    return got


def _one_path(context: zmq.Context, parts: list[bytes], n: int, through_forwarder: bool) -> tuple[float, float, int]:
    """``(messages per second delivered, forwarder seconds per message or 0, received)`` of one run."""
    worker = context.socket(zmq.XPUB)
    worker.setsockopt(zmq.SNDHWM, n + 10)
    worker.bind(_ANY_PORT)
    forwarder = None
    endpoint = worker.getsockopt_string(zmq.LAST_ENDPOINT)
    if through_forwarder:
        forwarder = Forwarder(PublisherConfig(endpoint=_ANY_PORT, sndhwm=n + 10, health_period_s=3600), {"cam1": "w"})
        forwarder.open()
        forwarder.start()
        forwarder.attach("w", endpoint, None, ["cam1"])
        endpoint = forwarder.endpoint
        worker.poll(10_000)
        worker.recv()  # the forwarder's subscription
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, n + 10)
    sub.setsockopt(zmq.SUBSCRIBE, b"pose/")
    sub.connect(endpoint)
    time.sleep(0.5)  # the subscription travels up (through the forwarder it is already subscribed to all)
    headers = [_with_seq(parts[1], seq) for seq in range(n)]  # encoded before timing: the sender is cheap
    t0 = time.perf_counter()
    for header in headers:
        worker.send_multipart([parts[0], header, *parts[2:]])
    got = _receive(sub, n)
    wall_s = time.perf_counter() - t0
    relay_s = 0.0
    if forwarder is not None:
        relay_s = forwarder.relay_s / max(1, forwarder.relayed)
        forwarder.close()
    sub.close(linger=0)
    worker.close(linger=0)
    return got / wall_s, relay_s, got


def _with_seq(header: bytes, seq: int) -> bytes:
    import msgpack

    fields = msgpack.unpackb(header, raw=False)
    fields["seq"] = seq
    fields["frame_index"] = seq
    return msgpack.packb(fields, use_bin_type=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints one line per path and the forwarder's time per message."""
    parser = argparse.ArgumentParser(prog="python -m engine.tools.bench_forwarder", description=__doc__)
    parser.add_argument("--messages", type=int, default=20000, help="pose/ messages per run")
    parser.add_argument("--persons", type=int, default=2, help="persons per pose/ message")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path")
    args = parser.parse_args(argv)
    parts = [bytes(p) for p in encode_message(make_pose("cam1", 0, n_persons=args.persons), 0)]
    size = sum(len(p) for p in parts)
    context = zmq.Context()
    direct, forwarded, per_message = [], [], []
    try:
        for _ in range(args.repeats):
            rate, _, got = _one_path(context, parts, args.messages, through_forwarder=False)
            direct.append(rate)
            rate, relay_s, got_fwd = _one_path(context, parts, args.messages, through_forwarder=True)
            forwarded.append(rate)
            per_message.append(relay_s)
            if got != args.messages or got_fwd != args.messages:
                lost = f"direct {got}, forwarded {got_fwd} of {args.messages}"
                sys.stderr.write(f"bench_forwarder: lost messages ({lost})\n")
    finally:
        context.term()
    sys.stdout.write(
        f"pose/ message {size} bytes ({args.persons} persons), {args.messages} messages x {args.repeats} runs\n"
        f"direct XPUB -> SUB:            {statistics.median(direct):9.0f} messages/s\n"
        f"through the forwarder:         {statistics.median(forwarded):9.0f} messages/s\n"
        f"forwarder thread per message:  {1e6 * statistics.median(per_message):9.1f} us\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
