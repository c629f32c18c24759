"""The password: with ``--password`` set, nobody else on the star party's Wi-Fi moves the mount.

Off by default (the original backend had none). When set, every endpoint but the login page needs
it: scripts send ``Authorization: Bearer <password>`` (Alpaca clients HTTP Basic, any user name);
a browser logs in once at ``/login`` and gets a session cookie (HttpOnly, SameSite=Strict) that
also opens the stream and the WebSocket. The cookie is signed with the password (``nonce.HMAC(password, nonce)``), so it survives a
restart of the server and changing the password ends every session. Wrong or missing credentials
are 401 in the envelope. Wrong passwords are rationed per address: five, then one every ten
seconds. An address that has used them up gets 429 for every request without a valid cookie, the
right password included, before any password is compared: sending guesses in parallel, or giving
up on slow answers, learns nothing faster.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from wanda.errors import ErrorCode, WandaError

log = logging.getLogger(__name__)

COOKIE = "wanda_session"
COOKIE_MAX_AGE = 30 * 24 * 3600  # a month of nights without typing it again
PUBLIC = frozenset({"/login"})
# Each address has a token bucket of wrong passwords: FREE_FAILURES at once (a typo or two, a
# script still sending last night's password), then one more every REFILL_S. An observer who
# mistypes five times waits ten seconds; a guesser gets at most 8,640 tries a day per address,
# however it sends them.
FREE_FAILURES = 5
REFILL_S = 10.0
MAX_TRACKED = 1024  # addresses with a bucket that is not full (a flood of addresses must not grow memory)
# And one bucket for every address together: a guesser with many addresses (a /24 of its own,
# IPv6 privacy addresses) gets little more than this: each address one guess, then the shared
# ration. It holds back only addresses that have guessed wrong themselves, so a few guessers can
# never lock a script with the right password (or a browser logging in) out. Browsers with a
# cookie are never refused.
EVERYONE_FAILURES = 30
EVERYONE_REFILL_S = 2.0


def _utf8(text: str) -> bytes:
    # Credentials are compared as bytes, so that any str compares without raising: aiohttp keeps
    # invalid UTF-8 in headers as lone surrogates, and JSON may carry one ("\ud800").
    return text.encode("utf-8", "surrogatepass")


def request_password(request: web.Request) -> str | None:
    """The password a request carries: ``Authorization: Bearer <password>`` (scripts), or HTTP
    Basic with any user name (Alpaca clients: N.I.N.A., ASCOM's clients, a URL's ``user:pass@``)."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return None
    if scheme.lower() == "bearer":
        return credentials
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def client_of(address: str) -> str:
    """Whose guesses an address makes: the address, but for IPv6 its /64 (one home network,
    where a client picks new addresses at will)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


@dataclass(slots=True)
class Bucket:
    """Wrong passwords, kept as the moment the bucket is full again: each wrong password moves
    that moment ``refill_s`` later, so ``capacity - (full_at - now) / refill_s`` tries are left at
    ``now``. Nothing here grows with the number of failures."""

    full_at: float
    capacity: int = FREE_FAILURES
    refill_s: float = REFILL_S
    warned: bool = False  # its throttling was logged (once, or an attacker would fill the log)

    def wait(self, now: float) -> float:
        """Seconds until the next try (positive while throttled)."""
        return self.full_at - now - (self.capacity - 1) * self.refill_s

    def spend(self, now: float) -> None:
        self.full_at = max(self.full_at, now) + self.refill_s


class Guard:
    """Checks credentials and rations wrong passwords per address."""

    def __init__(self, password: str, clock: Callable[[], float] = time.monotonic):
        self._password = _utf8(password)
        self.clock = clock  # the time buckets refill by (a seam for the tests)
        self._buckets: dict[str, Bucket] = {}  # only buckets that are not full: a full one says nothing
        # Shared by new addresses while the table is full of buckets still refilling: an attacker
        # who keeps changing address gains nothing by it, and memory stays bounded.
        self._overflow = Bucket(full_at=-math.inf)
        self._everyone = Bucket(full_at=-math.inf, capacity=EVERYONE_FAILURES, refill_s=EVERYONE_REFILL_S)

    def sign(self, nonce: str) -> str:
        return hmac.new(self._password, _utf8(f"wanda-session:{nonce}"), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self.sign(nonce)}"

    def valid_session(self, token: str) -> bool:
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(_utf8(signature), _utf8(self.sign(nonce)))

    def has_session(self, request: web.Request) -> bool:
        token = request.cookies.get(COOKIE)
        return token is not None and self.valid_session(token)

    def refuse_if_throttled(self, address: str) -> None:
        """Raise 429 TOO_MANY_ATTEMPTS, with Retry-After, while ``address`` (or everybody) has no
        try left."""
        now = self.clock()
        client = client_of(address)
        mine = self._bucket(client, now).wait(now)
        everyone = self._everyone.wait(now) if client in self._buckets else 0.0
        if mine > 0 or everyone > 0:
            seconds = math.ceil(max(mine, everyone))
            whose = "this address" if mine >= everyone else "many addresses"
            raise WandaError(
                ErrorCode.TOO_MANY_ATTEMPTS,
                f"too many wrong passwords from {whose}: try again in {seconds} s",
                retry_after=seconds,
            )

    def try_password(self, address: str, password: str) -> bool:
        """Whether ``password`` is the password. A throttled address is refused (429) before it
        is compared; a wrong one spends a try of the address, a right one forgives it.

        Synchronous from the check to the spending: parallel guesses cannot all pass the check
        before one of them spends."""
        self.refuse_if_throttled(address)
        if hmac.compare_digest(_utf8(password), self._password):
            self._buckets.pop(client_of(address), None)  # not the shared ones: the others' guesses still count
            return True
        self._spend(address)
        return False

    def _spend(self, address: str) -> None:
        now = self.clock()
        address = client_of(address)
        bucket = self._bucket(address, now)
        bucket.spend(now)
        if bucket is not self._overflow:
            self._buckets[address] = bucket
        self._everyone.spend(now)
        if self._everyone.wait(now) > 0 and not self._everyone.warned:
            self._everyone.warned = True
            log.warning(
                "too many wrong passwords from many addresses: one more try every %.0f s for all", EVERYONE_REFILL_S
            )
        elif self._everyone.wait(now) <= 0:
            self._everyone.warned = False  # a new episode is logged anew
        if bucket.wait(now) > 0 and not bucket.warned:
            bucket.warned = True
            shared = f" (shared by the addresses beyond the {MAX_TRACKED} tracked)" if bucket is self._overflow else ""
            log.warning(
                "too many wrong passwords from %s%s: its requests without a session cookie get 429, "
                "one more try every %.0f s",
                address,
                shared,
                REFILL_S,
            )

    def _bucket(self, address: str, now: float) -> Bucket:
        """The address's bucket (``full_at >= now``): its own, a new one if it has none (stored
        only once it spends), or the shared overflow one when the table has no room left."""
        bucket = self._buckets.get(address)
        if bucket is not None and bucket.full_at > now:
            return bucket
        self._buckets.pop(address, None)  # refilled: forgotten
        if len(self._buckets) >= MAX_TRACKED:
            self._buckets = {a: b for a, b in self._buckets.items() if b.full_at > now}
        if len(self._buckets) < MAX_TRACKED:
            return Bucket(full_at=now)
        if self._overflow.full_at <= now:
            self._overflow = Bucket(full_at=now)  # refilled: a new episode, logged anew
        return self._overflow
