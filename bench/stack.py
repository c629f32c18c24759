"""Live stacking benchmark (issue 18): registration against the simulator's truth, the noise law,
what calibration and clipping leave of hot pixels, a satellite and amp glow, time per frame,
memory, and the stream while stacking. Prints figures against the targets.

    python bench/stack.py                 # everything (about three minutes)
    python bench/stack.py --parts registration,noise
    python bench/stack.py --live-seconds 60

Parts:
- ``registration``: pairs of simulated frames of the real sky (wanda/backends/sky.py, 50 mm, random
  pointings, the second turned by up to 1° and moved by up to 10'), each analysed as the live view
  is and registered (wanda/astro/register.py); the transform is compared with the simulator's two
  WCSs on a grid of the frame: RMS and worst error (target RMS < 0.1 px) and the rotation's error
  (target < 0.01°).
- ``noise``: frames of pure Gaussian noise warped by shifts (whole pixels, then sub-pixel) and
  accumulated (wanda/astro/stack.py): the stack's noise after 4, 16 and 64 frames against one
  frame's / sqrt(N) (target within 10% for whole-pixel shifts; sub-pixel reported: bilinear
  interpolation averages neighbours and smooths noise).
- ``calibration``: the simulated sky at 10 s (hot pixels, amp glow, the bias pattern, dust, a
  satellite in one frame): 16 darks make a master dark (wanda/calibration.py), 16 dithered lights
  are calibrated and stacked as the live stack does; at the hot pixels, along the trail and in the
  glowing corner the stack's residual against its surroundings, in units of its background noise
  (target < 3).
- ``speed``: time per frame through the whole stack (stars, registration, warp, clipping) at
  1440x1080 colour (target < 100 ms) and 4056x3040 colour (target < 1 s), the peak memory of the
  full-size stack (tracemalloc) and its accumulator's size, and the peak resident memory of the
  stacking process (wanda/stack_engine.py) holding a full-size stack (target: under 1 GiB, to fit a
  2 GB Pi beside the server).
- ``live``: a real `wanda --camera sim`, 10 /stream viewers, the stack running on its preview:
  fps per viewer and the server's loop lag (targets 30 fps, lag < 20 ms), beside an idle reference
  process's lag in the same window (the machine's own) and a server without a stack. The viewers
  run at --nice 10 (they would be other machines; here they share the two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import IdleReference, ViewerResult, cpu_seconds, report, rss_mb, running_wanda, view_stream

from wanda.astro.measure import analyse
from wanda.astro.register import RegistrationFailed, register
from wanda.astro.stack import Accumulator, warp
from wanda.backends.sky import PREVIEW_SIZE, SimulatedSky
from wanda.stack_engine import Stack, StackProcess

WIDTH, HEIGHT = PREVIEW_SIZE
TRAIL_FRAME = 7  # the frame a satellite crosses in the calibration part


def stars_of(image: np.ndarray) -> np.ndarray:
    frame = analyse(image.astype(np.uint8), 255)
    return np.array([(s["x"], s["y"]) for s in frame["stars"]])


def registration(args) -> list[tuple[str, bool, str]]:
    rng = np.random.default_rng(args.seed)
    rms_all, worst_all, rotation_errors, failures = [], [], [], 0
    started = time.perf_counter()
    for _ in range(args.pairs):
        ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-0.9, 0.9)))
        roll = rng.uniform(0, 360)
        skies = []
        for change in (0.0, 1.0):
            d_ra = change * rng.uniform(-10, 10) / 60 / max(0.2, math.cos(math.radians(dec)))
            d_dec = change * rng.uniform(-10, 10) / 60
            sky = SimulatedSky(
                pointing=(ra + d_ra, dec + d_dec, roll + change * rng.uniform(-1, 1)), step_interval_s=None
            )
            sky.set_tracking(True)
            skies.append(sky)
        reference, frame = (stars_of(sky.render_luminance(2.0, 8.0)) for sky in skies)
        try:
            transform = register(frame, reference)
        except RegistrationFailed as exc:
            failures += 1
            print(f"  not registered at RA {ra:.1f} Dec {dec:+.1f}: {exc}")
            continue
        gx, gy = np.meshgrid(np.linspace(50, WIDTH - 50, 10), np.linspace(50, HEIGHT - 50, 8))
        wcs_ref, wcs_frame = skies[0].truth().pointing.wcs, skies[1].truth().pointing.wcs
        sky_ra, sky_dec = wcs_frame.pixel_to_sky(gx.ravel(), gy.ravel())
        tx, ty, _ = wcs_ref.sky_to_pixel(sky_ra, sky_dec)
        mx, my = transform.apply(gx.ravel(), gy.ravel())
        error = np.hypot(mx - tx, my - ty)
        rms_all.append(float(np.sqrt(np.mean(error**2))))
        worst_all.append(float(error.max()))
        (r0, r1), (d0, d1) = wcs_frame.pixel_to_sky(np.array([620.0, 820.0]), np.array([540.0, 540.0]))
        (x0, x1), (y0, y1), _ = wcs_ref.sky_to_pixel(np.array([r0, r1]), np.array([d0, d1]))
        rotation_errors.append(abs(transform.rotation - math.degrees(math.atan2(y1 - y0, x1 - x0))))
    print(
        f"\nregistration: {args.pairs} pairs of 50 mm frames (2 s), {len(rms_all)} registered in "
        f"{time.perf_counter() - started:.0f} s: RMS median {statistics.median(rms_all):.3f} max {max(rms_all):.3f} px, "
        f"worst grid point {max(worst_all):.3f} px, rotation error max {max(rotation_errors):.4f}°"
    )
    return [
        ("registration: all registered", failures == 0, f"{len(rms_all)}/{args.pairs}"),
        ("registration: RMS < 0.1 px", max(rms_all) < 0.1, f"max {max(rms_all):.3f} px"),
        ("registration: rotation < 0.01°", max(rotation_errors) < 0.01, f"max {max(rotation_errors):.4f}°"),
    ]


def noise(args) -> list[tuple[str, bool, str]]:
    rng = np.random.default_rng(args.seed + 1)
    size, sigma = (400, 600), 10.0
    checks = []
    print("\nnoise: N frames of Gaussian noise (sigma 10), warped by random shifts and stacked")
    for kind in ("whole-pixel", "sub-pixel"):
        stack = Accumulator((*size, 1), kappa=3.0, noise_floor=sigma)
        measured = {}
        for count in range(1, 65):
            dx, dy = rng.integers(-8, 9, 2).astype(float)
            if kind == "sub-pixel":
                dx, dy = dx + rng.uniform(-0.5, 0.5), dy + rng.uniform(-0.5, 0.5)
            frame = (100.0 + sigma * rng.standard_normal((*size, 1))).astype(np.float32)
            moved = warp(frame, np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), (size[1], size[0]))
            stack.add(moved.reshape(*size, 1))
            if count in (4, 16, 64):
                inner = stack.image()[20:-20, 20:-20, 0]
                measured[count] = float(np.std(inner[stack.count[20:-20, 20:-20, 0] == count]))
        line = ", ".join(
            f"N={n}: {v:.3f} (sqrt law {sigma / math.sqrt(n):.3f}, ratio {v * math.sqrt(n) / sigma:.2f})"
            for n, v in measured.items()
        )
        print(f"  {kind:<12} {line}")
        if kind == "whole-pixel":
            worst = max(abs(v * math.sqrt(n) / sigma - 1) for n, v in measured.items())
            checks.append(("noise: sqrt(N) law within 10%", worst < 0.1, f"worst {worst:.1%} off"))
    return checks


def calibration(args) -> list[tuple[str, bool, str]]:
    from wanda.calibration import CalibrationLibrary
    from wanda.storage.fits import fits_bytes

    exposure, gain = 10.0, 8.0
    sky = SimulatedSky(pointing=(150.0, 30.0, 0.0), step_interval_s=None, seed=5)
    sky.set_tracking(True)
    with tempfile.TemporaryDirectory(prefix="wanda-stack-bench-") as scratch:
        darks = Path(scratch) / "darks"
        darks.mkdir()
        sky.set_controls(frame_type="dark")
        for k in range(16):
            data = sky.render_luminance(exposure, gain, bits=16).astype(np.uint16)
            cards = [("IMAGETYP", "Dark Frame", ""), ("EXPTIME", exposure, ""), ("GAIN", gain, "")]
            (darks / f"dark_{k:04d}.fits").write_bytes(fits_bytes(data, cards))
        library = CalibrationLibrary(Path(scratch) / "library")
        master = library.build(darks)
        dark8 = library.load(master)[:, :, None] * np.float32(256 / 65536)
        sky.set_controls(frame_type="light")
        stack = Stack()
        rng = np.random.default_rng(args.seed + 2)
        trails, trail_shift = (), np.zeros(2)
        for k in range(16):
            # A dither on this RA-only mount: the axis held a few whole steps (53" each) away, so
            # the sky moves on the sensor and the hot pixels, glow and dust stay.
            turn = float(rng.integers(-4, 5)) * 3.523
            sky.satellites_per_hour = 3600 * 3 if k == TRAIL_FRAME else 0
            rendered = sky.render_luminance(exposure, gain, offset=turn).astype(np.uint8).astype(np.float32)
            frame = np.repeat(rendered[:, :, None], 3, axis=2) - dark8
            event, state = stack.add(frame, float(k), exposure, {"dark": master.name})
            if k == 0:
                truth = sky.truth()  # the reference frame's: the stack's pixels are its
            if k == TRAIL_FRAME:
                trails = sky.truth().trails
                trail_shift = np.array(state["last"]["shift"]) if event == "stack_frame" else np.zeros(2)
        image = stack.accumulator.image()[..., 1]
    moved = tuple(
        type(t)(t.x0 + trail_shift[0], t.y0 + trail_shift[1], t.x1 + trail_shift[0], t.y1 + trail_shift[1])
        for t in trails
    )
    return calibration_residuals(image, truth, moved)


def calibration_residuals(image: np.ndarray, truth, trails) -> list[tuple[str, bool, str]]:
    background = np.nanmedian(image)
    sigma = 1.4826 * np.nanmedian(np.abs(image[200:-200:3, 200:-200:3] - background))
    inner = (truth.hot_x > 10) & (truth.hot_x < WIDTH - 10) & (truth.hot_y > 10) & (truth.hot_y < HEIGHT - 10)
    hot = [
        abs(image[y, x] - np.nanmedian(image[y - 4 : y + 5, x - 4 : x + 5])) / sigma
        for x, y in zip(truth.hot_x[inner], truth.hot_y[inner], strict=True)
    ]
    along = []
    for trail in trails:
        for t in np.linspace(0.3, 0.7, 60):
            x, y = trail.x0 + t * (trail.x1 - trail.x0), trail.y0 + t * (trail.y1 - trail.y0)
            xi, yi = round(x), round(y)
            if 12 <= xi < WIDTH - 12 and 12 <= yi < HEIGHT - 12:
                local = np.nanmedian(image[yi - 10 : yi + 11, xi - 10 : xi + 11])
                along.append(abs(image[yi, xi] - local) / sigma)
    # The glowing corner (top right) against the other top corner: the same sky gradient and
    # vignetting, no amplifier (what is left of the glow, not of the sky's shape).
    glow = abs(np.nanmedian(image[10:50, -60:-20]) - np.nanmedian(image[10:50, 20:60])) / sigma
    print(
        f"\ncalibration: 16 darks and 16 dithered lights at 10 s (the satellite in one); residuals in "
        f"background sigmas ({sigma:.3f} ADU): hot pixels median {np.median(hot):.2f} max {max(hot):.2f}, "
        f"along the trail median {np.median(along) if along else float('nan'):.2f} max "
        f"{max(along) if along else float('nan'):.2f}, the glowing corner {glow:.2f}"
    )
    return [
        ("calibration: hot pixels < 3 sigma", np.median(hot) < 3, f"median {np.median(hot):.2f}"),
        (
            "calibration: satellite trail < 3 sigma",
            bool(along) and np.median(along) < 3,
            f"median {np.median(along) if along else float('nan'):.2f}",
        ),
        ("calibration: amp glow < 3 sigma", glow < 3, f"{glow:.2f}"),
    ]


def speed(args) -> list[tuple[str, bool, str]]:
    checks = []
    sky = SimulatedSky(pointing=(83.82, -5.39, 0.0), step_interval_s=None)
    sky.set_tracking(True)
    frames = [
        np.repeat(sky.render_luminance(1 / 30, 8.0).astype(np.uint8)[:, :, None], 3, axis=2).astype(np.float32)
        for _ in range(8)
    ]
    stack = Stack()
    stack.add(frames[0].copy(), 0.0, 1 / 30)
    took = []
    for k, frame in enumerate(frames[1:], 1):
        started = time.perf_counter()
        stack.add(frame.copy(), float(k), 1 / 30)
        took.append((time.perf_counter() - started) * 1000)
    preview_ms = statistics.median(took)
    print(f"\nspeed: 1440x1080 colour, a frame through the stack: median {preview_ms:.0f} ms, max {max(took):.0f} ms")
    checks.append(("speed: 1440x1080 colour < 100 ms", preview_ms < 100, f"median {preview_ms:.0f} ms"))

    # The HQ camera's full frame: a synthetic star field, moved a little between frames.
    rng = np.random.default_rng(args.seed + 3)
    full = (3040, 4056)
    xs, ys = rng.uniform(20, full[1] - 20, 400), rng.uniform(20, full[0] - 20, 400)
    amplitude = 10 ** rng.uniform(1, 2.3, 400)

    def star_frame(dx: float, dy: float) -> np.ndarray:
        image = (20 + 3 * rng.standard_normal(full)).astype(np.float32)
        for x, y, a in zip(xs + dx, ys + dy, amplitude, strict=True):
            x0, y0 = int(x) - 6, int(y) - 6
            gy, gx = np.mgrid[y0 : y0 + 13, x0 : x0 + 13]
            image[y0 : y0 + 13, x0 : x0 + 13] += a * np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * 1.5**2))
        return np.repeat(np.clip(image, 0, 255)[:, :, None], 3, axis=2)

    tracemalloc.start()
    stack = Stack()
    stack.add(star_frame(0, 0), 0.0, 1.0)
    took = []
    for k in range(1, 5):
        frame = star_frame(rng.uniform(-3, 3), rng.uniform(-3, 3))
        started = time.perf_counter()
        stack.add(frame, float(k), 1.0)
        took.append(time.perf_counter() - started)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_s = statistics.median(took)
    print(
        f"speed: 4056x3040 colour: median {full_s:.2f} s a frame; accumulator {stack.accumulator.nbytes / 2**20:.0f} MiB, "
        f"peak traced memory {peak / 2**20:.0f} MiB (the stack with a frame and its temporaries)"
    )
    checks.append(("speed: 4056x3040 colour < 1 s", full_s < 1.0, f"median {full_s:.2f} s"))

    # The same through the stacking process as the server runs it: its peak resident memory (the
    # interpreter, numpy, OpenCV, the stack and a frame's temporaries) is what a Pi must hold.
    engine = StackProcess(linear=True, calibration_dir=None, jpeg_quality=85)
    try:
        for k in range(4):
            frame = star_frame(rng.uniform(-3, 3), rng.uniform(-3, 3)).astype(np.uint8)
            request = ("preview", frame.shape, frame.dtype.str, "RGB", float(k), 1.0, 8.0, 0, k == 3)
            event, state, rendered = engine.call(request, frame)
        assert engine.pid is not None
        stacking_mib = rss_mb(engine.pid, peak=True)
        with tempfile.TemporaryDirectory() as folder:  # a save: the FITS and the full-size JPEG
            saved = engine.call(("save", folder, "bench", state))
            saved_mib = (saved.path.stat().st_size + saved.path.with_suffix(".fits").stat().st_size) / 2**20
        peak_mib = rss_mb(engine.pid, peak=True)
    finally:
        engine.close()
    print(
        f"speed: the stacking process with the full-size stack ({state['stacked']} frames, the last {event}, "
        f"rendered {rendered is not None}): peak resident memory {stacking_mib:.0f} MiB stacking, "
        f"{peak_mib:.0f} MiB with a save ({saved_mib:.0f} MiB of files)"
    )
    checks.append(("memory: full-size stack process < 1 GiB", peak_mib < 1024, f"{peak_mib:.0f} MiB"))
    return checks


def stack_process_cpu(server_pid: int) -> float:
    """CPU seconds of the server's stacking process (python -m wanda.stack_engine), 0 if none."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == server_pid and b"wanda.stack_engine" in (entry / "cmdline").read_bytes():
                total += cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return total


