"""Health, and the browser client's static files."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from wanda import __version__
from wanda.connections import GATE
from wanda.errors import ErrorCode, WandaError
from wanda.handlers.envelope import ok
from wanda.handlers.openapi import build_spec
from wanda.keys import CAMERA, CONTROL, HUB, LAG, STARTED

routes = web.RouteTableDef()


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    camera = request.app[CAMERA]
    return ok(
        {
            "status": "ok" if camera.alive else "degraded",
            "version": __version__,
            "uptime_s": round(time.time() - request.app[STARTED], 1),
            "loop_lag": request.app[LAG].describe(),
            "viewers": len(request.app[HUB].viewers),
            "camera": {"backend": camera.backend.name, "alive": camera.alive, **camera.backend.details},
            "connections": request.app[GATE].describe(),
        }
    )


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description (plain, not in the envelope: tools read it as it is)."""
    return web.json_response(build_spec(request.app[CONTROL].limits))


def static_dir() -> Path:
    """web_static/ installed inside the package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "web_static", package.parent / "web_static"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("web_static/index.html not found: the installation is incomplete")


def add_static_routes(app: web.Application) -> None:
    root = static_dir()
    # The client's files, listed once: a request names one of them or gets a 404 in the envelope
    # (no path is ever joined from what a client sent).
    files = {path.name: path for path in root.iterdir() if path.is_file() and not path.name.startswith(".")}
    # The browser asks again each time (a 304 when unchanged), so after an upgrade the page never
    # runs yesterday's script against today's server.
    revalidate = {"Cache-Control": "no-cache"}

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(files["index.html"], headers=revalidate)

    async def static_file(request: web.Request) -> web.FileResponse:
        name = request.match_info["filename"]
        if name not in files:
            raise WandaError(ErrorCode.NOT_FOUND, f"no such file: /static/{name[:100]}")
        return web.FileResponse(files[name], headers=revalidate)

    app.router.add_get("/", index)
    app.router.add_get("/static/{filename}", static_file)
