"""The polar alignment assistant: solve, turn the RA axis, solve again, and tell the observer how
far to turn the altitude and azimuth knobs, live, until the mount's axis is on the refracted pole.

The routine (wanda/astro/polar.py has the geometry):

1. solve the live view: the camera's attitude (refitted to the catalogue's stars in the frame,
   five frames averaged), carried into the ground frame with each frame's time;
2. turn the RA axis by ``rotate_deg``: by the stepper at its fastest, or by hand (the clutch
   released: WANDA solves frame after frame until the field has turned far enough and is still);
3. solve again (five frames). The two attitudes differ by a turn about the mount's axis alone
   (tracking and the Earth's turn are taken out by the ground frame), so the axis comes from the
   pair: no view of the pole is needed, any part of the sky with stars will do. The error is the
   axis against the refracted pole of the date;
4. while the observer turns the knobs, every new frame is solved and the axis carried along by
   the camera's turn since step 3 (the knobs turn the base, axis and camera together), so the
   error updates with each solve, about a second after a change, until it has stayed under
   ``limit_arcmin`` for three solves in a row.

It says plainly when it cannot: no site, a failed solve (clouds, too few stars), a rotation too
small to measure the axis (the clutch slipping, a hand turn that never came), a mount fault.
Tracking is started first if it is off, as for centring: the field then holds still between
solves. One routine at a time, on the loop; its state is published on the `polar_align` topic:
`align_start`, `align_progress` (a step begun, a turn seen, an error updated) and `align_done`
(``done`` true or false, ``reason`` and ``message`` say how it ended).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wanda.astro import polar
from wanda.astro.catalog import StarCatalogue, load_catalogue, unit_vectors
from wanda.astro.projection import project
from wanda.astro.sidereal import SIDEREAL_ARCSEC_PER_S, julian_epoch
from wanda.errors import ErrorCode, WandaError
from wanda.events import EventBus
from wanda.mount import MountControl
from wanda.site import Site
from wanda.solver import Wcs
from wanda.validate import choice, known_fields, number, within

log = logging.getLogger(__name__)

DEFAULT_ROTATION_DEG = 15.0
ROTATION_RANGE_DEG = (3.0, 60.0)
MEASURABLE_DEG = 2.0  # the least turn the axis is measured from (solves of a few arcseconds)
DEFAULT_LIMIT_ARCMIN = 1.0
LIMIT_RANGE_ARCMIN = (0.1, 60.0)
DEFAULT_HAND_WAIT_S = 300.0  # for a turn by hand
HAND_WAIT_RANGE_S = (5.0, 1800.0)
HAND_SHARE = 0.9  # a hand turn of this share of the angle asked for will do
STILL_ARCMIN = 0.5  # two solves this close on the sky: the field is still (the clutch locked again)
SIGHTS_PER_POSITION = 5  # frames averaged at each end of the turn the axis is measured from
DONE_SOLVES = 3  # solves in a row under the limit
SHORT_EXPOSURE_S = 0.2  # shorter live view frames: the state advises a longer exposure
IDLE_LIMIT_S = 600.0  # while the knobs are turned, this long without a solved frame ends it
FIELDS = ("action", "rotate_deg", "direction", "mode", "limit_arcmin", "hand_wait_s")


@dataclass(frozen=True)
class Options:
    rotate_deg: float = DEFAULT_ROTATION_DEG
    direction: str = "west"  # which way the RA axis turns: with the sky (west) or against it
    mode: str = "stepper"  # or "hand"
    limit_arcmin: float = DEFAULT_LIMIT_ARCMIN
    hand_wait_s: float = DEFAULT_HAND_WAIT_S

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Options:
        known_fields(body, FIELDS)

        def bounded(field: str, default: float, what: str, low: float, high: float, unit: str) -> float:
            return within(field, number(field, body.get(field, default), what), low, high, unit)

        return cls(
            rotate_deg=bounded("rotate_deg", DEFAULT_ROTATION_DEG, "degrees", *ROTATION_RANGE_DEG, "°"),
            direction=choice("direction", body.get("direction", "west"), ("west", "east")),
            mode=choice("mode", body.get("mode", "stepper"), ("stepper", "hand")),
            limit_arcmin=bounded("limit_arcmin", DEFAULT_LIMIT_ARCMIN, "arcminutes", *LIMIT_RANGE_ARCMIN, "'"),
            hand_wait_s=bounded("hand_wait_s", DEFAULT_HAND_WAIT_S, "seconds", *HAND_WAIT_RANGE_S, " s"),
        )


@dataclass(frozen=True)
class Sighting:
    """A solved frame: the camera's attitude in the ground frame at the frame's time."""

    ground: np.ndarray  # rows: image right, image down, line of sight; east-north-up, as it points
    unix: float
    wcs: Wcs
    to_ground: np.ndarray  # ICRS to east-north-up at ``unix``
    matched: int  # stars the attitude was fitted to (0: the solver's own fit)
    solve_seconds: float = 0.0


def attitude_of_wcs(wcs: Wcs) -> np.ndarray:
    """The camera's attitude (rows: image right, image down, line of sight; ICRS) at the centre of
    a solved frame, from its WCS (SIP distortion included); improper for a mirrored field."""
    width, height = wcs.image_size
    cx, cy = (width - 1) / 2, (height - 1) / 2
    step = min(width, height) / 8
    ra, dec = wcs.pixel_to_sky(np.array([cx, cx + step, cx]), np.array([cy, cy, cy + step]))
    centre, right, down = unit_vectors(ra, dec)
    right = right - centre * (right @ centre)
    right /= np.linalg.norm(right)
    down = down - centre * (down @ centre) - right * (down @ right)
    down /= np.linalg.norm(down)
    return np.stack((right, down, centre))


def sighting(frame: dict[str, Any], solved: dict[str, Any], site: Site, catalogue: StarCatalogue) -> Sighting:
    """Where the camera physically pointed for a solved frame of the live view: its attitude fitted
    again to all its stars that the catalogue has, each where the air shows it
    (polar.refined_attitude), in the ground frame. Blocking (a thread's): the catalogue is read the
    first time."""
    assert site.latitude is not None and site.longitude is not None
    wcs = Wcs.from_dict(solved["wcs"])
    unix = float(solved["source"]["timestamp"])
    to_ground = polar.horizon_matrix(unix, site.latitude, site.longitude)
    # The solve is of the catalogue's sky: lifted at its centre first, near enough to pair the stars.
    lifted = polar.physical_attitude(attitude_of_wcs(wcs) @ to_ground.T) @ to_ground
    stars = frame["stars"]
    attitude, matched = polar.refined_attitude(
        lifted,
        np.array([s["x"] for s in stars], float),
        np.array([s["y"] for s in stars], float),
        wcs.image_size,
        wcs.scale,
        catalogue,
        julian_epoch(unix),
        seen_through=lambda xyz: polar.refracted(xyz @ to_ground.T) @ to_ground,
    )
    return Sighting(attitude @ to_ground.T, unix, wcs, to_ground, matched, float(solved.get("seconds") or 0.0))


def averaged(sightings: list[Sighting]) -> Sighting:
    """Frames of a field that stood still, as one: the mean attitude (the nearest rotation to the
    mean matrix, of the same handedness), at the last frame's time."""
    mean = np.mean([s.ground for s in sightings], axis=0)
    u, _, vt = np.linalg.svd(mean)
    handed = np.sign(np.linalg.det(sightings[-1].ground)) * np.sign(np.linalg.det(u @ vt))
    ground = u @ np.diag([1.0, 1.0, handed]) @ vt
    last = sightings[-1]
    return Sighting(ground, last.unix, last.wcs, last.to_ground, min(s.matched for s in sightings))


def turned_deg(first: Sighting, then: Sighting) -> float:
    """How far the camera turned between two sightings (degrees, in the ground frame)."""
    return polar.rotation_angle(then.ground.T @ first.ground)


def moved_on_the_sky_arcmin(first: Sighting, then: Sighting) -> float:
    """How far the field moved on the sky between two sightings (arcminutes): nothing while the
    mount tracks, however far the ground turned meanwhile."""
    return polar.rotation_angle((then.ground @ then.to_ground).T @ (first.ground @ first.to_ground)) * 60


def overlay(seen: Sighting, axis: np.ndarray, latitude: float, limit_arcmin: float) -> dict[str, Any]:
    """What the live view shows: the knobs turn the field with the base, so the star at the centre
    now moves, as they bring the axis onto the pole, to the target (a circle of the limit's radius):
    first along the altitude knob's leg (to the corner), then the azimuth knob's. Pixels of the
    solved frame (its width and height given, for a view of another size)."""
    width, height = seen.wcs.image_size
    centre = seen.ground[2]
    altitude_knob, both_knobs = polar.correction(axis, latitude)
    # The camera turns with the base: the centre's star goes the other way, seen from the camera.
    points = np.array([centre, altitude_knob.T @ centre, both_knobs.T @ centre])
    x, y, _ = project(seen.ground, points, seen.wcs.scale, (width, height))
    return {
        "width": width,
        "height": height,
        "from": [round(float(x[0]), 1), round(float(y[0]), 1)],
        "corner": [round(float(x[1]), 1), round(float(y[1]), 1)],
        "to": [round(float(x[2]), 1), round(float(y[2]), 1)],
        "radius_px": round(limit_arcmin * 60 / seen.wcs.scale, 1),
    }


class PolarAlign:
    """The assistant; ``start`` begins a routine in the background, ``cancel`` ends it."""

    def __init__(
        self,
        mount: MountControl,
        solve_after: Callable[[float, bool], Awaitable[tuple[dict[str, Any], dict[str, Any]]]],
        bus: EventBus,
        site: Callable[[], Site],
        *,
        step_s: float,
        tracking_clockwise: bool,
        tracking_speed: float,
        exposure_s: Callable[[], float] = lambda: 1.0,
        catalogue: Callable[[], StarCatalogue] = load_catalogue,
    ):
        """``solve_after(t, blind)``: a live frame exposed wholly after Unix time ``t`` (its analysis)
        and its solve result, searched for blind if ``blind`` when the hints fail (raises WandaError
        when there is none or it does not solve). Only the first solve may search blind: later
        frames are near it, and one smeared by a turn must fail in a second. ``site``:
        where the telescope stands now. ``step_s``: one step in seconds of sidereal motion.
        ``exposure_s()``: the live view's exposure, for advice."""
        self.mount = mount
        self._solve_after = solve_after
        self.bus = bus
        self._site = site
        self.step_arcsec = step_s * SIDEREAL_ARCSEC_PER_S
        self.tracking_clockwise = tracking_clockwise
        self.tracking_speed = tracking_speed
        self._catalogue = catalogue
        self._exposure_s = exposure_s
        self._task: asyncio.Task[None] | None = None
        self._aligning_at = Site(None, None, None)
        self.state: dict[str, Any] | None = None
        bus.add_status_provider("polar_align", lambda: self.state or {"running": False, "phase": None})

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, options: Options) -> dict[str, Any]:
        """Begin a routine; returns its first state at once."""
        if self.running:
            raise WandaError(ErrorCode.MOUNT_BUSY, "polar alignment is already running: cancel it first")
        site = self._site()
        if not site.known:
            raise WandaError(
                ErrorCode.NO_SITE,
                "polar alignment needs the site: set its latitude and longitude (the Site panel, or "
                "--latitude and --longitude)",
            )
        state: dict[str, Any] = {
            "running": True,
            "phase": "solving",
            "step": 1,
            "message": "solving the first frame",
            "options": options.__dict__,
            "site": site.as_dict(),
            "tracking_started": False,
            "solves": [],
            "turned_deg": None,
            "warning": None,
            "advice": None,
            "measured": None,
            "alt_error_arcmin": None,
            "az_error_arcmin": None,
            "total_error_arcmin": None,
            "knobs": None,
            "overlay": None,
            "updates": 0,
            "updated": None,
            "frame_time": None,
            "solve_seconds": None,
            "matched": None,
            "done": None,
            "reason": None,
            "started": round(time.time(), 3),
        }
        if self._exposure_s() < SHORT_EXPOSURE_S:
            # Stars of a 1/30 s frame are centred to a third of a pixel: the axis to minutes of arc.
            state["advice"] = (
                f"the live view's exposure is {self._exposure_s():.3g} s: 0.5 s or more centres the stars "
                "better and measures the axis more precisely"
            )
        self.state = state
        self._aligning_at = site  # every frame of the routine is taken to the ground of this site
        self._task = asyncio.create_task(self._run(state, options, site), name="polar alignment")
        self._publish("align_start")
        return state

    async def cancel(self) -> dict[str, Any]:
        """End a running routine where it is (a move under way stops; tracking goes on)."""
        task = self._task
        was_running = self.running
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        state = self.state
        if state is not None and state["running"]:  # cancelled before its first step
            self._end(state, False, "cancelled", "polar alignment was cancelled")
        return {"cancelled": was_running, "state": self.state}

    # -- the routine ------------------------------------------------------------------------------

    async def _run(self, state: dict[str, Any], options: Options, site: Site) -> None:
        try:
            if not self.mount.tracking:
                self.mount.start(self.tracking_speed, self.tracking_clockwise)
                state["tracking_started"] = True
            first = await self._steady(state, time.time(), "the first solve")
            second = await (self._turn_by_stepper if options.mode == "stepper" else self._turn_by_hand)(
                state, options, first
            )
            self._step(state, "measuring", 3, "measuring the axis")
            assert site.latitude is not None
            axis, turned = polar.axis_of_attitudes([first.ground, second.ground], polar.pole(site.latitude))
            state["turned_deg"] = round(turned, 3)
            if turned < max(MEASURABLE_DEG, options.rotate_deg / 2):
                raise _Stop(
                    "rotation_too_small",
                    f"the field turned only {turned:.2f}° of the {options.rotate_deg:g}° asked: too little to "
                    "measure the axis (is the RA clutch locked? did the axis turn?)",
                )
            error = polar.polar_error(axis, site.latitude)
            state["measured"] = error.as_dict()
            self._show(state, error, overlay(second, axis, site.latitude, options.limit_arcmin), second)
            self._step(state, "adjusting", 4, "turn the knobs as the arrows show")
            await self._follow_the_knobs(state, options, site.latitude, axis, second)
        except asyncio.CancelledError:
            self._end(state, False, "cancelled", "polar alignment was cancelled")
        except _Stop as stop:
            self._end(state, False, stop.reason, stop.message)
        except WandaError as exc:
            reasons = {
                ErrorCode.SOLVE_FAILED: "solve_failed",
                ErrorCode.NO_FRAME: "no_frame",
                ErrorCode.MOUNT_ERROR: "mount_error",
            }
            self._end(state, False, reasons.get(exc.code, "error"), exc.message)
        except Exception:  # a defect must not leave the state running for ever
            log.exception("polar alignment failed")
            self._end(state, False, "error", "polar alignment failed (see the server log)")

    async def _look(self, since: float, *, blind: bool = False) -> Sighting:
        """The next frame exposed after ``since``, solved and fitted (WandaError when there is none
        or it does not solve). A solve somebody else asked for that pushed ours out of the solver's
        queue (BUSY) is no failure of ours: the frame is solved again."""
        while True:
            try:
                frame, solved = await self._solve_after(since, blind)
                break
            except WandaError as exc:
                if exc.code != ErrorCode.BUSY:
                    raise
        site = self._aligning_at
        return await asyncio.to_thread(lambda: sighting(frame, solved, site, self._catalogue()))

    async def _steady(self, state: dict[str, Any], since: float, what: str) -> Sighting:
        """SIGHTS_PER_POSITION frames in a row exposed after ``since``, averaged: an end of the turn
        the axis is measured from. A failed solve ends the routine, with a message that says which."""
        sights: list[Sighting] = []
        while len(sights) < SIGHTS_PER_POSITION:
            try:
                seen = await self._look(sights[-1].unix if sights else since, blind=not state["solves"])
            except WandaError as exc:
                raise WandaError(exc.code, f"{what} failed: {_plain(exc)}", data=exc.data) from None
            sights.append(seen)
        mean = averaged(sights)
        state["solves"].append({"time": round(mean.unix, 3), "frames": len(sights), "matched": mean.matched})
        return mean

    async def _turn_by_stepper(self, state: dict[str, Any], options: Options, first: Sighting) -> Sighting:
        steps = max(1, round(options.rotate_deg * 3600 / self.step_arcsec))
        # West is the way the sky goes: the tracking direction.
        clockwise = self.tracking_clockwise if options.direction == "west" else not self.tracking_clockwise
        self._step(state, "rotating", 2, f"turning the RA axis {options.rotate_deg:g}° {options.direction}")
        state["rotation_steps"] = steps
        ending = await self.mount.move(steps, clockwise)
        if ending != "move_done":
            raise WandaError(ErrorCode.MOUNT_ERROR, "the mount was stopped while it turned the RA axis")
        self._step(state, "solving", 3, "solving after the turn")
        return await self._steady(state, time.time(), "the solve after the turn")

    async def _turn_by_hand(self, state: dict[str, Any], options: Options, first: Sighting) -> Sighting:
        """Solve frame after frame until the field has turned far enough and stands still."""
        self._step(
            state,
            "waiting_for_hand",
            2,
            f"release the RA clutch, turn the axis about {options.rotate_deg:g}° {options.direction}, "
            "and lock the clutch again",
        )
        wanted = options.rotate_deg * HAND_SHARE
        previous = first
        since = first.unix
        deadline = time.monotonic() + options.hand_wait_s
        while time.monotonic() < deadline:
            try:
                seen = await self._look(since)
            except WandaError as exc:  # a moving field does not solve: wait for it to stop
                state["warning"] = f"no solve while the field moves ({_plain(exc)})"
                self._publish("align_progress")
                since = time.time()
                continue
            turned = turned_deg(first, seen)
            still = moved_on_the_sky_arcmin(previous, seen) <= STILL_ARCMIN
            state.update(turned_deg=round(turned, 3), warning=None)
            self._publish("align_progress")
            if turned >= wanted and still:
                self._step(state, "solving", 3, "solving after the turn")
                return await self._steady(state, seen.unix, "the solve after the turn")
            previous, since = seen, seen.unix
        raise _Stop(
            "rotation_too_small",
            f"the field turned {state['turned_deg'] or 0.0:.1f}° of the {options.rotate_deg:g}° asked before the "
            f"wait ran out ({options.hand_wait_s:g} s): turn the RA axis further by hand, or use the stepper",
        )

    async def _follow_the_knobs(
        self, state: dict[str, Any], options: Options, latitude: float, axis: np.ndarray, reference: Sighting
    ) -> None:
        under = 0
        since = reference.unix
        solved_last = time.monotonic()
        while True:
            try:
                seen = await self._look(since)
            except WandaError as exc:  # clouds, or the field moved off the hint: keep trying
                if time.monotonic() - solved_last > IDLE_LIMIT_S:
                    raise _Stop(
                        "no_solve",
                        f"no frame solved for {IDLE_LIMIT_S / 60:g} minutes ({_plain(exc)}): start again when "
                        "the sky is clear",
                    ) from None
                state["warning"] = f"the last frame did not solve ({_plain(exc)}); waiting for stars"
                self._publish("align_progress")
                since = time.time()
                continue
            since, solved_last = seen.unix, time.monotonic()
            now_axis = polar.moved_axis(axis, reference.ground, seen.ground)
            error = polar.polar_error(now_axis, latitude)
            state["warning"] = None
            self._show(state, error, overlay(seen, now_axis, latitude, options.limit_arcmin), seen)
            under = under + 1 if error.total_arcmin <= options.limit_arcmin else 0
            if under >= DONE_SOLVES:
                self._end(
                    state,
                    True,
                    "aligned",
                    f"aligned: the axis is {error.total_arcmin:.2f}' from the refracted pole "
                    f"(within {options.limit_arcmin:g}')",
                )
                return

    # -- state ------------------------------------------------------------------------------------

    def _show(self, state: dict[str, Any], error: polar.PolarError, drawn: dict[str, Any], seen: Sighting) -> None:
        """A new error: of the frame taken at ``frame_time`` (Unix), solved in ``solve_seconds``."""
        state.update(error.as_dict())
        state.update(
            overlay=drawn,
            updates=state["updates"] + 1,
            updated=round(time.time(), 3),
            frame_time=round(seen.unix, 3),
            solve_seconds=round(seen.solve_seconds, 3),
            matched=seen.matched,
        )
        self._publish("align_progress")

    def _step(self, state: dict[str, Any], phase: str, step: int, message: str) -> None:
        state.update(phase=phase, step=step, message=message)
        self._publish("align_progress")

    def _end(self, state: dict[str, Any], done: bool, reason: str, message: str) -> None:
        state.update(
            running=False,
            phase="done" if done else "failed",
            done=done,
            reason=reason,
            message=message,
            ended=round(time.time(), 3),
        )
        self._publish("align_done")

    def _publish(self, event: str) -> None:
        if self.state is not None:
            self.bus.publish("polar_align", event, self.state)


class _Stop(Exception):
    """The routine cannot go on: ``reason`` for scripts, ``message`` for the observer."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _plain(error: WandaError) -> str:
    """A solve's failure in the observer's words: too few stars is most often clouds."""
    data = error.data or {}
    if data.get("reason") == "too_few_stars":
        return f"{data.get('message') or error.message} (clouds, or the exposure too short?)"
    return error.message
