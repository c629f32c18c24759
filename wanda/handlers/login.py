"""The login page and ``POST /login`` (when a password is set; see wanda/auth.py)."""

from __future__ import annotations

from aiohttp import web

from wanda.auth import COOKIE, COOKIE_MAX_AGE
from wanda.errors import ErrorCode, WandaError
from wanda.handlers.camera_api import read_json
from wanda.handlers.envelope import ok
from wanda.keys import AUTH
from wanda.validate import json_object, known_fields

routes = web.RouteTableDef()
LOGIN_BODY_BYTES = 4096
LOGIN_BODY_S = 5.0


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=LOGIN_PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    guard = request.app.get(AUTH)
    if guard is None:
        return ok({}, "no password is set")
    address = request.remote or "?"
    guard.refuse_if_throttled(address)  # at once, without reading the body
    # Anyone may send this one: a small body, soon, or the connection is not held for it.
    if (request.content_length or 0) > LOGIN_BODY_BYTES:
        raise WandaError(ErrorCode.PAYLOAD_TOO_LARGE, f"a login is at most {LOGIN_BODY_BYTES} bytes")
    body = json_object(await read_json(request, timeout=LOGIN_BODY_S))
    known_fields(body, ("password",))
    password = body.get("password")
    if not isinstance(password, str):
        raise WandaError(ErrorCode.VALIDATION_ERROR, "password: must be a string")
    # Checks the bucket again: parallel requests may all have passed the check above while their
    # bodies came in.
    if not guard.try_password(address, password):
        raise WandaError(ErrorCode.UNAUTHORIZED, "wrong password")
    response = ok({}, "logged in")
    response.set_cookie(
        COOKIE,
        guard.new_session(),
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
    )
    return response


# The login page stands alone (no script or style from elsewhere: nothing else is open yet). It is
# dark, and red on black if the client's night mode is on.
LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>WANDA: log in</title><link rel="icon" href="data:,">
<script>if (localStorage.getItem("wanda.night") === "1") document.documentElement.classList.add("night");</script>
<style>
:root { --bg: #0b0d12; --text: #d8dde6; --line: #2a3140; --accent: #5b8cff; --danger: #ff6b6b; }
html.night { --bg: #000; --text: #e00000; --line: #3a0000; --accent: #b00000; --danger: #ff2000; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg); color: var(--text);
       font: 16px system-ui, sans-serif; }
form { display: grid; gap: .8rem; width: min(90vw, 20rem); }
input, button { font: inherit; min-height: 44px; border-radius: 8px; border: 1px solid var(--line); padding: 0 .8rem;
                background: var(--bg); color: var(--text); }
button { background: var(--accent); color: var(--bg); font-weight: 600; cursor: pointer; }
output { color: var(--danger); min-height: 1.2em; }
</style></head>
<body><form id="login"><h1>WANDA</h1>
<label for="password">Password</label>
<input id="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button><output id="message" role="alert"></output></form>
<script>
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("message");
  message.textContent = "";
  try {
    const response = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ password: document.getElementById("password").value }) });
    const body = await response.json();
    if (body.success) location.replace("/");
    else message.textContent = body.error;
  } catch { message.textContent = "the server cannot be reached"; }
});
</script></body></html>
"""
