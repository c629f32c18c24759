"""The Alpaca API over HTTP (wanda/alpaca/ has the devices and the rules): the device API under
``/api/v1/{device_type}/{device_number}/{member}``, the management API under ``/management/`` and
the setup pages under ``/setup``. None of these paths meets WANDA's own ``/api/<part>/...``.

Answers are Alpaca's, not WANDA's envelope: HTTP 200 with ``ErrorNumber`` for what the device
refuses, HTTP 400 with a plain-text reason for a request the server cannot read. The password, the
Origin rule and the connection gate are the middlewares', as for every other path.
"""

from __future__ import annotations

import html
import inspect
import logging
import urllib.parse
from typing import Any

from aiohttp import web

from wanda.alpaca.camera import AlpacaImage
from wanda.alpaca.images import IMAGE_BYTES, bytes_header, json_parts
from wanda.alpaca.protocol import DRIVER_ERROR, AlpacaError, BadRequest, Parameters, envelope, shown
from wanda.alpaca.server import API_VERSIONS
from wanda.connections import read_body
from wanda.errors import WandaError
from wanda.keys import ALPACA, AUTH, CONFIG

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 64  # the widest Alpaca call has a handful


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=reason)


async def _parameters(request: web.Request) -> Parameters:
    """A GET's query, or a PUT's form, read as the rest of WANDA reads bodies: within
    ``body_timeout``, and what does not parse is the client's 400, never a traceback of ours."""
    if request.method != "PUT":
        return Parameters(request.query, exact=False)
    if request.can_read_body and request.content_type != FORM:
        raise BadRequest(f"a PUT's parameters are a form ({FORM}), not {shown(request.content_type)}")
    if (request.charset or "utf-8").lower() != "utf-8":
        raise BadRequest(f"a form is read as UTF-8, not {shown(request.charset or '')}")
    raw = await read_body(request, request.app[CONFIG].body_timeout)  # 408 when it never arrives
    try:
        fields = urllib.parse.parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
        )
    except ValueError as exc:  # not UTF-8 (UnicodeDecodeError is one), or too many fields
        raise BadRequest(f"the form cannot be read: {shown(str(exc))}") from None
    return Parameters(dict(fields), exact=True)


@routes.get("/management/apiversions")
async def api_versions(request: web.Request) -> web.Response:
    return await _management(request, API_VERSIONS)


@routes.get("/management/v1/description")
async def description(request: web.Request) -> web.Response:
    return await _management(request, request.app[ALPACA].description())


@routes.get("/management/v1/configureddevices")
async def configured_devices(request: web.Request) -> web.Response:
    return await _management(request, request.app[ALPACA].configured_devices())


async def _management(request: web.Request, value: Any) -> web.Response:
    try:
        _, client_transaction = (await _parameters(request)).transaction_ids()
    except BadRequest as exc:
        return _bad_request(str(exc))
    return web.json_response(envelope(client_transaction, request.app[ALPACA].transactions.next(), value))


@routes.route("*", "/api/v1/{device_type}/{device_number}/{member}")
async def device_call(request: web.Request) -> web.StreamResponse:
    if request.method not in ("GET", "PUT"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT"])
    server = request.app[ALPACA]
    device_type, number, member = (request.match_info[k] for k in ("device_type", "device_number", "member"))
    try:
        if request.path != request.path.lower():
            raise BadRequest(f"Alpaca's paths are lower case, not {shown(request.path, 80)}")
        parameters = await _parameters(request)
        _, client_transaction = parameters.transaction_ids()
        device = server.device(device_type, number)
        if not device.knows(member):
            raise BadRequest(f"{shown(member)} is not a member of the Alpaca {device_type} interface")
    except BadRequest as exc:
        return _bad_request(str(exc))
    server_transaction = server.transactions.next()
    try:
        call = device.member(member, request.method)
        if call is None:  # the member answers the other verb only
            raise web.HTTPMethodNotAllowed(request.method, ["PUT" if request.method == "GET" else "GET"])
        value = call(parameters)
        if inspect.isawaitable(value):
            value = await value
    except BadRequest as exc:
        return _bad_request(str(exc))
    except AlpacaError as exc:
        # JSON even when ImageBytes was asked for, as ASCOM's own servers answer: clients read the
        # Content-Type (alpyca 3.1 cannot read an ImageBytes failure).
        return web.json_response(envelope(client_transaction, server_transaction, error=exc))
    except WandaError as exc:  # a part of WANDA refused: the device's own failure
        return web.json_response(
            envelope(client_transaction, server_transaction, error=AlpacaError(DRIVER_ERROR, exc.message))
        )
    if isinstance(value, AlpacaImage):
        return await _send_image(request, value, client_transaction, server_transaction)
    return web.json_response(envelope(client_transaction, server_transaction, value))


async def _send_image(
    request: web.Request, image: AlpacaImage, client_transaction: int, server_transaction: int
) -> web.StreamResponse:
    """ImageArray as ImageBytes when the client accepts it, else as JSON; the pixels' encoding is
    the image's own (made once), sent after the answer's own header."""
    height, width = image.pixels.shape
    if IMAGE_BYTES in request.headers.get("Accept", ""):
        parts: tuple[bytes, ...] = (
            bytes_header(width, height, client_transaction, server_transaction),
            await image.encoded("bytes"),
        )
        content_type = IMAGE_BYTES
    else:
        parts = json_parts(await image.encoded("json"), client_transaction, server_transaction)
        content_type = "application/json; charset=utf-8"
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = sum(len(part) for part in parts)
    await response.prepare(request)
    for part in parts:
        await response.write(part)
    await response.write_eof()
    return response


# -- the setup pages -------------------------------------------------------------------------------

SETUP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>WANDA: Alpaca devices</title>
<style>body{{font:16px system-ui,sans-serif;background:#111;color:#ddd;margin:2em;max-width:42em}}
a{{color:#f88}}td,th{{padding:.3em .8em;text-align:left}}code{{color:#fc9}}</style></head><body>
<h1>WANDA's Alpaca devices</h1>
<p>Add these in N.I.N.A., PHD2 or KStars/Ekos as Alpaca devices: they are found by discovery, or
give this machine's address and port <code>{port}</code>.{password}</p>
<table><tr><th>device</th><th>number</th><th>connected</th><th>unique ID</th></tr>{rows}</table>
<p>Nothing to set here: exposure limits, the site and the optic are WANDA's settings, on
<a href="/">WANDA's page</a> and in its configuration. See docs/alpaca.md for what each device does.</p>
</body></html>"""


@routes.get("/setup")
@routes.get("/setup/v1/{device_type}/{device_number}/setup")
async def setup_page(request: web.Request) -> web.Response:
    server = request.app[ALPACA]
    if "device_type" in request.match_info:
        try:
            server.device(request.match_info["device_type"], request.match_info["device_number"])
        except BadRequest as exc:
            return _bad_request(str(exc))
    rows = "".join(
        f"<tr><td>{html.escape(device.name)} ({device.device_type})</td><td>0</td>"
        f"<td>{'yes' if device.connected else 'no'}</td><td><code>{html.escape(device.unique_id)}</code></td></tr>"
        for device in server.devices.values()
    )
    password = (
        " WANDA has a password: give it as the Alpaca device's password (any user name)." if AUTH in request.app else ""
    )
    return web.Response(
        text=SETUP_PAGE.format(port=server.http_port, rows=rows, password=password), content_type="text/html"
    )
