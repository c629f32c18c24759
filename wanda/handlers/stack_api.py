"""Live stacking of the preview or a session over REST and the WebSocket (wanda/stacking.py):
`POST /api/stack/start`, `/api/stack/stop`, `/api/stack/reset`, `/api/stack/save`, `GET
/api/stack`; topic `stack`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import CAMERA, CAPTURES, SESSIONS, STACK
from wanda.stacking import SessionFrames, saved_frames
from wanda.storage.gallery import capture_url
from wanda.validate import choice, invalid, json_object, known_fields

routes = web.RouteTableDef()
SOURCES = ("preview", "session")
STACKS_FOLDER = "stacks"  # in the captures folder: the gallery shows the saved stacks


async def start(app: web.Application, body: Any) -> dict[str, Any]:
    """``{"source": "preview"}`` (the default), or ``{"source": "session"}`` for the running
    session's frames, ``{"source": "session", "session": "<folder>"}`` for a named one's."""
    body = json_object(body if body is not None else {})
    known_fields(body, ["source", "session"])
    source = choice("source", body.get("source", "preview"), SOURCES)
    name = body.get("session")
    if source == "preview":
        if name is not None:
            raise invalid("session", 'is for {"source": "session"}')
        return app[STACK].start()
    if name is not None and not isinstance(name, str):
        raise invalid("session", "must be a session's folder name")
    session = await session_frames(app, name)
    if not session.frames and not session.running:
        raise WandaError(ErrorCode.NOT_FOUND, f"session {session.folder.name!r} has no frames to stack")
    return app[STACK].start(session)


async def session_frames(app: web.Application, name: str | None) -> SessionFrames:
    """The frames of the session in folder ``name`` (the running one's when None) as they stand."""
    folder, records, running = await app[SESSIONS].frames(name)
    return SessionFrames(folder, saved_frames(folder, records), running)


async def reset(app: web.Application) -> dict[str, Any]:
    """Clear the stack; a session's stack starts over with the session's frames."""
    stack, session = app[STACK], None
    if stack.session_folder is not None:
        try:
            session = await session_frames(app, stack.session_folder.name)
        except WandaError:  # its folder is gone: nothing to stack again
            session = None
    return stack.reset(session)


def started_message(state: dict[str, Any]) -> str:
    if state["source"] == "session":
        return f"stacking session {state['session']} ({state['waiting']} frames waiting)"
    return "stacking the live view"


@routes.get("/api/stack")
async def stack_state(request: web.Request) -> web.Response:
    return ok(request.app[STACK].state)


@routes.post("/api/stack/start")
async def stack_start(request: web.Request) -> web.Response:
    state = await start(request.app, await read_json(request, required=False))
    return ok(state, started_message(state))


@routes.post("/api/stack/stop")
async def stack_stop(request: web.Request) -> web.Response:
    known_fields(json_object(await read_json(request, required=False) or {}), [])
    return ok(request.app[STACK].stop(), "stacking stopped")


@routes.post("/api/stack/reset")
async def stack_reset(request: web.Request) -> web.Response:
    known_fields(json_object(await read_json(request, required=False) or {}), [])
    return ok(await reset(request.app), "the stack is cleared")


async def save(app: web.Application) -> dict[str, Any]:
    saved = await app[STACK].save(app[CAPTURES] / STACKS_FOLDER, app[CAMERA].backend.name)
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
    return await start(app, params)


@action("stack.stop")
async def _stack_stop(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[STACK].stop()


@action("stack.reset")
async def _stack_reset(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return await reset(app)
