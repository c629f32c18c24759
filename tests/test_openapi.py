"""The OpenAPI description: it describes exactly the routes the app registers (but Alpaca's, which
ASCOM's Alpaca API describes: docs/alpaca.md), and the server holds to it under fuzzing
(schemathesis), including a fuzzer of our own for the WebSocket."""

from __future__ import annotations

from wanda.alpaca.protocol import is_alpaca_path
from wanda.app import create_app
from wanda.handlers.openapi import build_spec
from wanda.settings import Limits


def registered_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        if route.method == "HEAD" or is_alpaca_path(route.resource.canonical):  # HEAD: aiohttp answers it
            continue
        operations.add((route.method.lower(), route.resource.canonical))
    return operations


async def test_every_route_is_described_and_nothing_else(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    spec = await response.json()
    assert spec["openapi"].startswith("3.")
    described = {(method, path) for path, item in spec["paths"].items() for method in item}
    registered = registered_operations(client.app)
    assert described - registered == set(), "described but not served"
    assert registered - described == set(), "served but not described"


async def test_ranges_come_from_the_camera_in_use(client):
    spec = await (await client.get("/api/openapi.json")).json()
    body = spec["paths"]["/api/camera/settings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["exposure_seconds"]["maximum"] == 230.0  # the simulated sky's longest
    assert body["additionalProperties"] is False
    error = spec["components"]["schemas"]["Error"]
    assert "VALIDATION_ERROR" in error["properties"]["code"]["enum"]


def test_every_error_code_has_one_status_and_is_described():
    from wanda.errors import ErrorCode
    from wanda.handlers.envelope import STATUS

    assert set(STATUS) == set(ErrorCode)  # the one table: no code without a status
    described = build_spec(Limits(exposure=(0.0001, 230.0), gain=(1.0, 16.0)))
    enum = described["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert sorted(enum) == sorted(code.value for code in ErrorCode)
