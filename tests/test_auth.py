"""The password: off by default; when set, every endpoint but the login page needs it, the
stream and the WebSocket too, and an address that keeps guessing is slowed down."""

from __future__ import annotations

import aiohttp
import pytest

from wanda.keys import AUTH

PASSWORD = "dark skies"
BEARER = {"Authorization": f"Bearer {PASSWORD}"}


@pytest.fixture
async def locked(make_client):
    return await make_client(password=PASSWORD)


async def test_without_a_password_nothing_is_asked(client):
    assert (await client.get("/api/camera/status")).status == 200
    assert (await client.get("/login")).status == 200  # harmless: says so and logs nobody in
    assert (await (await client.post("/login", json={"password": "x"})).json())["message"] == "no password is set"


@pytest.mark.parametrize("path", ["/api/camera/status", "/stream", "/snapshot", "/api/captures", "/state", "/api/openapi.json"])
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


async def test_repeated_failures_from_one_address_are_slowed_down(locked):
    waits = []

    async def record(seconds):
        waits.append(seconds)

    locked.app[AUTH].sleep = record
    for _ in range(8):
        assert (await locked.post("/login", json={"password": "guess"})).status == 401
    assert waits == [1.0, 2.0, 4.0]  # five free tries, then 1, 2, 4 s ...
    assert (await locked.get("/api/camera/status", headers={"Authorization": "Bearer guess"})).status == 401
    assert waits[-1] == 8.0  # wrong Bearer tokens count too
    assert (await locked.post("/login", json={"password": PASSWORD})).status == 200  # the right one still works
    waits.clear()
    assert (await locked.post("/login", json={"password": "guess"})).status == 401
    assert waits == []  # a success forgives
