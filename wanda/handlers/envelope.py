"""The response envelope, and the one table from error codes to HTTP statuses.

Envelope (kept from the original WANDA backend so existing scripts keep working):
success ``{"success": true, "data": {...}, "message": "..."}``,
failure ``{"success": false, "code": "UPPER_SNAKE", "error": "...", "data"?: {...}}``.
A WebSocket reply carries the same failure as ``{"ok": false, "error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from wanda.errors import ErrorCode, WandaError, escaped_error

# The HTTP status of every code: the one place where the domain's failures meet HTTP.
STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.INVALID_ACTION: 400,
    ErrorCode.INVALID_PATH: 400,
    ErrorCode.NAME_TOO_LONG: 400,
    ErrorCode.RESERVED_NAME: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.FORBIDDEN_ORIGIN: 403,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.LINK_LOOP: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.CAPTURE_BUSY: 409,
    ErrorCode.CAPTURE_CANCELLED: 409,
    ErrorCode.FOLDER_IN_USE: 409,
    ErrorCode.SESSION_START_FAILED: 409,
    ErrorCode.SESSION_STOP_FAILED: 409,
    ErrorCode.CLOCK_SYNCHRONIZED: 409,
    ErrorCode.MOUNT_BUSY: 409,
    ErrorCode.NO_SITE: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.NO_THUMBNAIL: 415,
    ErrorCode.SOLVE_FAILED: 422,
    ErrorCode.CENTRE_FAILED: 422,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.CAPTURE_FAILED: 500,
    ErrorCode.STORAGE_ERROR: 500,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.HTTP_ERROR: 500,
    ErrorCode.CAMERA_UNAVAILABLE: 503,
    ErrorCode.MOUNT_ERROR: 503,
    ErrorCode.NO_FRAME: 503,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.BUSY: 503,
    ErrorCode.CLOCK_ERROR: 503,
    ErrorCode.TOO_MANY_CONNECTIONS: 503,
    ErrorCode.INSUFFICIENT_SPACE: 507,
    ErrorCode.READ_ONLY_STORAGE: 507,
}


def status_of(error: WandaError) -> int:
    return STATUS[error.answer_as]


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


def error_response(error: WandaError) -> web.Response:
    response = failure(status_of(error), error.code, error.message, error.data)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def ws_error(error: WandaError) -> dict[str, str]:
    """A failure as a WebSocket reply's ``error``."""
    return {"code": error.code, "message": error.message}


# aiohttp's own HTTP errors (no route, wrong method) get codes in the same style.
_HTTP_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except WandaError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, ErrorCode.HTTP_ERROR)
        message = exc.reason if exc.status != 404 else f"no such endpoint: {request.method} {request.path}"
        response = failure(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConnectionError:
        raise  # the client went away: nobody to answer
    except Exception as exc:
        return error_response(escaped_error(exc, f"{request.method} {request.path}"))
