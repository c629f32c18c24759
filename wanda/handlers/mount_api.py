"""The mount's REST API (the original backend's paths and fields) and WebSocket commands, and
centring a target (wanda/centring.py): `POST /api/mount/center`, `GET` its state, `DELETE` to stop."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wanda.centring import DEFAULT_MAX_MOVE_DEG, DEFAULT_ROUNDS, DEFAULT_TOLERANCE_ARCMIN, Target
from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.objects_api import find
from wanda.handlers.ws import action, no_params
from wanda.keys import CENTRING, MOUNT, POLAR_ALIGN, SESSIONS
from wanda.validate import invalid, json_object, known_fields, number, whole, within

routes = web.RouteTableDef()
CENTRE_FIELDS = ("target", "ra", "dec", "tolerance_arcmin", "rounds", "max_move_deg")


@routes.get("/api/mount/status")
async def mount_status(request: web.Request) -> web.Response:
    return ok(request.app[MOUNT].status())


async def track(app: web.Application, body: Any) -> dict[str, Any]:
    """The original tracking command; stopping also stops a centring (the observer wants the mount
    still, not a move after the next solve)."""
    if isinstance(body, dict) and body.get("action") == "stop":
        await app[CENTRING].stop()
    return await app[MOUNT].apply(body)


@routes.post("/api/mount/tracking")
async def mount_tracking(request: web.Request) -> web.Response:
    status = await track(request.app, await read_json(request))
    return ok(status, "tracking" if status["tracking"] else "tracking stopped")


async def _target(app: web.Application, body: dict[str, Any]) -> Target:
    """``target`` (a name the objects API knows) or ``ra`` and ``dec`` (J2000 degrees)."""
    if "target" in body:
        if "ra" in body or "dec" in body:
            raise invalid("target", "give a name or ra and dec, not both")
        if not isinstance(body["target"], str):
            raise invalid("target", "must be a name such as M31, NGC 7000 or Vega")
        found = (await find(app, body["target"]))["object"]
        return Target(found["name"], found["ra"], found["dec"])
    if "ra" not in body or "dec" not in body:
        raise invalid("target", "is required: a name (M31, NGC 7000) or ra and dec in degrees (J2000)")
    ra = within("ra", number("ra", body["ra"], "degrees (J2000)"), 0.0, 360.0, "°")
    dec = within("dec", number("dec", body["dec"], "degrees (J2000)"), -90.0, 90.0, "°")
    return Target(f"RA {ra:.4f}° Dec {dec:+.4f}°", ra, dec)


async def centre(app: web.Application, body: Any) -> dict[str, Any]:
    body = json_object(body)
    known_fields(body, CENTRE_FIELDS)

    def bounded(field: str, default: float, what: str, low: float, high: float, unit: str) -> float:
        return within(field, number(field, body.get(field, default), what), low, high, unit)

    tolerance = bounded("tolerance_arcmin", DEFAULT_TOLERANCE_ARCMIN, "arcminutes", 0.1, 600.0, "'")
    rounds = int(within("rounds", whole("rounds", body.get("rounds", DEFAULT_ROUNDS)), 1, 20))
    max_move = bounded("max_move_deg", DEFAULT_MAX_MOVE_DEG, "degrees", 0.1, 180.0, "°")
    target = await _target(app, body)
    if app[SESSIONS].active:
        raise WandaError(ErrorCode.MOUNT_BUSY, "a capture session is running: moving the mount would spoil its frames")
    if app[POLAR_ALIGN].running:
        raise WandaError(ErrorCode.MOUNT_BUSY, "polar alignment is running: centre a target when it is done")
    state = await app[CENTRING].run(target, tolerance_arcmin=tolerance, rounds=rounds, max_move_deg=max_move)
    if not state["centred"]:
        raise WandaError(ErrorCode.CENTRE_FAILED, f"not centred: {state['message']}", data=state)
    return state


async def stop_centring(app: web.Application) -> dict[str, Any]:
    centring = app[CENTRING]
    was_running = centring.running
    await centring.stop()
    return {"stopped": was_running, "state": centring.state}


@routes.post("/api/mount/center")
async def mount_center(request: web.Request) -> web.Response:
    state = await centre(request.app, await read_json(request))
    return ok(state, state["message"])


@routes.get("/api/mount/center")
async def mount_center_state(request: web.Request) -> web.Response:
    state = request.app[CENTRING].state
    return ok(state if state is not None else {"running": False, "centred": None})  # none asked yet


@routes.delete("/api/mount/center")
async def mount_center_stop(request: web.Request) -> web.Response:
    return ok(await stop_centring(request.app))


@action("mount.status")
async def _mount_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[MOUNT].status()


@action("mount.track")
async def _mount_track(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await track(app, params)


@action("mount.center")
async def _mount_center(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await centre(app, params)


@action("mount.center_stop")
async def _mount_center_stop(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return await stop_centring(app)
