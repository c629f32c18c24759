"""aiohttp handlers: one RouteTableDef per module, and what they share."""

from __future__ import annotations

import socket
import struct

from aiohttp import web


def drop_client(request: web.Request) -> None:
    """Let a client go at once, with a reset instead of a close.

    Clients are dropped for not reading. A plain close would queue a FIN behind the data they never
    read: the kernel then keeps the socket and its send buffer in FIN-WAIT-1 for minutes (330 s in
    the soak) and the client never learns it was let go. A zero linger makes the close a reset that
    frees both now and tells the client.
    """
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # not a TCP socket (a test transport): the abort still frees the memory
    transport.abort()
