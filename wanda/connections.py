"""The door: how many connections WANDA holds, and how long one may take to say what it wants.

Each connection costs a file descriptor, and systemd gives a service 1,024 by default: 1,030 TCP
connections that sent nothing (or headers one byte a second) used to take them all, and then a
running session failed with "Too many open files". So:

- a connection has ``header_timeout`` seconds to deliver a request's headers (from when it opens,
  and again after each answer while it idles in keep-alive): a slow or silent one is closed;
- at most ``limit`` connections are open, well below the descriptor limit, which keeps a reserve
  for the camera, the files and the sessions (and one more descriptor for each connection, for
  the file it may be sent). A connection beyond it takes the place of another with no request in
  progress (``ConnectionGate._make_room`` says which); only when every
  open connection is busy is it refused, with a 503 in the envelope;
- one address (other than this machine's own) holds at most a quarter of them, so one client
  cannot keep everybody else out with requests that are busy for long (half-sent bodies,
  streams it reads slowly);
- a request body must arrive within ``body_timeout`` (``read_body``);
- a client that stops reading what it is sent is let go after ``write_timeout``, whatever it is
  sent (a file by sendfile, answers to requests it pipelined and never reads): the kernel's count
  of acknowledged bytes tells, where aiohttp's own writes cannot see a sendfile stall.

``ConnectionGate`` is the protocol factory in front of aiohttp's: it wraps each of aiohttp's
request handlers in a ``GatedConnection`` that sees the connection open and close; the
``gate_middleware`` tells it when a request is in progress.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import resource
import socket
import struct
import termios
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from wanda.errors import ErrorCode, WandaError

log = logging.getLogger(__name__)

# asyncio accepts up to its backlog argument of connections in one go, each a descriptor before
# the gate sees it (and a connection made room from frees its descriptor only a moment later): the
# reserve covers such a burst as well as WANDA's own descriptors (camera, mount, captures,
# sessions, zips, logs, threads' pipes: about 40 seen in use).
ACCEPT_BATCH = 64
FD_RESERVE = ACCEPT_BATCH + 128
# The kernel's queue of connections not yet accepted is set apart from the batch: a short queue
# overflows under a flood of connections, and every client dropped from it waits a second for
# its SYN to be sent again (about 1% of real clients did in bench/abuse.py with a queue of 64).
LISTEN_QUEUE = 1024
MIN_CONNECTIONS = 16
SILENT_GRACE_S = 1.0  # a new connection that has not asked yet is spared until then...
KEPT_IDLE_S = 5.0  # ...unless a kept-alive connection has been idle this long
LOOPBACK = frozenset({"127.0.0.1", "::1"})  # this machine: not limited per address
STALL_CHECK_S = 1.0  # how often busy connections are checked for a client that stopped reading
_TCP_INFO_BYTES_ACKED = 120  # offset of tcpi_bytes_acked (u64) in Linux's struct tcp_info (4.1+)
REFUSAL_LINGER_S = 2.0  # how long a refused client has to read its 503 before the reset
MAX_LINGERING_REFUSALS = 32  # beyond this a refusal is a reset at once: refusals must not take the reserve


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one (systemd's default soft limit is 1,024,
    its hard limit far higher); return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
    return soft


def reset(transport: asyncio.BaseTransport | None) -> None:
    """Close a connection with a reset instead of a FIN: the kernel frees the socket and its
    buffers now (a plain close of a client that stopped reading sits in FIN-WAIT-1 for minutes),
    and the client learns at once that it was let go."""
    if transport is None:
        return
    _linger_zero(transport)
    transport.abort()  # type: ignore[attr-defined]  # every transport of a stream socket has it


def _linger_zero(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # not a TCP socket (a test transport): the abort still frees the memory


def unsent_and_acked(sock: socket.socket) -> tuple[int, int] | None:
    """Bytes queued on a TCP socket but not yet acknowledged by the client, and bytes it has
    acknowledged so far; None where the kernel does not say (not TCP, not Linux)."""
    try:
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0)))[0]
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES_ACKED + 8)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCP_INFO_BYTES_ACKED + 8:
        return None
    return queued, struct.unpack_from("Q", info, _TCP_INFO_BYTES_ACKED)[0]


def current_descriptor_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_limit(configured: int, descriptors: int) -> int:
    """Connections to accept: as configured, but always FD_RESERVE descriptors below the limit,
    and a descriptor left for each connection's file (a download holds one while it is sent)."""
    return max(MIN_CONNECTIONS, min(configured, (descriptors - FD_RESERVE) // 2))


class GatedConnection(asyncio.Protocol):
    """One client connection: aiohttp's handler inside, the gate's deadline around it."""

    def __init__(self, gate: ConnectionGate, handler: RequestHandler, accepted: float):
        self.gate = gate
        self.handler = handler
        self.accepted = accepted  # loop time
        self.transport: asyncio.Transport | None = None
        self.address: str | None = None  # the client's, once open
        self.requests = 0  # in progress on this connection (a stream or a WebSocket stays one)
        self.idle_since = accepted  # loop time its last request ended
        self.dropped = False  # room was made from it (perhaps before it was even open)
        self._deadline: asyncio.TimerHandle | None = None
        self._acked = -1  # the client's acknowledged bytes at the last check
        self._stalled_since: float | None = None  # loop time since when it has acknowledged nothing

    @property
    def busy(self) -> bool:
        return self.requests > 0

    # asyncio's calls, passed on to aiohttp's handler.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.handler.connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.address = peer[0] if isinstance(peer, tuple) else None
        # Room was made from it between its accept and now (accepts come in bursts), or its
        # address holds its share already.
        if self.dropped or not self.gate.opened(self):
            self.dropped = True
            reset(transport)
            return
        self.expect_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.gate.closed(self)
        self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.handler.eof_received()
        return None  # as aiohttp's handler says: close the transport

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    # The deadline for a request's headers.
    def expect_request(self) -> None:
        self._cancel_deadline()
        self._deadline = asyncio.get_running_loop().call_later(self.gate.header_timeout, self._too_slow)

    def request_started(self) -> None:
        self.requests += 1
        self._cancel_deadline()
        self.gate.asked(self)

    def request_ended(self) -> None:
        self.requests -= 1
        self.idle_since = asyncio.get_running_loop().time()
        if self.requests == 0 and self.transport is not None and not self.transport.is_closing():
            self.expect_request()  # kept alive: the next request's headers have as long

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.busy and self.transport is not None:
            self.gate.timed_out += 1
            self.transport.close()  # nothing is queued for it: a plain close frees it at once

    def stalled(self, now: float, write_timeout: float) -> bool:
        """Whether the client has had data waiting for it and acknowledged none of it for
        ``write_timeout``: it has stopped reading."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        counts = unsent_and_acked(sock) if transport is not None and sock is not None else None
        if transport is None or counts is None:
            return False
        queued, acked = counts
        waiting = queued + transport.get_write_buffer_size()
        if waiting == 0 or acked != self._acked:
            self._acked, self._stalled_since = acked, None
            return False
        if self._stalled_since is None:
            self._stalled_since = now
        return now - self._stalled_since >= write_timeout

    def cut(self) -> None:
        """Let go of a client that stopped reading in the middle of a response: its socket is
        shut down under the writer (a sendfile under way must fail as a write does: aborting the
        transport beneath it upsets asyncio), which then closes it, with a reset."""
        if self.transport is None:
            return
        self.dropped = True
        _linger_zero(self.transport)
        sock = self.transport.get_extra_info("socket")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.transport.abort()

    def drop(self) -> None:
        """Make room: a reset, so the socket is freed now, not after a FIN handshake."""
        self.dropped = True
        self._cancel_deadline()
        if self.transport is not None:
            reset(self.transport)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class Refusal(asyncio.Protocol):
    """A connection beyond the limit while every open one is busy: a 503 in the envelope, then
    closed. The client's request is read and ignored, so the close does not become a reset
    that could destroy the 503 before the client reads it."""

    def __init__(self, gate: ConnectionGate):
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gate.lingering += 1
        if self.gate.lingering > MAX_LINGERING_REFUSALS:
            reset(transport)
            return
        self.transport.write(REFUSAL)  # type: ignore[union-attr]  # just set
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, reset, transport)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not served

    def eof_received(self) -> bool:
        return False  # the client has read its answer and closed its side: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.lingering -= 1
        if self._timer is not None:
            self._timer.cancel()


def _refusal() -> bytes:
    body = json.dumps(
        {
            "success": False,
            "code": ErrorCode.TOO_MANY_CONNECTIONS,
            "error": "the server has as many connections as it can hold: try again",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSAL = _refusal()


class ConnectionGate:
    """Counts the open connections and keeps them within ``limit`` (see the module's text)."""

    def __init__(self, limit: int, header_timeout: float, write_timeout: float):
        self.limit = limit
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self._server: web.Server | None = None
        # Open connections in the order they opened, oldest first, in two groups: those that
        # have not yet asked for anything (an attacker's idle or slow ones are all here) are
        # made room from before those that have (a browser's kept-alive connection between two
        # requests).
        self._silent: dict[GatedConnection, None] = {}
        self._asked: dict[GatedConnection, None] = {}  # by their last request: least recent first
        self._by_handler: dict[RequestHandler, GatedConnection] = {}
        self.per_address = max(MIN_CONNECTIONS, limit // 4)
        self._by_address: dict[str, int] = {}
        self.lingering = 0  # refusals still being read
        # Counters for /api/health and bench/abuse.py.
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self.over_share = 0  # reset for coming from an address that holds its share already
        self.stalled = 0  # reset for not reading what they were sent

    def serve(self, server: web.Server) -> ConnectionGate:
        """Put the gate in front of aiohttp's ``server`` (``runner.server`` after setup)."""
        self._server = server
        return self

    def __call__(self) -> asyncio.Protocol:
        """asyncio's protocol factory: called once for each accepted connection."""
        assert self._server is not None, "serve() first"
        if self.open >= self.limit and not self._make_room():
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("%d connections are open and busy: refused a new one (%d so far)", self.limit, self.refused)
            return Refusal(self)
        connection = GatedConnection(self, self._server(), asyncio.get_running_loop().time())
        # Counted from now, not from connection_made: asyncio accepts a burst of connections
        # before any of them is made, and each must see the others.
        self._silent[connection] = None
        return connection

    @property
    def open(self) -> int:
        return len(self._silent) + len(self._asked)

    def _make_room(self) -> bool:
        """Close one connection with no request in progress, the least likely to be missed:
        one that has not asked for anything in a second (an idle or slow client: somebody who
        wants something asks at once); else a kept-alive one idle for a while (a browser opens
        another when it needs one); else the oldest new one; else any kept-alive one."""
        now = asyncio.get_running_loop().time()
        oldest_silent = next(iter(self._silent), None)
        least_recent = next((c for c in self._asked if not c.busy), None)
        idle: GatedConnection | None
        if oldest_silent is not None and now - oldest_silent.accepted >= SILENT_GRACE_S:
            idle = oldest_silent
        elif least_recent is not None and now - least_recent.idle_since >= KEPT_IDLE_S:
            idle = least_recent
        else:
            idle = oldest_silent or least_recent
        if idle is None:
            return False
        self.evicted += 1
        self.closed(idle)  # counted out now: its connection_lost comes later
        idle.drop()
        return True

    def opened(self, connection: GatedConnection) -> bool:
        """Its connection is made; False if its address holds its share already."""
        address = connection.address
        if address is not None and address not in LOOPBACK:
            held = self._by_address.get(address, 0)
            if held >= self.per_address:
                self.over_share += 1
                if self.over_share == 1 or self.over_share % 1000 == 0:
                    log.warning("%s holds %d connections: reset a new one (%d so far)", address, held, self.over_share)
                self.closed(connection)
                connection.address = None  # not counted for its address
                return False
            self._by_address[address] = held + 1
        self._by_handler[connection.handler] = connection
        return True

    def asked(self, connection: GatedConnection) -> None:
        """A request has come: it moves to the end of those made room from last."""
        if connection in self._silent:  # not made room from meanwhile
            del self._silent[connection]
            self._asked[connection] = None
        elif connection in self._asked:
            self._asked[connection] = self._asked.pop(connection)  # the most recent now

    def closed(self, connection: GatedConnection) -> None:
        self._silent.pop(connection, None)
        self._asked.pop(connection, None)
        address = connection.address
        if (
            self._by_handler.pop(connection.handler, None) is not None
            and address is not None
            and address not in LOOPBACK
        ):
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]

    def connection_of(self, request: web.BaseRequest) -> GatedConnection | None:
        return self._by_handler.get(request.protocol)

    def describe(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "busy": sum(1 for c in self._asked if c.busy),
            "limit": self.limit,
            "refused": self.refused,
            "evicted": self.evicted,
            "timed_out": self.timed_out,
            "over_share": self.over_share,
            "stalled": self.stalled,
        }

    async def watch_for_stalls(self) -> None:
        """For as long as the site serves: let go of clients that stopped reading."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(STALL_CHECK_S)
            now = loop.time()
            stalled = [c for c in self._asked if c.busy and not c.dropped and c.stalled(now, self.write_timeout)]
            for connection in stalled:
                self.stalled += 1
                connection.cut()


class GatedSite(web.BaseSite):
    """A TCP site whose connections come through a ConnectionGate."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, gate: ConnectionGate):
        super().__init__(runner)
        self.host, self.port, self.gate = host, port, gate
        self._watch: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        assert self._runner.server is not None  # set up by the runner before any site starts
        self._server = await loop.create_server(
            self.gate.serve(self._runner.server), self.host, self.port, backlog=ACCEPT_BATCH, reuse_address=True
        )
        for listening in self._server.sockets:
            # asyncio's backlog argument sets both the batch and the kernel's queue; lengthen the
            # queue alone (listen again, on a duplicate of the descriptor: the same socket).
            with socket.socket(fileno=os.dup(listening.fileno())) as same:
                same.listen(LISTEN_QUEUE)
        self._watch = asyncio.create_task(self.gate.watch_for_stalls(), name="stalled-clients")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await super().stop()


@web.middleware
async def gate_middleware(request: web.Request, handler):
    """Tell the gate a request is in progress, so its connection is neither timed out nor made
    room from while it is served (a stream, a WebSocket, a capture's reply)."""
    gate = request.app.get(GATE)
    connection = gate.connection_of(request) if gate is not None else None
    if connection is None:  # a test server without the gate
        return await handler(request)
    connection.request_started()
    # Ended with the task that serves the request, not with this handler: aiohttp sends the
    # response after the handler returns (a file by sendfile, for as long as the client takes),
    # and the connection is busy until it is sent.
    current = asyncio.current_task()
    assert current is not None
    current.add_done_callback(lambda _: connection.request_ended())
    return await handler(request)


async def read_body(request: web.Request, timeout: float) -> bytes:  # noqa: ASYNC109  (the time-out is the point)
    """The request's body, which must arrive within ``timeout`` seconds: a client that never
    finishes it is let go instead of holding its connection for ever."""
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise WandaError(ErrorCode.REQUEST_TIMEOUT, f"the request's body did not arrive within {timeout:g} s") from None
    except (RequestPayloadError, HttpProcessingError):
        # A body that cannot be decoded (a Content-Encoding that lies, broken chunks): the
        # client's fault, and aiohttp would log it as a traceback of ours.
        raise WandaError(
            ErrorCode.INVALID_REQUEST, "the request's body could not be read (its encoding is broken)"
        ) from None
    except (ConnectionResetError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and request.transport is not None:
            raise  # not aiohttp's "Connection closed.": a fault of ours
        # The client hung up half-way (or before the body was read): nobody hears the answer, but
        # aiohttp would log a traceback for each (anyone could fill the log with half-sent bodies).
        raise WandaError(ErrorCode.INVALID_REQUEST, "the client left before its body arrived") from None


GATE = web.AppKey("connection_gate", ConnectionGate)
