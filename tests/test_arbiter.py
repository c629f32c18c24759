"""One owner of the camera: a capture and a session (or a second capture) never both expose.

Whoever loses is told at once who has the camera (409 CAPTURE_BUSY naming the holder), and a
session that got the camera keeps it until its last frame, so it never fails for a capture that
slipped in between its start and its first frame."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_until

from wanda.arbiter import CameraArbiter
from wanda.errors import ErrorCode, WandaError
from wanda.keys import CONTROL, SESSIONS

ROUNDS = 20


async def post(client, path: str, body: dict | None = None) -> tuple[int, dict]:
    response = await client.post(path, json=body if body is not None else {})
    return response.status, await response.json()


async def test_a_capture_and_a_session_start_at_the_same_moment_never_both_win(client):
    """The race the attacker found: the capture arriving 1-2 ms after the start made the session
    fail with 0 frames 11 times in 20. Every round here sends both at once, in both orders."""
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.01})).status == 200
    outcomes = []
    for round_number in range(ROUNDS):
        start = post(client, "/api/session/start", {"name": f"race{round_number}", "total_images": 2})
        capture = post(client, "/api/camera/capture")
        pair = (start, capture) if round_number % 2 else (capture, start)
        results = await asyncio.gather(*pair)
        (start_status, start_body), (capture_status, capture_body) = results if round_number % 2 else results[::-1]
        assert sorted((start_status, capture_status)) in ([200, 200], [200, 409]), (start_body, capture_body)
        if start_status == 409:
            assert start_body["code"] == "CAPTURE_BUSY" and "a capture" in start_body["error"]
            assert start_body["data"]["held_by"] == {"kind": "capture", "name": None}
            outcomes.append("capture first")
            continue
        if capture_status == 409:
            assert capture_body["code"] == "CAPTURE_BUSY"
            assert f"session 'race{round_number}'" in capture_body["error"]
            outcomes.append("session first")
        else:
            outcomes.append("capture done before the session took the camera")
        await wait_until(lambda: not client.app[SESSIONS].active, attempts=400)
        status = client.app[SESSIONS].status()
        assert (status["status"], status["captured_images"], status["error"]) == ("completed", 2, None)
    assert client.app[CONTROL].arbiter.holder is None  # released on every path
    assert "session first" in outcomes, outcomes  # the race was really run


async def test_the_session_holds_the_camera_between_its_frames_and_gives_it_back(client):
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.01})).status == 200
    status, body = await post(
        client, "/api/session/start", {"name": "slow", "total_images": 2, "total_time_hours": 0.01}
    )
    assert status == 200, body
    # Between its frames (18 s apart) nothing exposes, yet the camera is the session's.
    await wait_until(lambda: client.app[SESSIONS].run.captured == 1)
    status, body = await post(client, "/api/camera/capture")
    assert status == 409 and body["code"] == "CAPTURE_BUSY" and "session 'slow'" in body["error"]
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 7, "action": "camera.capture"})
    while (reply := await ws.receive_json(timeout=10)).get("id") != 7:
        pass
    assert reply["ok"] is False and reply["error"]["code"] == "CAPTURE_BUSY"
    await ws.close()
    assert (await post(client, "/api/session/stop"))[0] == 200
    assert client.app[CONTROL].arbiter.holder is None
    status, body = await post(client, "/api/camera/capture")
    assert status == 200, body


async def test_a_start_that_fails_gives_the_camera_back(make_client):
    client = await make_client(min_free_mb=2**40)  # a reserve no disk has: refused after the camera was taken
    status, body = await post(client, "/api/session/start", {"name": "huge", "total_images": 1})
    assert status == 409 and body["code"] == "INSUFFICIENT_SPACE"
    assert client.app[CONTROL].arbiter.holder is None
    assert (await post(client, "/api/camera/capture"))[0] == 200


def test_the_arbiter_hands_the_camera_to_one_holder_at_a_time():
    arbiter = CameraArbiter()
    lease = arbiter.acquire("session", "M42")
    with pytest.raises(WandaError) as refused:
        arbiter.acquire("capture")
    assert refused.value.code == ErrorCode.CAPTURE_BUSY and "session 'M42' is using it" in refused.value.message
    stale = lease
    lease.release()
    with arbiter.acquire("capture") as capture:
        assert arbiter.holder.kind == "capture" and capture.held
        stale.release()  # an old lease cannot free the camera from its new holder
        assert arbiter.holder is not None
    assert arbiter.holder is None


async def test_the_camera_is_free_as_soon_as_the_session_says_it_ended(client):
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.01})).status == 200
    ws = await client.ws_connect("/ws")
    status, body = await post(client, "/api/session/start", {"name": "short", "total_images": 2})
    assert status == 200, body
    while (await ws.receive_json(timeout=10)).get("event") != "session_complete":
        pass
    # Its last metadata may still be being written; the camera is free all the same.
    status, body = await post(client, "/api/camera/capture")
    assert status == 200, body
    await ws.close()


async def test_stopping_a_session_that_is_ending_never_cancels_the_next_capture(client):
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 30})).status == 200
    sessions, control = client.app[SESSIONS], client.app[CONTROL]
    status, body = await post(client, "/api/session/start", {"name": "ending", "total_images": 1})
    assert status == 200, body
    await wait_until(lambda: control.exposure is not None)
    held = sessions.run.writer._lock  # its last metadata write is held up, as on a slow USB stick
    held.acquire()
    try:
        assert (await post(client, "/api/session/stop"))[0] == 200
        assert sessions.active and sessions.status()["status"] == "stopped"  # ending, still writing
        capture = asyncio.create_task(post(client, "/api/camera/capture"))  # the camera is free
        await wait_until(lambda: control.exposure is not None)
        again = await post(client, "/api/session/stop")  # a second tap on Stop
        assert again[0] == 200 and again[1]["data"]["status"] == "stopped"
        assert control.exposure is not None and not capture.done()  # the capture goes on
    finally:
        held.release()
    assert control.cancel() == {"cancelled": True}
    status, body = await capture
    assert (status, body["code"]) == (409, "CAPTURE_CANCELLED")  # cancelled here, by its owner


async def test_the_capture_cancel_button_never_stops_a_session(client):
    """A Cancel meant for a capture that has just ended reached the session that took the camera
    after it: the session ended 'stopped' with 0 frames (15 rounds in 30)."""
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 30})).status == 200
    control, sessions = client.app[CONTROL], client.app[SESSIONS]
    assert (await post(client, "/api/session/start", {"name": "kept", "total_images": 1}))[0] == 200
    await wait_until(lambda: control.exposure is not None)
    status, body = await post(client, "/api/camera/capture/cancel")
    assert status == 200 and body["data"] == {"cancelled": False, "held_by": {"kind": "session", "name": "kept"}}
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 9, "action": "camera.cancel"})
    while (reply := await ws.receive_json(timeout=10)).get("id") != 9:
        pass
    assert reply["data"]["cancelled"] is False
    assert control.exposure is not None and sessions.status()["status"] == "running"
    await ws.close()
    assert (await post(client, "/api/session/stop"))[0] == 200  # its own Stop ends it
