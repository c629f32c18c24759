"""Polar alignment over REST and the WebSocket (wanda/polar_align.py): `POST /api/polar-align`
with ``{"action": "start", ...options}`` or ``{"action": "cancel"}``, `GET /api/polar-align` for
its state, the `polar_align` topic for its progress; and the simulated mount's own controls (`GET`
and `POST /api/sim/mount`: the knobs, a turn of the RA axis by hand, the clutch), which exist only
when the simulated sky follows the simulated mount, so that tests, benchmarks and the browser can
play the observer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action
from wanda.keys import CENTRING, POLAR_ALIGN, SESSIONS, SIM_MOUNT
from wanda.polar_align import Options
from wanda.validate import invalid, json_object, known_fields, number, within

routes = web.RouteTableDef()
HAND_TURN_PIECES_PER_S = 10  # a turn by hand is spread over its seconds in this many pieces a second
MAX_HAND_TURN_S = 10.0
KNOB_TURN_ARCMIN = 600.0  # the most a knob is turned at once
HAND_TURN_DEG = 90.0  # the most the RA axis is turned by hand at once


async def polar_align(app: web.Application, body: Any) -> dict[str, Any]:
    body = json_object(body)
    what = body.get("action")
    if what == "cancel":
        known_fields(body, ["action"])
        return await app[POLAR_ALIGN].cancel()
    if what != "start":
        raise WandaError(ErrorCode.INVALID_ACTION, f"action: must be start or cancel, got {what!r}")
    options = Options.parse(body)
    if app[SESSIONS].active:
        raise WandaError(ErrorCode.MOUNT_BUSY, "a capture session is running: polar alignment would spoil its frames")
    if app[CENTRING].running:
        raise WandaError(ErrorCode.MOUNT_BUSY, "the mount is centring a target: align when it is done")
    return app[POLAR_ALIGN].start(options)


@routes.post("/api/polar-align")
async def polar_align_command(request: web.Request) -> web.Response:
    state = await polar_align(request.app, await read_json(request))
    return ok(state, state["message"] if "message" in state else "polar alignment cancelled")


@routes.get("/api/polar-align")
async def polar_align_state(request: web.Request) -> web.Response:
    state = request.app[POLAR_ALIGN].state
    return ok(state if state is not None else {"running": False, "phase": None})  # none asked yet


@action("polar_align")
async def _polar_align(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await polar_align(app, params)


# -- the simulated mount ----------------------------------------------------------------------------


def _simulated(app: web.Application):
    if SIM_MOUNT not in app:
        raise WandaError(
            ErrorCode.NOT_FOUND,
            "no simulated mount here: its controls exist only with the simulated sky (the catalogue's, with "
            "the site set) following the simulated mount",
        )
    return app[SIM_MOUNT]


@routes.get("/api/sim/mount")
async def sim_mount_state(request: web.Request) -> web.Response:
    sky = _simulated(request.app)
    return ok(sky.mount_state())


@routes.post("/api/sim/mount")
async def sim_mount_command(request: web.Request) -> web.Response:
    """``alt_knob_arcmin``, ``az_knob_arcmin``: turn the knobs (the axis up or east, on the sky);
    ``ra_by_hand_deg`` over ``seconds``: turn the RA axis by hand (west, with the sky, positive);
    ``clutch``: "locked" or "released" (released, the motor's steps do not turn the axis)."""
    sky = _simulated(request.app)
    body = json_object(await read_json(request))
    known_fields(body, ["alt_knob_arcmin", "az_knob_arcmin", "ra_by_hand_deg", "seconds", "clutch"])

    def amount(field: str, limit: float) -> float:
        return within(field, number(field, body.get(field, 0.0)), -limit, limit)

    alt, az = amount("alt_knob_arcmin", KNOB_TURN_ARCMIN), amount("az_knob_arcmin", KNOB_TURN_ARCMIN)
    by_hand = amount("ra_by_hand_deg", HAND_TURN_DEG)
    seconds = within("seconds", number("seconds", body.get("seconds", 2.0)), 0.0, MAX_HAND_TURN_S, " s")
    if "clutch" in body:
        if body["clutch"] not in ("locked", "released"):
            raise invalid("clutch", "must be locked or released")
        sky.set_clutch(body["clutch"] == "locked")
    if alt or az:
        sky.turn_knobs(alt, az)
    if by_hand:
        pieces = max(1, round(seconds * HAND_TURN_PIECES_PER_S))
        for piece in range(pieces):
            sky.turn_ra_by_hand(by_hand / pieces)
            if piece < pieces - 1:
                await asyncio.sleep(seconds / pieces)
    return ok(sky.mount_state())
