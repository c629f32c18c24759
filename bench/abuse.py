"""Abuse benchmark: the attacks of issue 13 replayed against a live `wanda`, and what held.

    sudo .venv/bin/python bench/abuse.py          # about 1.5 minutes; root to mount the tmpfs
    .venv/bin/python bench/abuse.py --attack-seconds 20 --guess-seconds 10

It starts its own `wanda` on the simulated sky with a password, under systemd's default limit of
1,024 open files (--fd-limit: soft and hard, so the server cannot raise it) and the default
timeouts (10 s for a request's headers, 30 s for its body), with its captures on a small tmpfs it
mounts (--tmpfs-mb, 64). Then, one phase after the other, each bounded in time:

1. Baseline: GET /api/health with the Bearer header, one request every 50 ms for
   --baseline-seconds (5) from each of two clients at once: one opens a new connection per
   request (a script), one keeps its connection alive (a browser). The reference for the
   machine's own jitter: the same probes run again during the connection attack.
2. Connections beyond the descriptor limit, during a timed session (60 frames spread over 30 s,
   0.05 s exposures): for --attack-seconds (40, long enough for the 10 s header timeout and the
   30 s body timeout to fire), from a process of its own, --idle (1,100) TCP connections that send
   nothing, --slow (50) slowloris clients (request headers one byte a second, never finished) and
   --bodies (20) clients whose request body never completes (with the right password, so the
   request gets as far as reading the body). Every connection the server closes is opened again
   at once (--reopen-delay), so the pressure stays. Meanwhile the baseline's probes run again,
   from another process. Printed: the session's frames and status, the probes' latency against the
   baseline, their failed requests and how many connections they had to open (and how many of
   those took a second or more: a SYN dropped at a full listen queue, which the kernel's
   ListenOverflows counter, also printed, confirms), the gate's counters (/api/health
   data.connections), the server's open descriptors at most, and whether its log says "Too many
   open files".
2b. The header timeout alone: --slow slowloris clients for 15 s with nothing else going on (under
   the flood a newcomer evicts them long before their 10 s are up): each must be closed at 10 s.
3. Parallel password guessing from one address (127.0.0.1) for --guess-seconds (20): --guessers
   (100) concurrent wrong guesses, half POST /login and half Bearer requests; a quarter of the
   guessers give up on an answer after 0.5 s. A 401 is a guess the server really compared; a 429
   is one refused before comparing. Meanwhile a browser that logged in BEFORE the attack uses its
   cookie (GET /api/session/status every 50 ms): every answer must be a 200. Afterwards the right
   password by Bearer from the same address gets 429 (the address is throttled, as documented),
   and its Retry-After tells how many guesses the server counted, abandoned ones included.
4. A disk filled and made read-only during a session, then a power cut: a new timed session; a
   ballast file fills the tmpfs until ENOSPC; the session must end "error" with a disk-full
   reason; the tmpfs is remounted read-only; the server is killed (--kill: KILL, a power cut, or
   TERM) and started again. "Time to serving again" runs from the new process's start until
   GET /api/health answers 200. Printed: what /api/sessions and /api/storage say then; then the
   tmpfs is made writable again, the ballast deleted, and the storage state and the session's
   metadata followed until they recover.

Reading the figures: latencies are from the client's side, connect included (p50 / p99 / max in
ms); a keep-alive probe that opened many connections had its idle connection closed by the
server to make room (it opens a new one and asks again). The machine is a shared 2-core VM on
which the attacker, the probes and the server compete for the CPU: compare the attack's figures
with the baseline of the same run, not with absolute numbers. In the gate's counters, "evicted"
are idle connections the server closed to make room for a newcomer, "timed_out" connections
closed for not finishing their headers within 10 s, "refused" connections answered 503 because
every open one was busy. The attacker's lines say how its connections ended as it saw them.

Targets (the PASS/FAIL table at the end): the session completes with all its frames during the
connection attack; each probe's p99 during the attack under max(10 x its baseline p99, 100 ms)
and no probe request failed; the slowloris clients alone are timed out at 10 s; no "Too many
open files" in the server's log; at most 0.2 checked guesses per second after the first five;
every cookie request answered 200 during the guessing; the disk-full session ended "error" with
a disk-full reason; serving again within 10 s of the restart; the restarted server says
read_only and lists the session; the storage is ok again once the disk is.

Without root (no tmpfs), phase 2 runs with its captures in an ordinary temporary folder and
phase 4 is skipped, which the output says.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, free_port, percentile, report

PASSWORD = "abuse-bench-password"
HOST = "127.0.0.1"
COOKIE = "wanda_session"  # wanda/auth.py
FREE_GUESSES = 5  # wanda/auth.py: five wrong passwords at once, then one every 10 s
REFILL_S = 10.0
SESSION_FRAMES = 60
SESSION_SECONDS = 30.0
EXPOSURE = 0.05
PROBE_INTERVAL = 0.05
DISK_FULL_WORDS = ("full", "space", "ENOSPC")


def bearer(password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": f"Bearer {password}"}


def raise_own_fd_limit() -> int:
    """The attacker holds more than 1,024 sockets: its soft limit goes up to its hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        soft = 1 << 16 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def latency_line(latencies: list[float]) -> str:
    if not latencies:
        return "no answers"
    return (
        f"{len(latencies)} requests, p50 {ms(percentile(latencies, 50))} ms, p99 {ms(percentile(latencies, 99))} ms, "
        f"max {ms(max(latencies))} ms"
    )


