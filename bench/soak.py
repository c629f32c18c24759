"""Soak benchmark: everything at once for a long time, against one `wanda`.

    python bench/soak.py                          # 10 minutes; starts wanda on the simulated sky
    python bench/soak.py --minutes 1              # a short run (about 1.5 minutes in all)
    python bench/soak.py --url http://127.0.0.1:5000 --pid 1234

For --warmup seconds (15) and then --minutes (10) more, all at once:
  - --viewers MJPEG viewers (50) on /stream that each read frames for a random 5-60 s, close and
    reconnect (the frames are counted, not parsed: each part's bytes are discarded as they come);
  - --stalled viewers (3) that open /stream and never read (reopened when the server drops them);
  - --ws WebSocket clients (5) that read every event and every 2-4 s send camera.status,
    mount.status or session.status, whose reply must say "ok": true;
  - --api-workers (5) GET /api/camera/status, /state, /api/health, /api/storage, /api/captures and
    /api/mount/status with 0.1-0.3 s pauses;
  - still captures (the exposure is set to --exposure, 0.1 s, once at the start: the preview then
    runs at 1 / exposure fps) every 0.5-2 s, and beside them a 3-frame session every 10-20 s,
    each waited for until its status is no longer "running" (the two loops contend for the
    camera: 409 CAPTURE_BUSY and SESSION_START_FAILED are expected and counted, not errors);
  - mount tracking started and stopped every 20 s.
The server's event-loop lag (loop_lag.max_1m_ms of /api/health) is sampled every 5 s; beside it an
idle event loop in a process of its own measures the machine's own jitter, for reference. The load
generator runs at --nice 10 (the clients would be other machines; here they share the cores).

An error is a 5xx, a connection error (a viewer's stream cut off counts), a malformed envelope or
JSON message, an unexpected 4xx, a WebSocket command without its "ok" reply within 10 s, or a
session that does not end "completed". The process figures (RSS, open file descriptors, threads)
are read from /proc/<pid> after the warm-up ("start": every client connected, every path run
once, and a burst of 16 requests served on the server's thread pool grew that pool to its size)
and at the end of the load period while the load still runs ("end": the same client mix);
RSS also half-way. They need the server's pid: they are printed only when this script started the
server, or with --pid. A progress line is printed every minute.

Targets: no errors, loop lag max < 50 ms, RSS growth (end - start) < 10 MB, open fds at the end
<= start + 5 (the viewers' reconnects are in flight at any time), threads at the end <= start + 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, report, rss_mb, running_wanda, stalled_viewer

API_PATHS = ("/api/camera/status", "/state", "/api/health", "/api/storage", "/api/captures", "/api/mount/status")
WS_ACTIONS = ("camera.status", "mount.status", "session.status")
MARKER = b"--frame\r\n"  # starts every part of the stream
TCP_ESTABLISHED = 1
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "CLOSE",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
}
CONNECTION_ERRORS = (aiohttp.ClientError, ConnectionError, TimeoutError, asyncio.IncompleteReadError)
# Paths the server answers on its default thread pool (asyncio.to_thread): a burst of them in the
# warm-up grows that pool to its size, so its threads are in the start figures.
POOL_PATHS = ("/api/storage", "/api/captures", "/api/captures/folders", "/api/sessions")

# A reference: an idle event loop in a process of its own, on the same machine, measuring its lag
# the way the server does. When the server's lag spikes and this one spikes too, the machine
# (other work, a virtual CPU taken away) is the cause, not the server.
REFERENCE_LOOP = """
import asyncio, sys, time
async def main():
    loop = asyncio.get_running_loop()
    worst, over = 0.0, 0
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stop = asyncio.ensure_future(reader.read())
    while not stop.done():
        expected = loop.time() + 0.1
        await asyncio.sleep(0.1)
        lag = max(0.0, loop.time() - expected)
        worst, over = max(worst, lag), over + (lag > 0.02)
    print(f"{worst * 1000:.2f} {over}")
