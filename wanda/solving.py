"""Where the camera points, for the API: the `solve` thread, which plate-solves star lists with
wanda/solver.py one at a time, and what was solved last.

A request puts its star list in a slot of one: a newer one supersedes a list still waiting (its
caller hears so), never a solve under way; a continuous mode's frame never supersedes a list
somebody asked for. Each solve is hinted as well as it can be: the last
solution's place (while it is recent) and the configured optic's scale; when a hinted solve does not
find the field it is tried with the scale alone and then blind (a wrong optic in the configuration,
a telescope moved far). Results reach the loop with ``call_soon_threadsafe``: kept as ``latest``
and published as `solve` `solution` events.

Continuous mode: while it is on and somebody listens to the `solve` topic, every new analysis of
the live view (which then runs) is solved, so the pointing follows the telescope.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wanda.astro.sidereal import of_date
from wanda.errors import ErrorCode, WandaError
from wanda.solver import Failure, PlateSolver, PositionHint, ScaleHint, Solution, SolveFailure
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)
HINT_FRESH_S = 600.0  # the last solution's place is a hint for this long
HINT_RADIUS_DEG = 10.0  # around it (a telescope slewed within ten minutes)
SCALE_TOLERANCE = 0.1
STILL_FRESH_S = 300.0  # a still carries the live view's solution this long, while the mount tracks


@dataclass
class _Job:
    stars: list[dict[str, Any]]  # x, y, flux in the image's pixels
    width: int
    height: int
    source: dict[str, Any]  # what was solved: the preview at a time, or a capture's path
    future: asyncio.Future | None  # the caller waiting for it (None: continuous mode)
    blind: bool = True  # a caller's list is searched for blind when the hints fail


class SolveService:
    """The `solve` thread and the latest solution (read on the loop)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        solver: PlateSolver,
        publish: Callable[[dict[str, Any]], None],
        scale_for: Callable[[int], float | None],
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._loop = loop
        self.solver = solver
        self._publish = publish
        # Arcseconds per pixel of a frame this many pixels wide (the configured optic; the preview and
        # a full-size still see the same field): the scale hint.
        self.scale_for = scale_for
        self._clock = clock
        self._slot: _Job | None = None
        self._ready = threading.Condition()
        self._stopping = False
        self._cancel = threading.Event()  # ends the solve under way at shutdown
        self._thread: threading.Thread | None = None
        self.latest: dict[str, Any] | None = None
        # The live view's newest solution: (the frame's time, the solution, what was solved). It is
        # the next solve's hint, what a still carries and what the labels are drawn from; a saved
        # capture's solution (another night, another place) never takes its place.
        self._last_solution: tuple[float, Solution, dict[str, Any]] | None = None
        self.continuous = False
        self.solved = 0
        self.failed = 0
        self.superseded = 0

    @property
    def solution(self) -> tuple[Solution, dict[str, Any]] | None:
        """The live view's newest solution (its WCS maps the frame solved) and what was solved, or
        None before one."""
        last = self._last_solution
        return (last[1], last[2]) if last is not None else None

    def holding(self, tracking_since: float | None) -> tuple[float, Solution] | None:
        """The newest solution and its frame's time while it still says where the camera points:
        fresh, and the mount has tracked since before its frame (the field has not moved); None else."""
        last = self._last_solution
        if last is None or tracking_since is None:
            return None
        taken, solution, _ = last
        # The frame solved must have been taken after tracking began (the field held since).
        if taken < tracking_since or self._clock() - taken > STILL_FRESH_S:
            return None
        return taken, solution

    def for_still(self, width: int, height: int, tracking_since: float | None) -> dict[str, Any] | None:
        """The solution a still of ``width`` x ``height`` pixels carries: the one that ``holding``."""
        held = self.holding(tracking_since)
        if held is None:
            return None
        taken, solution = held
        wcs = solution.wcs.scaled_to(width, height)
        if wcs is None:
            return None
        return {
            "ra": round(solution.ra, 6) % 360.0,  # 359.9999999 rounds to 360: that is 0h
            "dec": round(solution.dec, 6),
            "roll": round(solution.roll, 4),
            "scale": round(wcs.scale, 4),
            "solved": utc_iso(taken),
            "from": "the live view, solved while the mount tracked",
            "wcs": wcs.to_dict(),
            "fits_cards": wcs.fits_cards(),
        }

    # -- from the loop ----------------------------------------------------------------------------

    def submit(
        self, stars: list[dict[str, Any]], width: int, height: int, source: dict[str, Any], *, blind: bool = True
    ) -> asyncio.Future:
        """Queue a star list; the future gets its result (or a WandaError when superseded).
        ``blind`` False: the hints' attempts only (a caller that knows roughly where the field is,
        and would rather hear of a failure in a second than wait half a minute for a blind search)."""
        future = self._loop.create_future()
        self._put(_Job(stars, width, height, source, future, blind))
        return future

    def offer(self, analysis: dict[str, Any]) -> None:
        """A new analysis of the live view: solved in continuous mode."""
        if self.continuous:
            source = {"kind": "preview", "timestamp": analysis.get("timestamp")}
            self._put(_Job(analysis["stars"], analysis["width"], analysis["height"], source, None))

    def _put(self, job: _Job) -> None:
        with self._ready:
            waiting = self._slot
            if job.future is None and waiting is not None and waiting.future is not None:
                # A continuous frame never pushes out a solve somebody asked for (a script, a
                # centring): it is the one left out.
                self.superseded += 1
                return
            self._slot = job
            self._ready.notify()
        if waiting is not None:
            self.superseded += 1
            if waiting.future is not None and not waiting.future.done():
                waiting.future.set_exception(
                    WandaError(ErrorCode.BUSY, "a newer frame was given to the solver before this one's turn")
                )

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="solve", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while self._slot is None and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return
                job, self._slot = self._slot, None
            assert job is not None  # woken with a job, or stopping
            try:
                result = self._solve(job)
            except Exception:  # a list the solver chokes on must not end the thread
                log.exception("plate solving failed")
                result = {"solved": False, "reason": "solver_error", "message": "the solve failed (see the server log)"}
            try:
                self._loop.call_soon_threadsafe(self._deliver, job, result)
            except RuntimeError:  # the loop is closed: shutting down
                return

    def _solve(self, job: _Job) -> dict[str, Any]:
        x = np.array([s["x"] for s in job.stars], dtype=float)
        y = np.array([s["y"] for s in job.stars], dtype=float)
        flux = np.array([s["flux"] for s in job.stars], dtype=float)
        started = time.monotonic()
        attempts: list[tuple[str, ScaleHint | None, PositionHint | None]] = []
        last = self._last_solution
        # The scale of the last solution of a frame this wide, else the configured optic's (which
        # may be wrong: a solve that found the field blind teaches the true one).
        configured = self.scale_for(job.width)
        learned = last[1].scale * last[1].wcs.image_size[0] / job.width if last is not None else None
        expected = learned or configured
        scale = ScaleHint.around(expected, SCALE_TOLERANCE) if expected else None
        if scale is not None and last is not None and self._clock() - last[0] < HINT_FRESH_S:
            attempts.append(("position", scale, PositionHint(last[1].ra, last[1].dec, HINT_RADIUS_DEG)))
        if scale is not None:
            attempts.append(("scale", scale, None))
        if learned and configured and abs(learned / configured - 1) > SCALE_TOLERANCE:
            attempts.append(("configured scale", ScaleHint.around(configured, SCALE_TOLERANCE), None))
        if (job.future is not None and job.blind) or scale is None:
            # Blind searches take seconds to half a minute of a core: asked for, not every frame of
            # a continuous solve (a cloudy sky would keep a core busy for nothing).
            attempts.append(("blind", None, None))
        outcome: Solution | SolveFailure | None = None
        hint = "blind"
        for name, scale_hint, position in attempts:
            hint = name
            outcome = self.solver.solve(
                x, y, flux, job.width, job.height, scale=scale_hint, position=position, cancel=self._cancel
            )
            if isinstance(outcome, Solution) or outcome.reason in (
                Failure.TOO_FEW_STARS,
                Failure.NO_SOLVER,
                Failure.CANCELLED,
            ):
                break  # solved, or a reason no other hint changes; else (not found, no index for
                # that scale, timed out) the next, wider attempt
        assert outcome is not None
        now = self._clock()
        base = {
            "source": job.source,
            "time": round(now, 3),
            "hint": hint,
            "seconds": round(time.monotonic() - started, 3),
        }
        if isinstance(outcome, SolveFailure):
            return {
                **base,
                "solved": False,
                "reason": str(outcome.reason),
                "message": outcome.message,
                "stars": outcome.stars,
            }
        if job.source.get("kind") == "preview":
            self._last_solution = (float(job.source.get("timestamp") or now), outcome, job.source)
        ra_date, dec_date = of_date(outcome.ra, outcome.dec, now)
        return {
            **base,
            "solved": True,
            "ra": round(outcome.ra, 6),
            "dec": round(outcome.dec, 6),
            "ra_of_date": round(ra_date, 6),
            "dec_of_date": round(dec_date, 6),
            "roll": round(outcome.roll, 4),
            "scale": round(outcome.scale, 4),
            "field_deg": [round(outcome.width_deg, 4), round(outcome.height_deg, 4)],
            "mirrored": outcome.mirrored,
            "matched": outcome.matched,
            "stars": outcome.stars,
            "width": job.width,
            "height": job.height,
            "wcs": outcome.wcs.to_dict(),
        }

    def _deliver(self, job: _Job, result: dict[str, Any]) -> None:
        """On the loop: keep it, answer who asked, publish it."""
        self.latest = result
        if result["solved"]:
            self.solved += 1
        else:
            self.failed += 1
        if job.future is not None and not job.future.done():
            job.future.set_result(result)
        self._publish(result)