# -- the server ------------------------------------------------------------------------------------


class Server:
    """`python -m wanda` under a fixed open-file limit, started, killed and started again on the
    same folders; each start logs to a file of its own (wanda-1.log, wanda-2.log, ...)."""

    def __init__(self, scratch: Path, captures: Path, fd_limit: int, min_free_mb: int):
        self.scratch, self.captures, self.fd_limit = scratch, captures, fd_limit
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.env = {**os.environ, "WANDA_PASSWORD": PASSWORD, "WANDA_MIN_FREE_MB": str(min_free_mb)}
        # The header and body timeouts stay at their defaults, as a user would have them.
        for name in ("WANDA_HEADER_TIMEOUT", "WANDA_BODY_TIMEOUT", "WANDA_MAX_CONNECTIONS"):
            self.env.pop(name, None)
        self.process: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> float:
        """Start the process; return the monotonic time just before it was started."""
        log = self.scratch / f"wanda-{len(self.logs) + 1}.log"
        self.logs.append(log)
        limit = self.fd_limit
        started = time.monotonic()
        with open(log, "wb") as sink:  # a file, not a pipe nobody reads
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wanda",
                    "--camera",
                    "sim",
                    "--mount",
                    "sim",
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--captures",
                    str(self.captures),
                    "--data-dir",
                    str(self.scratch / "state"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=self.env,
                # systemd's default: soft and hard 1,024, so wanda cannot raise it to a higher hard limit.
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
            )
        return started

    def wait_logged_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "serving: open" not in self.logs[-1].read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"wanda did not start:\n{self.logs[-1].read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs if log.exists())


# -- a legitimate client ---------------------------------------------------------------------------


class Client:
    """The orchestrator's own requests: a new connection for each (an idle kept-alive connection
    may rightly be closed by the server under the attack), errors returned, never raised."""

    def __init__(self, base: str, headers: dict[str, str]):
        self.base, self.headers = base, dict(headers)
        self.http: aiohttp.ClientSession | None = None
        self.failures: list[str] = []

    async def __aenter__(self) -> Client:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=aiohttp.ClientTimeout(total=15)
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        """(status, envelope or None, response headers); status None for a connection error."""
        try:
            async with self.http.request(
                method, self.base + path, json=body, headers={**self.headers, **(headers or {})}
            ) as response:
                raw = await response.read()
                try:
                    envelope = json.loads(raw)
                except ValueError:
                    envelope = None
                return response.status, envelope, response.headers
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.failures.append(f"{method} {path}: {exc!r}")
            return None, None, {}

    async def data(self, path: str) -> dict | None:
        status, envelope, _ = await self.call("GET", path)
        return envelope.get("data") if status == 200 and envelope else None


# -- load in processes of their own (the attacker's work must not sit in the probe's latencies) ---


def probe_latency(
    base: str, headers: dict, path: str, seconds: float, delay: float = 0.0, keep_alive: bool = False
) -> dict:
    """One client, one GET every PROBE_INTERVAL (the next starts at once if one took longer), for
    ``seconds`` after ``delay``: a new connection each (a script's requests), or one kept alive (a
    browser's; aiohttp asks again once on a new connection when the server closed an idle one).
    Returns latencies, statuses and how long each new connection took to open."""

    async def probe():
        await asyncio.sleep(delay)
        latencies, statuses, errors, connects = [], Counter(), [], []
        # The connections made, and how long each took: a SYN dropped at a full listen queue
        # costs the client a second (its first retransmission) before the request is even sent.
        tracing = aiohttp.TraceConfig()

        async def connect_started(_session, context, _params):
            context.began = time.perf_counter()

        async def connect_ended(_session, context, _params):
            connects.append(time.perf_counter() - context.began)

        tracing.on_connection_create_start.append(connect_started)
        tracing.on_connection_create_end.append(connect_ended)
        connector = aiohttp.TCPConnector(limit=1 if keep_alive else 0, force_close=not keep_alive)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=15), trace_configs=[tracing]
        ) as http:
            start = time.monotonic()
            tick = start
            while time.monotonic() < start + seconds:
                began = time.perf_counter()
                try:
                    async with http.get(base + path, headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1
                        if response.status != 200:
                            errors.append(f"HTTP {response.status}")
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    statuses["error"] += 1
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - began)
                tick += PROBE_INTERVAL
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
        return {"latencies": latencies, "statuses": statuses, "errors": errors, "connects": connects}

    return asyncio.run(probe())


