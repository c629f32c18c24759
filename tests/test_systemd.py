"""systemd's notify protocol against a datagram socket of the test's own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import free_port

from wanda.systemd import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield path, sock
    sock.close()



def test_wanda_says_ready_pings_the_watchdog_and_says_stopping(notify_socket, tmp_path):
    path, sock = notify_socket
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDA_")}
    env.update(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="200000")  # a ping every 0.1 s
    process = subprocess.Popen(
        [sys.executable, "-m", "wanda", "--camera", "sim", "--mount", "sim", "--host", "127.0.0.1",
         "--port", str(free_port()), "--captures", str(tmp_path / "c"), "--data-dir", str(tmp_path / "d")],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1") and "STATUS=serving on port" in ready
        pings = [sock.recv(4096).decode() for _ in range(4)]
        assert pings == ["WATCHDOG=1"] * 4
        process.send_signal(signal.SIGTERM)
        messages = []
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert set(messages) <= {"WATCHDOG=1", "STOPPING=1"}
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
    task = asyncio.create_task(notifier.watchdog())
    await asyncio.sleep(0.3)
    time.sleep(0.6)  # the loop is blocked: no ping can go out meanwhile
    received_during_freeze = []
    try:
        while True:
            received_during_freeze.append(sock.recv(100))
    except BlockingIOError:
        pass
    task.cancel()
    # Pings came every 0.05 s before the freeze, none while it lasted (0.6 s): at most one
    # was sent late, when the loop came back.
    assert 3 <= len(received_during_freeze) <= 8
