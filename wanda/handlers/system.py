"""Health, and the browser client's static files."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from wanda import __version__
from wanda.errors import ok
from wanda.keys import CAMERA, HUB, LAG, STARTED

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
            "camera": {"backend": camera.backend.name, "alive": camera.alive},
        }
    )


def static_dir() -> Path:
    """web_static/ installed inside the package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "web_static", package.parent / "web_static"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("web_static/index.html not found: the installation is incomplete")


def add_static_routes(app: web.Application) -> None:
    root = static_dir()

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})

    async def revalidate_static(request: web.Request, response: web.StreamResponse) -> None:
        # The browser asks again each time (a 304 when unchanged), so after an upgrade the page
        # never runs yesterday's script against today's server.
        if request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-cache"

    app.router.add_get("/", index)
    app.router.add_static("/static/", root)
    app.on_response_prepare.append(revalidate_static)
