"""The door holds: idle, slow and half-sent connections beyond the descriptor limit neither take
the API down nor fail a session. A real `wanda` process with 384 open files (the attack needed
1,030 against systemd's 1,024; a smaller limit makes the same attack cheap to run here)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time

import aiohttp
import pytest
from helpers import wait_for, wait_until, was_reset
from live_server import Wanda

from wanda.connections import FD_RESERVE, LISTEN_QUEUE, SILENT_GRACE_S

HALF_A_BODY = (
    b"POST /api/camera/settings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    b'{"exposure'
)
DESCRIPTORS = 384  # the server's limit on open files: 96 connections (and their files), 192 in reserve
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0

pytestmark = pytest.mark.slow  # a real `wanda` process in every test


@pytest.fixture
def server(tmp_path):
    """Start a `wanda` limited to DESCRIPTORS open files, with short header and body timeouts;
    keyword arguments are more WANDA_* settings. Its log must show no failure at the end."""
    running = None

    def start(**settings: str) -> Wanda:
        nonlocal running
        env = {"WANDA_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "WANDA_BODY_TIMEOUT": str(BODY_TIMEOUT), **settings}
        running = Wanda(tmp_path, env=env, open_files=DESCRIPTORS)
        running.start()
        return running

    yield start
    if running is not None:
        assert running.stop() == 0
        log = running.log_text()
        assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def closed_by_server(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Read until the server closes (an end or a reset); return what it sent. Fails if it never does."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_idle_slow_and_half_sent_connections_beyond_the_limit_fail_no_session(server):
    wanda = server()
    wanda.request("POST", "/api/camera/settings", {"exposure_seconds": 0.05})
    wanda.request(
        "POST", "/api/session/start", {"name": "under_attack", "total_images": 30, "total_time_hours": 6 / 3600}
    )
    idle = [connect(wanda.port) for _ in range(2 * DESCRIPTORS)]  # more than the server has descriptors
    half_sent = []
    for _ in range(10):
        sock = connect(wanda.port)
        sock.sendall(HALF_A_BODY)
        half_sent.append(sock)
    for _ in range(5):  # half a body, then gone: no traceback in the log (the fixture checks)
        with connect(wanda.port) as sock:
            sock.sendall(HALF_A_BODY)
    slow = connect(wanda.port)
    request_line = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    sent = 0
    slow.settimeout(0.25)
    try:
        for byte in request_line:  # one byte at a time, as a slowloris does, until the server hangs up
            slow.sendall(bytes([byte]))
            sent += 1
            try:
                if slow.recv(1) == b"":
                    break
            except TimeoutError:
                continue
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < len(request_line), "the slow client was allowed to finish its headers"
    # The API answers all along: a newcomer takes the place of an idle connection.
    for _ in range(5):
        assert wanda.get("/api/health")["status"] == "ok"
    for sock in half_sent:  # a body that never completes: 408, then closed
        answer = closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in answer, answer[:200]
    for sock in idle:  # every idle connection is let go (made room from, or timed out)
        assert closed_by_server(sock) == b""
        sock.close()

    def ended():
        status = wanda.get("/api/session/status")
        return None if status["active"] else status

    status = wait_for(ended, timeout=60)
    assert (status["status"], status["captured_images"], status["error"]) == ("completed", 30, None)
    connections = wanda.get("/api/health")["connections"]
    assert connections["limit"] == (DESCRIPTORS - FD_RESERVE) // 2
    assert connections["evicted"] > 0 and connections["timed_out"] > 0
    for sock in (*half_sent, slow):
        sock.close()


async def test_a_connection_beyond_the_limit_while_all_are_busy_is_refused_with_503(server):
    wanda = server(WANDA_MAX_CONNECTIONS="16")
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(f"{wanda.url}/ws") for _ in range(16)]  # each keeps its connection busy
        for ws in sockets:
            assert (await ws.receive_json(timeout=10))["event"] == "hello"
        refused = await asyncio.to_thread(_get_raw, wanda.port, "/api/health")
        assert refused.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in refused, refused
        assert json.loads(refused.split(b"\r\n\r\n", 1)[1])["code"] == "TOO_MANY_CONNECTIONS"
        await sockets[0].close()
        answers = []

        async def served() -> bool:  # the gate counts the closed one out as soon as its socket goes
            answers.append(await asyncio.to_thread(_get_raw, wanda.port, "/api/health"))
            return answers[-1].startswith(b"HTTP/1.1 200")

        await wait_until(served, attempts=100, pause=0.1)
        for ws in sockets[1:]:
            await ws.close()


def _get_raw(port: int, path: str) -> bytes:
    sock = connect(port)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    try:
        return closed_by_server(sock)
    finally:
        sock.close()


def test_room_is_made_from_connections_that_never_asked_before_a_browsers_kept_alive_ones(server):
    wanda = server(WANDA_MAX_CONNECTIONS="16")
    first, second = connect(wanda.port), connect(wanda.port)  # a browser's kept-alive connections
    assert _ask(first, "/api/health").startswith(b"HTTP/1.1 200")
    assert _ask(second, "/api/health").startswith(b"HTTP/1.1 200")
    silent = [connect(wanda.port) for _ in range(14)]  # opened after them, never asking anything
    newcomer = connect(wanda.port)  # the 17th: room is made from the oldest silent one
    assert was_reset(silent[0])  # a reset: its descriptor is freed at once
    assert _ask(newcomer, "/api/health").startswith(b"HTTP/1.1 200")
    # The silent ones must age past their grace, which only real time does (the server is another
    # process): a bounded wait that is part of the scenario; nothing is proven by the wait itself.
    time.sleep(SILENT_GRACE_S + 0.2)
    late = connect(wanda.port)
    assert was_reset(silent[1])
    assert _ask(late, "/api/health").startswith(b"HTTP/1.1 200")
    for sock in (first, second):  # still the same connections
        assert _ask(sock, "/api/health").startswith(b"HTTP/1.1 200")
    for sock in (first, second, newcomer, late, *silent):
        sock.close()


def test_one_address_holds_at_most_a_quarter_of_the_connections(server):
    wanda = server(WANDA_MAX_CONNECTIONS="64")  # 16 for each address but this machine's own
    share = wanda.get("/api/health")["connections"]["limit"] // 4
    attacker = []
    for _ in range(share):  # busy ones: half-sent bodies, each a request in progress
        sock = socket.create_connection(("127.0.0.1", wanda.port), timeout=10, source_address=("127.0.0.2", 0))
        sock.sendall(HALF_A_BODY)
        attacker.append(sock)
    one_more = socket.create_connection(("127.0.0.1", wanda.port), timeout=10, source_address=("127.0.0.2", 0))
    assert was_reset(one_more)
    assert wanda.get("/api/health")["connections"]["over_share"] == 1  # and everybody else is served
    for sock in (*attacker, one_more):
        sock.close()


def test_a_large_file_to_a_client_that_pauses_is_sent_whole_beyond_the_header_timeout(server, tmp_path):
    wanda = server()
    (tmp_path / "captures").mkdir(exist_ok=True)
    content = os.urandom(16 * 2**20)  # more than the socket buffers hold: the send waits for the client
    (tmp_path / "captures" / "big.fits").write_bytes(content)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", wanda.port))
    sock.sendall(b"GET /api/captures/big.fits HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    received = sock.recv(65536)
    # A phone on poor Wi-Fi stalls for longer than a request's headers may take: the file is
    # being sent all that while (aiohttp sends it after the handler returned), so the
    # connection must not be taken for an idle one and closed. The client really pauses past the
    # header timeout (the scenario, bounded); what proves the point is the whole file after it.
    time.sleep(HEADER_TIMEOUT + 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**22)  # then it reads at full speed
    while chunk := sock.recv(2**20):
        received += chunk
    assert received.split(b"\r\n\r\n", 1)[1] == content
    sock.close()


def test_the_listen_queue_is_long_though_accepts_come_in_small_batches(server):
    wanda = server()
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{wanda.port}"], capture_output=True, text=True).stdout
    assert listening.split()[2] == str(LISTEN_QUEUE), listening  # Send-Q of a listener: its backlog


def _ask(sock: socket.socket, path: str) -> bytes:
    """One request on a kept-alive connection; its answer's head."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(10)
    return sock.recv(65536)


