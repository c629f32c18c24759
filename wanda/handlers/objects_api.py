"""What is in the sky by name: `GET /api/objects?q=M31` (and `objects.find` over the WebSocket),
from OpenNGC and the named bright stars (wanda/astro/deepsky.py), with where it stands now from the
site and the clock; and what the solved frame contains (`?in_view=1`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from aiohttp import web

from wanda.astro.deepsky import DeepSky, DeepSkyObject
from wanda.astro.sidereal import horizontal, local_sidereal_time, of_date
from wanda.errors import ErrorCode, WandaError
from wanda.events import Subscriber
from wanda.handlers.envelope import ok
from wanda.handlers.ws import action
from wanda.keys import SITE, SOLVE
from wanda.site import Site
from wanda.solver import Solution
from wanda.validate import invalid, known_fields

routes = web.RouteTableDef()
# Read once, on a thread, while the server starts (the first question waits for it).
DEEPSKY = web.AppKey("deepsky", asyncio.Task)
MAX_QUERY = 64
MAX_IN_VIEW = 200  # objects listed in a field, brightest first (a 20-degree field holds thousands of galaxies)
MAX_OBJECT_RADIUS_DEG = 2.0  # the largest objects reach this far beyond their centres (M31, the Pleiades)
SUGGESTIONS = 10


async def deepsky_ctx(app: web.Application) -> AsyncIterator[None]:
    app[DEEPSKY] = asyncio.create_task(asyncio.to_thread(DeepSky.load), name="deepsky-load")
    yield
    app[DEEPSKY].cancel()


async def _deepsky(app: web.Application) -> DeepSky:
    catalogue: DeepSky = await asyncio.shield(app[DEEPSKY])
    return catalogue


def where_now(item: DeepSkyObject, site: Site, unix: float) -> dict[str, Any]:
    """The object's place of the date and, with the site known, its altitude and azimuth now."""
    ra, dec = of_date(item.ra, item.dec, unix)
    place: dict[str, Any] = {"ra_of_date": round(ra, 6), "dec_of_date": round(dec, 6)}
    if site.latitude is None or site.longitude is None:
        return {**place, "altitude": None, "azimuth": None, "above_horizon": None}
    altitude, azimuth = horizontal(ra, dec, site.latitude, local_sidereal_time(unix, site.longitude))
    return {**place, "altitude": round(altitude, 3), "azimuth": round(azimuth, 3), "above_horizon": altitude > 0}


async def find(app: web.Application, query: Any) -> dict[str, Any]:
    if not isinstance(query, str) or not 1 <= len(query.strip()) <= MAX_QUERY:
        raise invalid("q", f"must be a name of 1 to {MAX_QUERY} characters, such as M31, NGC 7000 or Orion Nebula")
    catalogue = await _deepsky(app)
    # The suggestions scan every name (milliseconds, more on a Pi): not on the loop.
    found, suggestions = await asyncio.to_thread(_look_up, catalogue, query)
    if found is None:
        hint = f": did you mean {', '.join(suggestions[:5])}?" if suggestions else ""
        raise WandaError(
            ErrorCode.NOT_FOUND,
            f"no object named {query.strip()!r} in OpenNGC (Messier, NGC, IC and common names) "
            f"or the named stars{hint}",
            data={"suggestions": suggestions},
        )
    site = app[SITE].current
    now = time.time()
    result = {**found.as_dict(), **where_now(found, site, now)}
    warning = None
    if not site.known:
        warning = "the site is not set (latitude and longitude): no altitude"
    elif not result["above_horizon"]:
        warning = f"{found.designation} is below the horizon now (altitude {result['altitude']:.1f}°)"
    return {
        "object": result,
        "site": site.as_dict(),
        "time": round(now, 3),
        "warning": warning,
        "suggestions": suggestions,
    }


async def in_view(app: web.Application) -> dict[str, Any]:
    """The objects in the live view's last solved frame, with their places in its pixels, brightest
    first."""
    solved = app[SOLVE].solution
    if solved is None:
        raise WandaError(ErrorCode.NOT_FOUND, "nothing solved yet: POST /api/solve first")
    solution, source = solved
    catalogue = await _deepsky(app)
    return await asyncio.to_thread(_in_frame, catalogue, solution, source)  # hundreds in a wide field


def _in_frame(catalogue: DeepSky, solution: Solution, source: dict[str, Any]) -> dict[str, Any]:
    width, height = solution.wcs.image_size
    radius = math.hypot(solution.width_deg, solution.height_deg) / 2 + MAX_OBJECT_RADIUS_DEG
    near = catalogue.within(solution.ra, solution.dec, radius)
    xs, ys = solution.wcs.sky_to_pixel([o.ra for o, _ in near], [o.dec for o, _ in near])
    listed = []
    for (item, separation), x, y in zip(near, np.atleast_1d(xs), np.atleast_1d(ys), strict=True):
        size_px = (item.major_arcmin or 0.0) * 60 / solution.scale
        # In the frame, or reaching into it (a big nebula whose centre is just outside).
        if not (-size_px / 2 <= x <= width - 1 + size_px / 2 and -size_px / 2 <= y <= height - 1 + size_px / 2):
            continue
        listed.append(
            {
                **item.as_dict(),
                "x": round(float(x), 2),
                "y": round(float(y), 2),
                "size_px": round(size_px, 2),
                "separation_deg": round(separation, 4),
            }
        )
    listed.sort(key=lambda o: (o["magnitude"] is None, o["magnitude"] if o["magnitude"] is not None else 0))
    frame = {"width": width, "height": height, "source": source, "time": source.get("timestamp")}
    return {"frame": frame, "objects": listed[:MAX_IN_VIEW], "total": len(listed)}


def _look_up(catalogue: DeepSky, query: str) -> tuple[DeepSkyObject | None, list[str]]:
    """The object named ``query`` (or None), and other names that start like it."""
    found = catalogue.find(query)
    return found, [o.designation for o in catalogue.search(query, SUGGESTIONS) if o is not found]


@routes.get("/api/objects")
async def objects(request: web.Request) -> web.Response:
    known_fields(dict(request.query), ["q", "in_view"])
    if request.query.get("in_view") in ("1", "true"):
        return ok(await in_view(request.app))
    if "q" not in request.query:
        raise invalid("q", "is required: the name of an object (M31, NGC 7000, Orion Nebula), or in_view=1")
    return ok(await find(request.app, request.query["q"]))


@action("objects.find")
async def _objects_find(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    known_fields(params, ["q"])
    return await find(app, params.get("q"))
