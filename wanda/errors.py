"""The one error type of the API and the middleware that turns it into the response envelope.

Envelope (kept from the original WANDA backend so existing scripts keep working):
success ``{"success": true, "data": {...}, "message": "..."}``,
failure ``{"success": false, "code": "UPPER_SNAKE", "error": "...", "data"?: {...}}``.
"""

from __future__ import annotations

import errno
import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A failure a client should see: HTTP status, a stable code and a human message."""

    def __init__(
        self, status: int, code: str, message: str, data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.headers = headers  # set on the response as well (Retry-After on a 429)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def ok(data: dict[str, Any] | None = None, message: str = "OK", status: int = 200) -> web.Response:
    body = {"success": True, "data": data if data is not None else {}, "message": message}
    return web.json_response(body, status=status, dumps=_dumps)


def failure(status: int, code: str, message: str, data: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"success": False, "code": code, "error": message}
    if data is not None:
        body["data"] = data
    return web.json_response(body, status=status, dumps=_dumps)


# What the disk says, as the client should hear it. A capture disk fills up, is mounted read-only
# after an error, or holds a name or a link no filesystem call can follow: none of that is the
# server's fault, and a 500 would tell the observer nothing.
_STORAGE_ERRORS = {
    errno.ENOSPC: (507, "INSUFFICIENT_SPACE", "the disk is full: free some space (delete in the gallery)"),
    errno.EDQUOT: (507, "INSUFFICIENT_SPACE", "the disk quota is used up"),
    errno.EROFS: (507, "READ_ONLY_STORAGE", "the disk is read-only (remounted after an error, or a locked card?)"),
    errno.EACCES: (403, "PERMISSION_DENIED", "WANDA's user may not access this (permission denied)"),
    errno.EPERM: (403, "PERMISSION_DENIED", "WANDA's user may not do this (operation not permitted)"),
    errno.ENAMETOOLONG: (400, "NAME_TOO_LONG", "the name is too long for the filesystem"),
    errno.ELOOP: (404, "LINK_LOOP", "a symbolic link on the way loops back on itself"),
    errno.EIO: (500, "STORAGE_ERROR", "the disk reported an input/output error (a failing card or drive?)"),
}


def storage_error(exc: OSError) -> ApiError | None:
    """The ApiError a failed disk operation means to a client, or None if it is not one we know."""
    known = _STORAGE_ERRORS.get(exc.errno)
    return ApiError(*known) if known is not None else None


def escaped_error(exc: Exception, where: str) -> ApiError:
    """What a client hears of an exception a handler (REST or WebSocket) let escape: the disk's
    reason if it is one (logged as a warning), else a 500 logged with its traceback. Never the
    exception's text (a defect of the old backend)."""
    known = storage_error(exc) if isinstance(exc, OSError) else None
    if known is not None:
        log.warning("%s: %s", where, exc)
        return known
    log.error("unhandled error in %s", where, exc_info=exc)
    return ApiError(500, "INTERNAL_ERROR", "internal server error (see the server log)")


# aiohttp's own HTTP errors (no route, wrong method) get codes in the same style.
_HTTP_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        response = failure(exc.status, exc.code, exc.message, exc.data)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        message = exc.reason if exc.status != 404 else f"no such endpoint: {request.method} {request.path}"
        response = failure(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConnectionError:
        raise  # the client went away: nobody to answer
    except Exception as exc:
        error = escaped_error(exc, f"{request.method} {request.path}")
        return failure(error.status, error.code, error.message)
