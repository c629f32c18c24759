"""Helpers for tests that read MJPEG streams and wait on the server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import StreamReader


async def read_part(content: StreamReader) -> tuple[dict[str, str], bytes]:
    """One multipart part from an MJPEG stream: (headers, JPEG bytes)."""
    while True:
        line = await content.readline()
        if not line:
            raise EOFError("stream ended")
        if line.strip() == b"--frame":
            break
    headers = {}
    while True:
        line = (await content.readline()).strip()
        if not line:
            break
        name, _, value = line.decode("ascii").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await content.readexactly(int(headers["content-length"]))
    return headers, body


async def wait_until(predicate, attempts: int = 200, pause: float = 0.05):
    """Poll a condition that the server reaches on its own; fail if it never does."""
    for _ in range(attempts):
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(pause)
    raise AssertionError("condition not reached")


async def receive_until(ws, predicate, limit: int = 500) -> list[dict]:
    """Messages up to and including the first that matches ``predicate``."""
    seen = []
    for _ in range(limit):
        message = await ws.receive_json(timeout=15)
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"no matching message among {len(seen)}")


def is_reply(request_id):
    return lambda m: m.get("id") == request_id and "ok" in m


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mounted_tmpfs(mountpoint: Path, size: str):
    """A real, small filesystem to fill up (a full USB stick on a cold night); skips without root."""
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Take all free space on ``disk`` but ``leave`` bytes (rounded to the filesystem's blocks)."""
    usage = os.statvfs(disk)
    with open(disk / "someone_elses_file.bin", "ab") as ballast:
        ballast.write(b"\0" * max(0, usage.f_bavail * usage.f_frsize - leave))


def was_reset(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether a client socket that stopped reading was let go with a reset. A plain close would
    leave it reading what was queued for it and then an orderly end (or nothing, for minutes)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False
