"""Where the telescope stands, over REST and the WebSocket (wanda/site.py): read it, or set it from
the observer's device (its location, with consent) or typed in."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import BUS, SITE

routes = web.RouteTableDef()


async def _set(app: web.Application, body: Any) -> dict[str, Any]:
    site = (await asyncio.to_thread(app[SITE].set, body)).as_dict()
    app[BUS].publish("system", "site", site)  # every open page shows the new place
    return site


@routes.get("/api/site")
async def site_status(request: web.Request) -> web.Response:
    return ok(request.app[SITE].current.as_dict())


@routes.post("/api/site")
async def site_set(request: web.Request) -> web.Response:
    return ok(await _set(request.app, await read_json(request)), "the site is set")


@action("site.status")
async def _site_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[SITE].current.as_dict()


@action("site.set")
async def _site_set(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await _set(app, params)
