"""EventBus: server events to every WebSocket client, without one slow client delaying another.

An event is serialised once per broadcast and the same text goes into each subscriber's bounded
queue; each subscriber has its own writer task. A subscriber whose queue is full first has its
queue coalesced (only the latest ``status`` or ``*_progress`` event per topic is kept) and, if that
does not make room, is closed: it could not keep up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013  # the WebSocket close code (RFC 6455 registry) for a client too slow to keep up

TOPICS = ("camera", "mount", "session", "system", "analysis", "solve", "stack", "calibration", "polar_align")
# What a client gets until it subscribes: everything but the analysis, which costs the server CPU
# for as long as somebody listens, so it is asked for by name.
DEFAULT_TOPICS = frozenset(TOPICS) - {"analysis", "solve"}
QUEUE_LIMIT = 256
SEND_TIMEOUT = 10.0  # a client that takes longer to accept one message is dropped


def encode_event(topic: str, event: str, data: dict[str, Any], ts: float | None = None) -> str:
    """The event's JSON text, stamped ``ts`` (Unix seconds; now if not given)."""
    stamp = time.time() if ts is None else ts
    return json.dumps({"topic": topic, "event": event, "data": data, "ts": round(stamp, 6)}, separators=(",", ":"))


def _coalescible(event: str) -> bool:
    """Events whose latest value says it all: older ones can be dropped for a slow client."""
    return event in ("status", "frame") or event.endswith("_progress")


@dataclass(slots=True)
class Message:
    text: str
    key: tuple[str, str] | None  # (topic, event) when the message may be coalesced


class Subscriber:
    """One WebSocket client's outbound side: a bounded queue and the writer task that drains it."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[Any]],
        limit: int = QUEUE_LIMIT,
        send_timeout: float = SEND_TIMEOUT,
    ):
        self.topics: set[str] = set(DEFAULT_TOPICS)
        self._send = send
        self._close = close
        self._limit = limit
        self._send_timeout = send_timeout
        self._queue: deque[Message] = deque()
        self._ready = asyncio.Event()
        self.closing = False
        self.too_slow = False  # being closed by its writer for not keeping up
        self._sending: asyncio.Timeout | None = None  # the deadline of the message being sent
        self.coalesced = 0
        self.sent = 0

    def offer(self, message: Message) -> None:
        """Queue a message (never blocks). Called by the bus and for replies."""
        if self.closing:
            return
        if len(self._queue) >= self._limit:
            self._coalesce()
            if len(self._queue) >= self._limit:
                log.info("closing a WebSocket client that cannot keep up (%d messages queued)", len(self._queue))
                self.closing = self.too_slow = True
                self._ready.set()
                if self._sending is not None and not self._sending.expired():
                    self._sending.reschedule(0)  # a writer stuck on this client stops waiting now
                return
        self._queue.append(message)
        self._ready.set()

    def _coalesce(self) -> None:
        latest: dict[tuple[str, str], int] = {}
        for index, message in enumerate(self._queue):
            if message.key is not None:
                latest[message.key] = index
        kept = deque(m for i, m in enumerate(self._queue) if m.key is None or latest[m.key] == i)
        self.coalesced += len(self._queue) - len(kept)
        self._queue = kept

    async def close(self, code: int, reason: str) -> None:
        """Close the client now (server shutdown)."""
        self.closing = True
        try:
            await self._close(code, reason)
        except ConnectionError:
            pass

    async def run(self) -> None:
        """The writer task: drain the queue in order until closed."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self.too_slow:
                await self._drop("messages were dropped")
                return
            if self.closing:
                return
            while self._queue:
                message = self._queue.popleft()
                try:
                    async with asyncio.timeout(self._send_timeout) as self._sending:
                        await self._send(message.text)
                except TimeoutError:
                    await self._drop("messages were dropped" if self.too_slow else "a message took too long")
                    return
                except ConnectionError:
                    return
                finally:
                    self._sending = None
                self.sent += 1

    async def _drop(self, reason: str) -> None:
        self.closing = self.too_slow = True
        await self._close(TRY_AGAIN_LATER, f"too slow: {reason}")


class EventBus:
    """Lives in the event loop. Topics are fixed; status providers feed new clients."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # stamps the events (Unix seconds)
        self.subscribers: set[Subscriber] = set()
        self._status: dict[str, Callable[[], dict[str, Any]]] = {}
        self._watchers: list[Callable[[], None]] = []
        self.published = 0

    # -- who listens ---------------------------------------------------------------------------

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        self._changed()

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            self._changed()

    def set_topics(self, subscriber: Subscriber, topics: set[str]) -> None:
        subscriber.topics = topics
        self._changed()

    def listeners(self, topic: str) -> int:
        return sum(topic in s.topics for s in self.subscribers)

    def watch_listeners(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever a client comes, goes or changes its topics."""
        self._watchers.append(callback)

    def listeners_changed(self) -> None:
        """Tell the watchers that what listeners want has changed (a mode a topic's listeners
        asked for), as a client coming or going does."""
        self._changed()

    def _changed(self) -> None:
        for callback in self._watchers:
            callback()

    def add_status_provider(self, topic: str, provider: Callable[[], dict[str, Any]]) -> None:
        """``provider()`` gives the topic's current status, sent to each client on connect."""
        self._status[topic] = provider

    def status_messages(self) -> list[Message]:
        now = self._clock()
        return [Message(encode_event(name, "status", status(), now), None) for name, status in self._status.items()]

    def publish(self, topic: str, event: str, data: dict[str, Any]) -> None:
        assert topic in TOPICS, topic
        self.published += 1
        if not self.subscribers:
            return
        key = (topic, event) if _coalescible(event) else None
        message = Message(encode_event(topic, event, data, self._clock()), key)
        for subscriber in list(self.subscribers):
            if topic in subscriber.topics:
                subscriber.offer(message)
            if subscriber.closing:  # it could not keep up: it gets nothing more
                self.remove(subscriber)
