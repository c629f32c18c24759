"""The Pi's clock over REST and the WebSocket: its time and sync state, and setting it from the
observer's device (wanda/clock.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wanda.clock import now, parse_unix_time
from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import CLOCK
from wanda.validate import json_object, known_fields

routes = web.RouteTableDef()


async def _status(app: web.Application) -> dict[str, Any]:
    state = await asyncio.to_thread(app[CLOCK].state)
    return {**state.as_dict(), **now()}  # the time last: the state may take a moment


async def _set(app: web.Application, body: Any) -> dict[str, Any]:
    known_fields(json_object(body), ["unix_time"])
    if "unix_time" not in body:
        parse_unix_time(None)  # the field's own message
    unix_time = parse_unix_time(body["unix_time"])
    state = await asyncio.to_thread(app[CLOCK].set, unix_time)
    return {**state.as_dict(), **now()}


@routes.get("/api/clock")
async def clock_status(request: web.Request) -> web.Response:
    return ok(await _status(request.app))


@routes.post("/api/clock")
async def clock_set(request: web.Request) -> web.Response:
    return ok(await _set(request.app, await read_json(request)), "the clock is set")


@action("clock.status")
async def _clock_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return await _status(app)


@action("clock.set")
async def _clock_set(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await _set(app, params)
