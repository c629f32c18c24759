"""The one error type of the API and the middleware that turns it into the response envelope.

Envelope (kept from the original WANDA backend so existing scripts keep working):
success ``{"success": true, "data": {...}, "message": "..."}``,
failure ``{"success": false, "code": "UPPER_SNAKE", "error": "...", "data"?: {...}}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A failure a client should see: HTTP status, a stable code and a human message."""

    def __init__(self, status: int, code: str, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data


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
        return failure(exc.status, exc.code, exc.message, exc.data)
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
    except Exception:
        # Never send exception text to clients (a defect of the old backend); the log has it.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return failure(500, "INTERNAL_ERROR", "internal server error (see the server log)")
