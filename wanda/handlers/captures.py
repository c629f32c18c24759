"""The capture gallery: listings, files, thumbnails, previews and details of frames, zips and
deletes (a folder, or a selection), and the storage figures. Thin handlers: the disk work is in
wanda/storage/ (gallery.py, renditions.py, review.py) and runs on threads; a zip streams through
wanda/handlers/zips.py."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from wanda.connections import read_body
from wanda.errors import ErrorCode, WandaError
from wanda.handlers import zips
from wanda.handlers.envelope import ok
from wanda.jpeg import JpegEncoder
from wanda.keys import CAPTURES, CONFIG, CONTROL, MEASURER, SESSIONS
from wanda.storage import gallery, renditions, review
from wanda.storage.disk import disk_space, unwritable_reason
from wanda.validate import choice, invalid, json_object, known_fields, query_whole

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
THUMB_ENCODER = web.AppKey("thumb_encoder", JpegEncoder)
# Renders (thumbnails, views) at a time: a FITS frame takes hundreds of MB while it is decoded, and a
# page asks for every tile's thumbnail at once; the others wait their turn, and find it cached.
RENDERS = web.AppKey("renders", asyncio.Semaphore)
CONCURRENT_RENDERS = 2
PAGE = 100  # image details per listing unless ?limit= asks otherwise
MAX_PAGE = 1000
MAX_OFFSET = 10**8
MAX_SELECTION = 1000  # paths in one delete or zip of a selection
FLAGS = ("1", "true")


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
    frame = request.app[CONTROL].estimated_still_bytes(request.app[SESSIONS].frame_format())  # a session's own
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
            "total": listing.frames,
            "offset": offset,
            "limit": limit,
            "items": listing.items,
        }
    )


@routes.get("/api/captures/folders")
async def folders(request: web.Request) -> web.Response:
    details = await asyncio.to_thread(gallery.list_folders, request.app[CAPTURES])
    return ok({"folders": [f["name"] for f in details], "details": details})


@routes.post("/api/captures/delete")
async def delete_selection(request: web.Request) -> web.Response:
    """Several captures at once: every path is checked before anything is deleted."""
    paths = await _selection(request)
    result = await asyncio.to_thread(gallery.delete_files, request.app[CAPTURES], paths, _busy_folder(request.app))
    request.app[SESSIONS].storage_changed()
    return ok(result, f"deleted {len(result['deleted'])} files")


@routes.post("/api/captures/zip")
async def zip_selection(request: web.Request) -> web.StreamResponse:
    """Several captures (and their sidecars) as one zip, streamed."""
    paths = await _selection(request)
    entries = await asyncio.to_thread(gallery.selection, request.app[CAPTURES], paths)
    return await zips.send_files(request, entries, "wanda-selection")


async def _selection(request: web.Request) -> list[str]:
    """``paths`` from a JSON body (``{"paths": [...]}``) or a form (``paths=...&paths=...``: a
    browser downloads a zip by posting a form)."""
    raw = await read_body(request, request.app[CONFIG].body_timeout)
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_SELECTION)
        except ValueError:
            raise invalid("paths", f"at most {MAX_SELECTION} paths") from None
        body: dict[str, Any] = {}
        for name, value in fields:
            body.setdefault(name, []).append(value)
    else:
        try:
            body = json_object(json.loads(raw) if raw.strip() else None)
        except (ValueError, RecursionError):
            raise WandaError(ErrorCode.INVALID_REQUEST, "the body is not valid JSON") from None
    known_fields(body, ["paths"])
    paths = body.get("paths")
    if not isinstance(paths, list) or not 1 <= len(paths) <= MAX_SELECTION:
        raise invalid("paths", f"must be a list of 1 to {MAX_SELECTION} capture paths")
    if not all(isinstance(path, str) and path for path in paths):
        raise invalid("paths", "each must be a capture's path (a non-empty string)")
    return paths


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
    """The file; or (``?info=1``) its frame's details, (``?thumb=1``) its thumbnail, (``?preview=1``,
    ``&stretch=auto``) a JPEG of it to view at full size."""
    root = request.app[CAPTURES]
    query = request.query
    stretch = choice("stretch", query.get("stretch", "none"), ("auto", "none")) == "auto"
    target = await asyncio.to_thread(gallery.resolve_inside, root, path)
    if query.get("info") in FLAGS:
        return ok(await asyncio.to_thread(review.frame_info, root, target, request.app[MEASURER]))
    encoder = request.app[THUMB_ENCODER]
    if query.get("thumb") in FLAGS:
        async with request.app[RENDERS]:
            thumb = await asyncio.to_thread(renditions.thumbnail, root, target, encoder)
        return _jpeg(thumb, "max-age=86400")
    if query.get("preview") in FLAGS:
        async with request.app[RENDERS]:
            view = await asyncio.to_thread(renditions.preview, root, target, encoder, stretch=stretch)
        return _jpeg(view, "no-cache")
    return web.FileResponse(target, headers={"Cache-Control": "no-cache"})


def _jpeg(made: Path | bytes, cache: str) -> web.StreamResponse:
    headers = {"Cache-Control": cache, "Content-Type": "image/jpeg"}
    if isinstance(made, bytes):  # the cache could not be written
        return web.Response(body=made, headers=headers)
    return web.FileResponse(made, headers=headers)


@routes.delete(r"/api/captures/{path:[\s\S]+}")
async def delete_capture(request: web.Request) -> web.Response:
    result = await asyncio.to_thread(
        gallery.delete, request.app[CAPTURES], request.match_info["path"], _busy_folder(request.app)
    )
    request.app[SESSIONS].storage_changed()  # room for metadata the full disk refused
    return ok(result, f"deleted {result['deleted']}")


def setup(app: web.Application) -> None:
    app[THUMB_ENCODER] = JpegEncoder(80)
    app[RENDERS] = asyncio.Semaphore(CONCURRENT_RENDERS)
    zips.setup(app)
