"""The capture gallery: listings, files, thumbnails, folder zips, deletes, and the storage figures.
Thin handlers: the disk work is in wanda/storage/gallery.py and runs on threads; a zip streams
through wanda/handlers/zips.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from wanda.errors import WandaError
from wanda.handlers import zips
from wanda.handlers.envelope import ok
from wanda.jpeg import JpegEncoder
from wanda.keys import CAPTURES, CONFIG, CONTROL, SESSIONS
from wanda.storage import gallery
from wanda.storage.disk import disk_space, unwritable_reason
from wanda.validate import query_whole

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
THUMB_ENCODER = web.AppKey("thumb_encoder", JpegEncoder)
PAGE = 100  # image details per listing unless ?limit= asks otherwise
MAX_PAGE = 1000
MAX_OFFSET = 10**8


def _busy_folder(app: web.Application) -> Path | None:
    sessions = app[SESSIONS]
    return sessions.run.folder if sessions.active and sessions.run is not None else None


@routes.get("/api/storage")
async def storage(request: web.Request) -> web.Response:
    root = request.app[CAPTURES]
    (free, total), unwritable = await asyncio.gather(
        asyncio.to_thread(disk_space, root), asyncio.to_thread(unwritable_reason, root)
    )
    can_write = unwritable is None
    reserve = request.app[CONFIG].min_free_mb * 2**20
    frame = request.app[CONTROL].estimated_still_bytes()
    frames_left = max(0, (free - reserve) // frame) if can_write else 0
    if not can_write:
        state, message = "read_only", f"nothing can be saved: {unwritable}"
    elif free < frame:
        state, message = "full", "the disk is full: delete captures in the gallery to go on"
    elif frames_left == 0:
        state, message = "low", "below the reserve: sessions will not start, single captures still fit"
    else:
        state, message = "ok", f"room for about {frames_left} frames"
    return ok(
        {
            "path": str(root),
            "free": free,
            "total": total,
            "reserve": reserve,
            "estimated_frame_bytes": frame,
            "frames_left": frames_left,
            "writable": can_write,
            "state": state,
            "message": message,
        }
    )


@routes.get("/api/captures")
async def captures(request: web.Request) -> web.Response:
    """Every image's name (the old contract) and the details of one page of them (``limit`` from
    ``offset``), newest first."""
    folder = request.query.get("folder") or None
    offset = query_whole(request.query, "offset", 0, 0, MAX_OFFSET)
    limit = query_whole(request.query, "limit", PAGE, 1, MAX_PAGE)
    listing = await asyncio.to_thread(gallery.list_files, request.app[CAPTURES], folder, offset, limit)
    return ok(
        {
            "folder": folder or "",
            "files": listing.names,
            "total": len(listing.names),
            "offset": offset,
            "limit": limit,
            "items": listing.items,
        }
    )


@routes.get("/api/captures/folders")
async def folders(request: web.Request) -> web.Response:
    details = await asyncio.to_thread(gallery.list_folders, request.app[CAPTURES])
    return ok({"folders": [f["name"] for f in details], "details": details})


@routes.get("/api/captures/{folder}.zip")
async def folder_zip(request: web.Request) -> web.StreamResponse:
    root = request.app[CAPTURES]
    name = request.match_info["folder"]
    try:
        folder = await asyncio.to_thread(gallery.resolve_inside, root, name, kind="dir")
    except WandaError:
        if await asyncio.to_thread(lambda: (root / f"{name}.zip").is_file()):
            return await capture_file(request, f"{name}.zip")  # a zip that was captured as such
        raise
    return await zips.send(request, folder)


@routes.get(r"/api/captures/{path:[\s\S]+}")  # any character: "." would stop at a newline in a name
async def capture(request: web.Request) -> web.StreamResponse:
    return await capture_file(request, request.match_info["path"])


async def capture_file(request: web.Request, path: str) -> web.StreamResponse:
    root = request.app[CAPTURES]
    target = await asyncio.to_thread(gallery.resolve_inside, root, path)
    if request.query.get("thumb") in ("1", "true"):
        encoder = request.app[THUMB_ENCODER]
        thumb = await asyncio.to_thread(gallery.thumbnail, root, target, encoder)
        headers = {"Cache-Control": "max-age=86400", "Content-Type": "image/jpeg"}
        if isinstance(thumb, bytes):  # the cache could not be written
            return web.Response(body=thumb, headers=headers)
        return web.FileResponse(thumb, headers=headers)
    return web.FileResponse(target, headers={"Cache-Control": "no-cache"})


@routes.delete(r"/api/captures/{path:[\s\S]+}")
async def delete_capture(request: web.Request) -> web.Response:
    result = await asyncio.to_thread(
        gallery.delete, request.app[CAPTURES], request.match_info["path"], _busy_folder(request.app)
    )
    request.app[SESSIONS].storage_changed()  # room for metadata the full disk refused
    return ok(result, f"deleted {result['deleted']}")


def setup(app: web.Application) -> None:
    app[THUMB_ENCODER] = JpegEncoder(80)
    zips.setup(app)
