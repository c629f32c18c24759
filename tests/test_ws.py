"""The WebSocket protocol: events, commands and replies, slow and hostile clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from helpers import is_reply, receive_until, wait_until, was_reset

from wanda.keys import BUS, CONTROL

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ws_capture.py"


async def test_a_new_client_gets_hello_and_the_status_of_every_topic(client):
    ws = await client.ws_connect("/ws")
    hello = await ws.receive_json(timeout=5)
    assert hello["topic"] == "system" and hello["event"] == "hello"
    assert "camera.capture" in hello["data"]["actions"] and isinstance(hello["ts"], float)
    status = await ws.receive_json(timeout=5)
    assert (status["topic"], status["event"]) == ("camera", "status")
    assert status["data"]["capture_status"] == "Idle"
    await ws.close()


async def test_commands_get_replies_with_the_same_validation_as_rest(client):
    ws = await client.ws_connect("/ws")
    watcher = await client.ws_connect("/ws")
    await ws.send_json({"id": "a", "action": "camera.set", "params": {"exposure_seconds": 0.2, "iso": 200}})
    reply = (await receive_until(ws, is_reply("a")))[-1]
    assert reply["ok"] is True and reply["data"]["exposure_seconds"] == 0.2 and reply["data"]["iso"] == 200
    # Everybody hears about the change.
    event = (
        await receive_until(
            watcher, lambda m: m.get("topic") == "camera" and m.get("event") == "status" and m["data"]["iso"] == 200
        )
    )[-1]
    assert event["topic"] == "camera"

    await ws.send_json({"id": 7, "action": "camera.set", "params": {"exposure_seconds": 999}})
    reply = (await receive_until(ws, is_reply(7)))[-1]
    rest = await (await client.post("/api/camera/settings", json={"exposure_seconds": 999})).json()
    assert reply == {"id": 7, "ok": False, "error": {"code": "VALIDATION_ERROR", "message": rest["error"]}}

    await ws.send_json({"id": [1, 2], "action": "camera.status"})
    reply = (await receive_until(ws, is_reply([1, 2])))[-1]
    assert reply["ok"] is True and reply["data"]["exposure_seconds"] == 0.2
    await ws.close()
    await watcher.close()


async def test_capture_events_arrive_in_order_and_other_commands_are_answered_meanwhile(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "camera.set", "params": {"exposure_seconds": 1.6}})
    await receive_until(ws, is_reply(1))
    await ws.send_json({"id": 2, "action": "camera.capture"})
    await receive_until(ws, lambda m: m.get("event") == "capture_start")
    # The capture's reply is pending, yet the same socket answers other commands.
    await ws.send_json({"id": 3, "action": "camera.status"})
    status_reply = (await receive_until(ws, is_reply(3)))[-1]
    assert status_reply["data"]["capture_status"] == "Capturing"
    rest = await receive_until(ws, is_reply(2))
    events = [m["event"] for m in rest if m.get("topic") == "camera" and m["event"] != "status"]
    assert events[-1] == "capture_complete"
    progress = [m for m in rest if m.get("event") == "capture_progress"]
    assert len(progress) >= 2  # at least one a second over 1.6 s
    assert all(events[i] == "capture_progress" for i in range(len(events) - 1))
    values = [m["data"]["progress"] for m in progress]
    assert values == sorted(values) and all(0 <= v <= 100 for v in values)
    assert {"elapsed", "remaining", "progress"} <= set(progress[0]["data"])
    reply = rest[-1]
    assert reply["ok"] is True and reply["data"]["file"] == "light_0001.jpg"
    await ws.close()


async def test_cancel_over_the_websocket(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "camera.set", "params": {"exposure_seconds": 60}})
    await receive_until(ws, is_reply(1))
    await ws.send_json({"id": 2, "action": "camera.capture"})
    await receive_until(ws, lambda m: m.get("event") == "capture_start")
    await ws.send_json({"id": 3, "action": "camera.cancel"})
    seen = await receive_until(ws, is_reply(2))
    cancel_reply = next(m for m in seen if m.get("id") == 3)
    assert cancel_reply["data"] == {"cancelled": True}
    error = next(m for m in seen if m.get("event") == "capture_error")
    assert error["data"]["code"] == "CAPTURE_CANCELLED"
    assert seen[-1]["error"]["code"] == "CAPTURE_CANCELLED"
    await ws.close()


async def test_subscribe_limits_the_topics(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["mount"]}})
    reply = (await receive_until(ws, is_reply(1)))[-1]
    assert reply["data"] == {"topics": ["mount", "system"]}
    client.app[BUS].publish("camera", "status", {"n": 1})
    client.app[BUS].publish("mount", "status", {"n": 2})
    message = await ws.receive_json(timeout=5)
    assert (message["topic"], message["data"]) == ("mount", {"n": 2})
    await ws.send_json({"id": 2, "action": "subscribe", "params": {"topics": ["weather"]}})
    reply = (await receive_until(ws, is_reply(2)))[-1]
    assert reply["ok"] is False and "weather" in reply["error"]["message"]
    await ws.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "INVALID_REQUEST"),
        ("[1, 2, 3]", "INVALID_REQUEST"),
        ('{"id": 1}', "INVALID_REQUEST"),
        ('{"id": 1, "action": 5}', "INVALID_REQUEST"),
        ('{"id": 1, "action": "mount.explode"}', "INVALID_ACTION"),
        ('{"id": 1, "action": "camera.set", "params": [1]}', "VALIDATION_ERROR"),
        ('{"id": 1, "action": "camera.set", "params": {"iso": 1e308}}', "VALIDATION_ERROR"),
        ('{"id": 1, "action": "camera.status", "params": {"x": 1}}', "VALIDATION_ERROR"),
        pytest.param("[" * 20000 + "]" * 20000, "INVALID_REQUEST", id="deep-nesting"),
    ],
)
async def test_garbage_gets_an_error_reply_and_the_socket_lives_on(client, message, code):
    ws = await client.ws_connect("/ws")
    await ws.send_str(message)
    reply = (await receive_until(ws, lambda m: "ok" in m))[-1]
    assert reply["ok"] is False and reply["error"]["code"] == code
    await ws.send_json({"id": "after", "action": "camera.status"})
    assert (await receive_until(ws, is_reply("after")))[-1]["ok"] is True
    await ws.close()


async def test_binary_gets_an_error_and_oversize_closes_with_1009(client):
    ws = await client.ws_connect("/ws")
    await ws.send_bytes(b"\x00\x01")
    reply = (await receive_until(ws, lambda m: "ok" in m))[-1]
    assert reply["error"]["code"] == "INVALID_REQUEST"
    await ws.send_str(json.dumps({"id": 1, "action": "camera.status", "pad": "x" * 70000}))
    message = await ws.receive(timeout=5)
    while message.type == aiohttp.WSMsgType.TEXT:
        message = await ws.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert ws.close_code == 1009
    # The server is fine.
    assert (await client.get("/api/health")).status == 200


async def test_a_websocket_from_another_site_is_refused(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    ws = await client.ws_connect("/ws", headers={"Origin": f"http://{client.host}:{client.port}"})
    assert (await ws.receive_json(timeout=5))["event"] == "hello"
    await ws.close()


def _stalled_websocket(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


async def test_a_client_that_stops_reading_does_not_delay_the_others_and_is_closed(client):
    bus = client.app[BUS]
    stalled = _stalled_websocket(client.port)
    try:
        await wait_until(lambda: len(bus.subscribers) == 1)
        ws = await client.ws_connect("/ws")
        await receive_until(ws, lambda m: m.get("event") == "status")
        await wait_until(lambda: len(bus.subscribers) == 2)
        payload = {"blob": "x" * 4000}
        received = 0
        for batch in range(40):
            for i in range(100):
                bus.publish("system", "tick", {"n": batch * 100 + i, **payload})
            # the fast client reads each batch in full, in order, while the other sits stalled
            for i in range(100):
                message = await ws.receive_json(timeout=5)
                while message["event"] != "tick":  # the status of each topic, sent on connect
                    message = await ws.receive_json(timeout=5)
                assert message["data"]["n"] == batch * 100 + i
                received += 1
            if len(bus.subscribers) == 1:
                break
        assert len(bus.subscribers) == 1, "the stalled client was never dropped"
        assert received >= 100
        assert await asyncio.to_thread(was_reset, stalled), "the dropped client was not told"
        await ws.close()
    finally:
        stalled.close()


async def test_status_events_are_coalesced_for_a_slow_client(client):
    from wanda.events import Message, Subscriber

    sent: list[str] = []
    gate = asyncio.Event()

    async def slow_send(text: str) -> None:
        await gate.wait()
        sent.append(text)

    async def close(code, reason):
        sent.append(f"closed {code}")

    subscriber = Subscriber(slow_send, close, limit=10)
    writer = asyncio.create_task(subscriber.run())
    for n in range(50):
        subscriber.offer(Message(json.dumps({"n": n}), ("camera", "status")))
    subscriber.offer(Message("last", None))
    gate.set()
    await wait_until(lambda: "last" in sent)
    assert subscriber.closing is False and subscriber.coalesced > 0
    assert len(sent) < 20 and sent[-1] == "last"
    writer.cancel()


async def test_an_overflow_stops_a_send_stuck_on_the_client_even_as_its_deadline_falls():
    from wanda.events import Message, Subscriber

    closed: list[str] = []

    async def stuck_send(text: str) -> None:
        await asyncio.Event().wait()  # a client that takes nothing

    async def close(code, reason):
        closed.append(reason)

    loop = asyncio.get_running_loop()
    # An overflow while a send waits: the writer stops waiting at once (not after the 60 s).
    subscriber = Subscriber(stuck_send, close, limit=1, send_timeout=60)
    writer = asyncio.create_task(subscriber.run())
    subscriber.offer(Message("a", None))
    await wait_until(lambda: subscriber._sending is not None)
    subscriber.offer(Message("b", None))
    subscriber.offer(Message("c", None))  # over the limit
    await asyncio.wait_for(writer, 5)
    assert closed == ["too slow: messages were dropped"] and subscriber.too_slow

    # The overflow lands in the very turn the send's own deadline falls: no error for the
    # publisher, one close.
    closed.clear()
    subscriber = Subscriber(stuck_send, close, limit=1, send_timeout=0.2)
    writer = asyncio.create_task(subscriber.run())
    subscriber.offer(Message("a", None))
    await wait_until(lambda: subscriber._sending is not None)
    subscriber.offer(Message("b", None))
    errors: list[BaseException] = []

    def overflow() -> None:
        try:
            subscriber.offer(Message("c", None))
        except Exception as exc:  # what a publisher would get
            errors.append(exc)

    loop.call_at(subscriber._sending.when(), overflow)
    await asyncio.wait_for(writer, 5)
    assert errors == [] and len(closed) == 1 and closed[0].startswith("too slow")


@pytest.mark.slow  # a subprocess: the example script, three exposures
async def test_the_example_script_takes_three_frames_against_a_live_server(aiohttp_server, config):
    from wanda.app import create_app

    server = await aiohttp_server(create_app(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--url",
        f"http://127.0.0.1:{server.port}",
        "--exposure",
        "0.4",
        "--frames",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    output = stdout.decode()
    assert "camera set: exposure 0.4 s, ISO 800" in output
    assert output.count("saved light_") == 3 and "exposing:" in output
    assert sorted(p.name for p in config.captures.glob("*.jpg")) == [f"light_000{i}.jpg" for i in (1, 2, 3)]
    assert server.app[CONTROL].exposure is None
