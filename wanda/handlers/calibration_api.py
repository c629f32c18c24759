"""Master calibration frames over REST and the WebSocket (wanda/calibration.py):
`GET /api/calibration`, `POST /api/calibration` (build one from a session), `DELETE
/api/calibration/{name}`; topic `calibration` (a build's progress and its end)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from wanda.calibration import METHODS
from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import BUS, CALIBRATION, CAPTURES
from wanda.storage import gallery
from wanda.validate import choice, invalid, json_object, known_fields

routes = web.RouteTableDef()


def listing(app: web.Application) -> dict[str, Any]:
    return {"masters": [asdict(m) for m in app[CALIBRATION].masters()]}


async def build(app: web.Application, body: Any) -> dict[str, Any]:
    body = json_object(body)
    known_fields(body, ["session", "method"])
    session = body.get("session")
    if not isinstance(session, str) or not session:
        raise invalid("session", "must name a session folder of darks, flats or bias frames (FITS)")
    method = choice("method", body.get("method", "median"), METHODS)
    folder = await asyncio.to_thread(gallery.resolve_inside, app[CAPTURES], session, kind="dir")
    loop = asyncio.get_running_loop()
    bus = app[BUS]

    def progress(rows: int, total: int) -> None:  # on the building thread
        state = {"session": session, "rows_done": rows, "rows": total}
        loop.call_soon_threadsafe(bus.publish, "calibration", "calibration_progress", state)

    master = await asyncio.to_thread(app[CALIBRATION].build, folder, method, progress)
    result = asdict(master)
    bus.publish("calibration", "calibration_done", result)
    return result


@routes.get("/api/calibration")
async def calibration(request: web.Request) -> web.Response:
    return ok(listing(request.app))


@routes.post("/api/calibration")
async def calibration_build(request: web.Request) -> web.Response:
    master = await build(request.app, await read_json(request))
    return ok(master, f"built {master['name']} from {master['frames']} frames")


@routes.delete("/api/calibration/{name}")
async def calibration_delete(request: web.Request) -> web.Response:
    removed = await asyncio.to_thread(request.app[CALIBRATION].delete, request.match_info["name"])
    return ok(asdict(removed), f"deleted {removed.name}")


@action("calibration.list")
async def _calibration_list(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return listing(app)


@action("calibration.build")
async def _calibration_build(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await build(app, params)


@action("calibration.delete")
async def _calibration_delete(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    known_fields(params, ["name"])
    name = params.get("name")
    if not isinstance(name, str):
        raise invalid("name", "must be a master's name, as GET /api/calibration lists them")
    return asdict(await asyncio.to_thread(app[CALIBRATION].delete, name))
