"""Streaming benchmark: many viewers, stalled viewers and API traffic against one `wanda`.

    python bench/stream.py                      # starts wanda on the simulated sky
    python bench/stream.py --url http://host:5000 --viewers 10 --seconds 30

Phases (each --seconds long, after a short warm-up):
  1. one viewer alone                       -> the CPU baseline
  2. N viewers                              -> CPU ratio N viewers / one viewer
  3. N viewers + K stalled viewers + API requests from --api-concurrency workers
RSS growth is counted from the end of phase 1 (the frame path's one-time allocations are in) to
the end of phase 3; the idle RSS at start is printed too.
Prints per-viewer fps (min, median), frame age from X-Timestamp (p50, p99), server CPU ms per
delivered frame, RSS before and after, API latency p50/p99, and checks the targets of issue 2.
CPU and RSS need the server's pid, so they are printed only when this script started the server
(or with --pid).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ViewerResult,
    api_load,
    cpu_seconds,
    percentile,
    report,
    rss_mb,
    running_wanda,
    stalled_viewer,
    view_stream,
)

API_PATHS = ("/api/health", "/state")


async def phase(
    base: str,
    pid: int | None,
    *,
    viewers: int,
    stalled: int,
    api_workers: int,
    api_pause: float,
    seconds: float,
    warmup: float,
):
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stalled_sockets = [stalled_viewer(base) for _ in range(stalled)]
        try:
            # Warm-up: connect everybody and let the stalled viewers' buffers fill.
            end_warmup = time.monotonic() + warmup
            warm = [ViewerResult() for _ in range(viewers)]
            await asyncio.gather(*(view_stream(session, base + "/stream", end_warmup, r) for r in warm))

            results = [ViewerResult() for _ in range(viewers)]
            latencies: list[float] = []
            errors: list[str] = []
            cpu_before = cpu_seconds(pid) if pid else None
            started = time.monotonic()
            until = started + seconds
            with ProcessPoolExecutor(1) as pool:
                api = None
                if api_workers:
                    # API clients run in a process of their own, so that the viewers' parsing
                    # does not sit inside the measured latencies.
                    api = asyncio.get_running_loop().run_in_executor(
                        pool, api_load, base, api_workers, API_PATHS, seconds, None, api_pause
                    )
                await asyncio.gather(*(view_stream(session, base + "/stream", until, r) for r in results))
                if api is not None:
                    latencies, errors = await api
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(pid) - cpu_before if pid else None
        finally:
            for sock in stalled_sockets:
                sock.close()
    delivered = sum(r.frames for r in results)
    ages = [a for r in results for a in r.ages]
    errors += [e for r in results for e in r.errors]
    fps = [r.frames / elapsed for r in results]
    return {
        "fps_min": min(fps),
        "fps_median": statistics.median(fps),
        "age_p50_ms": percentile(ages, 50) * 1000,
        "age_p99_ms": percentile(ages, 99) * 1000,
        "delivered": delivered,
        "cpu_s": cpu,
        "cpu_per_s": cpu / elapsed if cpu is not None else None,
        "cpu_ms_per_frame": cpu * 1000 / delivered if cpu is not None and delivered else None,
        "api_requests": len(latencies),
        "api_p50_ms": percentile(latencies, 50) * 1000,
        "api_p99_ms": percentile(latencies, 99) * 1000,
        "errors": errors,
        "elapsed": elapsed,
    }


def show(name: str, r: dict) -> None:
    line = (
        f"{name:<28} fps min {r['fps_min']:5.1f} median {r['fps_median']:5.1f} | "
        f"age p50 {r['age_p50_ms']:5.1f} ms p99 {r['age_p99_ms']:5.1f} ms | frames {r['delivered']}"
    )
    if r["cpu_s"] is not None:
        line += f" | CPU {r['cpu_per_s'] * 100:5.1f}% = {r['cpu_ms_per_frame']:.3f} ms/frame"
    if r["api_requests"]:
        line += f" | API {r['api_requests']} req p50 {r['api_p50_ms']:.2f} ms p99 {r['api_p99_ms']:.2f} ms"
    print(line, flush=True)
    for error in r["errors"][:5]:
        print(f"    error: {error}")


async def run(args, base: str, pid: int | None) -> int:
    rss_idle = rss_mb(pid) if pid else None
    common = dict(seconds=args.seconds, warmup=args.warmup)
    single = await phase(base, pid, viewers=1, stalled=0, api_workers=0, api_pause=0, **common)
    show("1 viewer", single)
    # Growth is counted from here: the frame path has run, so what it allocates once is in.
    rss_start = rss_mb(pid) if pid else None
    many = await phase(base, pid, viewers=args.viewers, stalled=0, api_workers=0, api_pause=0, **common)
    show(f"{args.viewers} viewers", many)
    full = await phase(
        base,
        pid,
        viewers=args.viewers,
        stalled=args.stalled,
        api_workers=args.api_concurrency,
        api_pause=args.api_pause,
        **common,
    )
    show(f"{args.viewers} viewers+{args.stalled} stalled+API", full)
    rss_end = rss_mb(pid) if pid else None

    checks = [
        ("every viewer >= 28 fps", full["fps_min"] >= 28, f"{full['fps_min']:.1f}"),
        ("frame age p99 < 50 ms", full["age_p99_ms"] < 50, f"{full['age_p99_ms']:.1f} ms"),
        ("API p99 < 20 ms", full["api_p99_ms"] < 20, f"{full['api_p99_ms']:.2f} ms"),
        ("no errors", not (single["errors"] or many["errors"] or full["errors"]), str(len(full["errors"]))),
    ]
    if pid:
        ratio = many["cpu_per_s"] / single["cpu_per_s"]
        checks += [
            (f"CPU {args.viewers} viewers / 1 viewer <= 2.5", ratio <= 2.5, f"{ratio:.2f}"),
            ("RSS growth < 15 MB", rss_end - rss_start < 15, f"{rss_start:.1f} -> {rss_end:.1f} MB"),
        ]
        print(f"\nRSS: idle {rss_idle:.1f} MB, after one viewer {rss_start:.1f} MB, after the load {rss_end:.1f} MB")
    return report(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--pid", type=int, help="the running server's pid, for CPU and RSS figures")
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--stalled", type=int, default=3)
    parser.add_argument("--api-concurrency", type=int, default=20)
    parser.add_argument(
        "--api-pause",
        type=float,
        default=0.05,
        help="seconds each API worker waits between requests (0: back to back)",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    server = nullcontext((args.url.rstrip("/"), args.pid)) if args.url else running_wanda()
    with server as (base, pid):
        return asyncio.run(run(args, base, pid))


if __name__ == "__main__":
    sys.exit(main())
