"""Fuzzing a live server: schemathesis from the OpenAPI description (a short run here; a longer
one is `python bench/fuzz.py`), and a WebSocket fuzzer of our own. No answer is a 5xx, every 4xx
carries the envelope, bad WebSocket messages are answered or closed with a proper code, and the
server stays healthy for everybody else."""

from __future__ import annotations

import asyncio
import json
import os
import random

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from live_server import Wanda
from test_clock import FakeTimedatectl

from wanda.backends.sky import EXPOSURE_LIMITS, GAIN_LIMITS
from wanda.handlers.openapi import build_spec
from wanda.settings import Limits

# Examples per operation: a few for CI; bench/fuzz.py sets many more.
EXAMPLES = int(os.environ.get("WANDA_FUZZ_EXAMPLES", "12"))


def fuzzing_spec() -> dict:
    """The server's own description, with the long-running knobs narrowed: the fuzzer must not
    schedule a 230 s exposure, a session of 100 000 frames or a centring across the sky and then
    wait for it."""
    spec = build_spec(Limits(EXPOSURE_LIMITS, GAIN_LIMITS))
    paths = spec["paths"]
    settings_body = paths["/api/camera/settings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    settings_body["properties"]["exposure_seconds"]["maximum"] = 0.2
    start = paths["/api/session/start"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    start["properties"]["total_images"]["maximum"] = 3
    start["properties"]["exposure_seconds"]["maximum"] = 0.2
    start["properties"]["total_time_hours"] = {"type": "null"}
    centre = paths["/api/mount/center"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    centre["properties"]["max_move_deg"]["maximum"] = 0.5  # seconds of moving, not minutes
    centre["properties"]["rounds"]["maximum"] = 2
    for endless in ("/stream", "/video_feed", "/ws"):  # streams never end; the WebSocket has its own fuzzer
        del paths[endless]
    return spec


schema = schemathesis.openapi.from_dict(fuzzing_spec())


pytestmark = pytest.mark.slow  # a live server, fuzzed


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed")
    # POST /api/clock is fuzzed too: against a stand-in, never this machine's clock.
    fake = FakeTimedatectl(root / "bin")
    with Wanda(root, env={"PATH": f"{fake.path.parent}{os.pathsep}{os.environ['PATH']}"}) as wanda:
        yield wanda


def assert_enveloped(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert body["success"] is False and isinstance(body["code"], str) and isinstance(body["error"], str), body
        if body["code"] == "VALIDATION_ERROR":  # "field: what is wrong", the field named once
            field, _, reason = body["error"].partition(":")
            assert not reason.lstrip().startswith(field + " "), body


def tame(case) -> None:
    """Negative examples may leave out the narrowed knobs or break the narrowed (but not the real)
    limits: a centring is still kept to half a degree of moving."""
    if case.path == "/api/mount/center" and case.method == "POST" and isinstance(case.body, dict):
        move = case.body.get("max_move_deg")
        if move is None or (isinstance(move, int | float) and not isinstance(move, bool) and 0.5 < move <= 180):
            case.body["max_move_deg"] = 0.5


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_holds_to_its_description(case, server):
    tame(case)
    response = case.call(base_url=server.url, timeout=30)
    assert_enveloped(response)
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
    )


def test_the_server_is_healthy_after_the_fuzzing(server):
    health = server.get("/api/health")
    assert health["status"] == "ok" and health["camera"]["alive"]


def hostile_messages(rng: random.Random) -> list:
    """What a broken or hostile client might send."""
    deep = "[" * 5000 + "]" * 5000  # nesting deeper than the parser's recursion limit
    messages = [
        "not json",
        "{",
        "[]",
        "42",
        "null",
        '"text"',
        json.dumps({"action": 5}),
        json.dumps({"id": 1}),
        json.dumps({"id": 2, "action": "camera.set", "params": {"exposure_seconds": "long"}}),
        json.dumps({"id": 3, "action": "camera.set", "params": {"exposure_seconds": 1e308}}),
        json.dumps({"id": 4, "action": "camera.set", "params": {"iso": -1}}),
        json.dumps({"id": 5, "action": "camera.set", "params": []}),
        json.dumps({"id": 6, "action": "mount.track", "params": {"action": "spin"}}),
        json.dumps({"id": 7, "action": "session.start", "params": {"name": "../../etc", "total_images": 10**20}}),
        json.dumps({"id": 8, "action": "subscribe", "params": {"topics": ["nonsense"]}}),
        json.dumps({"id": 9, "action": "no.such.thing"}),
        json.dumps({"id": [1, {"a": None}], "action": "camera.status"}),
        deep,
        b"\x00\x01binary",
    ]
    for _ in range(40):
        value = rng.choice([None, True, -1, 2**70, 1.5e-300, "", "x" * 500, [], {}, {"k": [1, 2]}])
        name = rng.choice(
            ["camera.set", "camera.capture", "mount.track", "session.start", "subscribe", "camera.status"]
        )
        params = {rng.choice(["exposure_seconds", "iso", "action", "speed", "name", "topics", "z"]): value}
        messages.append(json.dumps({"id": rng.randint(0, 10**9), "action": name, "params": params}))
    return messages


async def test_the_websocket_answers_every_bad_message_and_others_are_unaffected(server):
    rng = random.Random(7)
    async with aiohttp.ClientSession() as session:
        bystander = await session.ws_connect(server.url + "/ws", headers=server.headers())
        fuzzer = await session.ws_connect(server.url + "/ws", headers=server.headers())
        messages = hostile_messages(rng)
        for message in messages:
            if isinstance(message, bytes):
                await fuzzer.send_bytes(message)
            else:
                await fuzzer.send_str(message)
        replies = 0
        while replies < len(messages):  # each message gets its reply (a capture's when it is saved)
            message = await fuzzer.receive(timeout=30)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            body = json.loads(message.data)
            if "ok" in body:
                replies += 1
                if not body["ok"]:
                    assert set(body["error"]) == {"code", "message"}, body
        # Oversize: closed with 1009, the others carry on.
        await fuzzer.send_str("x" * (65 * 1024))
        closed = await fuzzer.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert fuzzer.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        # A flood: a thousand commands at once, sent without reading. As documented, each is
        # answered (or refused with TOO_MANY_REQUESTS) once, until the client falls so far
        # behind that it is closed with 1013, or reset if it is not reading the close either (how
        # far it gets depends on how a busy machine schedules the two ends); never a crash.
        flooder = await session.ws_connect(server.url + "/ws", headers=server.headers())
        sent = 0
        try:
            for i in range(1000):
                await flooder.send_str(json.dumps({"id": i, "action": "camera.status"}))
                sent += 1
        except ConnectionResetError:
            pass  # the server let go of it while it was still sending: the reset, as documented
        answered = []
        while len(answered) < 1000:
            message = await flooder.receive(timeout=30)
            if message.type != aiohttp.WSMsgType.TEXT:
                assert flooder.close_code in (
                    aiohttp.WSCloseCode.TRY_AGAIN_LATER,
                    aiohttp.WSCloseCode.ABNORMAL_CLOSURE,
                ), (message, flooder.close_code, len(answered))
                break
            body = json.loads(message.data)
            if "ok" in body:
                assert body["ok"] is True or body["error"]["code"] == "TOO_MANY_REQUESTS", body
                answered.append(body["id"])
        assert len(set(answered)) == len(answered) and set(answered) <= set(range(1000))
        await flooder.close()
        await bystander.send_str(json.dumps({"id": "still here", "action": "camera.status"}))
        while True:
            body = json.loads((await bystander.receive(timeout=10)).data)
            if body.get("id") == "still here":
                assert body["ok"] is True
                break
        await bystander.close()
    await asyncio.to_thread(lambda: server.get("/api/health"))
