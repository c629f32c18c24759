"""The camera's REST API (the original backend's paths and fields)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from wanda.arbiter import Holder
from wanda.connections import read_body
from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action, no_params
from wanda.keys import CONFIG, CONTROL

routes = web.RouteTableDef()


async def read_json(request: web.Request, *, required: bool = True, timeout: float | None = None) -> Any:  # noqa: ASYNC109
    """The request body as JSON; INVALID_REQUEST when it is not JSON. Empty means {} if optional.
    ``timeout``: how long the body may take (default ``body_timeout``)."""
    raw = await read_body(request, request.app[CONFIG].body_timeout if timeout is None else timeout)
    if not raw.strip():
        if required:
            raise WandaError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise WandaError(ErrorCode.INVALID_REQUEST, "the body is not valid JSON") from None


@routes.get("/api/camera/status")
async def camera_status(request: web.Request) -> web.Response:
    return ok(request.app[CONTROL].status())


@routes.post("/api/camera/settings")
async def camera_settings(request: web.Request) -> web.Response:
    body = await read_json(request)
    result = await request.app[CONTROL].update(body)
    if not result["saved"]:
        return ok(result, "settings applied, but WANDA's data disk refused to save them: they last until a restart")
    return ok(result, "settings applied")


@routes.post("/api/camera/capture")
async def camera_capture(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    if body != {}:
        raise WandaError(ErrorCode.VALIDATION_ERROR, "capture takes no parameters: set them with /api/camera/settings")
    result = await request.app[CONTROL].capture()  # 409 CAPTURE_BUSY while a session holds the camera
    return ok(result, f"saved {result['file']}")


@routes.post("/api/camera/capture/cancel")
async def camera_capture_cancel(request: web.Request) -> web.Response:
    result = request.app[CONTROL].cancel_capture()
    if result["cancelled"]:
        return ok(result, "exposure cancelled")
    if "held_by" in result:
        return ok(
            result,
            f"no capture is running: {Holder(**result['held_by']).describe()} has the camera (stop it instead)",
        )
    return ok(result, "no exposure was running")


# The same, as WebSocket commands.


@action("camera.status")
async def _camera_status(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[CONTROL].status()


@action("camera.set")
async def _camera_set(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    return await app[CONTROL].update(params)


@action("camera.capture")
async def _camera_capture(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return await app[CONTROL].capture()


@action("camera.cancel")
async def _camera_cancel(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    no_params(params)
    return app[CONTROL].cancel_capture()