def connection_attack(port: int, seconds: float, idle: int, slow: int, bodies: int, reopen_delay: float) -> dict:
    """Idle, slowloris and never-ending-body connections for ``seconds``, each opened again as
    soon as the server closes it. Returns counters and how long the connections lived."""
    raise_own_fd_limit()

    async def attack():
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        counts: Counter = Counter()
        lived: dict[str, list[float]] = {"idle": [], "slow": [], "body": []}
        state = {"open": 0, "max_open": 0}

        def left() -> float:
            return max(0.0, end - loop.time())

        async def connect(kind: str):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout=left() or 0.001)
            except (OSError, TimeoutError) as exc:
                counts[f"{kind}: connect failed ({type(exc).__name__})"] += 1
                await asyncio.sleep(0.1)
                return None
            counts[f"{kind}: opened"] += 1
            state["open"] += 1
            state["max_open"] = max(state["max_open"], state["open"])
            return reader, writer

        def closed(kind: str, opened: float, how: str, writer: asyncio.StreamWriter) -> None:
            state["open"] -= 1
            counts[f"{kind}: {how}"] += 1
            if how != "still open at the end":
                lived[kind].append(loop.time() - opened)
            writer.transport.abort()  # the client's end freed at once, as a gone client's would be

        async def outcome(reader: asyncio.StreamReader, timeout: float) -> str | None:
            """How the server ended the connection, or None while it is still open after ``timeout``."""
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=timeout)
            except TimeoutError:
                return None
            except OSError:  # ConnectionResetError: the server aborted it (evicted, or a refusal's reset)
                return "reset by the server"
            if not data:
                return "closed by the server (FIN)"
            first = data.split(b"\r\n", 1)[0].decode(errors="replace")
            return f"answered {first.removeprefix('HTTP/1.1 ')}"

        async def idle_client():
            """Connects and sends nothing."""
            while left() > 0:
                opened = loop.time()
                pair = await connect("idle")
                if pair is None:
                    continue
                reader, writer = pair
                how = await outcome(reader, left())
                closed("idle", opened, how or "still open at the end", writer)
                await asyncio.sleep(reopen_delay)

        async def slow_client():
            """Slowloris: the request's headers one byte a second, never finished."""
            while left() > 0:
                opened = loop.time()
                pair = await connect("slow")
                if pair is None:
                    continue
                reader, writer = pair
                writer.write(f"GET /api/health HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
                how = None
                while how is None and left() > 0:
                    how = await outcome(reader, min(1.0, left()))
                    if how is None:
                        writer.write(b"a")
                closed("slow", opened, how or "still open at the end", writer)
                await asyncio.sleep(reopen_delay)

        async def body_client():
            """A complete, authorised request head whose body never completes."""
            while left() > 0:
                opened = loop.time()
                pair = await connect("body")
                if pair is None:
                    continue
                reader, writer = pair
                writer.write(
                    (
                        f"POST /api/camera/settings HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {PASSWORD}\r\n"
                        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"exposure_seconds": '
                    ).encode()
                )
                how = await outcome(reader, left())
                closed("body", opened, how or "still open at the end", writer)
                await asyncio.sleep(reopen_delay)

        tasks = [idle_client() for _ in range(idle)] + [slow_client() for _ in range(slow)]
        tasks += [body_client() for _ in range(bodies)]
        await asyncio.gather(*tasks)
        return {"counts": counts, "lived": lived, "max_open": state["max_open"]}

    return asyncio.run(attack())


def guess_attack(base: str, seconds: float, guessers: int) -> dict:
    """``guessers`` concurrent wrong guesses for ``seconds``: even ones POST /login, odd ones a
    Bearer request; every fourth gives up on its answer after 0.5 s. Returns statuses, the wall
    clock times of the 401s (guesses the server compared) and the abandoned count."""

    async def attack():
        statuses: Counter = Counter()
        checked: list[float] = []
        end = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=0)  # keep-alive: as fast as one machine can ask

        async def guesser(i: int, http: aiohttp.ClientSession):
            timeout = aiohttp.ClientTimeout(total=0.5 if i % 4 == 3 else 15)
            n = 0
            while time.monotonic() < end:
                n += 1
                guess = f"guess-{i}-{n}"
                try:
                    if i % 2 == 0:
                        request = http.post(base + "/login", json={"password": guess}, timeout=timeout)
                    else:
                        request = http.get(base + "/api/session/status", headers=bearer(guess), timeout=timeout)
                    async with request as response:
                        await response.read()
                        statuses[response.status] += 1
                        if response.status == 401:
                            checked.append(time.time())
                except TimeoutError:
                    statuses["abandoned after 0.5 s" if i % 4 == 3 else "timed out"] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    statuses[f"error {type(exc).__name__}"] += 1

        async with aiohttp.ClientSession(connector=connector) as http:
            await asyncio.gather(*(guesser(i, http) for i in range(guessers)))
        return {"statuses": statuses, "checked": checked}

    return asyncio.run(attack())


# -- the phases ------------------------------------------------------------------------------------


