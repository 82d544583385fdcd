"""ZeroMQ CURVE authentication for the publisher and its subscribers.

Keys are ZeroMQ certificate files as written by ``zmq.auth.create_certificates(dir, name)``:
``name.key`` holds the public key, ``name.key_secret`` the public and the secret key. The
publisher is the CURVE server; it accepts a client whose public key is in ``clients_dir`` (every
``*.key`` file there), or any client that knows the server's public key when ``clients_dir`` is
``None``, plus the ephemeral keys of the engine's own in-process sinks. Authentication runs in
pyzmq's ``zmq.auth.thread.ThreadAuthenticator`` (ZAP, RFC 27). Source: pyzmq docs "Authentication
with ZeroMQ" and ``examples/security/stonehouse.py`` / ``ironhouse.py``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from engine.errors import ConfigError

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback_endpoint(endpoint: str) -> bool:
    """Whether binding ``endpoint`` exposes nothing beyond this machine.

    ``inproc://`` and ``ipc://`` are local; ``tcp://HOST:PORT`` is local when HOST is
    ``localhost`` or a loopback address. ``tcp://*:PORT`` and any other address are public.
    """
    if endpoint.startswith(("inproc://", "ipc://")):
        return True
    match = re.match(r"^(?:tcp|ws|wss)://(.+):[^:]+$", endpoint)
    if not match:
        return False
    host = match.group(1)
    if host in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@overload
def load_keypair(path: str | Path, need_secret: Literal[True]) -> tuple[bytes, bytes]: ...


@overload
def load_keypair(path: str | Path, need_secret: bool) -> tuple[bytes, bytes | None]: ...


def load_keypair(path: str | Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    """Read ``(public, secret)`` Z85 keys from a ZeroMQ certificate file.

    Raises:
        ConfigError: the file is missing or unreadable, or has no secret key when ``need_secret``.
    """
    p = Path(path).expanduser()
    try:
        public, secret = zmq.auth.load_certificate(str(p))
    except (OSError, ValueError) as exc:
        msg = f"cannot read CURVE certificate {p}: {exc}"
        raise ConfigError(msg) from None
    if need_secret and not secret:
        msg = f"CURVE certificate {p} has no secret key: expected a '.key_secret' file"
        raise ConfigError(msg)
    return public, secret


@dataclass(frozen=True)
class ClientCurve:
    """What a subscriber needs to connect to a CURVE publisher (Z85 keys, bytes)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_key_file: str, client_key_file: str | None = None) -> ClientCurve:
        """Server public key from its ``.key`` file; client keys from a ``.key_secret`` file or new.

        Raises:
            ConfigError: a file is missing or lacks the needed key.
        """
        server_public, _ = load_keypair(server_key_file, need_secret=False)
        if client_key_file is None:
            public, secret = zmq.curve_keypair()
        else:
            public, secret = load_keypair(client_key_file, need_secret=True)
        return cls(server_public, public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        """Set the client CURVE options on ``socket`` (before ``connect``)."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


@dataclass
class _KeyChecker:
    """ZAP credentials provider: allowed = files in ``clients_dir`` + in-process keys (or any)."""

    allow_any: bool
    keys: set[bytes] = field(default_factory=set)

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = self.allow_any or key in self.keys
        if not allowed:
            log.warning("refused a subscriber with an unknown CURVE key")
        return allowed


class CurveServer:
    """The publisher side: server keys, the set of allowed client keys and the ZAP authenticator.

    Args:
        secret_key_file: The server's ``.key_secret`` certificate.
        clients_dir: Directory of allowed client ``*.key`` certificates, or ``None`` to allow any
            client that knows the server public key.

    Raises:
        ConfigError: unreadable certificates or a missing ``clients_dir``.
    """

    def __init__(self, secret_key_file: str, clients_dir: str | None) -> None:
        self.public, self.secret = load_keypair(secret_key_file, need_secret=True)
        self._checker = _KeyChecker(allow_any=clients_dir is None)
        if clients_dir is not None:
            directory = Path(clients_dir).expanduser()
            if not directory.is_dir():
                msg = f"publisher.curve_clients_dir {directory} is not a directory"
                raise ConfigError(msg)
            for cert in sorted(directory.glob("*.key")):
                self._checker.keys.add(load_keypair(cert, need_secret=False)[0])
        self._auth: ThreadAuthenticator | None = None

    def client_for_in_process_sink(self) -> ClientCurve:
        """A fresh client keypair that this server accepts (for the engine's own sinks)."""
        public, secret = zmq.curve_keypair()
        self._checker.keys.add(public)
        return ClientCurve(self.public, public, secret)

    def start(self, context: zmq.Context, socket: zmq.Socket) -> None:
        """Start the authenticator on ``context`` and make ``socket`` a CURVE server (before bind)."""
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self._checker)
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret

    def stop(self) -> None:
        """Stop the authenticator thread (idempotent)."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
