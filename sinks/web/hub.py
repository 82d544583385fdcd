"""The web sink's state and fan-out, owned by the server's event loop (no locks: one thread touches it).

:class:`Hub` keeps the latest state of every source and one bounded :class:`ClientQueue` per
WebSocket client. Everything here runs on the server's asyncio loop; the sink's runner thread only
hands messages over with ``loop.call_soon_threadsafe(hub.publish, item)``, so it never waits for a
client. Pattern: aiohttp's WebSocket broadcast (``request.app`` state + one writer per client,
aiohttp docs "Server WebSockets").
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.messages import AnyMessage, FrameImage, json_safe

#: Kinds that carry results; a slow client never loses these (only ``frame`` messages are dropped).
RESULT_KINDS = frozenset({"pose", "sim", "fit", "shot", "health", "eos"})

#: Shots kept per source in the state (the newest ones; the count of all is ``shots_total``).
MAX_SHOTS_KEPT = 200


def message_json_dict(message: AnyMessage) -> dict[str, Any]:
    """The ``/ws`` and ``/api/state`` JSON object of one message.

    ``message.to_json_dict()`` (header fields, ``topic``, arrays as nested lists, NaN as ``null``),
    except for ``frame`` messages, whose ``arrays.jpeg`` is the JPEG file base64-encoded (RFC 4648,
    standard alphabet with padding) as one string instead of a list of byte values.
    """
    if not isinstance(message, FrameImage):
        return message.to_json_dict()
    out: dict[str, Any] = {"v": 1, "kind": message.KIND, "source_id": message.source_id, "seq": message.seq}
    out.update({key: json_safe(value) for key, value in message.header_fields().items()})
    out["publish_time_ns"] = message.publish_time_ns
    out["topic"] = message.topic
    out["arrays"] = {"jpeg": base64.b64encode(message.jpeg.tobytes()).decode("ascii")}
    return out


@dataclass(frozen=True)
class Item:
    """One message ready to send: its kind, source, JSON object and encoded text (built once)."""

    kind: str
    source_id: str
    data: dict[str, Any]
    text: str

    @classmethod
    def of(cls, message: AnyMessage) -> Item:
        """Serialise ``message`` (on the caller's thread: the runner's, so the loop stays free)."""
        data = message_json_dict(message)
        return cls(message.kind, message.source_id, data, json.dumps(data, separators=(",", ":"), allow_nan=False))


@dataclass
class SourceState:
    """Latest state of one source (``/api/state``); the last ``frame`` is kept for new clients."""

    frame: Item | None = None
    pose: Item | None = None
    sim: Item | None = None
    fit: Item | None = None
    eos: Item | None = None
    shots: deque[Item] = field(default_factory=lambda: deque(maxlen=MAX_SHOTS_KEPT))
    shots_total: int = 0


class ClientQueue:
    """Bounded outgoing queue of one WebSocket client: frames are dropped, results never.

    At most ``max_frames`` ``frame`` messages wait at a time: a newer frame drops the oldest queued
    one, so a slow client sees fresh video, not a growing backlog. Result messages are always
    queued; a client with more than ``max_results`` of them waiting is too slow to follow and is
    told to go (:attr:`overflowed`; the server closes it, the page reconnects and starts from the
    state snapshot).

    Attributes:
        dropped_frames: Frame messages dropped for this client.
        overflowed: Set once the result backlog passed ``max_results``.
    """

    def __init__(self, max_frames: int = 2, max_results: int = 4096) -> None:
        self.max_frames = max_frames
        self.max_results = max_results
        self._items: deque[Item] = deque()
        self._frames = 0
        self._ready = asyncio.Event()
        self.dropped_frames = 0
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> None:
        """Queue ``item`` (never blocks); drop the oldest queued frame when ``max_frames`` wait."""
        if item.kind == "frame":
            if self._frames >= self.max_frames:
                oldest = next(i for i, queued in enumerate(self._items) if queued.kind == "frame")
                del self._items[oldest]
                self._frames -= 1
                self.dropped_frames += 1
            self._frames += 1
        elif len(self._items) - self._frames >= self.max_results:
            self.overflowed = True
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Item:
        """The oldest queued item, waiting for one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item.kind == "frame":
            self._frames -= 1
        return item


@dataclass(eq=False)
class Client:
    """One WebSocket client: its filters (``None`` = everything) and queue."""

    queue: ClientQueue
    sources: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    def wants(self, item: Item) -> bool:
        """Whether the client's ``?source=`` / ``?kinds=`` filters pass ``item`` (``health`` passes any source)."""
        if self.kinds is not None and item.kind not in self.kinds:
            return False
        return self.sources is None or item.kind == "health" or item.source_id in self.sources


class Hub:
    """Latest state per source plus the connected clients; every method runs on the server loop.

    Attributes:
        sources: source id -> :class:`SourceState`, in order of first appearance.
        health: The last ``health/`` message, or ``None``.
        clients: The connected WebSocket clients.
        published: Messages handed to :meth:`publish` so far.
    """

    def __init__(self) -> None:
        self.sources: dict[str, SourceState] = {}
        self.health: Item | None = None
        self.clients: set[Client] = set()
        self.published = 0
        self.client_event = asyncio.Event()

    def publish(self, item: Item) -> None:
        """Record ``item`` in the state and queue it for every client that wants it (never blocks)."""
        self.published += 1
        if item.kind == "health":
            self.health = item
        else:
            state = self.sources.setdefault(item.source_id, SourceState())
            if item.kind == "shot":
                state.shots.append(item)
                state.shots_total += 1
            elif item.kind in ("frame", "pose", "sim", "fit", "eos"):
                setattr(state, item.kind, item)
        for client in self.clients:
            if client.wants(item):
                client.queue.put(item)

    def snapshot(self) -> list[Item]:
        """What a new client is sent first: the last health, then per source its shots, frame, pose, sim, fit."""
        items = [self.health] if self.health is not None else []
        for state in self.sources.values():
            items.extend(state.shots)
            items.extend(i for i in (state.frame, state.pose, state.sim, state.fit, state.eos) if i is not None)
        return items

    def state_json(self) -> dict[str, Any]:
        """``/api/state``: ``{"health": last health or null, "sources": {id: {...}}}`` (see the README)."""
        health = self.health.data if self.health is not None else None
        health_sources = health.get("sources", {}) if health is not None else {}
        sources = {}
        for source_id, state in self.sources.items():
            frame = state.frame.data if state.frame is not None else None
            sources[source_id] = {
                "pose": state.pose.data if state.pose is not None else None,
                "sim": state.sim.data if state.sim is not None else None,
                "fit": state.fit.data if state.fit is not None else None,
                "eos": state.eos.data if state.eos is not None else None,
                "health": health_sources.get(source_id),
                "shots": [shot.data for shot in state.shots],
                "shots_total": state.shots_total,
                "frame": None if frame is None else {k: v for k, v in frame.items() if k != "arrays"},
            }
        return {"health": health, "sources": sources}

    def add(self, client: Client) -> None:
        """Register ``client`` and queue the snapshot for it (filters applied), each marked ``"replay": true``."""
        for item in self.snapshot():
            if client.wants(item):
                data = {**item.data, "replay": True}
                client.queue.put(Item(item.kind, item.source_id, data, json.dumps(data, separators=(",", ":"))))
        self.clients.add(client)
        self.client_event.set()

    def remove(self, client: Client) -> None:
        """Forget ``client``."""
        self.clients.discard(client)
        self.client_event.set()
