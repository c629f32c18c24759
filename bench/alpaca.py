"""Alpaca benchmark: how long a frame takes to download, and whether the live view keeps its pace
while an Alpaca client downloads frames in a loop.

    python bench/alpaca.py                          # starts wanda on the simulated sky
    python bench/alpaca.py --downloads 20 --viewers 10 --seconds 20

1. Downloads: one exposure through Alpaca, then its full frame (the simulated sky's 1440 x 1080)
   fetched --downloads times as ImageBytes and as JSON. The reference is the same number of bytes
   from a bare aiohttp server started by this script in the same run (what the loopback and the
   machine give any server), so the ratio tells WANDA's share from the machine's.
   The encoders alone are also timed on a Raspberry Pi HQ camera's frame (4056 x 3040, 12 bits).
2. Stream: --viewers MJPEG viewers for --seconds alone, then as long with an Alpaca client
   downloading the frame in a loop (ImageBytes and JSON in turn). Per-viewer fps (min, median)
   in both phases, and the idle reference loop's lag over each (wanda/bench/common.py), so a
   slow phase can be put on the machine or on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import IdleReference, ViewerResult, free_port, report, running_wanda, view_stream

from wanda.alpaca.images import json_values, pixel_bytes

CAMERA = "/api/v1/camera/0"
KINDS = {"ImageBytes": {"Accept": "application/imagebytes"}, "JSON": {}}

# The Alpaca client of the stream phase, in a process of its own (in the viewers' process its reads
# would slow the viewers, not the server): downloads the image in a loop, ImageBytes and JSON in
# turn (or one of them), for argv[2] seconds, then prints how many it downloaded.
DOWNLOADER = """
import sys, time, urllib.parse, urllib.request
base, seconds, kinds = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
until, count = time.monotonic() + seconds, 0
while time.monotonic() < until:
    kind = kinds[count % len(kinds)]
    headers = {"Accept": "application/imagebytes"} if kind == "bytes" else {}
    if kind == "new":  # a new frame each time: a 0.1 s exposure, then its JSON
        form = urllib.parse.urlencode({"Duration": "0.1", "Light": "True"}).encode()
        urllib.request.urlopen(urllib.request.Request(base + "/api/v1/camera/0/startexposure", form, method="PUT"))
        while b'"Value": true' not in urllib.request.urlopen(base + "/api/v1/camera/0/imageready").read():
            time.sleep(0.02)
    request = urllib.request.Request(base + "/api/v1/camera/0/imagearray", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    count += 1
print(count, flush=True)
"""

# A bare aiohttp server answering GET /blob?size=n with n bytes: the reference download.
REFERENCE_SERVER = """
import sys
from aiohttp import web
blobs = {}
async def blob(request):
    size = int(request.query["size"])
    if size not in blobs:
        blobs[size] = bytes(size)
    return web.Response(body=blobs[size], content_type="application/octet-stream")
app = web.Application()
app.router.add_get("/blob", blob)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True))
"""


# The stream phases: no Alpaca client, then one downloading the frame in a loop as ImageBytes, as
# JSON, and taking a new frame for each JSON download (the live view pauses for each still, as it
# does for any capture: no check on that one).
PHASES = {"alone": None, "ImageBytes loop": "bytes", "JSON loop": "json", "new frame + JSON": "new"}


async def alpaca_exposure(session: aiohttp.ClientSession, base: str) -> None:
    async with session.put(f"{base}{CAMERA}/startexposure", data={"Duration": "0.1", "Light": "True"}) as response:
        assert (await response.json())["ErrorNumber"] == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with session.get(f"{base}{CAMERA}/imageready") as response:
            if (await response.json())["Value"]:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("the Alpaca exposure never became ready")


async def timed_get(session: aiohttp.ClientSession, url: str, headers: dict | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        body = await response.read()
        assert response.status == 200, body[:200]
    return time.perf_counter() - started, len(body)


async def downloads(session: aiohttp.ClientSession, base: str, reference: str, count: int) -> dict:
    """``count`` exposures, each downloaded as ImageBytes and as JSON once (the encoding included),
    then again (the image's encodings kept), against the same bytes from the bare server."""
    times: dict[str, dict[str, list[float]]] = {kind: {"first": [], "again": [], "reference": []} for kind in KINDS}
    sizes: dict[str, int] = {}
    for _ in range(count):
        await alpaca_exposure(session, base)
        for kind, headers in KINDS.items():
            seconds, sizes[kind] = await timed_get(session, f"{base}{CAMERA}/imagearray", headers)
            times[kind]["first"].append(seconds)
        for kind, headers in KINDS.items():
            times[kind]["again"].append((await timed_get(session, f"{base}{CAMERA}/imagearray", headers))[0])
            times[kind]["reference"].append((await timed_get(session, f"{reference}/blob?size={sizes[kind]}"))[0])
    return {
        kind: {"bytes": sizes[kind], **{name: statistics.median(values) for name, values in times[kind].items()}}
        | {"worst": max(times[kind]["first"])}
        for kind in KINDS
    }


def pi_frame_encoding(repeat: int = 3) -> dict[str, float]:
    """The encoders alone on a 4056 x 3040 frame of 12-bit values (a Pi HQ camera's mosaic)."""
    pixels = np.random.default_rng(1).integers(0, 4096, (3040, 4056), dtype=np.uint16)
    timings = {}
    for name, encode in (("ImageBytes", pixel_bytes), ("JSON", json_values)):
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            encode(pixels)
            best = min(best, time.perf_counter() - started)
        timings[name] = best
    return timings


async def stream_phase(
    session: aiohttp.ClientSession, base: str, viewers: int, seconds: float, kinds: str | None
) -> tuple[list[float], int]:
    """Per-viewer fps over ``seconds`` (after a 2 s warm-up), with an Alpaca client downloading
    in a loop (``kinds``: "bytes", "json" or both, in turn) unless None; the downloads it made."""
    results = [ViewerResult() for _ in range(viewers)]
    until = time.monotonic() + 2.0 + seconds
    tasks = [asyncio.create_task(view_stream(session, f"{base}/stream", until, r)) for r in results]
    await asyncio.sleep(2.0)
    counted = [r.frames for r in results]
    downloaded = 0
    if kinds is not None:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DOWNLOADER, base, str(until - time.monotonic()), kinds, stdout=subprocess.PIPE
        )
        output, _ = await client.communicate()
        downloaded = int(output)
    await asyncio.gather(*tasks)
    for r in results:
        if r.errors:
            raise RuntimeError(f"a viewer failed: {r.errors[0]}")
    return [(r.frames - c) / seconds for r, c in zip(results, counted, strict=True)], downloaded


