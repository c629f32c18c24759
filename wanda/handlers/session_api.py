"""Capture sessions: the original backend's /api/session/* contract, /api/sessions, WebSocket commands."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import CAPTURES, CENTRING, POLAR_ALIGN, SESSIONS
from wanda.sessions.form import load_session_config, parse_session_config, save_session_config

routes = web.RouteTableDef()


@routes.get("/api/session/status")
async def session_status(request: web.Request) -> web.Response:
    return ok(request.app[SESSIONS].status())


def _mount_free(app: web.Application) -> None:
    """A session's frames need a still mount: none starts while a centring moves it."""
    if app[CENTRING].running:
        raise WandaError(ErrorCode.MOUNT_BUSY, "the mount is centring a target: start the session when it is done")
    if app[POLAR_ALIGN].running:
        raise WandaError(ErrorCode.MOUNT_BUSY, "polar alignment is running: start the session when it is done")


@routes.post("/api/session/start")
async def session_start(request: web.Request) -> web.Response:
    _mount_free(request.app)
    status = await request.app[SESSIONS].start(await read_json(request))
    return ok({"session_status": status, **status}, f"session {status['folder']} started")


@routes.post("/api/session/stop")
async def session_stop(request: web.Request) -> web.Response:
    status = await request.app[SESSIONS].stop()
    return ok({"session_status": status, **status}, f"session {status['folder']} {status['status']}")


@routes.post("/api/session/resume")
async def session_resume(request: web.Request) -> web.Response:
    _mount_free(request.app)
    status = await request.app[SESSIONS].resume(await read_json(request, required=False))
    return ok({"session_status": status, **status}, f"session {status['folder']} resumed")


@routes.get("/api/sessions")
async def sessions_list(request: web.Request) -> web.Response:
    return ok({"sessions": await request.app[SESSIONS].list_sessions()})


@routes.get("/api/session/config")
async def session_config(request: web.Request) -> web.Response:
    root = request.app[CAPTURES]
    return ok(await asyncio.to_thread(load_session_config, root))


@routes.post("/api/session/config")
async def session_config_save(request: web.Request) -> web.Response:
    form = parse_session_config(await read_json(request))
    await asyncio.to_thread(save_session_config, request.app[CAPTURES], form)
    return ok(form, "session form saved")


@action("session.status")
async def _session_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[SESSIONS].status()


@action("session.start")
async def _session_start(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    _mount_free(app)
    return await app[SESSIONS].start(params)


@action("session.stop")
async def _session_stop(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return await app[SESSIONS].stop()


@action("session.resume")
async def _session_resume(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    _mount_free(app)
    return await app[SESSIONS].resume(params)
