"""The event bus and one client's outbound side on their own: which client gets what, what a slow
client's queue keeps, when a client is dropped, with the test's clock stamping the events. Clients
here are plain coroutines the test holds back or lets go: nothing waits on real time."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import WSCloseCode
from helpers import FakeClock, turns_until

from wanda.events import DEFAULT_TOPICS, TOPICS, EventBus, Message, Subscriber, encode_event


class Client:
    """A WebSocket client's two calls, recorded; ``hold`` keeps every send waiting until released."""

    def __init__(self, hold: bool = False):
        self.sent: list[str] = []
        self.closed: list[tuple[int, str]] = []
        self.sending = 0  # sends under way (waiting on the client)
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()

    async def send(self, text: str) -> None:
        self.sending += 1
        try:
            await self.gate.wait()
        finally:
            self.sending -= 1
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def subscriber(client: Client, **options) -> Subscriber:
    return Subscriber(client.send, client.close, **options)


def status(n: int) -> Message:
    return Message(json.dumps({"n": n}), ("camera", "status"))


def plain(text: str) -> Message:
    return Message(text, None)


async def writing(sub: Subscriber) -> asyncio.Task:
    """The subscriber's writer task, started."""
    return asyncio.create_task(sub.run())


# -- encoding -------------------------------------------------------------------------------------------


def test_an_event_is_compact_json_stamped_with_the_time_given():
    text = encode_event("camera", "status", {"iso": 800}, ts=1_700_000_000.1234567)
    assert " " not in text
    assert json.loads(text) == {"topic": "camera", "event": "status", "data": {"iso": 800}, "ts": 1_700_000_000.123457}


# -- the bus ----------------------------------------------------------------------------------------------


async def test_a_publish_reaches_the_clients_of_its_topic_once_serialised_and_stamped_by_the_bus_clock():
    clock = FakeClock(1_700_000_000.0)
    bus = EventBus(clock=clock)
    everyone, analysis_only = Client(), Client()
    first, second = subscriber(everyone), subscriber(analysis_only)
    bus.add(first)
    bus.add(second)
    bus.set_topics(second, {"analysis"})
    bus.publish("camera", "capture_start", {"n": 1})
    clock.advance(2.5)
    bus.publish("analysis", "frame", {"stars": 3})
    assert [json.loads(m.text)["event"] for m in first._queue] == ["capture_start"]  # no analysis unasked
    assert [json.loads(m.text)["event"] for m in second._queue] == ["frame"]
    assert json.loads(second._queue[0].text)["ts"] == 1_700_000_002.5
    assert bus.published == 2
    # One text for all: serialised once per publish, not per client.
    bus.set_topics(second, set(TOPICS))
    bus.publish("mount", "tracking_start", {})
    assert first._queue[-1].text is second._queue[-1].text


def test_a_publish_without_clients_is_counted_and_costs_nothing_more():
    bus = EventBus()
    bus.publish("system", "anything", {"not": "serialisable", "at": object()})  # never encoded
    assert bus.published == 1


def test_new_clients_get_every_topics_status_stamped_now():
    clock = FakeClock(1_700_000_100.0)
    bus = EventBus(clock=clock)
    bus.add_status_provider("camera", lambda: {"iso": 800})
    bus.add_status_provider("mount", lambda: {"tracking": False})
    messages = [json.loads(m.text) for m in bus.status_messages()]
    assert [(m["topic"], m["event"], m["data"], m["ts"]) for m in messages] == [
        ("camera", "status", {"iso": 800}, 1_700_000_100.0),
        ("mount", "status", {"tracking": False}, 1_700_000_100.0),
    ]


def test_listeners_are_counted_by_topic_and_watchers_hear_every_change():
    bus = EventBus()
    counts: list[int] = []
    bus.watch_listeners(lambda: counts.append(bus.listeners("analysis")))
    one, two = subscriber(Client()), subscriber(Client())
    assert one.topics == set(DEFAULT_TOPICS) and "analysis" not in one.topics  # asked for by name only
    bus.add(one)
    bus.add(two)
    bus.set_topics(one, {"analysis", "camera"})
    bus.set_topics(two, {"analysis"})
    bus.remove(one)
    bus.remove(one)  # gone already: no change, no call
    bus.remove(two)
    assert counts == [0, 0, 1, 2, 1, 0]


async def test_a_client_that_cannot_keep_up_is_taken_off_the_bus_and_gets_nothing_more():
    bus = EventBus()
    slow = Client(hold=True)
    sub = subscriber(slow, limit=3)
    bus.add(sub)
    for n in range(3):
        bus.publish("session", "frame_saved", {"n": n})  # not coalescible: every one counts
    assert sub in bus.subscribers
    bus.publish("session", "frame_saved", {"n": 3})  # the fourth does not fit
    assert sub.too_slow and sub not in bus.subscribers
    bus.publish("session", "frame_saved", {"n": 4})
    assert len(sub._queue) == 3