async def run(args) -> int:
    port = free_port()
    reference = subprocess.Popen(
        [sys.executable, "-c", REFERENCE_SERVER, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert reference.stdout is not None and reference.stdout.readline().strip() == b"ready"
        with running_wanda() as (base, _pid):
            timeout = aiohttp.ClientTimeout(total=120)
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session,
                IdleReference() as machine,
            ):
                async with session.put(f"{base}{CAMERA}/connect") as response:
                    assert (await response.json())["ErrorNumber"] == 0
                figures = await downloads(session, base, f"http://127.0.0.1:{port}", args.downloads)
                await machine.mark()
                phases = {}
                for name, kinds in PHASES.items():
                    fps, downloaded = await stream_phase(session, base, args.viewers, args.seconds, kinds)
                    phases[name] = (fps, downloaded, await machine.mark())
    finally:
        reference.terminate()
        reference.wait(10)
    pi = pi_frame_encoding()

    print(f"\nFull-frame download from the simulated camera (1440 x 1080), {args.downloads} exposures, medians:")
    for name, f in figures.items():
        print(
            f"  {name:<10} {f['bytes'] / 1e6:5.2f} MB  first {f['first'] * 1000:6.1f} ms (worst {f['worst'] * 1000:6.1f})"
            f"  again {f['again'] * 1000:6.1f} ms  | bare aiohttp, same bytes: {f['reference'] * 1000:5.1f} ms"
            f" (first x{f['first'] / f['reference']:.1f}, again x{f['again'] / f['reference']:.1f})"
        )
    print("Encoding alone, a Pi HQ camera frame (4056 x 3040, 12 bits), this machine:")
    for name, seconds in pi.items():
        print(f"  {name:<10} {seconds * 1000:7.1f} ms")
    print(f"\nMJPEG stream, {args.viewers} viewers, {args.seconds:g} s a phase:")
    for name, (fps, downloaded, lag) in phases.items():
        print(
            f"  {name:<16} fps min {min(fps):5.1f} median {statistics.median(fps):5.1f}  Alpaca downloads "
            f"{downloaded / args.seconds:4.1f}/s  | idle reference loop: worst lag {lag.max_ms:6.1f} ms, "
            f"{lag.late}/{lag.samples} wake-ups >20 ms late"
        )
    checks = []
    for name in ("ImageBytes loop", "JSON loop"):
        fps, downloaded, _ = phases[name]
        checks.append(
            (f"30 fps during the {name}", min(fps) >= 27.0, f"min {min(fps):.1f} fps, {downloaded} downloads")
        )
    return report(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--downloads", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
