"""What can go wrong, as the domain says it: one enumeration of error codes and one exception.

Domain code (the camera control, sessions, storage, the mount, the checks) raises ``WandaError``
with a code from ``ErrorCode`` and a message for a human; it knows nothing of HTTP. The web layer
(wanda/handlers/envelope.py) alone turns a code into an HTTP status, from one table, and renders
the REST and WebSocket envelopes; the OpenAPI description lists the same codes.
"""

from __future__ import annotations

import errno
import logging
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """Every code a client can meet in a failure envelope (the value is what it reads)."""

    # The request itself
    INVALID_REQUEST = "INVALID_REQUEST"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    INVALID_ACTION = "INVALID_ACTION"
    INVALID_PATH = "INVALID_PATH"
    NAME_TOO_LONG = "NAME_TOO_LONG"
    RESERVED_NAME = "RESERVED_NAME"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    HTTP_ERROR = "HTTP_ERROR"
    # Who may ask
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    FORBIDDEN_ORIGIN = "FORBIDDEN_ORIGIN"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    # The camera, the mount, sessions
    CAPTURE_BUSY = "CAPTURE_BUSY"
    CAPTURE_CANCELLED = "CAPTURE_CANCELLED"
    CAPTURE_FAILED = "CAPTURE_FAILED"
    CAMERA_UNAVAILABLE = "CAMERA_UNAVAILABLE"  # not running, gone, or not this one (the message says)
    MOUNT_ERROR = "MOUNT_ERROR"
    MOUNT_BUSY = "MOUNT_BUSY"  # already centring a target, or a session runs
    CENTRE_FAILED = "CENTRE_FAILED"  # centring a target ended short of it: data.reason says why
    SESSION_START_FAILED = "SESSION_START_FAILED"
    SESSION_STOP_FAILED = "SESSION_STOP_FAILED"
    NO_FRAME = "NO_FRAME"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    BUSY = "BUSY"
    # Plate solving
    NO_SITE = "NO_SITE"  # the site (latitude, longitude) is needed and not set
    SOLVE_FAILED = "SOLVE_FAILED"  # no solution: data.reason says why (too few stars, no index, ...)
    # The Pi's clock
    CLOCK_SYNCHRONIZED = "CLOCK_SYNCHRONIZED"  # NTP keeps it: not set by hand
    CLOCK_ERROR = "CLOCK_ERROR"  # timedatectl missing, failing or not answering
    # Files and disks
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    NO_THUMBNAIL = "NO_THUMBNAIL"
    FOLDER_IN_USE = "FOLDER_IN_USE"
    INSUFFICIENT_SPACE = "INSUFFICIENT_SPACE"
    READ_ONLY_STORAGE = "READ_ONLY_STORAGE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    LINK_LOOP = "LINK_LOOP"
    STORAGE_ERROR = "STORAGE_ERROR"
    # WANDA itself
    INTERNAL_ERROR = "INTERNAL_ERROR"


class WandaError(Exception):
    """A failure a client should hear of: a stable code and a message for a human.

    ``answer_as``: a failure that is told by its own code but answered with the status of
    another (a capture that failed because the disk is full: CAPTURE_FAILED, with the status of
    INSUFFICIENT_SPACE). ``retry_after``: seconds until a try may succeed (429, 503)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        answer_as: ErrorCode | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.answer_as = answer_as or code
        self.retry_after = retry_after


# What the disk says, as the client should hear it. A capture disk fills up, is mounted read-only
# after an error, or holds a name or a link no filesystem call can follow: none of that is the
# server's fault, and a 500 would tell the observer nothing.
_STORAGE_ERRORS = {
    errno.ENOSPC: (ErrorCode.INSUFFICIENT_SPACE, "the disk is full: free some space (delete in the gallery)"),
    errno.EDQUOT: (ErrorCode.INSUFFICIENT_SPACE, "the disk quota is used up"),
    errno.EROFS: (ErrorCode.READ_ONLY_STORAGE, "the disk is read-only (remounted after an error, or a locked card?)"),
    errno.EACCES: (ErrorCode.PERMISSION_DENIED, "WANDA's user may not access this (permission denied)"),
    errno.EPERM: (ErrorCode.PERMISSION_DENIED, "WANDA's user may not do this (operation not permitted)"),
    errno.ENAMETOOLONG: (ErrorCode.NAME_TOO_LONG, "the name is too long for the filesystem"),
    errno.ELOOP: (ErrorCode.LINK_LOOP, "a symbolic link on the way loops back on itself"),
    errno.EIO: (ErrorCode.STORAGE_ERROR, "the disk reported an input/output error (a failing card or drive?)"),
}


def storage_error(exc: OSError) -> WandaError | None:
    """The error a failed disk operation means to a client, or None if it is not one we know."""
    known = _STORAGE_ERRORS.get(exc.errno) if exc.errno is not None else None
    return WandaError(*known) if known is not None else None


def escaped_error(exc: Exception, where: str) -> WandaError:
    """What a client hears of an exception a handler (REST or WebSocket) let escape: the disk's
    reason if it is one (logged as a warning), else an internal error logged with its traceback.
    Never the exception's text (a defect of the old backend)."""
    known = storage_error(exc) if isinstance(exc, OSError) else None
    if known is not None:
        log.warning("%s: %s", where, exc)
        return known
    log.error("unhandled error in %s", where, exc_info=exc)
    return WandaError(ErrorCode.INTERNAL_ERROR, "internal server error (see the server log)")