PROBES = {"new connection": False, "keep-alive": True}  # name: keep_alive


async def baseline(pool, loop, server: Server, seconds: float) -> dict[str, list[float]]:
    """The probes' latencies with nothing else going on, both at once as during the attack."""
    print(
        f"\n== 1. baseline: GET /api/health (Bearer) every {PROBE_INTERVAL * 1000:.0f} ms for {seconds:g} s from two "
        "clients at once: one opens a new connection per request, one keeps its connection alive"
    )
    futures = {
        name: loop.run_in_executor(pool, probe_latency, server.base, bearer(), "/api/health", seconds, 0.0, keep_alive)
        for name, keep_alive in PROBES.items()
    }
    latencies = {}
    for name, future in futures.items():
        result = await future
        print(
            f"   {name}: {latency_line(result['latencies'])}; failed {len(result['errors'])}; "
            f"{len(result['connects'])} connections opened"
        )
        latencies[name] = result["latencies"]
    return latencies


def listen_drops() -> dict[str, int]:
    """The kernel's count (whole machine) of connections dropped because a listen queue was full:
    their client sends its SYN again after 1 s, then 3 s."""
    with open("/proc/net/netstat") as table:
        lines = table.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):  # a header line, a value line
        if names.startswith("TcpExt:"):
            figures = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:]), strict=True))
            return {k: figures.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


async def wait_session_end(client: Client, timeout: float) -> dict | None:
    """The session's status once it is no longer running (None if it still runs after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await client.data("/api/session/status")
        if status is not None and status.get("status") != "running":
            return status
        await asyncio.sleep(0.5)
    return None


async def start_session(client: Client, name: str) -> bool:
    body = {
        "name": name,
        "total_images": SESSION_FRAMES,
        "total_time_hours": SESSION_SECONDS / 3600,
        "use_current_settings": False,
        "exposure_seconds": EXPOSURE,
    }
    status, envelope, _ = await client.call("POST", "/api/session/start", body)
    if status != 200:
        print(f"   the session did not start: HTTP {status} {envelope}")
        return False
    print(f"   session {name!r} started: {SESSION_FRAMES} frames over {SESSION_SECONDS:g} s at {EXPOSURE:g} s")
    return True


async def connection_phase(
    pool, loop, server: Server, args, base: dict[str, list[float]]
) -> list[tuple[str, bool, str]]:
    print(
        f"\n== 2. connections beyond the descriptor limit during a session: {args.idle} idle, {args.slow} slowloris, "
        f"{args.bodies} never-ending bodies for {args.attack_seconds:g} s (reopened {args.reopen_delay:g} s after each close)"
    )
    async with Client(server.base, bearer()) as client:
        health = await client.data("/api/health")
        gate_before = health["connections"]
        print(
            f"   the server: open-file limit {args.fd_limit}, connection limit {gate_before['limit']} (from /api/health)"
        )
        if not await start_session(client, "abuse_connections"):
            return [("session completes under the attack", False, "did not start")]
        session_started = time.monotonic()
        cpu_before = cpu_seconds(server.pid)
        drops_before = listen_drops()
        attack = loop.run_in_executor(
            pool,
            connection_attack,
            server.port,
            args.attack_seconds,
            args.idle,
            args.slow,
            args.bodies,
            args.reopen_delay,
        )
        # The probes start once the attack's connections are in place and stop before they go.
        probes = {
            name: loop.run_in_executor(
                pool, probe_latency, server.base, bearer(), "/api/health", args.attack_seconds - 4, 2.0, keep_alive
            )
            for name, keep_alive in PROBES.items()
        }
        max_fds, gate, captured, lag_max = 0, gate_before, 0, 0.0
        attack_end = time.monotonic() + args.attack_seconds
        while time.monotonic() < attack_end:
            max_fds = max(max_fds, open_fds(server.pid))
            health = await client.data("/api/health")
            if health:
                gate = health["connections"]
                lag_max = max(lag_max, health["loop_lag"]["max_1m_ms"])
            status = await client.data("/api/session/status")
            if status:
                captured = status["captured_images"]
            elapsed = time.monotonic() - session_started
            print(
                f"   [{elapsed:4.1f} s] frames {captured}/{SESSION_FRAMES} | server fds {max_fds} (max so far) | gate open "
                f"{gate['open']} busy {gate['busy']} evicted {gate['evicted']} timed_out {gate['timed_out']} "
                f"refused {gate['refused']}",
                flush=True,
            )
            await asyncio.sleep(max(0.0, min(5.0, attack_end - time.monotonic())))
        attacked = await attack
        probed = {name: await future for name, future in probes.items()}
        drops = {k: v - drops_before.get(k, 0) for k, v in listen_drops().items()}
        cpu = (cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - session_started) * 100
        health = await client.data("/api/health")
        if health:
            gate = health["connections"]
        final = await wait_session_end(client, SESSION_SECONDS + 30)
        monitor_failures = list(client.failures)

    counts, lived = attacked["counts"], attacked["lived"]
    opened = sum(n for k, n in counts.items() if k.endswith(": opened"))
    print(
        f"   attacker: {opened} connections opened ({opened / args.attack_seconds:.0f}/s), "
        f"at most {attacked['max_open']} open at once"
    )
    for key in sorted(counts):
        if not key.endswith(": opened"):
            print(f"     {key}: {counts[key]}")
    for kind, times in lived.items():
        if times:
            print(f"     {kind}: lived median {percentile(times, 50):.2f} s, max {max(times):.2f} s (closed ones)")
    print(
        f"   gate (/api/health after the attack): open {gate['open']}, evicted {gate['evicted'] - gate_before['evicted']}, "
        f"timed_out {gate['timed_out'] - gate_before['timed_out']}, refused {gate['refused'] - gate_before['refused']}"
    )
    print(
        f"   server: at most {max_fds} open descriptors (limit {args.fd_limit}), CPU {cpu:.0f}% of a core, "
        f"loop lag max {lag_max:.1f} ms"
    )
    print(
        f"   kernel: {drops.get('ListenOverflows')} connections found the listen queue full, {drops.get('ListenDrops')} "
        "dropped (their clients send the SYN again after 1 s)"
    )
    checks = []
    for name, result in probed.items():
        latencies, errors = result["latencies"], result["errors"]
        slow = sum(1 for t in latencies if t >= 1.0)
        connects = result["connects"]
        print(
            f"   API during the attack, {name}: {latency_line(latencies)}; failed {len(errors)}; {slow} took 1 s or more; "
            f"{len(connects)} connections opened, {sum(1 for t in connects if t >= 1.0)} of them took 1 s or more to open"
        )
        for error, n in Counter(errors).most_common(5):
            print(f"     {n} x {error}")
        p99, base_p99 = percentile(latencies, 99), percentile(base[name], 99)
        bound = max(10 * base_p99, 0.1)
        checks += [
            (
                f"API p99, {name}",
                p99 < bound,
                f"{ms(p99)} ms (baseline {ms(base_p99)}, bound {ms(bound)}; max {ms(max(latencies, default=0))}; {slow} >= 1 s)",
            ),
            (f"no API failure, {name}", not errors and bool(latencies), f"{len(errors)} of {len(latencies)}"),
        ]
    if monitor_failures:
        print(
            f"   the monitor's own requests (new connection each): {len(monitor_failures)} failed, e.g. {monitor_failures[0]}"
        )
    fd_errors = server.log_text().count("Too many open files")
    print(f"   'Too many open files' in the server's log: {fd_errors}")
    if final:
        print(
            f"   session: {final['status']}, {final['captured_images']}/{final['total_images']} frames, error {final['error']!r}"
        )
    else:
        print("   session: still running 60 s after it was due to end")

    complete = bool(final) and final["status"] == "completed" and final["captured_images"] == SESSION_FRAMES
    return [
        (
            "session completes under attack",
            complete,
            f"{final['status']}, {final['captured_images']}/{SESSION_FRAMES} frames" if final else "still running",
        ),
        *checks,
        ("no 'Too many open files'", fd_errors == 0, f"{fd_errors}; server fds at most {max_fds} of {args.fd_limit}"),
    ]


async def header_timeout_phase(pool, loop, server: Server, args) -> tuple[str, bool, str]:
    """Slowloris alone, below the connection limit: under the flood nobody lives long enough to
    time out (a newcomer evicts it first), so the header timeout is shown on its own."""
    seconds = 15.0  # one round of 10 s timeouts, and the second round under way
    print(f"\n== 2b. the header timeout alone: {args.slow} slowloris clients for {seconds:g} s, nothing else")
    async with Client(server.base, bearer()) as client:
        before = (await client.data("/api/health"))["connections"]
        attacked = await loop.run_in_executor(
            pool, connection_attack, server.port, seconds, 0, args.slow, 0, args.reopen_delay
        )
        after = (await client.data("/api/health"))["connections"]
    timed_out = after["timed_out"] - before["timed_out"]
    lived = attacked["lived"]["slow"]
    print(
        f"   gate: timed_out {timed_out}, evicted {after['evicted'] - before['evicted']}; slowloris closed: {len(lived)}, "
        f"lived {min(lived, default=0):.2f} to {max(lived, default=0):.2f} s; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(attacked["counts"].items()))
    )
    held = timed_out >= args.slow and bool(lived) and max(lived) < 12.0
    return ("slowloris timed out in 10 s", held, f"{timed_out} timed out, lived at most {max(lived, default=0):.1f} s")


async def guessing_phase(pool, loop, server: Server, args) -> tuple[list[tuple[str, bool, str]], str | None]:
    print(
        f"\n== 3. parallel password guessing from {HOST}: {args.guessers} concurrent wrong guesses for {args.guess_seconds:g} s "
        "(half POST /login, half Bearer; a quarter give up after 0.5 s)"
    )
    async with Client(server.base, {}) as client:
        status, _, headers = await client.call("POST", "/login", {"password": PASSWORD})
        cookie = None
        for header in headers.getall("Set-Cookie", []):  # (aiohttp's jar keeps none from an IP address)
            morsel = SimpleCookie(header).get(COOKIE)
            if morsel is not None:
                cookie = morsel.value
        if status != 200 or not cookie:
            print(f"   logging in with the right password failed: HTTP {status}")
            return [("cookie works during guessing", False, "no cookie")], None
    print("   logged in with the right password before the attack; the cookie is used during it")
    started = time.time()
    guesses = loop.run_in_executor(pool, guess_attack, server.base, args.guess_seconds, args.guessers)
    # The cookie holder uses the same address as the guessers: a cookie is never throttled.
    cookie_probe = loop.run_in_executor(
        pool, probe_latency, server.base, {"Cookie": f"{COOKIE}={cookie}"}, "/api/session/status", args.guess_seconds
    )
    guessed, probed = await guesses, await cookie_probe
    duration = time.time() - started

    async with Client(server.base, bearer()) as client:
        # The right password from the throttled address: refused before it is compared. Its
        # Retry-After tells how many guesses the server counted (abandoned ones included): the
        # address's bucket is full again 10 s after each, and it has 5 - 1 tries of slack.
        right_status, right_envelope, right_headers = await client.call("GET", "/api/health")
    retry_after = right_headers.get("Retry-After")

    statuses, checked = guessed["statuses"], sorted(guessed["checked"])
    total = sum(statuses.values())
    answers = ", ".join(f"{k}: {v}" for k, v in statuses.most_common())
    print(f"   guesses sent: {total} ({total / duration:.0f}/s); answers: {answers}")
    offsets = ", ".join(f"{t - started:.1f}" for t in checked[:20])
    print(f"   compared by the server (401): {len(checked)}, at {offsets} s after the start")
    after_burst = max(0, len(checked) - FREE_GUESSES) / duration
    print(
        f"   guesses per second achieved: {len(checked) / duration:.2f} in all, {after_burst:.2f} after the first {FREE_GUESSES}"
    )
    if retry_after is not None:
        # full_at = first + 10 * N and wait = full_at - now - 40 s, so N = (wait + 40 + now - first) / 10.
        first = checked[0] if checked else started
        estimate = (int(retry_after) - 0.5 + (FREE_GUESSES - 1) * REFILL_S + time.time() - first) / REFILL_S
        print(
            f"   the right password by Bearer afterwards: HTTP {right_status} {right_envelope and right_envelope.get('code')}, "
            f"Retry-After {retry_after} s: the server counted about {estimate:.0f} guesses ({len(checked)} seen answered 401)"
        )
    else:
        print(f"   the right password by Bearer afterwards: HTTP {right_status} (no Retry-After)")
    cookie_statuses = probed["statuses"]
    cookie_ok = cookie_statuses.get(200, 0)
    cookie_total = sum(cookie_statuses.values())
    print(
        f"   the cookie during the attack: {cookie_ok}/{cookie_total} answered 200 "
        f"({', '.join(f'{k}: {v}' for k, v in cookie_statuses.items())}); {latency_line(probed['latencies'])}"
    )
    checks = [
        (
            "checked guesses/s after burst",
            after_burst <= 0.2,
            f"{after_burst:.2f}/s ({len(checked)} compared in {duration:.0f} s, {total} sent)",
        ),
        ("cookie requests all 200", cookie_total > 0 and cookie_ok == cookie_total, f"{cookie_ok}/{cookie_total}"),
    ]
    return checks, cookie


def fill_disk(folder: Path) -> int:
    """Write a ballast file until the filesystem says ENOSPC; return its size."""
    ballast = folder / "ballast.bin"
    written = 0
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in (b"\0" * 2**20, b"\0" * 4096):  # big pieces, then the last pages
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < len(chunk):
                    break
    finally:
        os.close(fd)
    return written


def run_command(*argv: str) -> tuple[bool, str]:
    result = subprocess.run(argv, capture_output=True, text=True)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def remount(folder: Path, mode: str, attempts: int = 10) -> tuple[bool, str]:
    """`mount -o remount,<mode>`: a file still open for writing makes it EBUSY for a moment."""
    for _ in range(attempts):
        done, message = run_command("mount", "-o", f"remount,{mode}", str(folder))
        if done:
            return True, ""
        time.sleep(0.5)
    return False, message


def describe_sessions(sessions: list[dict]) -> None:
    for item in sessions:
        print(
            f"     {item.get('name')!r}: {item.get('status')}, {item.get('captured_images')}/{item.get('total_images')} frames, "
            f"error {item.get('error')!r}, saved {item.get('saved')}"
        )


def describe_storage(storage: dict | None) -> str:
    if not storage:
        return "no answer"
    return (
        f"state {storage['state']}, writable {storage['writable']}, free {storage['free'] / 2**20:.1f} MB, "
        f"frames_left {storage['frames_left']}: {storage['message']}"
    )


async def disk_phase(server: Server, args, cookie: str | None) -> list[tuple[str, bool, str]]:
    how = "a power cut (SIGKILL)" if args.kill == "KILL" else "SIGTERM"
    print(f"\n== 4. the disk filled and made read-only during a session, then {how} and a restart")
    # 127.0.0.1 is still throttled after the guessing: the legitimate client goes by its cookie.
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else bearer()
    checks: list[tuple[str, bool, str]] = []
    captures = server.captures
    async with Client(server.base, headers) as client:
        if not await start_session(client, "abuse_disk"):
            return [("disk-full session ends in error", False, "did not start")]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # a few frames on disk first
            status = await client.data("/api/session/status")
            if status and status["captured_images"] >= 3:
                break
            await asyncio.sleep(0.2)
        filled_at = time.monotonic()
        ballast = await asyncio.to_thread(fill_disk, captures)
        print(
            f"   ballast: {ballast / 2**20:.1f} MB written until ENOSPC; frames before: {status and status['captured_images']}"
        )
        final = await wait_session_end(client, 20)
        if final:
            reason = final["error"] or ""
            print(
                f"   session ended {time.monotonic() - filled_at:.1f} s after the disk filled: {final['status']}, "
                f"{final['captured_images']}/{final['total_images']} frames, error {reason!r}"
            )
        else:
            reason = ""
            print("   session: still running 20 s after the disk filled")
        disk_full = (
            bool(final) and final["status"] == "error" and any(w.lower() in reason.lower() for w in DISK_FULL_WORDS)
        )
        checks.append(("disk-full session ends in error", disk_full, f"{final and final['status']}: {reason!r}"))
        print(f"   /api/storage (disk full): {describe_storage(await client.data('/api/storage'))}")
        listed = await client.data("/api/sessions")
        print("   /api/sessions (disk full, before the restart):")
        describe_sessions(listed["sessions"] if listed else [])

    done, message = remount(captures, "ro")
    print(f"   mount -o remount,ro: {'done' if done else 'FAILED: ' + message}")
    async with Client(server.base, headers) as client:
        print(f"   /api/storage (read-only, before the restart): {describe_storage(await client.data('/api/storage'))}")

    server.kill(signal.SIGKILL if args.kill == "KILL" else signal.SIGTERM)
    print(f"   server killed with SIG{args.kill}; starting it again on the same folders")
    started = server.start()
    async with Client(server.base, headers) as client:
        serving_s = None
        deadline = started + 30
        while time.monotonic() < deadline and server.process.poll() is None:
            status, _, _ = await client.call("GET", "/api/health")
            if status == 200:
                serving_s = time.monotonic() - started
                break
            await asyncio.sleep(0.02)
        client.failures.clear()  # refused connections while it starts are expected
        if serving_s is None:
            print(f"   NOT serving 30 s after the restart:\n{server.logs[-1].read_text(errors='replace')[-2000:]}")
            return [*checks, ("serving again within 10 s", False, "not serving")]
        print(f"   serving again {serving_s:.2f} s after the new process started")
        checks.append(("serving again within 10 s", serving_s < 10, f"{serving_s:.2f} s"))
        storage = await client.data("/api/storage")
        print(f"   /api/storage after the restart: {describe_storage(storage)}")
        read_only = bool(storage) and storage["state"] == "read_only"
        checks.append(("restart: storage says read_only", read_only, storage and storage["state"]))
        listed = await client.data("/api/sessions")
        sessions = listed["sessions"] if listed else []
        print("   /api/sessions after the restart:")
        describe_sessions(sessions)
        ours = next((s for s in sessions if s.get("name") == "abuse_disk"), None)
        if ours:
            kept = ours.get("status") == "error" and any(
                w.lower() in (ours.get("error") or "").lower() for w in DISK_FULL_WORDS
            )
            listed_as = "yes" if kept else f"no, it is listed as {ours.get('status')!r}"
            print(f"   the session's disk-full error survived the restart: {listed_as}")
        checks.append(
            (
                "restart: the session is listed",
                ours is not None,
                f"{ours['status']}: {ours['error']!r}, saved {ours['saved']}" if ours else "missing",
            )
        )

        # Space again: the disk writable, the ballast gone; the state and the session's metadata
        # (kept in memory while the disk refused it, retried every 10 s) follow.
        done, message = remount(captures, "rw")
        print(f"   mount -o remount,rw: {'done' if done else 'FAILED: ' + message}")
        (captures / "ballast.bin").unlink(missing_ok=True)
        freed = time.monotonic()
        storage = None
        while time.monotonic() < freed + 15:
            storage = await client.data("/api/storage")
            if storage and storage["state"] == "ok":
                break
            await asyncio.sleep(0.2)
        print(f"   /api/storage {time.monotonic() - freed:.1f} s after the ballast went: {describe_storage(storage)}")
        checks.append(
            ("writable again afterwards", bool(storage) and storage["state"] == "ok", storage and storage["state"])
        )
        while time.monotonic() < freed + 15:
            listed = await client.data("/api/sessions")
            sessions = listed["sessions"] if listed else []
            if all(s.get("saved") is not False for s in sessions):
                break
            await asyncio.sleep(0.5)
        print(f"   /api/sessions {time.monotonic() - freed:.1f} s after the ballast went:")
        describe_sessions(sessions)
    return checks


# -- the run ---------------------------------------------------------------------------------------


def mount_tmpfs(folder: Path, megabytes: int) -> tuple[bool, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return run_command("mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder))


def unmount(folder: Path) -> None:
    done, message = run_command("umount", str(folder))
    if not done:
        lazy, _ = run_command("umount", "-l", str(folder))  # something still holds it: detach it anyway
        print(f"umount {folder}: {message}; lazy unmount {'done' if lazy else 'failed too'}")


async def run(args, server: Server, tmpfs: bool) -> int:
    loop = asyncio.get_running_loop()
    checks: list[tuple[str, bool, str]] = []
    with ProcessPoolExecutor(max_workers=1 + len(PROBES)) as pool:
        async with Client(server.base, bearer()) as client:
            status, envelope, _ = await client.call("POST", "/api/camera/settings", {"exposure_seconds": EXPOSURE})
            if status != 200:
                print(f"the server refused the set-up: HTTP {status} {envelope}")
                return 1
        base_latencies = await baseline(pool, loop, server, args.baseline_seconds)
        checks += await connection_phase(pool, loop, server, args, base_latencies)
        checks.append(await header_timeout_phase(pool, loop, server, args))
        guessing, cookie = await guessing_phase(pool, loop, server, args)
        checks += guessing
        if tmpfs:
            checks += await disk_phase(server, args, cookie)
        else:
            print("\n== 4. skipped: the captures are not on a tmpfs of our own (mounting one needs root)")
    errors = logged_errors(server.log_text())
    print(f"\nthe server's logs ({', '.join(str(p) for p in server.logs)}): {sum(errors.values())} ERROR records")
    for what, n in errors.most_common(12):
        print(f"   {n} x {what}")
    return report(checks)


def logged_errors(log: str) -> Counter:
    """ERROR and CRITICAL records, each as its message and, with a traceback, the exception's line."""
    records: Counter = Counter()
    current: list[str] = []
    for line in [*log.splitlines(), "0000-00-00 end"]:
        if line[:4].isdigit() and line[4:5] == "-":  # a new record starts with its date
            if current:
                message = current[0].split(" ", 2)[2].strip()
                exception = current[-1].strip() if len(current) > 1 else ""
                records[f"{message}{' / ' + exception if exception else ''}"[:200]] += 1
            current = [line] if (" ERROR " in line or " CRITICAL " in line) else []
        elif current:
            current.append(line)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--fd-limit", type=int, default=1024, help="the server's open-file limit, soft and hard (systemd's default)"
    )
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--attack-seconds", type=float, default=40.0)
    parser.add_argument("--idle", type=int, default=1100, help="idle connections (more than the descriptor limit)")
    parser.add_argument("--slow", type=int, default=50, help="slowloris connections")
    parser.add_argument("--bodies", type=int, default=20, help="connections whose body never completes")
    parser.add_argument(
        "--reopen-delay", type=float, default=0.0, help="seconds before the attacker reopens a closed connection"
    )
    parser.add_argument("--guess-seconds", type=float, default=20.0)
    parser.add_argument("--guessers", type=int, default=100)
    parser.add_argument("--tmpfs-mb", type=int, default=64)
    parser.add_argument(
        "--min-free-mb",
        type=int,
        default=0,
        help="the server's reserve (default 200 MB in wanda; 0 here, so the tmpfs really fills under the session's writes)",
    )
    parser.add_argument(
        "--kill", choices=("KILL", "TERM"), default="KILL", help="how the server is stopped before the restart"
    )
    args = parser.parse_args()

    own = raise_own_fd_limit()
    print(f"abuse: this process may open {own} files; the server {args.fd_limit} (soft and hard)")
    scratch = Path(tempfile.mkdtemp(prefix="wanda-abuse-"))
    captures = scratch / "captures"
    tmpfs, message = mount_tmpfs(captures, args.tmpfs_mb)
    if tmpfs:
        print(
            f"captures on a {args.tmpfs_mb} MB tmpfs at {captures}; the server's reserve min_free_mb={args.min_free_mb}"
        )
    else:
        print(f"cannot mount a tmpfs at {captures} ({message}): phase 2 runs on the ordinary disk, phase 4 is skipped")
    server = Server(scratch, captures, args.fd_limit, args.min_free_mb)
    try:
        server.start()
        server.wait_logged_serving()
        print(f"wanda pid {server.pid} on {server.base}, log in {server.logs[-1]}")
        return asyncio.run(run(args, server, tmpfs))
    finally:
        server.kill(signal.SIGTERM)
        if tmpfs:
            unmount(captures)
        print(f"(the logs stay in {scratch})")


if __name__ == "__main__":
    sys.exit(main())
