"""Captured files. (The gallery listing, thumbnails, zips and deletes build on this.)"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

from aiohttp import web

from wanda.errors import ApiError
from wanda.keys import CONTROL
from wanda.storage import TEMP_PREFIX

routes = web.RouteTableDef()


def resolve_inside(root: Path, relative: str) -> Path:
    """The file ``relative`` names under ``root``; ApiError unless it stays inside and exists.

    Refused: NUL bytes, backslashes, absolute paths, ``.`` and ``..`` parts, hidden names (the
    temporaries of files being written), and symbolic links that lead out of ``root``.
    """
    if "\x00" in relative or "\\" in relative:
        raise ApiError(400, "INVALID_PATH", "the path contains a forbidden character")
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(p in (".", "..") or p.startswith(TEMP_PREFIX) for p in parts):
        raise ApiError(400, "INVALID_PATH", "the path must name a file inside the capture directory")
    base = root.resolve()
    candidate = (base / PurePosixPath(*parts)).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        raise ApiError(404, "FILE_NOT_FOUND", f"no such capture: {relative}")
    return candidate


@routes.get("/api/captures/{path:.+}")
async def capture_file(request: web.Request) -> web.FileResponse:
    root = request.app[CONTROL].captures_root
    path = await asyncio.to_thread(resolve_inside, root, request.match_info["path"])
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
