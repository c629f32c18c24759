"""Live stacking over REST and the WebSocket (wanda/stacking.py): `POST /api/stack/start`,
`/api/stack/stop`, `/api/stack/reset`, `/api/stack/save`, `GET /api/stack`; topic `stack`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import CAMERA, CAPTURES, STACK
from wanda.storage.gallery import capture_url
from wanda.validate import choice, invalid, json_object, known_fields

routes = web.RouteTableDef()
SOURCES = ("preview",)
STACKS_FOLDER = "stacks"  # in the captures folder: the gallery shows the saved stacks


def start(app: web.Application, body: Any) -> dict[str, Any]:
    body = json_object(body if body is not None else {})
    known_fields(body, ["source"])
    source = body.get("source", "preview")
    if isinstance(source, dict):
        raise invalid(
            "source", 'stacking a session\'s frames is not there yet: stack the live view ({"source": "preview"})'
        )
    choice("source", source, SOURCES)
    return app[STACK].start()


@routes.get("/api/stack")
async def stack_state(request: web.Request) -> web.Response:
    return ok(request.app[STACK].state)


@routes.post("/api/stack/start")
async def stack_start(request: web.Request) -> web.Response:
    return ok(start(request.app, await read_json(request, required=False)), "stacking the live view")


@routes.post("/api/stack/stop")
async def stack_stop(request: web.Request) -> web.Response:
    known_fields(json_object(await read_json(request, required=False) or {}), [])
    return ok(request.app[STACK].stop(), "stacking stopped")


@routes.post("/api/stack/reset")
async def stack_reset(request: web.Request) -> web.Response:
    known_fields(json_object(await read_json(request, required=False) or {}), [])
    return ok(request.app[STACK].reset(), "the stack is cleared")


async def save(app: web.Application) -> dict[str, Any]:
    saved = await asyncio.to_thread(app[STACK].save, app[CAPTURES] / STACKS_FOLDER, app[CAMERA].backend.name)
    relative = saved.path.relative_to(app[CAPTURES]).as_posix()
    fits = saved.path.with_suffix(".fits").relative_to(app[CAPTURES]).as_posix()
    return {"file": relative, "url": capture_url(relative), "fits": fits, "fits_url": capture_url(fits)}


@routes.post("/api/stack/save")
async def stack_save(request: web.Request) -> web.Response:
    known_fields(json_object(await read_json(request, required=False) or {}), [])
    saved = await save(request.app)
    return ok(saved, f"saved {saved['file']}")


@action("stack.save")
async def _stack_save(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return await save(app)


@action("stack.status")
async def _stack_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[STACK].state


@action("stack.start")
async def _stack_start(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return start(app, params)


@action("stack.stop")
async def _stack_stop(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[STACK].stop()


@action("stack.reset")
async def _stack_reset(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[STACK].reset()
