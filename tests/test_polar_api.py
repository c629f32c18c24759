"""The polar alignment assistant end to end (POST/GET /api/polar-align, the `polar_align` topic)
against the simulated mount's real axis: the error it measures is the simulator's truth, the
observer who turns the knobs as it says ends aligned, and it says why when it cannot (no site,
clouds, a rotation too small, a cancel)."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import is_reply, receive_until, wait_until

from wanda.astro.sidereal import SIDEREAL_ARCSEC_PER_S
from wanda.keys import CAMERA, CONFIG, MOUNT, POLAR_ALIGN, SIM_MOUNT

# A site, a pointing high in the north-east of it, and a mount set up 40' high and 25' west.
MISALIGNED = {
    "latitude": 48.0,
    "longitude": 11.0,
    "sim_ra": "40",
    "sim_dec": 55.0,
    "sim_polar_error_alt": 40.0,
    "sim_polar_error_az": -25.0,
    "mount": "sim",
}
FAST_STEPS = {"mount_step_interval": 10.0}  # 150" a step: 3 degrees in 7 s at 10 steps a second
EXPOSURE_S = 0.5


async def polar_alignment_exposure(client) -> None:
    """Half-second frames at gain 2, as an observer sets the camera for polar alignment: stars
    centred to a tenth of a pixel (at 1/30 s, a third)."""
    response = await client.post("/api/camera/settings", json={"exposure_seconds": EXPOSURE_S, "gain": 2})
    assert response.status == 200


@pytest.fixture
async def aligning(make_client):
    client = await make_client(**MISALIGNED)
    await polar_alignment_exposure(client)
    return client


async def state_of(client) -> dict:
    body = await (await client.get("/api/polar-align")).json()
    return body["data"]


async def wait_for_phase(client, *phases: str, timeout: float = 60.0) -> dict:
    await wait_until(lambda: client.app[POLAR_ALIGN].state["phase"] in phases, attempts=int(timeout / 0.05))
    return await state_of(client)


async def turn_by_hand(client, degrees: float, seconds: float = 1.0) -> dict:
    response = await client.post("/api/sim/mount", json={"ra_by_hand_deg": degrees, "seconds": seconds})
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def follow_the_knobs(client, state: dict) -> dict:
    """The observer turns each knob as far and as the panel says (the altitude down or up, the
    azimuth west or east), and waits for an error from a frame exposed after the turn."""
    knobs = state["knobs"]
    alt = knobs["altitude"]["arcmin"] * (1 if knobs["altitude"]["direction"] == "up" else -1)
    az = knobs["azimuth"]["arcmin"] * (1 if knobs["azimuth"]["direction"] == "east" else -1)
    turned_at = time.time()
    response = await client.post("/api/sim/mount", json={"alt_knob_arcmin": alt, "az_knob_arcmin": az})
    assert response.status == 200

    def seen_since() -> bool:
        now = client.app[POLAR_ALIGN].state
        return not now["running"] or now["frame_time"] - EXPOSURE_S > turned_at

    await wait_until(seen_since, attempts=600)
    return await state_of(client)


def tracking_deg(client, moved_steps: int = 0) -> float:
    """How far the mount's own steps (all but a move's ``moved_steps``) turned the RA axis."""
    steps = client.app[MOUNT].status()["steps"] - moved_steps
    return steps * client.app[CONFIG].mount_step_interval * SIDEREAL_ARCSEC_PER_S / 3600


def not_running(client) -> bool:
    return not client.app[POLAR_ALIGN].state["running"]


async def test_by_hand_the_assistant_measures_the_truth_and_the_observer_follows_it_to_done(aligning):
    client = aligning
    response = await client.post("/api/polar-align", json={"action": "start", "mode": "hand", "rotate_deg": 15})
    body = await response.json()
    assert response.status == 200, body
    assert body["data"]["running"] is True and body["data"]["step"] == 1 and body["data"]["advice"] is None
    state = await wait_for_phase(client, "waiting_for_hand")
    assert "release the RA clutch" in state["message"]
    await turn_by_hand(client, -15.0)  # the axis turned east by hand, against the sky
    state = await wait_for_phase(client, "adjusting", "failed")
    assert state["phase"] == "adjusting", state
    # 15° by hand against the sky, less what tracking turned the other way meanwhile.
    assert abs(state["turned_deg"] - 15.0) <= tracking_deg(client) + 0.05
    truth = client.app[SIM_MOUNT].polar_truth()
    measured = state["measured"]
    assert measured["alt_error_arcmin"] == pytest.approx(truth.alt_arcmin, abs=1.0)
    assert measured["az_error_arcmin"] == pytest.approx(truth.az_arcmin, abs=1.0)
    assert measured["knobs"]["altitude"]["direction"] == "down"
    assert (measured["knobs"]["azimuth"]["direction"], measured["knobs"]["azimuth"]["side"]) == ("east", "right")
    overlay = state["overlay"]
    assert (overlay["width"], overlay["height"]) == (1440, 1080) and overlay["radius_px"] > 0
    for _ in range(5):
        if state["phase"] == "done":
            break
        state = await follow_the_knobs(client, state)
        truth = client.app[SIM_MOUNT].polar_truth()
        if state["phase"] != "done":
            # Each update tells the truth of the mount as the knobs left it.
            assert state["alt_error_arcmin"] == pytest.approx(truth.alt_arcmin, abs=1.0)
            assert state["az_error_arcmin"] == pytest.approx(truth.az_arcmin, abs=1.0)
    state = await wait_for_phase(client, "done", "failed")
    assert state["done"] is True and state["reason"] == "aligned", state
    assert client.app[SIM_MOUNT].polar_truth().total_arcmin < 1.0
    assert state["total_error_arcmin"] <= 1.0


async def test_by_the_stepper_over_the_websocket_each_step_is_published(make_client):
    client = await make_client(**MISALIGNED, **FAST_STEPS)
    await polar_alignment_exposure(client)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["polar_align", "mount"]}})
    await receive_until(ws, is_reply(1))
    await ws.send_json({"id": 2, "action": "polar_align", "params": {"action": "start", "rotate_deg": 3}})
    messages = await receive_until(ws, is_reply(2))
    assert messages[-1]["ok"] is True and messages[-1]["data"]["options"]["mode"] == "stepper"

    def measured(message) -> bool:
        return message.get("topic") == "polar_align" and (message["data"].get("phase") in ("adjusting", "failed"))

    messages = await receive_until(ws, measured, limit=5000)
    state = messages[-1]["data"]
    assert state["phase"] == "adjusting", state
    events = [m["event"] for m in messages if m.get("topic") == "polar_align"]
    assert "align_progress" in events
    mount_events = [m["event"] for m in messages if m.get("topic") == "mount"]
    assert "move_start" in mount_events and "move_done" in mount_events
    # 72 steps west, with tracking's own the same way meanwhile.
    assert state["rotation_steps"] == 72
    assert 3.0 - 0.05 <= state["turned_deg"] <= 3.0 + tracking_deg(client, moved_steps=72) + 0.05
    truth = client.app[SIM_MOUNT].polar_truth()
    # Three degrees of turn: the axis to a couple of arcminutes.
    assert state["alt_error_arcmin"] == pytest.approx(truth.alt_arcmin, abs=2.5)
    assert state["az_error_arcmin"] == pytest.approx(truth.az_arcmin, abs=2.5)
    await ws.send_json({"id": 3, "action": "polar_align", "params": {"action": "cancel"}})
    reply = (await receive_until(ws, is_reply(3)))[-1]
    assert reply["ok"] is True and reply["data"]["cancelled"] is True
    assert reply["data"]["state"]["reason"] == "cancelled" and reply["data"]["state"]["running"] is False
    await ws.close()


async def test_a_short_exposure_gets_advice(make_client):
    client = await make_client(**MISALIGNED)  # the live view's 1/30 s
    state = (await (await client.post("/api/polar-align", json={"action": "start", "mode": "hand"})).json())["data"]
    assert "0.5 s or more" in state["advice"]
    await client.post("/api/polar-align", json={"action": "cancel"})


async def test_without_a_site_it_says_so_before_anything_moves(make_client):
    client = await make_client(mount="sim")
    response = await client.post("/api/polar-align", json={"action": "start"})
    body = await response.json()
    assert (response.status, body["code"]) == (409, "NO_SITE")
    assert "needs the site" in body["error"] and client.app[MOUNT].status()["steps"] == 0
    assert (await state_of(client)) == {"running": False, "phase": None}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "begin"}, "action: must be start or cancel"),
        ({"action": "start", "rotate_deg": 1}, "rotate_deg"),
        ({"action": "start", "mode": "magic"}, "mode"),
        ({"action": "start", "limit_arcmin": 0}, "limit_arcmin"),
        ({"action": "start", "speed": 3}, "speed"),
    ],
)
async def test_bad_options_get_a_clear_error(aligning, body, message):
    response = await aligning.post("/api/polar-align", json=body)
    reply = await response.json()
    assert response.status == 400 and message in reply["error"], reply


async def test_clouds_end_it_with_a_plain_reason(aligning):
    aligning.app[CAMERA].backend.transparency = 0.0  # not a star gets through
    await aligning.post("/api/polar-align", json={"action": "start"})
    state = await wait_for_phase(aligning, "failed", "done")
    assert state["reason"] in ("solve_failed", "no_frame"), state
    assert state["message"].startswith("the first solve failed") and "clouds" in state["message"]
    assert aligning.app[MOUNT].status()["moving"] == 0


async def test_a_slipping_clutch_is_a_rotation_too_small_to_measure(make_client):
    client = await make_client(**MISALIGNED, **FAST_STEPS)
    await client.post("/api/sim/mount", json={"clutch": "released"})
    await client.post("/api/polar-align", json={"action": "start", "rotate_deg": 3})
    state = await wait_for_phase(client, "failed", "done", "adjusting", timeout=120)
    assert state["reason"] == "rotation_too_small", state
    assert "is the RA clutch locked?" in state["message"] and state["turned_deg"] < 0.5


async def test_a_hand_turn_that_never_comes_runs_out_of_wait(aligning):
    await aligning.post("/api/polar-align", json={"action": "start", "mode": "hand", "hand_wait_s": 5})
    await wait_for_phase(aligning, "waiting_for_hand")
    await turn_by_hand(aligning, 2.0, seconds=0)  # a little, and no more
    state = await wait_for_phase(aligning, "failed", timeout=60)
    assert state["reason"] == "rotation_too_small" and "before the wait ran out" in state["message"]
    assert state["turned_deg"] == pytest.approx(2.0, abs=0.2)


async def test_one_routine_at_a_time_and_the_mount_is_kept_for_it(aligning):
    await aligning.post("/api/polar-align", json={"action": "start", "mode": "hand"})
    again = await aligning.post("/api/polar-align", json={"action": "start"})
    assert (again.status, (await again.json())["code"]) == (409, "MOUNT_BUSY")
    centre = await aligning.post("/api/mount/center", json={"target": "M31"})
    assert (centre.status, (await centre.json())["code"]) == (409, "MOUNT_BUSY")
    session = await aligning.post("/api/session/start", json={"name": "x", "count": 2, "exposure": 1})
    assert (session.status, (await session.json())["code"]) == (409, "MOUNT_BUSY")
    cancelled = await (await aligning.post("/api/polar-align", json={"action": "cancel"})).json()
    assert cancelled["data"]["cancelled"] is True
    assert (await state_of(aligning))["phase"] == "failed"


async def test_the_simulated_mount_controls_exist_only_with_the_simulated_axis(make_client, aligning):
    plain = await make_client()  # no site: no simulated axis
    response = await plain.get("/api/sim/mount")
    assert response.status == 404 and "no simulated mount here" in (await response.json())["error"]
    state = (await (await aligning.get("/api/sim/mount")).json())["data"]
    assert state["polar_error"]["alt_error_arcmin"] == pytest.approx(40.0)
    assert state["clutch_locked"] is True
    turned = (await (await aligning.post("/api/sim/mount", json={"alt_knob_arcmin": -40.0})).json())["data"]
    assert turned["polar_error"]["alt_error_arcmin"] == pytest.approx(0.0, abs=0.1)
    bad = await aligning.post("/api/sim/mount", json={"clutch": "loose"})
    assert bad.status == 400


async def test_shutting_down_mid_routine_cancels_it(aligning):
    await aligning.post("/api/polar-align", json={"action": "start", "mode": "hand"})
    assistant = aligning.app[POLAR_ALIGN]
    await aligning.app.shutdown()
    await aligning.app.cleanup()
    assert assistant.state["reason"] == "cancelled" and not assistant.running
    await asyncio.sleep(0)