# -- one client's queue and writer ---------------------------------------------------------------------------


async def test_messages_go_out_in_order():
    client = Client()
    sub = subscriber(client)
    for text in ("a", "b", "c"):
        sub.offer(plain(text))
    writer = await writing(sub)
    await turns_until(lambda: len(client.sent) == 3)
    assert client.sent == ["a", "b", "c"] and sub.sent == 3 and client.closed == []
    sub.offer(plain("d"))  # the writer waits for more and sends it too
    await turns_until(lambda: len(client.sent) == 4)
    assert client.sent[-1] == "d"
    writer.cancel()


async def test_a_full_queue_keeps_only_the_latest_status_and_progress_and_every_other_message():
    client = Client()
    sub = subscriber(client, limit=6)
    queued = [
        status(1),
        Message("p1", ("camera", "capture_progress")),
        plain("saved 1"),
        status(2),
        Message("p2", ("camera", "capture_progress")),
        status(3),
    ]
    for message in queued:
        sub.offer(message)
    sub.offer(plain("saved 2"))  # the seventh: the queue is coalesced to make room
    assert sub.coalesced == 3 and not sub.closing
    writer = await writing(sub)
    await turns_until(lambda: len(client.sent) == 4)
    writer.cancel()
    # Each kept message stays where it was: the order of the queue, with the newest values.
    assert client.sent == ["saved 1", "p2", json.dumps({"n": 3}), "saved 2"]


async def test_a_client_whose_queue_is_full_of_messages_that_all_count_is_closed_as_too_slow():
    client = Client()
    sub = subscriber(client, limit=2)
    for text in ("a", "b", "c"):  # nothing to coalesce
        sub.offer(plain(text))
    assert sub.closing and sub.too_slow
    sub.offer(plain("d"))  # ignored: it is being closed
    await asyncio.wait_for(sub.run(), 10)  # the bound only fails a writer that never ends
    assert client.sent == []  # nothing more for it, not even what was queued
    assert client.closed == [(WSCloseCode.TRY_AGAIN_LATER, "too slow: messages were dropped")]


async def test_an_overflow_stops_a_send_that_waits_on_the_client():
    client = Client(hold=True)  # takes nothing
    sub = subscriber(client, limit=1, send_timeout=3600)
    sub.offer(plain("a"))
    writer = await writing(sub)
    await turns_until(lambda: client.sending == 1)
    sub.offer(plain("b"))
    sub.offer(plain("c"))  # over the limit while "a" waits: the writer must not wait its hour
    await asyncio.wait_for(writer, 10)
    assert client.closed == [(WSCloseCode.TRY_AGAIN_LATER, "too slow: messages were dropped")]
    assert client.sent == []


async def test_a_send_past_its_deadline_drops_the_client():
    client = Client(hold=True)
    sub = subscriber(client, send_timeout=0)  # the deadline is now: no waiting on the clock
    sub.offer(plain("a"))
    await asyncio.wait_for(sub.run(), 10)
    assert client.closed == [(WSCloseCode.TRY_AGAIN_LATER, "too slow: a message took too long")]
    assert sub.too_slow and sub.closing and client.sent == []


async def test_a_client_gone_mid_send_ends_the_writer_quietly():
    closed: list = []

    async def gone(text: str) -> None:
        raise ConnectionResetError("the peer went away")

    async def close(code: int, reason: str) -> None:
        closed.append(code)

    sub = Subscriber(gone, close)
    sub.offer(plain("a"))
    await asyncio.wait_for(sub.run(), 10)
    assert closed == [] and sub.sent == 0


async def test_closing_a_client_at_shutdown_takes_no_more_messages():
    client = Client()
    sub = subscriber(client)
    await sub.close(WSCloseCode.GOING_AWAY, "server shutting down")
    assert client.closed == [(WSCloseCode.GOING_AWAY, "server shutting down")]
    sub.offer(plain("late"))
    assert len(sub._queue) == 0

    async def refuse(code: int, reason: str) -> None:
        raise ConnectionResetError

    gone = Subscriber(client.send, refuse)
    await gone.close(WSCloseCode.GOING_AWAY, "server shutting down")  # a client already gone: no error
    assert gone.closing


@pytest.mark.parametrize(
    ("event", "coalescible"),
    [
        ("status", True),
        ("frame", True),
        ("capture_progress", True),
        ("session_progress", True),
        ("capture_complete", False),
        ("frame_saved", False),
        ("mount_error", False),
    ],
)
def test_which_events_a_slow_client_may_miss(event, coalescible):
    bus = EventBus()
    sub = subscriber(Client())
    bus.add(sub)
    bus.set_topics(sub, set(TOPICS))
    bus.publish("camera", event, {})
    assert (sub._queue[0].key is not None) == coalescible
