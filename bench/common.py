"""Shared pieces of the benchmarks: start a `wanda` on the simulated sky, read its process figures,
read MJPEG streams, summarise latencies. Loopback only; every loop is bounded in time."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def normal_priority() -> None:
    """In a child before it runs: niceness 0, whatever a load generator that lowered its own
    priority (os.nice) passes on; kept when that is not allowed (raising it back needs root)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except PermissionError:
        pass


@contextmanager
def running_wanda(*args: str):
    """Start `python -m wanda --camera sim` on a free loopback port, with its captures and state in
    a temporary directory (so a benchmark never inherits a user's settings); yield (url, pid)."""
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="wanda-bench-")
    # The server's log goes to a file: a pipe nobody reads would fill and block its logging.
    log = Path(scratch.name) / "wanda.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wanda",
                "--camera",
                "sim",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--captures",
                f"{scratch.name}/captures",
                "--data-dir",
                f"{scratch.name}/state",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            preexec_fn=normal_priority,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving: open" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"wanda did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        scratch.cleanup()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int, *, peak: bool = False) -> float:
    """A process's resident memory now, or its peak so far (``peak``: VmHWM), in MiB."""
    field = "VmHWM:" if peak else "VmRSS:"
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class ViewerResult:
    frames: int = 0
    ages: list[float] = field(default_factory=list)  # seconds from capture to arrival
    errors: list[str] = field(default_factory=list)


async def view_stream(session: aiohttp.ClientSession, url: str, until: float, result: ViewerResult) -> None:
    """Read an MJPEG stream until the monotonic time ``until``, recording each part's age."""
    try:
        async with session.get(url) as response:
            content = response.content
            while time.monotonic() < until:
                timestamp = None
                length = 0
                line = await content.readline()
                if not line:
                    raise ConnectionError("stream ended")
                if not line.startswith(b"--"):
                    continue
                while True:
                    line = await content.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    name = name.lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"x-timestamp":
                        timestamp = float(value)
                await content.readexactly(length)
                if timestamp is not None:
                    result.ages.append(time.time() - timestamp)
                result.frames += 1
    except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
        result.errors.append(repr(exc))


def stalled_viewer(url: str, path: str = "/stream") -> socket.socket:
    """A viewer that asks for the stream and then never reads."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


async def _api_worker(session, base, paths, until, budget, pause, latencies, errors) -> None:
    i = 0
    while time.monotonic() < until and (budget is None or budget[0] > 0):
        if budget is not None:
            budget[0] -= 1
        path = paths[i % len(paths)]
        i += 1
        started = time.perf_counter()
        try:
            async with session.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    errors.append(f"{path}: HTTP {response.status}")
        except aiohttp.ClientError as exc:
            errors.append(f"{path}: {exc!r}")
        latencies.append(time.perf_counter() - started)
        if pause:
            await asyncio.sleep(pause)


def api_load(
    base: str, workers: int, paths: tuple[str, ...], seconds: float | None, total: int | None, pause: float = 0.0
) -> tuple[list[float], list[str]]:
    """API requests from ``workers`` concurrent clients for ``seconds`` or ``total`` requests.

    Meant to run in a process of its own (ProcessPoolExecutor), so that the load generator's other
    work does not sit inside the measured latencies. Returns (latencies in seconds, errors).
    """

    async def load():
        latencies: list[float] = []
        errors: list[str] = []
        until = time.monotonic() + (seconds if seconds is not None else 3600)
        budget = [total] if total is not None else None
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(
                *(_api_worker(session, base, paths, until, budget, pause, latencies, errors) for _ in range(workers))
            )
        return latencies, errors

    return asyncio.run(load())


# An idle event loop in a process of its own, measuring its lag the way the server's monitor does
# (a 0.1 s sleep, how late it woke). Each line on its stdin asks for the figures since the last
# one: "worst lag in ms, wake-ups more than 20 ms late, wake-ups" on a line of stdout. When the
# server's lag spikes and this one spikes too, the machine is the cause, not the server.
REFERENCE_LOOP = """
import asyncio, sys
async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    figures = [0.0, 0, 0]
    async def sample():
        while True:
            expected = loop.time() + 0.1
            await asyncio.sleep(0.1)
            lag = max(0.0, loop.time() - expected)
            figures[0], figures[1], figures[2] = max(figures[0], lag), figures[1] + (lag > 0.02), figures[2] + 1
    sampler = asyncio.ensure_future(sample())
    while await reader.readline():
        print(f"{figures[0] * 1000:.2f} {figures[1]} {figures[2]}", flush=True)
        figures[:] = [0.0, 0, 0]
    sampler.cancel()
asyncio.run(main())
"""


@dataclass
class ReferenceLag:
    max_ms: float
    late: int  # wake-ups more than 20 ms late
    samples: int


class IdleReference:
    """The idle reference loop (REFERENCE_LOOP) as an async context manager: ``await mark()``
    returns its figures since the previous mark (or the start). Start it before a load generator
    lowers its own priority (os.nice), so that it runs at the server's."""

    async def __aenter__(self) -> IdleReference:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            REFERENCE_LOOP,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=normal_priority,
        )
        return self

    async def mark(self) -> ReferenceLag:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(b"mark\n")
        await self._process.stdin.drain()
        line = await asyncio.wait_for(self._process.stdout.readline(), 10)
        worst, late, samples = line.split()
        return ReferenceLag(float(worst), int(late), int(samples))

    async def __aexit__(self, *exc_info) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 5)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()


def report(checks: list[tuple[str, bool, str]]) -> int:
    """Print PASS/FAIL for each (name, passed, value); the exit code is 0 when all passed."""
    print()
    for name, passed, value in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {name:<34} {value}")
    return 0 if all(passed for _, passed, _ in checks) else 1
