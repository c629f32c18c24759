"""Helpers for tests that read MJPEG streams and wait on the server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import StreamReader

from wanda.backends.sky import SimulatedSky


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


async def turns_until(predicate, limit: int = 1000) -> None:
    """Let the loop run the other tasks' next steps until ``predicate()`` holds; no time passes
    (for objects driven by the test alone, in unit tests)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("not reached")


def wait_for(predicate, timeout: float = 15.0, pause: float = 0.1, what: str = "condition"):
    """``wait_until`` for tests without a loop (a real `wanda` process, a browser): poll a condition
    the server reaches on its own; fail after ``timeout`` seconds if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(pause)


class FakeClock:
    """A clock that moves only when the test says: ``clock()`` reads it, ``advance`` moves it."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingSky(SimulatedSky):
    """The simulated sky, counting how often the camera thread asks it for a preview frame (also
    the attempts a job or a stop interrupts, which leave no frame behind)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.preview_calls = 0

    def capture_preview(self, wake, max_fps):
        self.preview_calls += 1
        return super().capture_preview(wake, max_fps)


class _CountedEvent(threading.Event):
    """A threading.Event that counts the waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


async def assert_camera_idle(camera) -> None:
    """Prove, without waiting on the clock, that the camera thread does not preview (its backend
    must be a CountingSky). After the jobs it runs, the thread decides what to do next: it asks the
    backend for a preview frame, or it waits on its wake event for something to do. A job notes
    both counts where it runs, on the camera thread; whichever comes next shows the decision."""
    if not isinstance(camera._wake, _CountedEvent):  # the worker's own event, counted from now on
        old, camera._wake = camera._wake, _CountedEvent()
        old.set()  # a thread waiting on the old event moves to the new one

    def counts(backend):
        return backend.preview_calls, camera._wake.waits

    previews, waits = await camera.call(counts)
    await wait_until(lambda: camera.backend.preview_calls > previews or camera._wake.waits > waits)
    assert camera.backend.preview_calls == previews, "the camera thread went on previewing"


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
