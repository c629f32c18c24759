"""The WebSocket: events from the server, commands from scripts and the browser.

Server to client: ``{"topic", "event", "data", "ts"}``. Client to server:
``{"id": <any>, "action": "camera.set", "params": {...}}``, answered with
``{"id", "ok": true, "data"}`` or ``{"id", "ok": false, "error": {"code", "message"}}``.
Each command runs in its own task, so a capture's reply comes when it is done while other commands
on the same socket keep being answered.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from wanda import __version__
from wanda.errors import ErrorCode, WandaError, escaped_error
from wanda.events import TOPICS, Message, Subscriber, encode_event
from wanda.handlers import drop_client
from wanda.handlers.envelope import ws_error
from wanda.keys import BUS

routes = web.RouteTableDef()

MAX_MESSAGE = 64 * 1024  # larger messages close the socket with 1009 (message too big)
MAX_PENDING = 16  # commands in flight per socket
HEARTBEAT = 20.0  # seconds between pings; a peer that does not answer is closed
CLOSE_TIMEOUT = 1.0  # seconds to wait for the peer's answer to our close

Action = Callable[[web.Application, Subscriber, dict[str, Any]], Awaitable[Any]]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    def register(handler: Action) -> Action:
        ACTIONS[name] = handler
        return handler

    return register


def no_params(params: dict[str, Any]) -> None:
    if params:
        raise WandaError(ErrorCode.VALIDATION_ERROR, f"{sorted(params)[0]}: this action takes no parameters")


@action("subscribe")
async def _subscribe(app: web.Application, subscriber: Subscriber, params: dict[str, Any]) -> Any:
    topics = params.get("topics")
    if set(params) - {"topics"}:
        raise WandaError(ErrorCode.VALIDATION_ERROR, f"{sorted(set(params) - {'topics'})[0]}: unknown parameter")
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise WandaError(ErrorCode.VALIDATION_ERROR, "topics: must be a list of topic names")
    unknown = sorted(set(topics) - set(TOPICS))
    if unknown:
        raise WandaError(
            ErrorCode.VALIDATION_ERROR, f"topics: unknown topic {unknown[0]!r} (known: {', '.join(TOPICS)})"
        )
    app[BUS].set_topics(subscriber, set(topics) | {"system"})  # system messages (errors, hello) always arrive
    return {"topics": sorted(subscriber.topics)}


def _reply(request_id: Any, data: Any = None, error: WandaError | None = None) -> Message:
    if error is None:
        body = {"id": request_id, "ok": True, "data": data}
    else:
        body = {"id": request_id, "ok": False, "error": ws_error(error)}
    return Message(json.dumps(body, separators=(",", ":")), None)


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON, but it would come back as Infinity
        raise ValueError(f"{text} is too large")
    return value


class Connection:
    """One client: parses its messages and runs its commands."""

    def __init__(self, app: web.Application, subscriber: Subscriber):
        self.app = app
        self.subscriber = subscriber
        self.pending: set[asyncio.Task] = set()

    def receive(self, text: str) -> None:
        try:
            # NaN and Infinity are Python's extensions, not JSON: taken as an id they would be
            # echoed in a reply that no JSON parser reads.
            message = json.loads(text, parse_constant=_not_json, parse_float=_finite)
        except (ValueError, RecursionError):
            self.subscriber.offer(
                _reply(None, error=WandaError(ErrorCode.INVALID_REQUEST, "the message is not valid JSON"))
            )
            return
        if not isinstance(message, dict):
            self.subscriber.offer(
                _reply(None, error=WandaError(ErrorCode.INVALID_REQUEST, "the message must be a JSON object"))
            )
            return
        request_id = message.get("id")
        name = message.get("action")
        params = message.get("params", {})
        if not isinstance(name, str):
            error = WandaError(ErrorCode.INVALID_REQUEST, "action: must be a string naming the command")
        elif name not in ACTIONS:
            error = WandaError(
                ErrorCode.INVALID_ACTION, f"unknown action {name[:64]!r} (actions: {', '.join(sorted(ACTIONS))})"
            )
        elif not isinstance(params, dict):
            error = WandaError(ErrorCode.VALIDATION_ERROR, "params: must be a JSON object")
        elif len(self.pending) >= MAX_PENDING:
            error = WandaError(ErrorCode.TOO_MANY_REQUESTS, f"at most {MAX_PENDING} commands may be in flight")
        else:
            task = asyncio.create_task(self._run(request_id, ACTIONS[name], params), name=f"ws:{name}")
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
            return
        self.subscriber.offer(_reply(request_id, error=error))

    async def _run(self, request_id: Any, handler: Action, params: dict[str, Any]) -> None:
        try:
            data = await handler(self.app, self.subscriber, params)
        except WandaError as error:
            self.subscriber.offer(_reply(request_id, error=error))
        except Exception as exc:
            self.subscriber.offer(_reply(request_id, error=escaped_error(exc, f"WebSocket command {handler.__name__}")))
        else:
            self.subscriber.offer(_reply(request_id, data))


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    bus = request.app[BUS]

    async def close(code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ws.close(code=code, message=reason.encode())
        except TimeoutError:  # a peer that does not read does not answer the close either
            drop_client(request)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled
            # Not a cancel of ours: aiohttp shares one drain waiter per connection, and the send we
            # gave up on cancelled it, so the close frame cannot be sent behind it either.
            drop_client(request)

    subscriber = Subscriber(ws.send_str, close)
    connection = Connection(request.app, subscriber)
    hello = {"version": __version__, "topics": list(TOPICS), "actions": sorted(ACTIONS)}
    subscriber.offer(Message(encode_event("system", "hello", hello), None))
    for message in bus.status_messages():
        subscriber.offer(message)
    writer = asyncio.create_task(subscriber.run(), name="ws-writer")
    bus.add(subscriber)
    try:
        async for received in ws:
            if received.type == WSMsgType.TEXT:
                connection.receive(received.data)
            elif received.type == WSMsgType.BINARY:
                error = WandaError(ErrorCode.INVALID_REQUEST, "binary messages are not supported: send JSON text")
                subscriber.offer(_reply(None, error=error))
    finally:
        bus.remove(subscriber)
        try:
            if subscriber.too_slow:
                # The writer is closing this client for being too slow: let it finish the close,
                # which ends in a reset for a peer that does not read. Cancelling it would leave
                # the close frame queued behind everything the peer never read.
                await asyncio.wait({writer}, timeout=2 * CLOSE_TIMEOUT)
        finally:
            subscriber.closing = True
            writer.cancel()
        # Commands already running (a capture) finish on their own; their replies go nowhere.
    return ws