def test_a_client_that_stops_reading_is_let_go_whatever_it_is_sent(server, tmp_path):
    wanda = server(WANDA_WRITE_TIMEOUT="2")
    (tmp_path / "captures").mkdir(exist_ok=True)
    (tmp_path / "captures" / "big.fits").write_bytes(os.urandom(16 * 2**20))
    download = socket.socket()  # a file by sendfile, never read: aiohttp's writes never see it
    download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    download.connect(("127.0.0.1", wanda.port))
    download.sendall(b"GET /api/captures/big.fits HTTP/1.1\r\nHost: x\r\n\r\n")
    pipelined = socket.socket()  # thousands of answers asked for at once, never read
    pipelined.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pipelined.connect(("127.0.0.1", wanda.port))
    pipelined.setblocking(False)
    request = b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        for _ in range(3000):
            pipelined.send(request)
    except BlockingIOError:
        pass  # the server stopped reading them: its answers are not being read
    pipelined.setblocking(True)
    # Neither reads meanwhile: the server must notice by itself.
    wait_for(
        lambda: wanda.get("/api/health")["connections"]["stalled"] >= 2,
        timeout=30,
        what="the clients that stopped reading let go",
    )
    assert was_reset(download) and was_reset(pipelined)
    download.close()
    pipelined.close()