async def live_stack(args) -> list[tuple[str, bool, str]]:
    import aiohttp
    from solve import live_phase  # the same measured phase as the plate solving bench's

    class Phase:
        seconds, warmup, viewers = args.live_seconds, 5.0, args.viewers

    niced = False

    async def measured(stacking: bool):
        nonlocal niced
        # A server of its own for each phase: the loop lag's max is over the last minute.
        with running_wanda() as (base, pid):
            async with IdleReference() as reference:
                if args.nice and not niced:  # the viewers would be other machines: their CPU out of the figures
                    os.nice(args.nice)
                    niced = True
                connector = aiohttp.TCPConnector(limit=0)
                timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    await http.post(base + "/api/mount/tracking", json={"action": "start"})
                    watcher = ViewerResult()  # somebody watches the stack build (it is rendered)
                    if stacking:
                        await http.post(base + "/api/stack/start", json={})
                        until = time.monotonic() + Phase.warmup + Phase.seconds
                        watching = asyncio.create_task(view_stream(http, base + "/stream?source=stack", until, watcher))
                    name = f"{args.viewers} viewers" + (
                        " + stacking, 1 viewer of the stack" if stacking else ", no stack"
                    )
                    began, cpu = time.monotonic(), stack_process_cpu(pid)
                    phase = await live_phase(name, http, base, pid, reference, Phase, [])
                    stack_cpu_pct = (stack_process_cpu(pid) - cpu) / (time.monotonic() - began) * 100
                    if stacking:
                        await watching
                    state = (await (await http.get(base + "/api/stack")).json())["data"]
        return phase, state, watcher, stack_cpu_pct

    checks = []
    baseline, _, _, _ = await measured(False)
    print(
        f"\nlive: {baseline.name}: fps min {min(baseline.fps):.2f} | loop lag max_1m {baseline.lag_max_1m_ms:.1f} ms "
        f"| idle reference max {baseline.reference.max_ms:.1f} ms | server CPU {baseline.cpu_pct:.0f}%"
    )
    phase, state, watcher, stack_cpu_pct = await measured(True)
    print(
        f"live: {phase.name}: fps min {min(phase.fps):.2f} median {statistics.median(phase.fps):.2f} "
        f"(camera {phase.camera_fps:.2f}) | loop lag max_1m {phase.lag_max_1m_ms:.1f} ms, now_ms max "
        f"{max(phase.lag_now_ms):.1f} | idle reference max {phase.reference.max_ms:.1f} ms | server CPU "
        f"{phase.cpu_pct:.0f}% (+ the stacking process {stack_cpu_pct:.0f}%) | stacked {state['stacked']}, "
        f"skipped {state['skipped']}, last {state['last'] and state['last'].get('ms')} ms | the stack's viewer "
        f"{watcher.frames} updates{', errors ' + str(watcher.errors) if watcher.errors else ''}"
    )
    checks.append(("live: every viewer >= 29.5 fps", min(phase.fps) >= 29.5, f"min {min(phase.fps):.2f}"))
    checks.append(
        (
            "live: loop lag < 20 ms",
            phase.lag_max_1m_ms < 20,
            f"{phase.lag_max_1m_ms:.1f} ms (idle reference {phase.reference.max_ms:.1f} ms; "
            f"the server without a stack {baseline.lag_max_1m_ms:.1f} ms)",
        )
    )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="registration,noise,calibration,speed,live")
    parser.add_argument("--pairs", type=int, default=20, help="registration: frame pairs")
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument("--nice", type=int, default=10, help="live: the viewers' niceness (0: none)")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    parts = args.parts.split(",")
    checks: list[tuple[str, bool, str]] = []
    if "registration" in parts:
        checks += registration(args)
    if "noise" in parts:
        checks += noise(args)
    if "calibration" in parts:
        checks += calibration(args)
    if "speed" in parts:
        checks += speed(args)
    if "live" in parts:
        checks += asyncio.run(live_stack(args))
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
