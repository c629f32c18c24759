"""aiohttp handlers: one RouteTableDef per module, and what they share."""

from __future__ import annotations

from aiohttp import web

from wanda.connections import reset


def drop_client(request: web.Request) -> None:
    """Let a client go at once, with a reset instead of a close.

    Clients are dropped for not reading. A plain close would queue a FIN behind the data they never
    read: the kernel then keeps the socket and its send buffer in FIN-WAIT-1 for minutes (330 s in
    the soak) and the client never learns it was let go.
    """
    if request.transport is not None:
        reset(request.transport)
