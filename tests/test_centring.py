"""Centring a target (POST /api/mount/center) against the simulated sky and mount: the sky turns
with the mount's real steps, so the loop converges only if its solves, its sums and its moves
are right; and it stops with a reason on a failed solve, a mount fault, a stop, or a mount that
turns the wrong way, never running away."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from helpers import is_reply, receive_until, wait_until
from test_mount import FailingPins

from wanda.app import create_app
from wanda.centring import Target, describe, offsets
from wanda.keys import CAMERA, CENTRING, MOUNT


def truth_centre(client) -> tuple[float, float]:
    """Where the simulated camera points now (J2000): the truth, not a solve."""
    sky = client.app[CAMERA].backend
    sky.render_luminance(0.0001, 8)
    wcs = sky.truth().pointing.wcs
    ra, dec = wcs.pixel_to_sky(np.array([(1440 - 1) / 2]), np.array([(1080 - 1) / 2]))
    return float(ra[0]), float(dec[0])


def test_offsets_read_east_and_north_across_ra_zero():
    d_ra, east, north = offsets(Target("t", 0.5, 60.0), 359.5, 59.0)
    assert d_ra == pytest.approx(1.0) and east == pytest.approx(np.cos(np.radians(59.5)))
    assert north == pytest.approx(1.0)
    assert describe(-2.345, 0.25) == "2.3° west, 15.0' north"


async def test_centring_steps_the_ra_axis_onto_the_target_and_says_how_to_move_dec(client):
    ra, dec = truth_centre(client)
    target = {"ra": (ra - 0.6) % 360, "dec": dec + 1.2}  # 0.6° of RA west, 1.2° north
    response = await client.post("/api/mount/center", json={**target, "tolerance_arcmin": 2.0})
    body = await response.json()
    assert response.status == 200, body
    state = body["data"]
    assert state["centred"] is True and state["reason"] == "centred" and state["running"] is False
    assert state["tracking_started"] is True and client.app[MOUNT].tracking
    assert 2 <= len(state["rounds"]) <= 4
    # The first move took the axis most of the way: 0.6° of RA is 41 steps of 53".
    assert 38 <= abs(state["rounds"][0]["steps"]) <= 44 and state["rounds"][0]["steps"] < 0
    assert abs(state["rounds"][-1]["east_deg"]) * 60 <= 2.0
    # The truth agrees: the camera now points at the target's RA, 1.2° south of it.
    now_ra, now_dec = truth_centre(client)
    assert abs((target["ra"] - now_ra + 180) % 360 - 180) * np.cos(np.radians(dec)) * 60 < 2.5
    assert now_dec == pytest.approx(dec, abs=0.01)
    assert state["offset"]["north_deg"] == pytest.approx(1.2, abs=0.02)
    assert "1.2° north in declination by hand" in state["dec_by_hand"]
    latest = (await (await client.get("/api/mount/center")).json())["data"]
    assert latest["centred"] is True and latest["rounds"] == state["rounds"]


async def test_centring_by_name_over_the_websocket_reports_each_round(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["mount"]}})
    await receive_until(ws, is_reply(1))
    # The sim points at M42: NGC 1999 is 17' east of it (19 steps) and 1.3° south.
    await ws.send_json({"id": 2, "action": "mount.center", "params": {"target": "NGC 1999", "tolerance_arcmin": 3}})
    messages = await receive_until(ws, is_reply(2), limit=2000)
    reply = messages[-1]
    assert reply["ok"] is True, reply
    state = reply["data"]
    assert state["target"]["name"] == "NGC 1999" and state["centred"] is True
    assert state["rounds"][0]["steps"] > 0 and "south in declination" in state["dec_by_hand"]
    events = [m["event"] for m in messages if m.get("topic") == "mount"]
    assert events.count("center_progress") == sum(1 for r in state["rounds"] if r["steps"]) >= 1
    assert "move_start" in events and "move_done" in events and events[-1] == "center_done"
    await ws.close()


async def test_a_failed_solve_stops_centring_before_any_move(client):
    client.app[CAMERA].backend.transparency = 0.0  # clouds: not a star gets through
    ra, dec = truth_centre(client)
    response = await client.post("/api/mount/center", json={"ra": (ra + 1) % 360, "dec": dec})
    body = await response.json()
    assert (response.status, body["code"]) == (422, "CENTRE_FAILED")
    assert body["data"]["reason"] == "solve_failed" and "star" in body["error"]
    assert body["data"]["steps"] == 0 and client.app[MOUNT].status()["moving"] == 0


async def test_a_target_too_far_is_refused_without_moving(client):
    ra, dec = truth_centre(client)
    response = await client.post("/api/mount/center", json={"ra": (ra + 40) % 360, "dec": dec, "max_move_deg": 30})
    body = await response.json()
    assert (response.status, body["data"]["reason"]) == (422, "too_far")
    assert "closer by hand" in body["error"] and body["data"]["steps"] == 0


async def test_a_mount_turning_the_wrong_way_is_caught_after_one_move(client):
    """A mount whose tracking direction is configured the wrong way round: the first move doubles
    the offset instead of removing it, and centring stops rather than run away."""
    client.app[CENTRING].tracking_clockwise = not client.app[CENTRING].tracking_clockwise
    ra, dec = truth_centre(client)
    response = await client.post("/api/mount/center", json={"ra": (ra + 0.4) % 360, "dec": dec})
    body = await response.json()
    assert (response.status, body["data"]["reason"]) == (422, "not_converging"), body
    assert len(body["data"]["rounds"]) == 2 and "mount_clockwise" in body["error"]


async def test_a_mount_fault_during_the_move_stops_centring_with_the_coils_off(aiohttp_client, config):
    pins = FailingPins(clock=time.monotonic, fail_at=12)
    client = await aiohttp_client(create_app(config, pins=pins))
    ra, dec = truth_centre(client)
    response = await client.post("/api/mount/center", json={"ra": (ra + 1.0) % 360, "dec": dec})
    body = await response.json()
    assert (response.status, body["data"]["reason"]) == (422, "mount_error"), body
    assert "GPIO write failed" in body["error"] and not pins.coils_on


async def test_stop_ends_a_centring_under_way_and_one_runs_at_a_time(client):
    ra, dec = truth_centre(client)
    mount = client.app[MOUNT].mount
    far = client.post("/api/mount/center", json={"ra": (ra + 5) % 360, "dec": dec})  # 340 steps: 34 s
    running = asyncio.ensure_future(far)
    await wait_until(lambda: mount.status()["moving"] > 0, attempts=400)
    again = await client.post("/api/mount/center", json={"ra": ra, "dec": dec})
    assert (again.status, (await again.json())["code"]) == (409, "MOUNT_BUSY")
    stopped = (await (await client.delete("/api/mount/center")).json())["data"]
    assert stopped["stopped"] is True
    response = await running
    body = await response.json()
    assert (response.status, body["data"]["reason"]) == (422, "stopped")
    assert mount.status()["moving"] == 0 and mount.status()["tracking"]  # the move ended; tracking goes on


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "target"),
        ({"ra": 10}, "target"),
        ({"target": "M31", "ra": 10, "dec": 5}, "target"),
        ({"ra": 400, "dec": 5}, "ra"),
        ({"ra": 10, "dec": 5, "tolerance_arcmin": 0}, "tolerance_arcmin"),
        ({"ra": 10, "dec": 5, "rounds": 0}, "rounds"),
        ({"ra": 10, "dec": 5, "speed": 1}, "speed"),
    ],
)
async def test_bad_centring_requests_are_refused(client, body, field):
    response = await client.post("/api/mount/center", json=body)
    answer = await response.json()
    assert response.status == 400 and answer["error"].startswith(field), answer


async def test_an_unknown_target_name_is_a_404_with_suggestions(client):
    response = await client.post("/api/mount/center", json={"target": "M 999"})
    assert response.status == 404 and (await response.json())["code"] == "NOT_FOUND"


async def centring_under_way(client) -> asyncio.Future:
    """A centring 5° away (340 steps, half a minute), once its move has begun."""
    ra, dec = truth_centre(client)
    running = asyncio.ensure_future(client.post("/api/mount/center", json={"ra": (ra + 5) % 360, "dec": dec}))
    await wait_until(lambda: client.app[MOUNT].status()["moving"] > 0, attempts=400)
    return running


async def test_stopping_tracking_stops_a_centring_and_the_mount(client):
    running = await centring_under_way(client)
    stopped = await client.post("/api/mount/tracking", json={"action": "stop"})
    assert stopped.status == 200
    body = await (await running).json()
    assert body["data"]["reason"] == "stopped"
    status = client.app[MOUNT].status()
    assert not status["tracking"] and status["moving"] == 0 and not status["coils_on"]


async def test_no_session_starts_while_a_centring_moves_the_mount(client):
    running = await centring_under_way(client)
    for path in ("/api/session/start", "/api/session/resume"):
        refused = await client.post(path, json={"name": "during", "total_images": 1} if "start" in path else {})
        assert (refused.status, (await refused.json())["code"]) == (409, "MOUNT_BUSY")
    await client.delete("/api/mount/center")
    await running


async def test_a_centring_stopped_before_it_began_still_answers_over_the_websocket(client):
    ws = await client.ws_connect("/ws")
    ra, dec = truth_centre(client)
    await ws.send_json({"id": 1, "action": "mount.center", "params": {"ra": (ra + 1) % 360, "dec": dec}})
    await ws.send_json({"id": 2, "action": "mount.center_stop"})
    replies = {}
    while len(replies) < 2:
        message = await ws.receive_json(timeout=30)
        if "id" in message:
            replies[message["id"]] = message
    assert replies[2]["ok"] is True
    assert replies[1]["ok"] is False and replies[1]["error"]["code"] == "CENTRE_FAILED"
    state = (await (await client.get("/api/mount/center")).json())["data"]
    assert state["running"] is False and state["reason"] == "stopped"
    await ws.close()


async def test_a_non_string_target_is_named_in_the_error(client):
    response = await client.post("/api/mount/center", json={"target": 31})
    body = await response.json()
    assert response.status == 400 and body["error"].startswith("target: ")
