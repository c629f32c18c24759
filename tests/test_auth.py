"""The password: off by default; when set, every endpoint but the login page needs it, the
stream and the WebSocket too, and an address that keeps guessing gets a try every ten seconds."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import aiohttp
import pytest

from wanda.auth import COOKIE, EVERYONE_FAILURES, EVERYONE_REFILL_S, FREE_FAILURES, MAX_TRACKED, REFILL_S, Guard
from wanda.errors import ErrorCode, WandaError
from wanda.keys import AUTH

PASSWORD = "dark skies"
BEARER = {"Authorization": f"Bearer {PASSWORD}"}


@pytest.fixture
async def locked(make_client):
    return await make_client(password=PASSWORD)


class Clock:
    """Time for the buckets, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(locked):
    clock = Clock()
    locked.app[AUTH].clock = clock
    return clock


def wrong_login(client):
    return client.post("/login", json={"password": "guess"})


async def raw_request(client, head: bytes) -> tuple[int, str]:
    """Send ``head`` as it is (bytes no HTTP client would send): the status and the code of the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"Host: localhost\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    answer_head, _, body = answer.partition(b"\r\n\r\n")
    return int(answer_head.split()[1]), json.loads(body)["code"]


async def test_without_a_password_nothing_is_asked(client):
    assert (await client.get("/api/camera/status")).status == 200
    assert (await client.get("/login")).status == 200  # harmless: says so and logs nobody in
    assert (await (await client.post("/login", json={"password": "x"})).json())["message"] == "no password is set"


@pytest.mark.parametrize(
    "path", ["/api/camera/status", "/stream", "/snapshot", "/api/captures", "/state", "/api/openapi.json"]
)
async def test_every_endpoint_needs_it(locked, path):
    response = await locked.get(path)
    assert response.status == 401
    body = await response.json()
    assert body == {"success": False, "code": "UNAUTHORIZED", "error": body["error"]} and "/login" in body["error"]
    assert (await locked.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
    if path != "/stream":
        assert (await locked.get(path, headers=BEARER)).status == 200


async def test_state_changes_and_the_websocket_need_it(locked):
    response = await locked.post("/api/mount/tracking", json={"action": "start"})
    assert response.status == 401
    assert not (await (await locked.get("/api/mount/status", headers=BEARER)).json())["data"]["tracking"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await locked.ws_connect("/ws")
    assert refused.value.status == 401
    ws = await locked.ws_connect("/ws", headers=BEARER)
    assert (await ws.receive_json())["event"] == "hello"
    await ws.close()


async def test_a_browser_logs_in_once_and_the_cookie_opens_everything(locked):
    page = await locked.get("/", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/login"
    login_page = await locked.get("/login")
    assert login_page.status == 200 and 'type="password"' in await login_page.text()
    wrong = await locked.post("/login", json={"password": "light pollution"})
    assert wrong.status == 401 and (await wrong.json())["code"] == "UNAUTHORIZED"
    right = await locked.post("/login", json={"password": PASSWORD})
    assert right.status == 200
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "wanda_session=" in cookie
    # The client's cookie jar now carries it: the page, the API, the stream and the WebSocket open.
    assert (await locked.get("/")).status == 200
    assert (await locked.get("/api/camera/status")).status == 200
    stream = await locked.get("/stream")
    assert stream.status == 200 and stream.content_type == "multipart/x-mixed-replace"
    stream.close()
    ws = await locked.ws_connect("/ws")
    assert (await ws.receive_json())["event"] == "hello"
    await ws.close()


async def test_a_forged_or_old_cookie_is_refused(locked):
    locked.session.cookie_jar.update_cookies({"wanda_session": "abc.0123456789abcdef"})
    assert (await locked.get("/api/camera/status")).status == 401
    other = locked.app[AUTH].__class__("another password")
    locked.session.cookie_jar.update_cookies({"wanda_session": other.new_session()})  # signed with another password
    assert (await locked.get("/api/camera/status")).status == 401


async def test_five_wrong_passwords_then_one_try_every_ten_seconds(locked, clock, caplog):
    caplog.set_level(logging.WARNING, logger="wanda.auth")
    for _ in range(FREE_FAILURES):
        assert (await wrong_login(locked)).status == 401
    refused = await wrong_login(locked)
    assert refused.status == 429 and refused.headers["Retry-After"] == "10"
    assert await refused.json() == {
        "success": False,
        "code": "TOO_MANY_ATTEMPTS",
        "error": "too many wrong passwords from this address: try again in 10 s",
    }
    # While throttled the right password is not even compared: a right guess answers like a wrong one.
    assert (await locked.post("/login", json={"password": PASSWORD})).status == 429
    assert (await locked.get("/api/camera/status", headers=BEARER)).status == 429
    assert (await locked.get("/api/camera/status")).status == 429
    # A browser still reaches the login page, which shows why.
    assert (await locked.get("/", allow_redirects=False)).headers["Location"] == "/login"
    assert (await locked.get("/login")).status == 200
    clock.now += REFILL_S - 1
    assert (await locked.get("/api/camera/status", headers=BEARER)).headers["Retry-After"] == "1"
    clock.now += 1
    assert (await locked.post("/login", json={"password": PASSWORD})).status == 200  # the one more try
    assert len([r for r in caplog.records if r.name == "wanda.auth"]) == 1  # logged once, not per refusal
    locked.session.cookie_jar.clear()
    for _ in range(FREE_FAILURES):  # the right password forgave: five tries again
        assert (await locked.get("/api/camera/status", headers={"Authorization": "Bearer guess"})).status == 401
    assert (await locked.get("/api/camera/status", headers=BEARER)).status == 429


async def test_thousands_of_wrong_passwords_never_break_it(locked, clock):
    statuses = Counter()
    for guess in range(2000):
        clock.now += REFILL_S / 2
        if guess % 2:
            response = await wrong_login(locked)
        else:
            response = await locked.get("/api/camera/status", headers={"Authorization": f"Bearer guess {guess}"})
        statuses[response.status] += 1
        response.release()
    assert set(statuses) == {401, 429}  # never a 500
    assert statuses[401] <= FREE_FAILURES + 2000 // 2  # one try per REFILL_S past the free ones


async def test_parallel_guesses_get_no_more_tries(locked, clock):
    async def status(password: str) -> int:
        async with locked.post("/login", json={"password": password}) as response:
            return response.status

    statuses = await asyncio.gather(*[status("guess") for _ in range(50)], status(PASSWORD))
    checked = [s for s in statuses if s != 429]
    if 200 in checked:  # the right one came among the first five: it forgave, and five more were checked
        assert len(checked) <= 2 * FREE_FAILURES
    else:
        assert len(checked) == FREE_FAILURES
        assert statuses[-1] == 429  # the right one was refused with the others: nothing learnt


async def test_a_session_is_never_refused_while_its_address_is_throttled(locked, clock):
    assert (await locked.post("/login", json={"password": PASSWORD})).status == 200
    session = locked.session.cookie_jar.filter_cookies(locked.make_url("/"))[COOKIE].value
    locked.session.cookie_jar.clear()
    wrong = {"Authorization": "Bearer guess"}
    for _ in range(FREE_FAILURES):
        assert (await locked.get("/api/camera/status", headers=wrong)).status == 401
    assert (await locked.get("/api/camera/status", headers=wrong)).status == 429
    assert (await locked.get("/api/camera/status", cookies={COOKIE: session})).status == 200
    assert (await locked.get("/api/camera/status", headers=wrong, cookies={COOKIE: session})).status == 200


async def test_a_forged_cookie_spends_no_tries(locked, clock):
    locked.session.cookie_jar.update_cookies({COOKIE: "abc.0123456789abcdef"})
    for _ in range(20):
        response = await locked.get("/api/camera/status")
        assert response.status == 401 and (await response.json())["code"] == "UNAUTHORIZED"
    assert (await locked.post("/login", json={"password": PASSWORD})).status == 200


async def test_credentials_that_are_not_ascii_or_not_utf8_are_wrong_not_a_fault(locked, clock):
    responses = [
        await locked.get("/api/camera/status", headers={"Cookie": f"{COOKIE}=é.ü"}),
        await locked.get("/api/camera/status", headers={"Authorization": "Bearer caf\xe9"}),
        await locked.post("/login", data='{"password": "\\ud800"}', headers={"Content-Type": "application/json"}),
    ]
    answers = [(response.status, (await response.json())["code"]) for response in responses]
    # Bytes that are not UTF-8 (aiohttp hands them on as lone surrogates): only a raw request sends them.
    for header in (b"Authorization: Bearer \xff\xfe", b"Cookie: wanda_session=\xff.\xfe"):
        answers.append(await raw_request(locked, b"GET /api/camera/status HTTP/1.1\r\n" + header + b"\r\n"))
    assert answers == [(401, "UNAUTHORIZED")] * 5


def test_many_addresses_together_get_little_more_than_the_shared_ration():
    clock = Clock()
    guard = Guard(PASSWORD, clock=clock)
    addresses = [f"10.0.0.{n}" for n in range(1, 255)]  # a whole /24, five guesses each
    checked = 0
    for address in addresses:
        for _ in range(FREE_FAILURES):
            try:
                assert not guard.try_password(address, "guess")
                checked += 1
            except WandaError as error:
                assert error.code == ErrorCode.TOO_MANY_ATTEMPTS and error.retry_after >= 1
    # Per address alone it would be 5 x 254 = 1,270: each address gets one, then the shared ration.
    assert checked <= EVERYONE_FAILURES + len(addresses)
    with pytest.raises(WandaError) as throttled:
        guard.try_password(addresses[0], PASSWORD)  # a guesser's address: the right one waits too
    assert "many addresses" in throttled.value.message or "this address" in throttled.value.message
    # A script that has never guessed wrong is not locked out by the guessers.
    assert guard.try_password("192.168.1.20", PASSWORD)
    clock.now += EVERYONE_REFILL_S * EVERYONE_FAILURES + REFILL_S * FREE_FAILURES
    assert guard.try_password(addresses[0], PASSWORD)  # and all is forgiven in time


def test_an_ipv6_home_network_is_one_client():
    guard = Guard(PASSWORD, clock=Clock())
    for n in range(FREE_FAILURES):
        assert not guard.try_password(f"2001:db8:1:2::{n + 1:x}", "guess")  # a new privacy address each time
    with pytest.raises(WandaError):
        guard.try_password("2001:db8:1:2::99", "guess")
    assert not guard.try_password("2001:db8:1:3::1", "guess")  # another /64 is another client


def test_memory_stays_bounded_whatever_the_number_of_addresses():
    clock = Clock()
    guard = Guard(PASSWORD, clock=clock)
    guard._everyone.capacity = 10**9  # the shared ration out of the way: the table is what is tested
    refused = 0
    for n in range(5000):
        try:
            assert not guard.try_password(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", "guess")
        except WandaError as error:
            assert error.code == ErrorCode.TOO_MANY_ATTEMPTS and error.retry_after >= 1
            refused += 1
    assert len(guard._buckets) == MAX_TRACKED
    # The addresses beyond the table share one bucket: changing address buys no more tries.
    assert refused == 5000 - MAX_TRACKED - FREE_FAILURES
    clock.now += REFILL_S  # every bucket has refilled: all forgotten, a new address has its own again
    assert not guard.try_password("192.168.1.7", "guess")
    assert list(guard._buckets) == ["192.168.1.7"]
