"""Plate solving over REST and the WebSocket: `POST /api/solve` (the live view, or a saved capture
by path), `GET /api/solve` (the latest result), topic `solve`, and continuous mode
(wanda/solving.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from wanda.astro.measure import analyse
from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.analysis_api import analysis_after, fresh_analysis
from wanda.handlers.camera_api import read_json
from wanda.handlers.captures import RENDERS
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action
from wanda.keys import BUS, CAPTURES, SOLVE
from wanda.storage import gallery, renditions
from wanda.validate import boolean, json_object, known_fields

routes = web.RouteTableDef()


def _stars_of_capture(root: Any, path: str) -> tuple[list[dict[str, Any]], int, int]:
    """A thread's work: the stars of a saved frame (its FITS where it has one, else its JPEG)."""
    image = gallery.resolve_inside(root, path)
    images = gallery.frame_images(image) or [image]
    fits = next((p for p in images if gallery.image_format(p.name) == "fits"), None)
    if fits is not None:
        pixels = renditions.load_fits(fits)
    elif gallery.image_format(image.name) == "jpeg":
        pixels = renditions.load_jpeg(image, renditions.JpegEncoder())
    else:
        raise WandaError(ErrorCode.NO_THUMBNAIL, f"{image.name}: only JPEG and FITS frames can be solved")
    figures = analyse(pixels.luminance, pixels.full_scale, scale=pixels.scale)
    return figures["stars"], figures["width"], figures["height"]


async def solve(app: web.Application, body: Any) -> dict[str, Any]:
    body = json_object(body if body is not None else {})
    known_fields(body, ["path"])
    if "path" not in body:
        return await solve_live(app)
    path = body["path"]
    if not isinstance(path, str) or not path:
        raise WandaError(ErrorCode.VALIDATION_ERROR, "path: must be a capture's path, such as M42/light_0001.fits")
    async with app[RENDERS]:  # a FITS frame takes hundreds of MB while it is decoded
        stars, width, height = await asyncio.to_thread(_stars_of_capture, app[CAPTURES], path)
    return await _solved(app, stars, width, height, {"kind": "capture", "path": path})


async def solve_live(app: web.Application, after: float | None = None) -> dict[str, Any]:
    """The solution of the live view: of a frame taken lately, or of one exposed wholly after Unix
    time ``after`` (the mount has moved). SOLVE_FAILED when it is not solved."""
    return (await solve_live_frame(app, after))[1]


async def solve_live_frame(
    app: web.Application, after: float | None = None, *, blind: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``solve_live``'s frame (its analysis, with the stars) and solution; ``blind`` False: no blind
    search when the hints fail (SolveService.submit)."""
    frame = await (fresh_analysis(app) if after is None else analysis_after(app, after))
    source = {"kind": "preview", "timestamp": frame["timestamp"]}
    return frame, await _solved(app, frame["stars"], frame["width"], frame["height"], source, blind=blind)


async def _solved(
    app: web.Application,
    stars: list[dict[str, Any]],
    width: int,
    height: int,
    source: dict[str, Any],
    *,
    blind: bool = True,
) -> dict[str, Any]:
    result: dict[str, Any] = await app[SOLVE].submit(stars, width, height, source, blind=blind)
    if not result["solved"]:
        raise WandaError(ErrorCode.SOLVE_FAILED, f"not solved: {result['message']}", data=result)
    return result


def set_continuous(app: web.Application, body: Any) -> dict[str, Any]:
    body = json_object(body)
    known_fields(body, ["continuous"])
    service = app[SOLVE]
    service.continuous = boolean("continuous", body.get("continuous", False))
    app[BUS].listeners_changed()  # the analysis runs while a continuous solve is listened to
    return {"continuous": service.continuous, "listeners": app[BUS].listeners("solve")}


@routes.post("/api/solve")
async def solve_now(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    if isinstance(body, dict) and "continuous" in body:
        return ok(set_continuous(request.app, body))
    return ok(await solve(request.app, body), "solved")


@routes.get("/api/solve")
async def latest(request: web.Request) -> web.Response:
    service = request.app[SOLVE]
    latest = service.latest if service.latest is not None else {"solved": None}  # nothing asked yet
    return ok({**latest, "continuous": service.continuous})


@action("solve")
async def _solve(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    if "continuous" in params:
        return set_continuous(app, params)
    return await solve(app, params)
