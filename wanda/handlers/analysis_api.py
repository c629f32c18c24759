"""The analysis of the live image, for scripts: ``GET /api/analysis``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from wanda.errors import ErrorCode, WandaError
from wanda.handlers.envelope import ok
from wanda.keys import ANALYSIS, CAMERA

routes = web.RouteTableDef()

# A request keeps the analysis running this long, so a script polling every few seconds gets a
# fresh result each time without holding a WebSocket.
HOLD_S = 10.0
WAIT_MARGIN_S = 5.0  # on top of a frame's exposure and the analysis interval
# A frame's timestamp is when it arrived (the Pi's) or its exposure's end (the simulator's): its
# exposure began at most this much before the timestamp less the exposure.
READOUT_MARGIN_S = 0.25


async def fresh_analysis(app: web.Application) -> dict[str, Any]:
    """The analysis of a live frame taken lately: the newest, or the next one (NO_FRAME when none
    comes in time)."""
    analysis = app[ANALYSIS]
    camera = app[CAMERA]
    analysis.hold(HOLD_S)
    frame_s = max(1.0 / camera.max_fps, camera.backend.exposure_s)
    latest = analysis.latest
    if latest is not None and time.time() - latest["timestamp"] <= frame_s + 2 * analysis.interval:
        return latest
    wait = frame_s + analysis.interval + WAIT_MARGIN_S
    try:
        async with asyncio.timeout(wait):
            return await analysis.next_result()
    except TimeoutError:
        raise WandaError(ErrorCode.NO_FRAME, f"no analysed frame within {wait:.1f} s") from None


async def analysis_after(app: web.Application, since: float) -> dict[str, Any]:
    """The analysis of a live frame whose whole exposure came after Unix time ``since`` (see
    READOUT_MARGIN_S): the first once the mount has stopped moving. NO_FRAME when none comes in
    time."""
    analysis = app[ANALYSIS]
    camera = app[CAMERA]
    exposure = camera.backend.exposure_s
    # The frame under way at ``since`` may still end, then the next must be exposed and analysed.
    wait = 2 * max(1.0 / camera.max_fps, exposure) + 2 * analysis.interval + WAIT_MARGIN_S
    try:
        async with asyncio.timeout(wait):
            while True:
                analysis.hold(HOLD_S)
                latest = analysis.latest
                if latest is not None and latest["timestamp"] - exposure - READOUT_MARGIN_S >= since:
                    return latest
                await analysis.next_result()
    except TimeoutError:
        raise WandaError(
            ErrorCode.NO_FRAME, f"no frame exposed after the move was analysed within {wait:.1f} s"
        ) from None


@routes.get("/api/analysis")
async def get_analysis(request: web.Request) -> web.Response:
    return ok(await fresh_analysis(request.app))
