"""Who may do what: the password, when one is set, and the Origin rule, always.

With a password (wanda/auth.py) every request but the login page must carry it. Whatever the
password, a web page from another site may not change anything: a browser sends ``Origin`` with
every POST and every WebSocket handshake, and without this check any page open on the observer's
laptop could drive the mount or delete a night's work through the browser. Requests without
``Origin`` (scripts, curl) are accepted, as are the origins listed in ``allowed_origins``.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp import web
from yarl import URL

from wanda.alpaca.protocol import asks_for_basic
from wanda.auth import PUBLIC, request_password
from wanda.errors import ErrorCode, WandaError
from wanda.handlers.envelope import error_response
from wanda.keys import AUTH, CONFIG, TRUSTED_HOSTS

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


def trusted_hosts(allowed_origins: tuple[str, ...]) -> frozenset[str]:
    """Names this server answers to: localhost, the machine's name (also with .local, as
    mDNS gives it on a Pi) and the hosts of allowed_origins. IP addresses are always trusted."""
    name = socket.gethostname().lower()
    hosts = {"localhost", name, f"{name}.local"}
    hosts.update((URL(origin).host or "").lower() for origin in allowed_origins)
    return frozenset(hosts - {""})


def _trusted(host: str, trusted: frozenset[str]) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return host in trusted


@web.middleware
async def origin_middleware(request: web.Request, handler):
    origin = request.headers.get("Origin")
    if origin is not None and _changes_state(request):
        config = request.app[CONFIG]
        if origin.rstrip("/") not in config.allowed_origins:
            if not same_origin(origin, request):
                raise WandaError(
                    ErrorCode.FORBIDDEN_ORIGIN,
                    f"requests from the web page at {origin} are not allowed (see allowed_origins)",
                )
            # Same origin, but is it us? A page whose name was re-pointed at this machine (DNS
            # rebinding) is "same origin" with itself: its Host is not one of our names.
            host, _ = _host_port(URL(f"{request.scheme}://{request.host}"))
            if not _trusted(host, request.app[TRUSTED_HOSTS]):
                raise WandaError(
                    ErrorCode.FORBIDDEN_ORIGIN, f"this server does not answer to {host!r} (add it to allowed_origins)"
                )
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler):
    guard = request.app.get(AUTH)
    # A valid session cookie is never refused: only password checks are rationed (wanda/auth.py),
    # and a cookie cannot be guessed.
    if guard is None or request.path in PUBLIC or guard.has_session(request):
        return await handler(request)
    password = request_password(request)
    if password is None and request.method == "GET" and (request.path == "/" or request.path.startswith("/setup")):
        raise web.HTTPFound("/login")  # a browser: to the login page, which says so if it is throttled
    address = request.remote or "?"
    if password is None:
        guard.refuse_if_throttled(address)  # a throttled address gets 429 whatever it sends
    elif guard.try_password(address, password):
        return await handler(request)
    if asks_for_basic(request.path):  # Alpaca clients send the password as HTTP Basic once asked for it
        response = error_response(
            WandaError(ErrorCode.UNAUTHORIZED, "a password is needed: HTTP Basic, any user name and WANDA's password")
        )
        response.headers["WWW-Authenticate"] = 'Basic realm="WANDA", charset="UTF-8"'
        return response
    raise WandaError(
        ErrorCode.UNAUTHORIZED, "a password is needed: Authorization: Bearer <password>, or log in at /login"
    )
