"""The password: with ``--password`` set, nobody else on the star party's Wi-Fi moves the mount.

Off by default (the original backend had none). When set, every endpoint but the login page needs
it: scripts send ``Authorization: Bearer <password>``; a browser logs in once at ``/login`` and
gets a session cookie (HttpOnly, SameSite=Strict) that also opens the stream and the WebSocket.
The cookie is signed with the password (``nonce.HMAC(password, nonce)``), so it survives a
restart of the server and changing the password ends every session. Wrong or missing credentials
are 401 in the envelope; an address that keeps failing waits longer and longer for each answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web


log = logging.getLogger(__name__)

COOKIE = "wanda_session"
COOKIE_MAX_AGE = 30 * 24 * 3600  # a month of nights without typing it again
PUBLIC = frozenset({"/login"})
FREE_FAILURES = 5  # failures an address may make before its answers slow down
FAILURE_WINDOW_S = 600.0
MAX_DELAY_S = 30.0
MAX_TRACKED = 1024  # addresses remembered (a flood of addresses must not grow memory)

@dataclass
class Failures:
    count: int = 0
    last: float = field(default_factory=time.monotonic)


class Guard:
    """Checks credentials and keeps the failure count per address."""

    def __init__(self, password: str, sleep=asyncio.sleep):
        self._password = password.encode("utf-8")
        self._failures: dict[str, Failures] = {}
        self.sleep = sleep  # how a slowed-down answer waits (a seam for the tests)

    def sign(self, nonce: str) -> str:
        return hmac.new(self._password, f"wanda-session:{nonce}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self.sign(nonce)}"

    def valid_session(self, token: str) -> bool:
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self.sign(nonce))

    def valid_password(self, password: str) -> bool:
        return hmac.compare_digest(password.encode("utf-8"), self._password)

    def allowed(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return self.valid_password(credentials.strip())
        token = request.cookies.get(COOKIE)
        return token is not None and self.valid_session(token)

    def offered_credentials(self, request: web.Request) -> bool:
        return "Authorization" in request.headers or COOKIE in request.cookies

    async def failed(self, address: str) -> None:
        """Count a failure; past the free ones, wait 1, 2, 4, ... s (at most 30) before answering."""
        now = time.monotonic()
        record = self._failures.get(address)
        if record is None or now - record.last > FAILURE_WINDOW_S:
            if len(self._failures) >= MAX_TRACKED:
                self._forget_oldest()
            record = self._failures[address] = Failures()
        record.count += 1
        record.last = now
        if record.count > FREE_FAILURES:
            delay = min(2.0 ** (record.count - FREE_FAILURES - 1), MAX_DELAY_S)
            log.warning("%d failed logins from %s: answering after %.0f s", record.count, address, delay)
            await self.sleep(delay)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _forget_oldest(self) -> None:
        oldest = min(self._failures, key=lambda a: self._failures[a].last)
        del self._failures[oldest]
