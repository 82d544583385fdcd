"""Test helper: a real RTSP server on 127.0.0.1 fed by an ffmpeg test-pattern publisher.

Server: Debian's ``rtsp-server-perl`` (the ``RTSP::Server`` Perl module). It has two TCP ports: the
*source* port, where a publisher ANNOUNCEs and RECORDs a stream (``ffmpeg ... -f rtsp
rtsp://127.0.0.1:<source_port>/<path>``), and the *client* port, where players DESCRIBE / SETUP /
PLAY it (``rtsp://127.0.0.1:<client_port>/<path>``). It relays RTP over UDP only (no interleaved
TCP), from a UDP port range starting at ``--rtp_start_port``, so clients must use
``rtsp_transport=udp``. Its quirk: a publisher that dies without a TEARDOWN (SIGKILL) leaves its
mount behind and a new publisher on the same path is refused (403), so :meth:`stop_publisher` stops
ffmpeg with SIGINT, which makes it send TEARDOWN (SIGKILL only as a last resort).

Every process runs in its own process group and is killed with it; :meth:`RtspServer.stop` is
idempotent and always bounded, and the class is a context manager. Ports are free ports picked at
start; every wait has a deadline.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

__all__ = ["RtspServer", "free_tcp_port"]

SERVER_EXE = "rtsp-server-perl"
FFMPEG_EXE = "ffmpeg"

#: ``/usr/bin/rtsp-server-perl``'s body, with the module's RTP port base (``$RTP_START_PORT``, which
#: housekeeping falls back to) taken from the first argument; the rest are its usual options.
_SERVER_SCRIPT = """
use strict; use warnings; use AnyEvent; use RTSP::Server;
$RTSP::Server::RTP_START_PORT = shift @ARGV;
my $srv = RTSP::Server->new_with_options();
$srv->listen;
my $cv = AnyEvent->condvar;
$SIG{INT} = sub { $cv->send };
$SIG{TERM} = sub { $cv->send };
$cv->recv;
"""


#: Ports are drawn below Linux' default ephemeral range (32768-60999), so that no outgoing connection
#: of another process takes one of ours while the server is down between a kill and a restart.
PORT_RANGE = (10_000, 32_000)


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 outside the ephemeral range that was free a moment ago."""
    rng = random.Random()  # noqa: S311 - port choice, not crypto
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything taken: any free port will do
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_range_free(start: int, count: int) -> bool:
    socks = []
    try:
        for port in range(start, start + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def _free_udp_range(count: int) -> int:
    """Start of ``count`` consecutive free UDP ports on 127.0.0.1 (even, for RTP/RTCP pairs)."""
    rng = random.Random()  # noqa: S311 - port choice, not crypto
    for _ in range(200):
        start = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - count) & ~1
        if _udp_range_free(start, count):
            return start
    msg = f"no {count} consecutive free UDP ports found"
    raise RuntimeError(msg)


