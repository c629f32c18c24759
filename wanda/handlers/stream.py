"""MJPEG streams, snapshots and the stream state (in the spirit of uStreamer's /state)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from aiohttp import web

from wanda.errors import ErrorCode, WandaError
from wanda.frames import BOUNDARY, Frame, FrameHub, Viewer
from wanda.handlers import drop_client
from wanda.handlers.envelope import ok
from wanda.keys import ANALYSIS, CAMERA, CONFIG, CONTROL, HUB, STACK_HUB, STRETCHED_HUB

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# A frame this recent is sent to a new viewer at once; an older one (the camera idles without
# viewers) would show a stale sky, so the viewer waits for the next frame instead.
FRESH_FOR_S = 1.0
# How often a waiting viewer checks that its client is still there (frames may be minutes apart).
DISCONNECT_POLL_S = 1.0


def _fps_limit(request: web.Request) -> float | None:
    raw = request.query.get("fps")
    if raw is None:
        return None
    try:
        fps = float(raw)
    except ValueError:
        fps = math.nan
    if not 0 < fps <= 60:  # also refuses nan and inf
        raise WandaError(ErrorCode.VALIDATION_ERROR, f"fps: must be a number above 0 and at most 60, got {raw!r}")
    return fps


def _hub(request: web.Request) -> FrameHub:
    """``stretch=auto``: the frames with the analysis's auto-stretch; ``none`` (default): as shot.
    ``source=stack``: the live stack (always stretched: a linear stack shows black)."""
    stretch = request.query.get("stretch", "none")
    if stretch not in ("auto", "none"):
        raise WandaError(ErrorCode.VALIDATION_ERROR, f"stretch: must be auto or none, got {stretch[:32]!r}")
    source = request.query.get("source", "live")
    if source not in ("live", "stack"):
        raise WandaError(ErrorCode.VALIDATION_ERROR, f"source: must be live or stack, got {source[:32]!r}")
    if source == "stack":
        return request.app[STACK_HUB]
    return request.app[STRETCHED_HUB] if stretch == "auto" else request.app[HUB]


@routes.get("/video_feed")
@routes.get("/stream")
async def mjpeg_stream(request: web.Request) -> web.StreamResponse:
    hub = _hub(request)
    fps_limit = _fps_limit(request)
    if hub.closed:
        raise WandaError(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
            "Pragma": "no-cache",
            "X-Accel-Buffering": "no",  # nginx in front (the old setup) must not buffer the stream
        }
    )
    await response.prepare(request)
    viewer = Viewer(client=request.remote or "?", path=request.path, fps_limit=fps_limit, task=asyncio.current_task())
    hub.add_viewer(viewer)
    log.debug("viewer %d (%s) connected to %s", viewer.id, viewer.client, request.path_qs)
    try:
        await _send_frames(request, response, hub, viewer, request.app[CONFIG].write_timeout)
    finally:
        hub.remove_viewer(viewer)
        log.debug("viewer %d left after %d frames", viewer.id, viewer.frames_sent)
    return response


async def _send_frames(
    request: web.Request, response: web.StreamResponse, hub: FrameHub, viewer: Viewer, write_timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    latest = hub.latest
    if latest is None:
        seq = 0
    else:  # a fresh frame is sent at once; an old one waits for the next
        seq = latest.seq - 1 if time.time() - latest.timestamp < FRESH_FOR_S else latest.seq
    min_interval = 1.0 / viewer.fps_limit if viewer.fps_limit else 0.0
    last_sent = -math.inf
    while True:
        if min_interval:
            pause = last_sent + min_interval - loop.time()
            if pause > 0 and not await hub.pause(pause):
                return  # the hub closed while this viewer paced itself: shutting down
        try:
            async with asyncio.timeout(DISCONNECT_POLL_S):
                frame = await hub.next_after(seq)
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                return  # the client left while no frame came
            continue
        if frame is None:
            return  # the hub closed: shutting down
        if viewer.frames_sent:
            viewer.frames_skipped += frame.seq - seq - 1
        if not await _write_part(request, response, viewer, frame, write_timeout):
            if hub.latest is not None:  # what was published while it sat in its last write
                viewer.frames_skipped += hub.latest.seq - frame.seq
            return
        seq = frame.seq
        viewer.frames_sent += 1
        viewer.meter.tick()
        last_sent = loop.time()


async def _write_part(
    request: web.Request, response: web.StreamResponse, viewer: Viewer, frame: Frame, write_timeout: float
) -> bool:
    """Write one part; False when the viewer is gone or dropped for being too slow."""
    viewer.writing = True
    try:
        async with asyncio.timeout(write_timeout):
            await response.write(frame.part)
        return True
    except TimeoutError:
        log.info("viewer %d (%s) dropped: a frame took over %.1f s to send", viewer.id, viewer.client, write_timeout)
        drop_client(request)  # drop what is buffered for it, free the memory now
        return False
    except ConnectionError:
        return False
    finally:
        viewer.writing = False


@routes.get("/snapshot")
async def snapshot(request: web.Request) -> web.Response:
    """One JPEG captured after the request arrived."""
    hub = request.app[HUB]
    camera = request.app[CAMERA]
    requested = time.time()
    frame_interval = max(1.0 / camera.max_fps, camera.backend.exposure_s)
    wait = request.app[CONFIG].snapshot_timeout + 2 * frame_interval
    hub.add_demand()
    try:
        async with asyncio.timeout(wait):
            frame = await _frame_captured_after(hub, requested)
    except TimeoutError:
        raise WandaError(ErrorCode.NO_FRAME, f"no frame from the camera within {wait:.1f} s") from None
    finally:
        hub.remove_demand()
    return web.Response(
        body=frame.jpeg,
        content_type="image/jpeg",
        headers={"X-Timestamp": f"{frame.timestamp:.6f}", "X-Sequence": str(frame.seq), "Cache-Control": "no-store"},
    )


async def _frame_captured_after(hub: FrameHub, since: float) -> Frame:
    seq = hub.latest.seq if hub.latest else 0
    while True:
        frame = await hub.next_after(seq)
        if frame is None:
            raise WandaError(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        if frame.timestamp >= since:
            return frame
        seq = frame.seq


@routes.get("/state")
async def state(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    camera = request.app[CAMERA]
    width, height = camera.backend.preview_size
    latest = hub.latest
    viewers = sorted((v.describe() for v in hub.viewers), key=lambda v: v["id"])
    exposure = request.app[CONTROL].exposure
    return ok(
        {
            "backend": camera.backend.name,
            "resolution": {"width": width, "height": height},
            **camera.stats(),
            "encodes": camera.encoder.encodes,
            "viewer_count": len(viewers),
            "viewers": viewers,
            "frames_skipped": hub.frames_skipped,
            "stretched_viewer_count": len(request.app[STRETCHED_HUB].viewers),
            "stack_viewer_count": len(request.app[STACK_HUB].viewers),
            "analysis": {
                "listeners": request.app[ANALYSIS].listeners,
                "running": request.app[ANALYSIS].wanted,
                "frames_analysed": request.app[ANALYSIS].analysed,
            },
            "exposing": exposure.progress() if exposure else None,
            "latest_frame": None
            if latest is None
            else {
                "seq": latest.seq,
                "timestamp": latest.timestamp,
                "age_s": round(time.time() - latest.timestamp, 3),
                "bytes": len(latest.jpeg),
            },
        }
    )
