"""Alpaca discovery: a client broadcasts ``alpacadiscovery1`` to UDP port 32227 and every Alpaca
server on the network answers ``{"AlpacaPort": n}``, the HTTP port its devices are on.

The responder is an asyncio datagram endpoint on the event loop (a datagram in, one small answer
out: nothing blocks). It answers whether or not a password is set: the port is no secret, the
devices behind it ask for the password. It binds with SO_REUSEPORT, as ASCOM's servers do, so
several Alpaca servers on one machine can all hear a broadcast.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

DISCOVERY_PORT = 32227
QUESTION = b"alpacadiscovery1"


class DiscoveryResponder(asyncio.DatagramProtocol):
    """Answers each discovery question with the HTTP port ``port()`` gives."""

    def __init__(self, port: Callable[[], int]):
        self._port = port
        self._transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, address: tuple) -> None:
        if not data.startswith(QUESTION) or self._transport is None:
            return  # not a question of ours (or of a protocol version we do not speak)
        self._transport.sendto(json.dumps({"AlpacaPort": self._port()}).encode(), address)
        self.answered += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("Alpaca discovery: %s", exc)


def discovery_address(host: str) -> str:
    """Where the responder listens for a server on ``host``: every interface, since a broadcast
    reaches only a socket bound to all of them; only a server kept to the loopback keeps its
    discovery there too."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return host if loopback else "0.0.0.0"


async def start_discovery(
    host: str, port: int, alpaca_port: Callable[[], int]
) -> tuple[asyncio.DatagramTransport, DiscoveryResponder]:
    """Listen for discovery questions on ``host``:``port`` (0: any free port, for tests)."""
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        lambda: DiscoveryResponder(alpaca_port), local_addr=(host, port), reuse_port=True
    )
    return transport, responder
