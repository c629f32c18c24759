"""Take a few frames over WANDA's WebSocket and follow each exposure live.

    python examples/ws_capture.py --url http://raspberrypi.local:5000 --exposure 2 --iso 800 --frames 3

Sends ``camera.set`` and then ``camera.capture`` commands; prints capture_progress events as they
arrive and the file of each saved frame. Needs only aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys

import aiohttp

_ids = itertools.count(1)


async def command(ws: aiohttp.ClientWebSocketResponse, action: str, **params) -> dict:
    """Send one command and wait for its reply, printing the events that arrive meanwhile."""
    request_id = next(_ids)
    await ws.send_json({"id": request_id, "action": action, "params": params})
    while True:
        message = await ws.receive_json(timeout=600)
        if message.get("id") == request_id and "ok" in message:
            if not message["ok"]:
                error = message["error"]
                raise RuntimeError(f"{action} refused: {error['code']}: {error['message']}")
            return message["data"]
        if message.get("topic") == "camera" and message.get("event") == "capture_progress":
            data = message["data"]
            print(f"  exposing: {data['elapsed']:6.1f} s of {data['exposure_seconds']:g} s ({data['progress']:5.1f}%)")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:5000", help="the WANDA server")
    parser.add_argument("--exposure", type=float, default=1.0, help="exposure in seconds")
    parser.add_argument("--iso", type=float, default=800, help="ISO (gain x 100)")
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()

    async with aiohttp.ClientSession() as session, session.ws_connect(args.url.rstrip("/") + "/ws") as ws:
        await command(ws, "subscribe", topics=["camera"])
        applied = await command(ws, "camera.set", exposure_seconds=args.exposure, iso=args.iso)
        print(f"camera set: exposure {applied['exposure_seconds']:g} s, ISO {applied['iso']:g}")
        for frame in range(1, args.frames + 1):
            print(f"frame {frame} of {args.frames}")
            saved = await command(ws, "camera.capture")
            print(f"  saved {saved['file']} ({args.url.rstrip('/')}{saved['url']})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (RuntimeError, aiohttp.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
