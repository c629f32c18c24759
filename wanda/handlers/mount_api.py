"""The mount's REST API (the original backend's paths and fields) and WebSocket commands."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import MOUNT

routes = web.RouteTableDef()


@routes.get("/api/mount/status")
async def mount_status(request: web.Request) -> web.Response:
    return ok(request.app[MOUNT].status())


@routes.post("/api/mount/tracking")
async def mount_tracking(request: web.Request) -> web.Response:
    status = await request.app[MOUNT].apply(await read_json(request))
    return ok(status, "tracking" if status["tracking"] else "tracking stopped")


@action("mount.status")
async def _mount_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[MOUNT].status()


@action("mount.track")
async def _mount_track(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await app[MOUNT].apply(params)
