"""systemd's notify protocol against a datagram socket of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time

import pytest
from live_server import Wanda

from wanda.systemd import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield path, sock
    sock.close()


@pytest.mark.slow
def test_wanda_says_ready_pings_the_watchdog_and_says_stopping(notify_socket, tmp_path):
    path, sock = notify_socket
    server = Wanda(tmp_path, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})  # a ping every 0.1 s
    with server:
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1") and "STATUS=serving on port" in ready
        pings = [sock.recv(4096).decode() for _ in range(4)]
        assert pings == ["WATCHDOG=1"] * 4
        server.process.send_signal(signal.SIGTERM)
        messages = []
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert set(messages) <= {"WATCHDOG=1", "STOPPING=1"}
        assert server.wait() == 0


def test_nothing_is_sent_without_notify_socket():
    notifier = SystemdNotifier({})
    assert notifier.enabled is False and notifier.watchdog_interval is None
    assert notifier.notify("READY=1") is False


def test_the_watchdog_belongs_to_the_pid_systemd_named(notify_socket):
    path, _ = notify_socket
    other = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.enabled and other.watchdog_interval is None
    mine = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval == 0.5


def test_abstract_sockets_are_understood():
    name = f"wanda-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


async def test_a_frozen_loop_stops_the_pings(notify_socket):
    path, sock = notify_socket
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})  # a ping every 0.05 s

    async def ping() -> bytes:
        return await asyncio.wait_for(loop.sock_recv(sock, 100), 10)

    def received_now() -> list[bytes]:
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(sock.recv(100))
        return messages

    task = asyncio.create_task(notifier.watchdog())
    try:
        assert [await ping() for _ in range(3)] == [b"WATCHDOG=1"] * 3  # pings, again and again
        received_now()  # everything sent so far (each ping is in the socket once sent: a datagram)
        # The freeze is the scenario: the loop blocked for ten ping intervals. It proves nothing by
        # itself; what is read during it, still frozen, must be nothing at all.
        time.sleep(10 * notifier.watchdog_interval)
        assert received_now() == []
        assert await ping() == b"WATCHDOG=1"  # and the loop back, the pings are back
    finally:
        task.cancel()
