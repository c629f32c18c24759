"""Live stacking over REST and the WebSocket (wanda/stacking.py): `POST /api/stack/start`,
`/api/stack/stop`, `/api/stack/reset`, `GET /api/stack`; topic `stack`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import STACK
from wanda.validate import choice, invalid, json_object, known_fields

routes = web.RouteTableDef()
SOURCES = ("preview",)


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
