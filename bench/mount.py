"""Mount timing benchmark: does the step schedule hold while the server streams?

    .venv/bin/python bench/mount.py       # 10 minutes at 0.1 s per step, 10 viewers
    .venv/bin/python bench/mount.py --minutes 1 --interval 0.2 --viewers 5

Starts `wanda` on the simulated sky with simulated pins (real clock), streams to --viewers viewers,
tracks at --interval seconds per step for --minutes, and prints the max and mean |actual - ideal|
step time (measured by the mount thread against its absolute schedule), the error of the last step
(the drift: with an absolute schedule it does not grow), and the steps taken against the steps a
perfect clock would have taken in the same time. Targets (issue 4): max < 5 ms, zero drift.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ViewerResult, report, running_wanda, view_stream

POLL_S = 10  # the mount status's max step error covers the last minute: polls overlap


async def run(args, base: str) -> int:
    seconds = args.minutes * 60
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)  # the streams run for minutes
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        viewers = [ViewerResult() for _ in range(args.viewers)]
        streaming_since = time.monotonic()
        until = streaming_since + seconds + 3
        streams = [asyncio.create_task(view_stream(session, base + "/stream", until, v)) for v in viewers]
        await asyncio.sleep(2)
        async with session.post(base + "/api/mount/tracking", json={"action": "start", "speed": args.interval}) as r:
            started = time.monotonic()
            assert r.status == 200, await r.text()
        next_report = started + 60
        next_poll = started + POLL_S
        worst = 0.0  # the status's max is the last minute's: polled more often, the whole run's
        while time.monotonic() - started < seconds:
            await asyncio.sleep(1)
            if time.monotonic() >= next_poll:
                next_poll += POLL_S
                async with session.get(base + "/api/mount/status") as r:
                    s = (await r.json())["data"]
                worst = max(worst, s["max_timing_error_ms"])
            if time.monotonic() >= next_report:
                next_report += 60
                print(
                    f"  {int(time.monotonic() - started):4d} s: {s['steps']} steps, last minute's max |error| "
                    f"{s['max_timing_error_ms']:.3f} ms, mean {s['mean_timing_error_ms']:.3f} ms",
                    flush=True,
                )
        async with session.get(base + "/api/mount/status") as r:
            status = (await r.json())["data"]
        elapsed = time.monotonic() - started
        worst = max(worst, status["max_timing_error_ms"])
        async with session.post(base + "/api/mount/tracking", json={"action": "stop"}) as r:
            await r.read()
        await asyncio.gather(*streams)
        streamed = time.monotonic() - streaming_since

    expected = int(elapsed / args.interval) + 1  # the first step comes at once
    frames = sum(v.frames for v in viewers)
    errors = [e for v in viewers for e in v.errors]
    print(
        f"tracked {elapsed:.1f} s at {args.interval} s/step while streaming to {args.viewers} viewers "
        f"({frames / streamed / max(1, args.viewers):.1f} fps each)"
    )
    print(f"steps: {status['steps']} taken, {expected} due by a perfect clock")
    print(f"|actual - ideal|: max {worst:.3f} ms, mean {status['mean_timing_error_ms']:.3f} ms")
    print(f"last step (the drift): {status['timing_error_ms']:.3f} ms late")
    checks = [
        ("max |actual - ideal| < 5 ms", worst < 5, f"{worst:.3f} ms"),
        (
            "zero accumulated drift",
            abs(status["steps"] - expected) <= 1 and status["timing_error_ms"] < 5,
            f"{status['steps'] - expected:+d} steps, last {status['timing_error_ms']:.3f} ms",
        ),
        ("viewers without errors", not errors, str(len(errors))),
    ]
    return report(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--viewers", type=int, default=10)
    args = parser.parse_args()
    with running_wanda("--mount", "sim") as (base, _pid):
        return asyncio.run(run(args, base))


if __name__ == "__main__":
    sys.exit(main())
