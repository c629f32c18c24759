"""Centring a target with the camera as the guide: solve, step the RA axis by the offset, solve
again, until the target is within a tolerance of the centre in RA (this mount has no Dec motor:
the observer is told how far to move Dec by hand).

Each round solves a live frame whose light all came after the last move (never a frame exposed
while the axis moved), turns the RA offset into whole steps (one step is ``step_s`` seconds of
sidereal motion: 53" at the default) and moves them at the mount's fastest rate. Nothing runs
away: one move is at most ``max_move_deg``, the rounds are limited, a failed solve, a mount fault
or a stop ends it with the reason, and an offset that did not shrink after a move (a mount whose
tracking direction is configured the wrong way round would double it each time) ends it too.
Tracking is started first if it is off: without it the target leaves the centre at 15" a second.

Lives on the loop; one centring at a time. Rounds are published as `mount` `center_progress`
events and the end as `center_done`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wanda.astro.sidereal import SIDEREAL_ARCSEC_PER_S
from wanda.errors import ErrorCode, WandaError
from wanda.events import EventBus
from wanda.mount import MountControl

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_ARCMIN = 2.0
DEFAULT_ROUNDS = 6
DEFAULT_MAX_MOVE_DEG = 30.0  # 2000 steps at 53", three and a half minutes at 10 steps a second
NOT_CONVERGING = 0.8  # a move must leave less than this share of the offset it set out to remove


@dataclass(frozen=True)
class Target:
    name: str
    ra: float  # J2000 degrees
    dec: float


def offsets(target: Target, ra: float, dec: float) -> tuple[float, float, float]:
    """The target seen from a centre at ``ra``/``dec``: (RA difference in degrees of RA, east on
    the sky in degrees, north in degrees), for the offsets of a field (small angles)."""
    d_ra = (target.ra - ra + 180.0) % 360.0 - 180.0
    east = d_ra * math.cos(math.radians((target.dec + dec) / 2))
    return d_ra, east, target.dec - dec


def describe(east: float, north: float) -> str:
    """ "2.3° east, 1.1° north": how far the target is from the centre, as the observer reads it."""

    def part(value: float, positive: str, negative: str) -> str:
        amount = abs(value)
        size = f"{amount:.1f}°" if amount >= 1 else f"{amount * 60:.1f}'"
        return f"{size} {positive if value >= 0 else negative}"

    return f"{part(east, 'east', 'west')}, {part(north, 'north', 'south')}"


class Centring:
    """The centring loop; ``run`` does one, ``stop`` ends it."""

    def __init__(
        self,
        mount: MountControl,
        solve_after: Callable[[float], Awaitable[dict[str, Any]]],
        bus: EventBus,
        *,
        step_s: float,
        tracking_clockwise: bool,
        tracking_speed: float,
    ):
        """``solve_after(t)``: the solve result of a live frame exposed wholly after Unix time
        ``t`` (raises WandaError when there is none). ``step_s``: one step in seconds of
        sidereal motion; ``tracking_clockwise``: the direction that follows the sky;
        ``tracking_speed``: seconds per step when tracking has to be started."""
        self.mount = mount
        self._solve_after = solve_after
        self.bus = bus
        self.step_arcsec = step_s * SIDEREAL_ARCSEC_PER_S
        self.tracking_clockwise = tracking_clockwise
        self.tracking_speed = tracking_speed
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self.state: dict[str, Any] | None = None  # the running or last centring, as published

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, target: Target, *, tolerance_arcmin: float, rounds: int, max_move_deg: float) -> dict[str, Any]:
        """Centre ``target``; the result says how it ended (``centred`` true or false and why). A
        caller that goes away does not stop it: ``stop`` does."""
        if self.running and self.state is not None:
            raise WandaError(ErrorCode.MOUNT_BUSY, f"already centring {self.state['target']['name']}")
        state: dict[str, Any] = {
            "target": {"name": target.name, "ra": target.ra, "dec": target.dec},
            "tolerance_arcmin": tolerance_arcmin,
            "running": True,
            "centred": None,
            "reason": None,
            "message": None,
            "rounds": [],
            "steps": 0,
            "tracking_started": False,
            "offset": None,
            "dec_by_hand": None,
            "started": round(time.time(), 3),
        }
        self.state = state  # before the task: a second request finds this one running
        task = asyncio.create_task(
            self._centre(state, target, tolerance_arcmin, rounds, max_move_deg), name=f"centre {target.name}"
        )
        self._task = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the caller went away: the centring goes on
            return self._stopped_before_it_began(state)

    async def stop(self) -> None:
        """End a running centring where it is (the move under way stops; tracking goes on)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if task.cancelled() and self.state is not None:
                self._stopped_before_it_began(self.state)

    def _stopped_before_it_began(self, state: dict[str, Any]) -> dict[str, Any]:
        """A task cancelled before its first step never ran its own ending."""
        if state["running"]:
            self._end(state, False, "stopped", "centring was stopped")
        return state

    async def _centre(
        self, state: dict[str, Any], target: Target, tolerance_arcmin: float, rounds: int, max_move_deg: float
    ) -> dict[str, Any]:
        try:
            if not self.mount.tracking:
                self.mount.start(self.tracking_speed, self.tracking_clockwise)
                state["tracking_started"] = True
            since = time.time()
            previous_east: float | None = None
            for number in range(1, rounds + 1):
                solved = await self._solve_after(since)
                if not self.mount.tracking:  # stopped while solving: the observer wants the mount still
                    return self._end(state, False, "stopped", "tracking was stopped: the mount is left where it is")
                d_ra, east, north = offsets(target, solved["ra"], solved["dec"])
                steps = round(d_ra * 3600 / self.step_arcsec)
                round_ = {
                    "round": number,
                    "ra": solved["ra"],
                    "dec": solved["dec"],
                    "east_deg": round(east, 5),
                    "north_deg": round(north, 5),
                    "solve_seconds": solved.get("seconds"),
                    "steps": 0,
                }
                state["rounds"].append(round_)
                state["offset"] = {
                    "east_deg": round(east, 5),
                    "north_deg": round(north, 5),
                    "text": describe(east, north),
                }
                state["dec_by_hand"] = self._dec_advice(north, solved)
                if abs(east) * 60 <= tolerance_arcmin or steps == 0:
                    within = "within the tolerance" if abs(east) * 60 <= tolerance_arcmin else "as close as a step"
                    return self._end(
                        state, True, "centred", f"{target.name} is centred in RA ({within}): {describe(east, north)}"
                    )
                if previous_east is not None and abs(east) > NOT_CONVERGING * abs(previous_east):
                    return self._end(
                        state,
                        False,
                        "not_converging",
                        f"the offset went from {abs(previous_east) * 60:.1f}' to {abs(east) * 60:.1f}' after a move: "
                        "is mount_clockwise the direction that tracks the sky?",
                    )
                if abs(d_ra) > max_move_deg:
                    return self._end(
                        state,
                        False,
                        "too_far",
                        f"{target.name} is {describe(east, north)}: more than {max_move_deg:g}° of RA away; "
                        "point the telescope closer by hand first",
                    )
                if number == rounds:
                    break
                # The target east (RA larger) needs the camera turned against the sky.
                clockwise = self.tracking_clockwise if steps < 0 else not self.tracking_clockwise
                round_["steps"] = steps
                self.bus.publish("mount", "center_progress", state)
                ending = await self.mount.move(abs(steps), clockwise)
                state["steps"] += abs(steps)
                if ending != "move_done":
                    return self._end(state, False, "stopped", "the mount was stopped during the move")
                since = time.time()
                previous_east = east
            return self._end(
                state,
                False,
                "limit",
                f"not within {tolerance_arcmin:g}' after {rounds} solves: {state['offset']['text']}",
            )
        except asyncio.CancelledError:
            # Stopped (``stop``, or the server shutting down): the task ends with its state, which
            # the caller waiting on it reads as a centring that did not get there.
            return self._end(state, False, "stopped", "centring was stopped")
        except WandaError as exc:
            reasons = {
                ErrorCode.SOLVE_FAILED: "solve_failed",
                ErrorCode.NO_FRAME: "no_frame",
                ErrorCode.MOUNT_ERROR: "mount_error",
            }
            return self._end(state, False, reasons.get(exc.code, "error"), exc.message)
        except Exception:  # a defect must not leave the state running for ever
            log.exception("centring %s failed", target.name)
            return self._end(state, False, "error", "centring failed (see the server log)")

    def _dec_advice(self, north: float, solved: dict[str, Any]) -> str | None:
        """What to tell the observer about Dec, which no motor moves: None when the target is
        within a tenth of the field's height of the centre."""
        height = (solved.get("field_deg") or [0, 0])[1]
        if abs(north) <= max(height / 10, 1 / 60):
            return None
        way = "north" if north > 0 else "south"
        amount = f"{abs(north):.1f}°" if abs(north) >= 1 else f"{abs(north) * 60:.0f}'"
        outside = " (the target is outside the frame until then)" if abs(north) > height / 2 else ""
        return f"move the telescope {amount} {way} in declination by hand{outside}"

    def _end(self, state: dict[str, Any], centred: bool, reason: str, message: str) -> dict[str, Any]:
        state.update(running=False, centred=centred, reason=reason, message=message, ended=round(time.time(), 3))
        self.bus.publish("mount", "center_done", state)
        return state
