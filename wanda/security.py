"""The Origin rule: a web page from another site may not change anything.

A browser sends ``Origin`` with every POST and every WebSocket handshake. Without this check any
page open on the observer's laptop could drive the mount or delete a night's work through the
browser. Requests without ``Origin`` (scripts, curl) are accepted, as are the origins listed in
the configuration's ``allowed_origins``.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from wanda.errors import ApiError
from wanda.keys import CONFIG

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _host_port(url: URL) -> tuple[str, int | None]:
    return (url.host or "").lower(), url.port


def same_origin(origin: str, request: web.Request) -> bool:
    try:
        source = URL(origin)
        target = URL(f"{request.scheme}://{request.host}")
    except ValueError:
        return False
    return source.scheme == target.scheme and _host_port(source) == _host_port(target)


def _changes_state(request: web.Request) -> bool:
    return request.method in STATE_CHANGING or request.headers.get("Upgrade", "").lower() == "websocket"


@web.middleware
async def origin_middleware(request: web.Request, handler):
    origin = request.headers.get("Origin")
    if origin is not None and _changes_state(request) and not same_origin(origin, request):
        if origin.rstrip("/") not in request.app[CONFIG].allowed_origins:
            raise ApiError(
                403, "FORBIDDEN_ORIGIN", f"requests from the web page at {origin} are not allowed (see allowed_origins)"
            )
    return await handler(request)
