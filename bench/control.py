"""Control-plane benchmark: a long exposure must not slow the server down.

    python bench/control.py                      # starts wanda on the simulated sky
    python bench/control.py --url http://host:5000 --exposure 10

While one still exposure of --exposure seconds (default 5) runs, this keeps --viewers MJPEG
viewers (20) and --ws WebSocket clients (5) connected and sends --requests API requests (1000) from
--api-concurrency workers (20) in a process of their own. It prints API latency (p50, p99), the
event-loop lag the server measured (max over the run, from /api/health), errors, and for each
WebSocket client the number of capture_progress events and the longest gap between them, and checks
the targets of issue 3: API p99 < 20 ms, loop lag max < 50 ms, no errors, >= 1 progress event/s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ViewerResult, api_load, percentile, report, running_wanda, view_stream

API_PATHS = ("/api/camera/status", "/state", "/api/health")


async def ws_client(session: aiohttp.ClientSession, base: str, until: float, record: dict) -> None:
    """Collect the arrival times of capture events on one WebSocket."""
    try:
        async with session.ws_connect(base + "/ws") as ws:
            record["connected"].set()
            while time.monotonic() < until:
                try:
                    message = await ws.receive_json(timeout=max(0.1, until - time.monotonic()))
                except TimeoutError:
                    break
                event = message.get("event")
                if message.get("topic") == "camera" and event in (
                    "capture_start",
                    "capture_progress",
                    "capture_complete",
                ):
                    record["events"].append((event, time.monotonic()))
    except (aiohttp.ClientError, TypeError, ValueError) as exc:
        record["errors"].append(repr(exc))
        record["connected"].set()


def progress_figures(events: list[tuple[str, float]]) -> tuple[int, float]:
    """(progress events, longest gap in seconds from capture_start to capture_complete)."""
    times = [t for _, t in events]
    progress = sum(1 for e, _ in events if e == "capture_progress")
    if len(times) < 2 or events[0][0] != "capture_start" or events[-1][0] != "capture_complete":
        return progress, float("inf")
    return progress, max(b - a for a, b in itertools.pairwise(times))


async def run(args, base: str) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        async with session.post(base + "/api/camera/settings", json={"exposure_seconds": 1 / 30}) as r:
            assert r.status == 200, await r.text()
        horizon = time.monotonic() + args.exposure + 30
        records = [{"events": [], "errors": [], "connected": asyncio.Event()} for _ in range(args.ws)]
        ws_tasks = [asyncio.create_task(ws_client(session, base, horizon, rec)) for rec in records]
        for rec in records:
            await rec["connected"].wait()
        viewers = [ViewerResult() for _ in range(args.viewers)]
        stop_viewers = time.monotonic() + args.exposure + 8
        viewer_tasks = [asyncio.create_task(view_stream(session, base + "/stream", stop_viewers, v)) for v in viewers]
        await asyncio.sleep(1.0)

        async with session.post(base + "/api/camera/settings", json={"exposure_seconds": args.exposure}) as r:
            assert r.status == 200, await r.text()
        started = time.monotonic()
        capture = asyncio.create_task(session.post(base + "/api/camera/capture"))
        await asyncio.sleep(0.2)  # the exposure is under way
        with ProcessPoolExecutor(1) as pool:
            latencies, errors = await asyncio.get_running_loop().run_in_executor(
                pool, api_load, base, args.api_concurrency, API_PATHS, None, args.requests, 0.0
            )
        api_done = time.monotonic() - started
        response = await capture
        capture_body = await response.json()
        capture_s = time.monotonic() - started
        if response.status != 200:
            errors.append(f"capture: HTTP {response.status} {capture_body}")
        await asyncio.sleep(0.5)  # the last events arrive
        for task in ws_tasks:
            task.cancel()
        await asyncio.gather(*viewer_tasks)
        async with session.get(base + "/api/health") as r:
            health = (await r.json())["data"]
        async with session.post(base + "/api/camera/settings", json={"exposure_seconds": 1 / 30}) as r:
            await r.read()

    errors += [e for rec in records for e in rec["errors"]] + [e for v in viewers for e in v.errors]
    lag_max = health["loop_lag"]["max_1m_ms"]
    print(
        f"exposure {args.exposure:g} s: capture returned after {capture_s:.2f} s ({capture_body.get('data', {}).get('file')})"
    )
    print(
        f"API: {len(latencies)} requests at concurrency {args.api_concurrency} in {api_done:.2f} s during the exposure: "
        f"p50 {percentile(latencies, 50) * 1000:.2f} ms, p99 {percentile(latencies, 99) * 1000:.2f} ms"
    )
    print(f"event-loop lag (server, max over the last minute): {lag_max:.2f} ms")
    print(
        f"viewers: {len(viewers)}, frames received {sum(v.frames for v in viewers)} (the preview pauses while the still exposes)"
    )
    worst_gap = 0.0
    fewest_per_s = float("inf")
    for i, rec in enumerate(records, 1):
        count, gap = progress_figures(rec["events"])
        worst_gap = max(worst_gap, gap)
        fewest_per_s = min(fewest_per_s, count / args.exposure)
        print(
            f"  ws client {i}: {count} capture_progress events ({count / args.exposure:.1f}/s), longest gap {gap:.2f} s"
        )
    for error in errors[:10]:
        print(f"  error: {error}")

    checks = [
        ("API p99 < 20 ms", percentile(latencies, 99) * 1000 < 20, f"{percentile(latencies, 99) * 1000:.2f} ms"),
        ("event-loop lag max < 50 ms", lag_max < 50, f"{lag_max:.2f} ms"),
        ("no errors", not errors, str(len(errors))),
        (
            ">= 1 progress event/s per client",
            fewest_per_s >= 1 and worst_gap <= 1.0,
            f"{fewest_per_s:.1f}/s, gap {worst_gap:.2f} s",
        ),
        ("all API requests made", len(latencies) == args.requests, str(len(latencies))),
    ]
    return report(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--exposure", type=float, default=5.0)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--ws", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--api-concurrency", type=int, default=20)
    args = parser.parse_args()
    server = nullcontext((args.url.rstrip("/"), None)) if args.url else running_wanda()
    with server as (base, _pid):
        return asyncio.run(run(args, base))


if __name__ == "__main__":
    sys.exit(main())
