"""The simulated sky's RA axis, turned by the mount's real steps.

On a polar-aligned equatorial mount the sky turns past the camera at the sidereal rate, and each
step of the RA axis turns the camera by the same angle as ``step_s`` seconds of that motion: with
the sky in the tracking direction, against it the other way. So the sky's *turn* past the camera
(seconds of sidereal motion since the start, what wanda/backends/starfield.py projects) is

    turn(t) = turn0 + (t - t0) - step_s * (steps with the sky - steps against it, up to t)

A tracking mount's steps then hold the field apart from their sawtooth (with every late step the
mount really makes), a move for centring a target shifts it by as many steps as it makes, and an
idle mount lets it drift. The gears add their periodic error: the worm's imperfect thread turns the
axis a little ahead and behind of where its steps put it, a sine of the worm's angle, so of the
step count (``periodic_error_arcsec`` peak, over ``worm_period_s`` of tracking). The steps arrive on the mount's thread, the frames are rendered on the
camera's: a lock keeps them apart.
"""

from __future__ import annotations

import bisect
import math
import threading

SIDEREAL_ARCSEC_PER_S = 15.041  # of hour angle (wanda.astro.sidereal has the exact value)
KEEP_S = 300.0  # steps are kept this long: longer than the longest exposure (230 s)
MAX_SEGMENTS = 64  # an exposure's path is drawn in at most this many pieces of drift


class RaAxis:
    """Thread-safe: ``stepped`` on the mount's thread, the rest on the camera's."""

    def __init__(
        self,
        step_s: float,
        tracking_sign: int,
        start: float,
        turn0: float,
        *,
        periodic_error_arcsec: float = 0.0,
        worm_period_s: float = 480.0,
    ):
        """``step_s``: one step in seconds of sidereal motion; ``tracking_sign``: the direction
        (+1 clockwise, -1 not) that follows the sky; the turn is ``turn0`` at ``start``."""
        self.step_s = float(step_s)
        self._error_s = periodic_error_arcsec / SIDEREAL_ARCSEC_PER_S  # the peak, in seconds of turn
        self._worm_steps = worm_period_s / step_s
        self.tracking_sign = tracking_sign
        self._start = float(start)
        self._turn0 = float(turn0)
        self._lock = threading.Lock()
        self._times: list[float] = []  # the kept steps' times, in order
        self._counts: list[int] = []  # the net steps with the sky after each of them
        self._folded = 0  # the net count before the oldest kept step
        self.steps = 0  # steps heard, either way
        self.clutch_locked = True

    def stepped(self, at: float, direction: int) -> None:
        """The mount stepped at ``at`` (its clock, the sky's), ``direction`` +1 clockwise or -1."""
        with self._lock:
            if self.clutch_locked:  # released, the worm turns and the axis does not
                self._turned_locked(at, direction * self.tracking_sign)
            self.steps += 1

    def turned_by_hand(self, at: float, steps: int) -> None:
        """The observer turned the axis by hand (the clutch released) at ``at``, by as much as
        ``steps`` steps with the sky (negative: against it): the motor's steps are not counted."""
        with self._lock:
            self._turned_locked(at, steps)

    def _turned_locked(self, at: float, steps: int) -> None:
        if self._times and at < self._times[-1]:
            at = self._times[-1]  # the kept turns stay in order (a hand's turn raced a step)
        count = (self._counts[-1] if self._counts else self._folded) + steps
        self._times.append(at)
        self._counts.append(count)
        if self._times[0] < at - 2 * KEEP_S:  # trimmed now and then, not at every step
            old = bisect.bisect_left(self._times, at - KEEP_S)
            self._folded = self._counts[old - 1]
            del self._times[:old], self._counts[:old]

    def _count_at(self, at: float) -> int:
        """Net steps with the sky made up to ``at`` (with the lock held)."""
        index = bisect.bisect_right(self._times, at)
        return self._counts[index - 1] if index else self._folded

    def _error(self, count: int) -> float:
        """The gears' periodic error after ``count`` net steps, in seconds of turn."""
        return self._error_s * math.sin(2 * math.pi * count / self._worm_steps) if self._error_s else 0.0

    def turn(self, at: float) -> float:
        """The sky's turn at ``at``, the steps made so far (and the gears' error) included."""
        with self._lock:
            count = self._count_at(at)
        return self._turn0 + (at - self._start) - self.step_s * count + self._error(count)

    def path(self, start: float, end: float, resolution_s: float) -> list[tuple[float, float, float]]:
        """The turn during an exposure from ``start`` to ``end``: segments (turn at their start, at
        their end, share of the exposure) cut at the steps. Segments within ``resolution_s`` of each
        other (a tracking mount's steps bring the sky back to about the same place) are drawn once
        with their shares added; more than MAX_SEGMENTS are merged into that many."""
        span = max(end - start, 1e-9)
        with self._lock:
            first = bisect.bisect_right(self._times, start)
            last = bisect.bisect_right(self._times, end)
            cuts = self._times[first:last]
            counts = [self._count_at(start), *self._counts[first:last]]
        bounds = [start, *cuts, end]
        merged: dict[tuple[int, int], list[float]] = {}
        for a, b, count in zip(bounds, bounds[1:], counts, strict=False):
            turn_a = self._turn0 + (a - self._start) - self.step_s * count + self._error(count)
            turn_b = turn_a + (b - a)
            key = (round(turn_a / resolution_s), round(turn_b / resolution_s))
            if key in merged:
                merged[key][2] += (b - a) / span
            else:
                merged[key] = [turn_a, turn_b, (b - a) / span]
        segments = sorted((a, b, share) for a, b, share in merged.values() if share > 0)
        if not segments:  # a zero-length exposure
            turn = self._turn0 + (end - self._start) - self.step_s * counts[-1] + self._error(counts[-1])
            return [(turn, turn, 1.0)]
        if len(segments) > MAX_SEGMENTS:
            # A long exposure during a slew: neighbours in turn are drawn as one stretch.
            size = -(-len(segments) // MAX_SEGMENTS)
            segments = [
                (group[0][0], max(b for _, b, _ in group), sum(s for _, _, s in group))
                for group in (segments[k : k + size] for k in range(0, len(segments), size))
            ]
        return [(a, b, share) for a, b, share in segments]