def _kill_group(proc: subprocess.Popen | None, first: signal.Signals, grace_s: float) -> None:
    """Send ``first`` to ``proc``'s process group, then SIGKILL after ``grace_s``; reap it."""
    if proc is None:
        return
    for sig, wait_s in ((first, grace_s), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # the group may hold children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class RtspServer:
    """``rtsp-server-perl`` on 127.0.0.1 plus an ffmpeg publisher of ``testsrc`` at ``fps``.

    Attributes:
        path: Mount path of the stream (``/cam``).
        client_port: Port players connect to.
        source_port: Port the publisher connects to.
        url: The playback URL ``rtsp://127.0.0.1:<client_port>/<path>``.
    """

    def __init__(self, workdir: Path, path: str = "cam", fps: int = 15, size: str = "320x240",
                 codec: str = "libx264", startup_timeout_s: float = 15.0) -> None:
        self.workdir = Path(workdir)
        self.path = path
        self.fps = fps
        self.size = size
        self.codec = codec
        self.startup_timeout_s = startup_timeout_s
        self.client_port = free_tcp_port()
        self.source_port = free_tcp_port()
        self.rtp_start_port = _free_udp_range(64)
        self._server: subprocess.Popen | None = None
        self._publisher: subprocess.Popen | None = None
        self._logs: list[IO[bytes]] = []

    @staticmethod
    def missing_tools() -> list[str]:
        """Executables this helper needs that are not on ``PATH``."""
        return [exe for exe in (SERVER_EXE, FFMPEG_EXE) if shutil.which(exe) is None]

    @property
    def url(self) -> str:
        """Playback URL."""
        return f"rtsp://127.0.0.1:{self.client_port}/{self.path}"

    def url_with_credentials(self, user: str, password: str) -> str:
        """Playback URL with ``user:password@`` (the server does not check them)."""
        return f"rtsp://{user}:{password}@127.0.0.1:{self.client_port}/{self.path}"

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = (self.workdir / log_name).open("ab")
        self._logs.append(log)
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.workdir)

    def log_tail(self, chars: int = 2000) -> str:
        """The last characters of the server and publisher logs (for failure messages)."""
        parts = []
        for name in ("server.log", "publisher.log"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def _wait(self, what: str, ready, proc: subprocess.Popen | None) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not ready():
            if proc is not None and proc.poll() is not None:
                msg = f"{what}: process exited with {proc.returncode}\n{self.log_tail()}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"{what}: not ready after {self.startup_timeout_s:g} s\n{self.log_tail()}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def describe_status(self) -> int | None:
        """Status code of an RTSP DESCRIBE of the stream (200 when published), ``None`` if no answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=1.0) as s:
                s.sendall(f"DESCRIBE {self.url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
                reply = s.recv(4096).decode("latin-1")
        except OSError:
            return None
        parts = reply.split(" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[0].startswith("RTSP/") and parts[1].isdigit() else None

    def start_server(self) -> None:
        """Start ``rtsp-server-perl`` bound to 127.0.0.1 and wait until both ports accept.

        rtsp-server-perl's ``housekeeping`` (run whenever a connection ends, even a readiness probe)
        resets the RTP start port to the module's ``$RTP_START_PORT`` (20000) while no stream is
        mounted, ignoring ``--rtp_start_port``; two servers at once would then collide on UDP 20000.
        So the server runs from :data:`_SERVER_SCRIPT`, the same few lines as ``rtsp-server-perl``
        with ``$RTP_START_PORT`` set to this server's own free range first.
        """
        if self._server is not None and self._server.poll() is None:
            return
        self._server = self._spawn([
            "perl", "-e", _SERVER_SCRIPT, str(self.rtp_start_port),
            "--clientport", str(self.client_port), "--client_listen_address", "127.0.0.1",
            "--serverport", str(self.source_port), "--source_listen_address", "127.0.0.1",
            "--rtp_start_port", str(self.rtp_start_port), "--loglevel", "2",
        ], "server.log")
        self._wait("rtsp-server-perl", lambda: self._accepts(self.source_port) and self._accepts(self.client_port),
                   self._server)

    def start_publisher(self) -> None:
        """Start ffmpeg publishing ``testsrc`` (real time) and wait until DESCRIBE answers 200."""
        if self._publisher is not None and self._publisher.poll() is None:
            return
        codec_args = ["-c:v", self.codec, "-g", str(self.fps), "-pix_fmt", "yuv420p"]
        if self.codec == "libx264":
            codec_args += ["-preset", "ultrafast", "-tune", "zerolatency"]
        self._publisher = self._spawn([
            FFMPEG_EXE, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
            "-f", "lavfi", "-i", f"testsrc=size={self.size}:rate={self.fps}",
            *codec_args, "-f", "rtsp", "-rtsp_transport", "udp",
            f"rtsp://127.0.0.1:{self.source_port}/{self.path}",
        ], "publisher.log")
        self._wait("ffmpeg publisher", lambda: self.describe_status() == 200, self._publisher)

    def stop_publisher(self) -> None:
        """Stop the publisher: SIGINT (ffmpeg sends TEARDOWN, the server unmounts), SIGKILL after 5 s."""
        _kill_group(self._publisher, signal.SIGINT, 5.0)
        self._publisher = None

    def stop_server(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 3 s)."""
        _kill_group(self._server, signal.SIGTERM, 3.0)
        self._server = None

    def kill_server(self) -> None:
        """Kill the server at once (SIGKILL): connections drop without any RTSP goodbye."""
        _kill_group(self._server, signal.SIGKILL, 3.0)
        self._server = None

    def start(self) -> RtspServer:
        """Start the server and the publisher; on failure everything started is stopped again."""
        try:
            self.start_server()
            self.start_publisher()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the publisher and the server and close the logs; idempotent."""
        try:
            self.stop_publisher()
        finally:
            self.stop_server()
            for log in self._logs:
                log.close()
            self._logs.clear()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