asyncio.run(main())
"""


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_state(sock: socket.socket) -> int:
    """The kernel's state of a TCP socket (1 established; a reset or a FIN from the peer changes it)."""
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]


def server_end_state(server_port: int, client_port: int) -> str:
    """The state of the server's end of our loopback connection, from /proc/net/tcp ("gone" when
    it is not there). A server that closes a viewer whose window is shut cannot get its FIN
    through: only its own end of the connection shows the drop."""
    states = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if (
                int(fields[1].rsplit(":", 1)[1], 16) == server_port
                and int(fields[2].rsplit(":", 1)[1], 16) == client_port
            ):
                states.add(int(fields[3], 16))
    if TCP_ESTABLISHED in states:
        return "ESTABLISHED"
    return TCP_STATES.get(min(states), "?") if states else "gone"


def kernel_tcp() -> dict[str, int]:
    """System-wide TCP figures of /proc/net/sockstat: orphans (closed by their process, still
    sending) and the memory of every TCP buffer, in pages."""
    with open("/proc/net/sockstat") as sockstat:
        for line in sockstat:
            if line.startswith("TCP:"):
                fields = line.split()[1:]
                return {name: int(value) for name, value in zip(fields[::2], fields[1::2], strict=True)}
    return {}


class Soak:
    """The shared state of every load task: the stop signal, the counters and the errors."""

    def __init__(self, http: aiohttp.ClientSession, base: str):
        self.http = http
        self.base = base
        self.stop = asyncio.Event()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.counts: Counter[str] = Counter()  # what was done, and the expected contention
        self.viewer_sessions: list[tuple[float, int]] = []  # (seconds, frames) of completed viewer sessions
        self.viewers_open = 0
        self.lag_max_ms = 0.0
        self.lag_samples = 0
        self.lag_rises: list[tuple[float, float]] = []  # (seconds into the run, new max) each time it rose
        self.started = time.monotonic()

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail}")

    async def pause(self, seconds: float) -> bool:
        """Sleep; True as soon as the load is stopping."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def request(
        self, source: str, method: str, path: str, body: dict | None = None, expected: tuple[str, ...] = ()
    ) -> tuple[int, dict] | None:
        """One API request; (status, envelope), or None after recording an error. A 4xx whose code
        is in ``expected`` is counted as contention and returned."""
        try:
            async with self.http.request(method, self.base + path, json=body) as response:
                raw = await response.read()
                status = response.status
        except CONNECTION_ERRORS as exc:
            self.error(f"{source}: connection", f"{method} {path}: {exc!r}")
            return None
        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = None
        if status >= 500:
            code = envelope.get("code") if isinstance(envelope, dict) else None
            self.error(f"{source}: HTTP 5xx", f"{method} {path}: {status} {code}")
            return None
        if not valid_envelope(status, envelope):
            self.error(f"{source}: malformed envelope", f"{method} {path}: {status} {raw[:200]!r}")
            return None
        if status >= 400:
            if envelope["code"] in expected:
                self.counts[f"{source} {envelope['code']} (expected)"] += 1
                return status, envelope
            self.error(f"{source}: unexpected 4xx", f"{method} {path}: {status} {envelope['code']} {envelope['error']}")
            return None
        return status, envelope


def valid_envelope(status: int, envelope: object) -> bool:
    if not isinstance(envelope, dict):
        return False
    if envelope.get("success") is True:
        return status == 200 and isinstance(envelope.get("data"), dict) and isinstance(envelope.get("message"), str)
    if envelope.get("success") is False:
        return status >= 400 and isinstance(envelope.get("code"), str) and isinstance(envelope.get("error"), str)
    return False


# -- the load -------------------------------------------------------------------------------------


async def viewer(soak: Soak) -> None:
    """Read /stream for a random 5-60 s, close, reconnect; count the parts without parsing them."""
    overlap = len(MARKER) - 1
    while not soak.stop.is_set():
        started = time.monotonic()
        end = started + random.uniform(5, 60)
        frames = 0
        complete = False
        soak.viewers_open += 1
        try:
            async with soak.http.get(soak.base + "/stream") as response:
                if response.status != 200:
                    kind = "HTTP 5xx" if response.status >= 500 else "unexpected 4xx"
                    soak.error(f"viewer: {kind}", f"/stream: {response.status}")
                else:
                    content = response.content
                    tail = b""
                    while not soak.stop.is_set() and time.monotonic() < end:
                        chunk = await content.readany()
                        if not chunk:
                            raise ConnectionError("the stream ended")
                        # A marker may straddle two chunks: look at the seam separately.
                        frames += chunk.count(MARKER) + (tail + chunk[:overlap]).count(MARKER)
                        tail = (tail + chunk[-overlap:])[-overlap:]
                    complete = True
                response.close()
        except CONNECTION_ERRORS as exc:
            soak.error("viewer: connection", f"/stream after {time.monotonic() - started:.1f} s: {exc!r}")
        finally:
            soak.viewers_open -= 1
        if complete:
            soak.viewer_sessions.append((time.monotonic() - started, frames))
        elif await soak.pause(1.0):
            return


async def stalled(soak: Soak) -> None:
    """Open /stream and never read; open it again when the server drops it (seen on our end of the
    connection when the server resets it, else on the server's end in /proc/net/tcp)."""
    server_port = int(soak.base.rsplit(":", 1)[1])
    while not soak.stop.is_set():
        sock = stalled_viewer(soak.base)
        client_port = sock.getsockname()[1]
        soak.counts["stalled viewer opened"] += 1
        try:
            while not await soak.pause(1.0):
                if tcp_state(sock) != TCP_ESTABLISHED:
                    soak.counts["stalled viewer dropped (told)"] += 1
                    break
                server_end = server_end_state(server_port, client_port)
                if server_end != "ESTABLISHED":
                    soak.counts["stalled viewer dropped (not told)"] += 1
                    soak.counts[f"stalled viewer dropped (not told): server end {server_end}"] += 1
                    break
        finally:
            sock.close()


async def ws_client(soak: Soak, index: int) -> None:
    """Read every event; every 2-4 s a command whose reply must be ok."""
    request_id = 0
    while not soak.stop.is_set():
        pending: dict[int, asyncio.Future] = {}
        try:
            async with soak.http.ws_connect(soak.base + "/ws") as ws:
                soak.counts["ws connections"] += 1

                async def read(pending: dict[int, asyncio.Future] = pending) -> None:  # this connection's
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            soak.error("ws: malformed message", f"client {index}: a {message.type.name} message")
                            continue
                        try:
                            data = json.loads(message.data)
                        except ValueError:
                            data = None
                        if not isinstance(data, dict):
                            soak.error("ws: malformed message", f"client {index}: {message.data[:200]!r}")
                        elif "id" in data:
                            waiter = pending.pop(data["id"], None)
                            if waiter is None:
                                soak.error(
                                    "ws: malformed message", f"client {index}: a reply to nothing: {message.data[:200]}"
                                )
                            elif not waiter.done():
                                waiter.set_result(data)
                        elif isinstance(data.get("topic"), str) and isinstance(data.get("event"), str):
                            soak.counts["ws events"] += 1
                            if data["topic"] == "system" and data["event"] == "error":
                                soak.error("ws: error event", f"client {index}: {message.data[:200]}")
                        else:
                            soak.error("ws: malformed message", f"client {index}: {message.data[:200]!r}")

                reader = asyncio.create_task(read())
                try:
                    while not await soak.pause(random.uniform(2, 4)) and not reader.done():
                        request_id += 1
                        action = random.choice(WS_ACTIONS)
                        waiter = asyncio.get_running_loop().create_future()
                        pending[request_id] = waiter
                        await ws.send_json({"id": request_id, "action": action})
                        try:
                            reply = await asyncio.wait_for(asyncio.shield(waiter), 10)
                        except TimeoutError:
                            pending.pop(request_id, None)
                            if not reader.done():
                                soak.error("ws: no reply", f"client {index}: {action} unanswered after 10 s")
                            break
                        if reply.get("ok") is True and isinstance(reply.get("data"), dict):
                            soak.counts["ws commands"] += 1
                        else:
                            soak.error("ws: command failed", f"client {index}: {action}: {json.dumps(reply)[:200]}")
                finally:
                    closed_by_server = reader.done() and not soak.stop.is_set()
                    reader.cancel()
                    (outcome,) = await asyncio.gather(reader, return_exceptions=True)
                    if closed_by_server:
                        why = repr(outcome) if isinstance(outcome, BaseException) else f"code {ws.close_code}"
                        soak.error("ws: connection", f"client {index}: closed by the server ({why})")
        except CONNECTION_ERRORS as exc:
            soak.error("ws: connection", f"client {index}: {exc!r}")
        if await soak.pause(1.0):
            return


async def api_worker(soak: Soak) -> None:
    paths = list(API_PATHS)
    random.shuffle(paths)
    i = 0
    while not soak.stop.is_set():
        if await soak.request("api", "GET", paths[i % len(paths)]):
            soak.counts["api requests"] += 1
        i += 1
        if await soak.pause(random.uniform(0.1, 0.3)):
            return


async def captures(soak: Soak) -> None:
    """A still every 0.5-2 s; while a session runs they are refused with CAPTURE_BUSY."""
    while not soak.stop.is_set():
        result = await soak.request("capture", "POST", "/api/camera/capture", expected=("CAPTURE_BUSY",))
        if result and result[0] == 200:
            if result[1]["data"].get("file"):
                soak.counts["captures"] += 1
            else:
                soak.error("capture: malformed envelope", f"no file in {json.dumps(result[1])[:200]}")
        if await soak.pause(random.uniform(0.5, 2.0)):
            return


async def sessions(soak: Soak) -> None:
    """A 3-frame session every 10-20 s (the first at once), waited for until it is no longer running."""
    n = 0
    while not soak.stop.is_set():
        n += 1
        body = {"name": f"soak_{n}", "total_images": 3}
        result = await soak.request(
            "session", "POST", "/api/session/start", body, expected=("CAPTURE_BUSY", "SESSION_START_FAILED")
        )
        if result is None or result[0] != 200:
            if await soak.pause(0.5 if result else 5.0):  # a capture has the camera: try again soon
                return
            continue
        soak.counts["sessions started"] += 1
        deadline = time.monotonic() + 60
        status = "running"
        # Followed to its end even while the load stops (three short frames), so no session is left running.
        while status == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            polled = await soak.request("session", "GET", "/api/session/status")
            if polled is not None:
                status = polled[1]["data"].get("status")
        if status == "completed":
            soak.counts["sessions completed"] += 1
        else:
            why = "still running after 60 s" if status == "running" else f"ended {status!r}"
            soak.error("session: not completed", f"soak_{n}: {why}")
        if await soak.pause(random.uniform(10, 20)):
            return


async def tracking(soak: Soak) -> None:
    """Tracking on and off every 20 s."""
    on = True
    while not soak.stop.is_set():
        result = await soak.request("mount", "POST", "/api/mount/tracking", {"action": "start" if on else "stop"})
        if result:
            if result[1]["data"].get("tracking") is on:
                soak.counts["tracking toggles"] += 1
            else:
                soak.error(
                    "mount: wrong state",
                    f"tracking {result[1]['data'].get('tracking')!r} after {'start' if on else 'stop'}",
                )
        on = not on
        if await soak.pause(20):
            return


async def lag_sampler(soak: Soak) -> None:
    """loop_lag.max_1m_ms of /api/health every 5 s; the largest is kept."""
    while not soak.stop.is_set():
        result = await soak.request("health", "GET", "/api/health")
        if result:
            data = result[1]["data"]
            lag = float(data["loop_lag"]["max_1m_ms"])
            if lag > soak.lag_max_ms:
                soak.lag_max_ms = lag
                soak.lag_rises.append((time.monotonic() - soak.started, lag))
            soak.lag_samples += 1
            if data.get("status") != "ok":
                soak.error("health: degraded", json.dumps(data)[:200])
        if await soak.pause(5):
            return


# -- figures --------------------------------------------------------------------------------------


def process_figures(pid: int | None) -> dict | None:
    if not pid:
        return None
    return {"rss": rss_mb(pid), "fds": open_fds(pid), "threads": threads(pid), "cpu": cpu_seconds(pid)}


async def server_viewers(soak: Soak) -> int | None:
    result = await soak.request("figures", "GET", "/api/health")
    return result[1]["data"].get("viewers") if result else None


async def listed_images(soak: Soak) -> tuple[int, int] | None:
    """(images, bytes of the answer) of /api/captures: the listing grows as the captures pile up."""
    try:
        async with soak.http.get(soak.base + "/api/captures") as response:
            raw = await response.read()
        return len(json.loads(raw)["data"]["files"]), len(raw)
    except (*CONNECTION_ERRORS, ValueError, KeyError, TypeError):
        return None


async def fill_thread_pool(soak: Soak) -> None:
    """Requests the server answers on its thread pool, all at once: the pool grows to its size."""
    await asyncio.gather(*(soak.request("warm-up", "GET", POOL_PATHS[i % len(POOL_PATHS)]) for i in range(16)))


def progress(soak: Soak, started: float, pid: int | None) -> None:
    elapsed = time.monotonic() - started
    frames = sum(f for _, f in soak.viewer_sessions)
    c = soak.counts
    line = (
        f"[{int(elapsed // 60):2d}:{int(elapsed % 60):02d}] viewers {soak.viewers_open} "
        f"({len(soak.viewer_sessions)} sessions done, {frames} frames) | "
        f"stalled drops {c['stalled viewer dropped (told)'] + c['stalled viewer dropped (not told)']} | "
        f"ws {c['ws commands']} cmds {c['ws events']} events | api {c['api requests']} | captures {c['captures']} | "
        f"sessions {c['sessions completed']} | tracking {c['tracking toggles']} | errors {sum(soak.errors.values())} | "
        f"lag max {soak.lag_max_ms:.1f} ms"
    )
    if pid:
        line += f" | RSS {rss_mb(pid):.1f} MB fds {open_fds(pid)} threads {threads(pid)}"
    print(line, flush=True)


async def progress_printer(soak: Soak, started: float, pid: int | None) -> None:
    while not await soak.pause(60 - (time.monotonic() - started) % 60):
        progress(soak, started, pid)


async def run(args, base: str, pid: int | None) -> int:
    duration = args.minutes * 60
    reference = await asyncio.create_subprocess_exec(
        sys.executable, "-c", REFERENCE_LOOP, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    if args.nice:
        # The clients would be other machines; here they share two cores with the server. Running
        # them at a lower priority keeps their CPU out of the server's event-loop lag. (After the
        # server and the reference have started: they do not inherit this.)
        os.nice(args.nice)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        soak = Soak(http, base)
        before = await soak.request("setup", "GET", "/api/camera/status")
        mount_before = await soak.request("setup", "GET", "/api/mount/status")
        result = await soak.request("setup", "POST", "/api/camera/settings", {"exposure_seconds": args.exposure})
        if before is None or mount_before is None or result is None:
            print("the server refused the set-up:", *soak.error_samples, sep="\n  ")
            return 1
        print(
            f"soak: {args.viewers} viewers, {args.stalled} stalled, {args.ws} WebSocket clients, {args.api_workers} API workers, "
            f"captures at {args.exposure:g} s and sessions, tracking toggles; {args.warmup:g} s warm-up + {args.minutes:g} min",
            flush=True,
        )

        started = soak.started = time.monotonic()
        cpu_self_before = time.process_time()
        tasks = [asyncio.create_task(viewer(soak)) for _ in range(args.viewers)]
        tasks += [asyncio.create_task(stalled(soak)) for _ in range(args.stalled)]
        tasks += [asyncio.create_task(ws_client(soak, i)) for i in range(args.ws)]
        tasks += [asyncio.create_task(api_worker(soak)) for _ in range(args.api_workers)]
        tasks += [asyncio.create_task(job(soak)) for job in (captures, sessions, tracking, lag_sampler)]
        tasks.append(asyncio.create_task(progress_printer(soak, started, pid)))
        try:
            await asyncio.sleep(min(2.0, args.warmup / 2))  # everybody connected
            await fill_thread_pool(soak)
            await asyncio.sleep(max(0.0, args.warmup - (time.monotonic() - started)))
            listed_start = await listed_images(soak)
            start = process_figures(pid)
            tcp_start = kernel_tcp()
            viewers_start = await server_viewers(soak)
            errors_at_start = sum(soak.errors.values())
            measured = time.monotonic()
            await asyncio.sleep(duration / 2)
            rss_middle = rss_mb(pid) if pid else None
            await asyncio.sleep(duration / 2)
            end = process_figures(pid)
            tcp_end = kernel_tcp()
            viewers_end = await server_viewers(soak)
            listed_end = await listed_images(soak)
            elapsed = time.monotonic() - measured
            progress(soak, started, pid)
        finally:
            soak.stop.set()
            done, stuck = await asyncio.wait(tasks, timeout=15)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                soak.error("load generator: crashed", repr(task.exception()))
        if stuck:
            soak.error("load generator: stuck", f"{len(stuck)} tasks did not stop within 15 s of the end")
        cpu_self = time.process_time() - cpu_self_before
        reference_out, _ = await reference.communicate(b"")
        reference_lag_ms, reference_over = (float(x) for x in reference_out.split())
        # Leave the server as it was found (it matters with --url).
        exposure = before[1]["data"]["exposure_seconds"]
        await soak.request(
            "teardown", "POST", "/api/camera/settings", {"exposure_seconds": exposure}, expected=("CAPTURE_BUSY",)
        )
        mount = mount_before[1]["data"]
        restore = (
            {"action": "start", "speed": mount["speed"], "direction": mount["direction"]}
            if mount["tracking"]
            else {"action": "stop"}
        )
        await soak.request("teardown", "POST", "/api/mount/tracking", restore)

    total = time.monotonic() - started
    c = soak.counts
    fps = [frames / seconds for seconds, frames in soak.viewer_sessions if seconds > 5]
    error_count = sum(soak.errors.values())
    print()
    print(
        f"load: {total:.0f} s in all ({args.warmup:g} s warm-up, {elapsed:.0f} s measured), load generator CPU {cpu_self / total * 100:.0f}%"
    )
    print(
        f"viewers: {len(soak.viewer_sessions)} sessions, {sum(f for _, f in soak.viewer_sessions)} frames; "
        f"delivered fps over {len(fps)} sessions > 5 s: median {statistics.median(fps) if fps else float('nan'):.1f}, "
        f"min {min(fps) if fps else float('nan'):.1f} (the preview runs at up to {min(30, 1 / args.exposure):.0f} fps)"
    )
    ends = ", ".join(
        f"{name.rsplit(' ', 1)[1]} x{n}"
        for name, n in sorted(c.items())
        if name.startswith("stalled viewer dropped (not told): ")
    )
    print(
        f"stalled viewers: opened {c['stalled viewer opened']}; dropped by the server {c['stalled viewer dropped (told)']} "
        f"with a reset or FIN that reached them, {c['stalled viewer dropped (not told)']} with their end still established "
        f"(the server's end: {ends or '-'})"
    )
    print(
        f"WebSocket: {c['ws connections']} connections, {c['ws commands']} commands answered ok, {c['ws events']} events"
    )
    print(f"API: {c['api requests']} requests answered; mount: {c['tracking toggles']} tracking toggles")
    print(
        f"captures: {c['captures']} saved; sessions: {c['sessions started']} started, {c['sessions completed']} completed"
    )
    for name in sorted(k for k in c if k.endswith("(expected)")):
        print(f"  contention: {name} x{c[name]}")
    rises = ", ".join(f"{lag:.1f} ms at {int(t // 60)}:{int(t % 60):02d}" for t, lag in soak.lag_rises[-4:])
    print(
        f"event-loop lag max: {soak.lag_max_ms:.2f} ms over {soak.lag_samples} samples of max_1m_ms (the max rose to {rises})"
    )
    print(
        f"  reference (an idle event loop in a process of its own, same machine, whole run): lag max {reference_lag_ms:.2f} ms, "
        f"{reference_over:.0f} wake-ups more than 20 ms late"
    )
    print(f"server viewers (/api/health): {viewers_start} at start, {viewers_end} at the end")
    if listed_start and listed_end:
        print(
            f"/api/captures lists {listed_start[0]} images ({listed_start[1] / 1024:.0f} KB) at start, "
            f"{listed_end[0]} ({listed_end[1] / 1024:.0f} KB) at the end"
        )
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    print(
        f"kernel TCP (whole machine): orphan sockets {tcp_start.get('orphan')} at start, {tcp_end.get('orphan')} at the end; "
        f"buffers {tcp_start.get('mem', 0) * page_mb:.1f} MB -> {tcp_end.get('mem', 0) * page_mb:.1f} MB"
    )
    print(f"errors: {error_count} ({errors_at_start} during the warm-up)")
    for kind, count in soak.errors.most_common():
        print(f"  {kind}: {count}")
    for sample in soak.error_samples[:10]:
        print(f"    e.g. {sample}")

    checks = [
        ("no errors", error_count == 0, str(error_count)),
        (
            "event-loop lag max < 50 ms",
            soak.lag_max_ms < 50,
            f"{soak.lag_max_ms:.2f} ms (the idle reference process: {reference_lag_ms:.2f} ms)",
        ),
    ]
    if start and end:
        cpu = (end["cpu"] - start["cpu"]) / elapsed * 100
        print(f"server CPU over the measured period: {cpu:.0f}% of one core")
        print(f"RSS: start {start['rss']:.1f} MB, middle {rss_middle:.1f} MB, end {end['rss']:.1f} MB")
        print(
            f"open fds: start {start['fds']}, end {end['fds']}; threads: start {start['threads']}, end {end['threads']}"
        )
        growth = end["rss"] - start["rss"]
        checks += [
            ("RSS growth < 10 MB", growth < 10, f"{start['rss']:.1f} -> {end['rss']:.1f} MB ({growth:+.1f})"),
            ("open fds end <= start + 5", end["fds"] <= start["fds"] + 5, f"{start['fds']} -> {end['fds']}"),
            (
                "threads end <= start + 2",
                end["threads"] <= start["threads"] + 2,
                f"{start['threads']} -> {end['threads']}",
            ),
        ]
    return report(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="soak a running server (on 127.0.0.1) instead of starting one")
    parser.add_argument("--pid", type=int, help="the running server's pid, for the RSS, fd and thread figures")
    parser.add_argument("--minutes", type=float, default=10.0, help="the measured period, after the warm-up")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of load before the start figures")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--stalled", type=int, default=3)
    parser.add_argument("--ws", type=int, default=5)
    parser.add_argument("--api-workers", type=int, default=5)
    parser.add_argument("--exposure", type=float, default=0.1, help="seconds, set once at the start")
    parser.add_argument("--nice", type=int, default=10, help="niceness added to this load generator (0: none)")
    args = parser.parse_args()
    server = nullcontext((args.url.rstrip("/"), args.pid)) if args.url else running_wanda()
    with server as (base, pid):
        return asyncio.run(run(args, base, pid))


if __name__ == "__main__":
    sys.exit(main())
