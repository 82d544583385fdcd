"""Reconnect policy of live sources: capped exponential backoff with jitter, forever by default.

Pattern: DeepStream's ``rtsp-reconnect-interval`` / ``rtsp-reconnect-attempts`` (nvurisrcbin), with
the interval growing exponentially up to a cap, and jittered so that many cameras that dropped
together (a switch reboot) do not all knock on the server at the same instant.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from engine.config import SourceConfig
from engine.errors import ConfigError

__all__ = ["ReconnectPolicy"]

#: Longest single sleep while backing off, seconds: ``close()`` interrupts a wait within this.
WAIT_SLICE_S = 0.05


@dataclass(frozen=True)
class ReconnectPolicy:
    """How long a live source waits before each reopen attempt, and how many attempts it makes.

    Attempt ``k`` (0-based) waits ``base_k = min(max_backoff_s, initial_backoff_s * multiplier**k)``
    shortened by a random fraction of at most ``jitter``: the delay is uniform in
    ``[base_k * (1 - jitter), base_k]`` ("subtractive" jitter; ``jitter = 0.5`` is AWS' "equal
    jitter"), so a delay never exceeds ``max_backoff_s``.

    Attributes:
        initial_backoff_s: Delay before the first attempt, seconds (> 0).
        max_backoff_s: Cap of every delay, seconds (``>= initial_backoff_s``).
        multiplier: Growth factor of the delay per attempt (``>= 1``).
        jitter: Largest fraction cut from a delay at random, in ``[0, 1)``; 0 = deterministic.
        max_attempts: Attempts before giving up, ``None`` = forever.
        rng: Random source of the jitter (a seeded ``random.Random`` in tests); ``None`` = a fresh
            ``random.Random()`` per :meth:`delays` call.
        sleep: Blocking sleep used by :meth:`wait`, in seconds (a recorder in tests).
    """

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None
    rng: random.Random | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.initial_backoff_s > 0:
            msg = f"initial_backoff_s must be > 0, got {self.initial_backoff_s}"
            raise ConfigError(msg)
        if not self.max_backoff_s >= self.initial_backoff_s:
            msg = f"max_backoff_s must be >= initial_backoff_s = {self.initial_backoff_s}, got {self.max_backoff_s}"
            raise ConfigError(msg)
        if not self.multiplier >= 1:
            msg = f"multiplier must be >= 1, got {self.multiplier}"
            raise ConfigError(msg)
        if not 0 <= self.jitter < 1:
            msg = f"jitter must be in [0, 1), got {self.jitter}"
            raise ConfigError(msg)
        if self.max_attempts is not None and self.max_attempts < 0:
            msg = f"max_attempts must be >= 0 or None (forever), got {self.max_attempts}"
            raise ConfigError(msg)

    @classmethod
    def from_config(cls, config: SourceConfig, **overrides: object) -> ReconnectPolicy:
        """The policy described by the ``source.reconnect_*`` keys (``overrides`` win, e.g. ``rng=``)."""
        values: dict[str, object] = {
            "initial_backoff_s": config.reconnect_initial_s,
            "max_backoff_s": config.reconnect_max_s,
            "jitter": config.reconnect_jitter,
            "max_attempts": config.reconnect_max_attempts,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def delays(self) -> Iterator[float]:
        """Yield the delay before each attempt, seconds; ends after ``max_attempts`` values (never if ``None``)."""
        rng = self.rng if self.rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        base = self.initial_backoff_s
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield base * (1.0 - self.jitter * rng.random())
            attempt += 1
            base = min(self.max_backoff_s, base * self.multiplier)

    def wait(self, delay_s: float, stop: threading.Event) -> bool:
        """Sleep ``delay_s`` seconds in slices of at most ``WAIT_SLICE_S``; stop early once ``stop`` is set.

        Returns:
            ``True`` when ``stop`` was set (before or during the wait), ``False`` after a full wait.
        """
        remaining = delay_s
        while remaining > 0:
            if stop.is_set():
                return True
            step = min(WAIT_SLICE_S, remaining)
            self.sleep(step)
            remaining -= step
        return stop.is_set()
