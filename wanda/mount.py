"""The equatorial mount: a 4-pin unipolar stepper driven with the 8-phase half-step sequence.

One thread owns the pins. Step k of a schedule is due at ``anchor + k * interval`` on the
monotonic clock, so timing errors never add up (the old code slept ``interval`` after each step and
drifted by every late wake-up). A change of speed or direction re-anchors the schedule at the last
step's due time, so the motor neither jumps nor pauses. The coils are switched off when tracking
stops, when the mount closes, and if the thread dies.

A *move* (``move``: so many steps one way at up to 10 a second, for centring a target or a dither)
runs on top of tracking: the tracking steps that fall due meanwhile are added to it (or cancel its
steps when it goes against tracking), and tracking goes on with its own schedule after, so a move of
n steps leaves the axis exactly n steps off where tracking alone would have it. A *hold* (``hold``)
leaves out so many tracking steps, the coils on: a dither back without turning the gears back.
Every step is told to the step listeners (the simulated sky turns with them).

Pin drivers: ``GpioPins`` (gpiozero with the lgpio pin factory: Raspberry Pi 4 and 5; RPi.GPIO does
not work on a Pi 5) and ``SimulatedPins`` (records every step's time), the default off the Pi.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from wanda.errors import ErrorCode, WandaError
from wanda.events import EventBus
from wanda.validate import invalid, json_object, known_fields, number

log = logging.getLogger(__name__)

HALF_STEP_SEQUENCE = (
    (1, 0, 0, 0),
    (1, 1, 0, 0),
    (0, 1, 0, 0),
    (0, 1, 1, 0),
    (0, 0, 1, 0),
    (0, 0, 1, 1),
    (0, 0, 0, 1),
    (1, 0, 0, 1),
)
COILS_OFF = (0, 0, 0, 0)
SPEED_LIMITS = (0.1, 10.0)  # seconds per step, the original contract's clamp
MAX_CATCH_UP_STEPS = 10  # further behind than this (a frozen machine), the schedule restarts
MOVE_INTERVAL = SPEED_LIMITS[0]  # a move's seconds per step: the fastest the contract allows
ERROR_WINDOW_S = 60.0  # the status's max step error is over the steps of the last minute


class MountUnavailable(RuntimeError):
    """The requested mount driver cannot be used; the message says why."""


class StepperPins(Protocol):
    name: str

    def set(self, pattern: tuple[int, int, int, int]) -> None: ...

    def close(self) -> None: ...


class SimulatedPins:
    """Pins that record what they are told, and when."""

    name = "sim"

    def __init__(self, clock: Callable[[], float] = time.monotonic, keep: int = 200_000):
        self._clock = clock
        self.pattern: tuple[int, int, int, int] = COILS_OFF
        self.history: deque[tuple[float, tuple[int, int, int, int]]] = deque(maxlen=keep)
        self.closed = False

    def set(self, pattern: tuple[int, int, int, int]) -> None:
        self.pattern = (pattern[0], pattern[1], pattern[2], pattern[3])
        self.history.append((self._clock(), self.pattern))

    @property
    def coils_on(self) -> bool:
        return any(self.pattern)

    def close(self) -> None:
        self.closed = True


class GpioPins:
    """BCM pins through gpiozero and lgpio (works on the Raspberry Pi 4 and 5)."""

    name = "gpio"

    def __init__(self, pins: tuple[int, ...]):
        if len(pins) != 4:
            raise MountUnavailable(f"the stepper needs 4 pins, got {len(pins)}")
        try:
            from gpiozero import OutputDevice  # here, not at the top: only on a Pi
            from gpiozero.pins.lgpio import LGPIOFactory
        except ImportError as exc:
            raise MountUnavailable(
                f"gpiozero with lgpio is not importable ({exc}): install python3-gpiozero and python3-lgpio with apt"
            ) from None
        try:
            factory = LGPIOFactory()
            self._outputs = [OutputDevice(pin, pin_factory=factory, initial_value=False) for pin in pins]
        except Exception as exc:  # gpiozero raises its own hierarchy and OSError
            raise MountUnavailable(f"cannot open GPIO pins {pins}: {exc}") from None

    def set(self, pattern: tuple[int, int, int, int]) -> None:
        for output, value in zip(self._outputs, pattern, strict=True):
            output.value = value

    def close(self) -> None:
        self.set(COILS_OFF)
        for output in self._outputs:
            output.close()


def on_raspberry_pi() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return False


def create_pins(config) -> StepperPins:
    """The pin driver ``config.mount`` asks for; ``auto`` takes GPIO on a Raspberry Pi."""
    if config.mount == "sim" or (config.mount == "auto" and not on_raspberry_pi()):
        log.info("mount: simulated pins (--mount %s)", config.mount)
        return SimulatedPins()
    pins = GpioPins(tuple(config.mount_pins))
    log.info("mount: GPIO pins %s through gpiozero/lgpio", ",".join(map(str, config.mount_pins)))
    return pins


class StepperMount:
    """Owns the pins on a thread of its own. Thread-safe; listeners are called on that thread."""

    def __init__(
        self,
        pins: StepperPins,
        *,
        interval: float = 3.523,
        clockwise: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Condition, float], Any] | None = None,
        spin: float = 0.002,
    ):
        """``spin``: the thread wakes this long before a step is due and spins to it, so the
        step does not wait on the operating system's wake-up (tests with a virtual clock pass 0)."""
        self.pins = pins
        self._clock = clock
        # How the thread waits for a due step; tests pass a virtual clock's wait.
        self._wait = wait or (lambda condition, timeout: condition.wait(timeout))
        self._spin = spin
        self._cond = threading.Condition()
        self._interval = interval
        self._clockwise = clockwise
        self._tracking = False
        self._anchor = 0.0  # due time of step 0 of the current schedule
        self._next = 0  # index of the next step in the current schedule
        self._phase = 0  # position in HALF_STEP_SEQUENCE
        self._coils_on = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.restarts = 0  # schedules restarted because the thread fell too far behind
        self.last_error = 0.0  # seconds the last step was late (actual - due)
        self._last_step: float | None = None  # when the last step was made (the clock's time)
        # |error| of the last ERROR_WINDOW_S of steps since tracking started, as (due time,
        # |error|) with the errors decreasing: the window's max is the first. One late step
        # (a hiccup an hour ago, another speed) must not show as the mount's timing for ever.
        self._recent_errors: deque[tuple[float, float]] = deque()
        self._sum_abs_error = 0.0
        self._move_left = 0  # steps of the move under way
        # Tracking's own schedule while a move runs (its step 0's due time, its next step): the
        # tracking steps that fall due meanwhile are added to the move (see _owed_tracking).
        self._track_anchor = 0.0
        self._track_next = 0
        # Where the last move left the axis against where tracking alone would have it, in steps
        # the way tracking goes (a stopped move's part): a dither's record.
        self.move_offset = 0
        self._move_clockwise = True
        self._move_interval = MOVE_INTERVAL
        self.failure: str | None = None
        # Called on the mount thread, results ignored: with "mount_error" once the coils are off
        # after the thread died, with "move_done" (or "move_stopped") when a move ends.
        self.listeners: list[Callable[[str], object]] = []
        # Called on the mount thread at every step with its time (the clock's) and +1 clockwise or
        # -1: must be quick (the next step waits for it).
        self.step_listeners: list[Callable[[float, int], object]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mount", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._coils_off()
        self.pins.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- commands (any thread) -------------------------------------------------------------

    def track(self, interval: float, clockwise: bool) -> None:
        """Start tracking, or change speed and direction while tracking, without a jump."""
        with self._cond:
            if self.failure is not None:
                raise MountUnavailable(f"the mount failed: {self.failure}")
            now = self._clock()
            if self._move_left and interval <= 2 * self._move_interval:
                self.stop_move()  # tracking as fast as the move: it could never get ahead of it
            if self._move_left:  # tracking's schedule under the move: from now, or its last step
                if not self._tracking:
                    self._track_anchor, self._track_next = now, 0
                else:
                    self._track_anchor = self._rescheduled(self._track_anchor, self._track_next, interval, now)
                    self._track_next = 1
            elif not self._tracking:
                self._anchor, self._next = now, 0  # the first step now: energise the coils
                self._recent_errors.clear()  # a new run of tracking: its own max step error
            else:
                self._anchor, self._next = self._rescheduled(self._anchor, self._next, interval, now), 1
            self._interval = interval
            self._clockwise = clockwise
            self._tracking = True
            self._cond.notify_all()

    def _rescheduled(self, anchor: float, next_step: int, interval: float, now: float) -> float:
        """A tracking schedule's new anchor for a new ``interval``: its last step's due time, so the
        next comes one new interval after it; or ``now - interval`` when that is already past (much
        faster than before: step now, do not burst). With the lock held."""
        last_due = anchor + (next_step - 1) * self._interval
        return max(last_due, now - interval)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop tracking and any move; return once the mount thread has switched the coils off."""
        with self._cond:
            self._tracking = False
            self.stop_move()
            self._cond.notify_all()
            if self.alive:
                self._cond.wait_for(lambda: not self._coils_on, timeout)

    def move(self, steps: int, clockwise: bool, interval: float = MOVE_INTERVAL) -> None:
        """Step ``steps`` times ``clockwise`` (or not), one every ``interval`` seconds, the first now.
        Tracking goes on under a move: the tracking steps that fall due meanwhile are added to a
        move the way tracking goes (or cancel steps of one against it), and tracking resumes on its
        own schedule after, so the axis ends exactly ``steps`` ahead of (or behind) where tracking
        alone would have it. A listener hears "move_done" (or "move_stopped" when ``stop`` ends it
        first). One move at a time."""
        if steps < 1:
            raise ValueError(f"a move is at least one step, not {steps}")
        with self._cond:
            if self.failure is not None:
                raise MountUnavailable(f"the mount failed: {self.failure}")
            if self._move_left:
                raise MountUnavailable("the mount is already moving")
            if self._tracking and clockwise == self._clockwise and self._interval <= 2 * interval:
                raise MountUnavailable(
                    f"the mount tracks at {self._interval:g} s a step: too fast for a move on top of it"
                )
            self._move_left, self._move_clockwise, self._move_interval = steps, clockwise, interval
            self.move_offset = 0
            if self._tracking:
                self._track_anchor, self._track_next = self._anchor, self._next
            self._anchor, self._next = self._clock(), 0
            self._cond.notify_all()

    def hold(self, steps: int) -> float:
        """While tracking, leave out the next ``steps`` steps (the coils hold the axis): the sky
        drifts by that many steps against the camera, then tracking goes on at its rate. Returns
        the seconds the hold lasts. A dither's step back without turning the gears back (no
        backlash)."""
        if steps < 1:
            raise ValueError(f"a hold is at least one step, not {steps}")
        with self._cond:
            if self.failure is not None:
                raise MountUnavailable(f"the mount failed: {self.failure}")
            if not self._tracking or self._move_left:
                raise MountUnavailable("the mount holds only while it tracks (and is not moving)")
            self._anchor += steps * self._interval  # every step still due comes that much later
            self._cond.notify_all()
            return steps * self._interval

    def shift(self, seconds: float) -> float:
        """While tracking, move every tracking step still due ``seconds`` later (earlier when
        negative): the axis falls behind the sky by that much sidereal time, or gains on it. A guide
        pulse's correction (a move under way keeps its own steps; tracking's resume shifted).
        Earlier is never so early that two steps fall due at once, nor that the next would follow
        the last one sooner than a move's fastest step (MOVE_INTERVAL): the motor is never asked for
        a burst it could lose. Returns the shift made."""
        with self._cond:
            if self.failure is not None:
                raise MountUnavailable(f"the mount failed: {self.failure}")
            if not self._tracking:
                raise MountUnavailable("the mount is not tracking: a guide pulse shifts the tracking steps")
            if self._move_left:
                self._track_anchor += seconds
            else:
                if seconds < 0:
                    # At most the next step may fall due at once (the one after stays ahead of now),
                    # and never within MOVE_INTERVAL of the last step of this run of tracking.
                    next_due = self._anchor + self._next * self._interval
                    earliest = self._clock() + MOVE_INTERVAL - self._interval
                    if self._next and self._last_step is not None:
                        earliest = max(earliest, self._last_step + MOVE_INTERVAL)
                    seconds = max(seconds, min(0.0, earliest - next_due))
                self._anchor += seconds
            self._cond.notify_all()
            return seconds

    def next_due(self) -> float | None:
        """When the next step is due (the clock's time), or None while the axis is at rest: what a
        guide pulse moved (the tests read it)."""
        with self._cond:
            if not (self._tracking or self._move_left):
                return None
            interval = self._move_interval if self._move_left else self._interval
            return self._anchor + self._next * interval

    def stop_move(self) -> None:
        """End the move under way (if any) where it is; tracking, if on, goes on from there."""
        with self._cond:
            if self._move_left:
                self._move_left = 0
                self._finish_move("move_stopped")

    def _finish_move(self, event: str) -> None:
        """With the lock held, a move just over: tracking goes on with its own schedule."""
        if self._tracking:
            self._anchor, self._next = self._track_anchor, self._track_next
        self._cond.notify_all()
        for listener in self.listeners:
            listener(event)

    def status(self) -> dict[str, Any]:
        with self._cond:
            tracking = self._tracking
            return {
                "status": f"Error: {self.failure}" if self.failure else ("Tracking" if tracking else "Stopped"),
                "tracking": tracking,
                "direction": self._clockwise,
                "speed": self._interval,
                "steps": self.steps,
                "timing_error_ms": round(self.last_error * 1000, 3),
                "max_timing_error_ms": round(self.max_error * 1000, 3),  # the last minute's
                "mean_timing_error_ms": round(self._sum_abs_error / self.steps * 1000, 3) if self.steps else 0.0,
                "moving": self._move_left,  # steps left of a move (centring a target)
                "coils_on": self._coils_on,
                "pins": self.pins.name,
            }

    @property
    def max_error(self) -> float:
        """The largest |error| of the steps of the last ERROR_WINDOW_S since tracking started
        (seconds; 0 with none). Call with the lock held."""
        horizon = self._clock() - ERROR_WINDOW_S
        while self._recent_errors and self._recent_errors[0][0] < horizon:
            self._recent_errors.popleft()
        return self._recent_errors[0][1] if self._recent_errors else 0.0

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with self._cond:
                while not self._stopping:
                    if self._move_left:
                        interval, clockwise = self._move_interval, self._move_clockwise
                    elif self._tracking:
                        interval, clockwise = self._interval, self._clockwise
                    else:
                        self._coils_off()
                        self._cond.notify_all()  # stop() waits for the coils to be off
                        self._cond.wait()
                        continue
                    due = self._anchor + self._next * interval
                    now = self._clock()
                    if now < due - self._spin:
                        self._wait(self._cond, due - now - self._spin)
                        continue  # a command may have changed the schedule meanwhile
                    while self._clock() < due:
                        pass  # the last moments: spin rather than trust a wake-up to be on time
                    if now - due > MAX_CATCH_UP_STEPS * interval:
                        log.warning("mount fell %.1f s behind; restarting the step schedule", now - due)
                        self.restarts += 1
                        self._anchor, self._next, due = now, 0, now
                    if self._move_left and self._tracking:
                        self._owed_tracking(due)
                        if not self._move_left:  # tracking's steps cancelled the rest of the move
                            self._finish_move("move_done")
                            continue
                    self._step(due, clockwise)
                    if self._move_left:
                        self.move_offset += 1 if clockwise == self._clockwise else -1
                        self._move_left -= 1
                        if not self._move_left:
                            self._finish_move("move_done")
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("the mount thread died")
        finally:
            self._tracking = False
            self._move_left = 0
            try:
                self._coils_off()
            except Exception:
                log.exception("could not switch the coils off")
        if self.failure is not None:
            # Said only once the coils are off: whoever hears of the failure finds the mount safe.
            for listener in self.listeners:
                listener("mount_error")

    def _owed_tracking(self, now: float) -> None:
        """With the lock held, during a move: the tracking steps due by ``now`` are taken on by the
        move: one more step of a move the way tracking goes, one step fewer of a move against it."""
        owed = int((now - self._track_anchor) // self._interval) + 1 - self._track_next
        if owed <= 0:
            return
        if self._move_clockwise == self._clockwise:
            self._move_left += owed
        else:
            owed = min(owed, self._move_left)
            self._move_left -= owed
        self._track_next += owed
        self.move_offset -= owed  # tracking's own steps: no offset against it

    def _step(self, due: float, clockwise: bool) -> None:
        self._phase = (self._phase + (1 if clockwise else -1)) % len(HALF_STEP_SEQUENCE)
        actual = self._clock()
        self.pins.set(HALF_STEP_SEQUENCE[self._phase])
        for listener in self.step_listeners:
            listener(actual, 1 if clockwise else -1)
        self._coils_on = True
        error = actual - due
        self.steps += 1
        self._next += 1
        self.last_error = error
        self._last_step = actual
        # A sliding-window max: smaller errors before this one can never be the max again.
        while self._recent_errors and self._recent_errors[-1][1] <= abs(error):
            self._recent_errors.pop()
        self._recent_errors.append((due, abs(error)))
        self._sum_abs_error += abs(error)

    def _coils_off(self) -> None:
        if self._coils_on:
            self.pins.set(COILS_OFF)
            self._coils_on = False


DIRECTION_WORDS = {"cw": True, "clockwise": True, "ccw": False, "counterclockwise": False}


def parse_direction(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in DIRECTION_WORDS:
        return DIRECTION_WORDS[value.strip().lower()]
    raise invalid("direction", f"must be true, false, cw, ccw, clockwise or counterclockwise, got {value!r}")


def parse_speed(value: Any) -> float:
    """Seconds per step, clamped to 0.1..10 as the original backend did."""
    return min(max(number("speed", value, "a number of seconds per step"), SPEED_LIMITS[0]), SPEED_LIMITS[1])


class MountControl:
    """The mount as the API sees it (REST, WebSocket and sessions). Lives in the event loop."""

    def __init__(self, mount: StepperMount, bus: EventBus, *, on_tracking: Callable[[bool], None] | None = None):
        self.mount = mount
        self.bus = bus
        self._on_tracking = on_tracking
        self._tracking_since: float | None = None  # Unix time tracking last started
        self._move_over: asyncio.Future[str] | None = None  # the move under way hears its end here
        loop = asyncio.get_running_loop()
        mount.listeners.append(lambda event: loop.call_soon_threadsafe(self._heard, event))
        bus.add_status_provider("mount", self.status)

    def status(self) -> dict[str, Any]:
        return self.mount.status()

    @property
    def tracking(self) -> bool:
        return self.mount.status()["tracking"]

    @property
    def tracking_since(self) -> float | None:
        """When the mount started tracking (Unix time), None while it does not: a plate solution
        taken since still holds for the frames that follow."""
        return self._tracking_since if self.tracking else None

    async def apply(self, body: Any) -> dict[str, Any]:
        """The original ``POST /api/mount/tracking`` body: action start/stop, speed, direction."""
        known_fields(json_object(body), ("action", "speed", "direction"))
        action = body.get("action")
        if action == "stop":
            await self.stop()
        elif action == "start":
            current = self.mount.status()
            speed = parse_speed(body["speed"]) if "speed" in body else current["speed"]
            clockwise = parse_direction(body["direction"]) if "direction" in body else current["direction"]
            self.start(speed, clockwise)
        else:
            raise WandaError(ErrorCode.INVALID_ACTION, f"action: must be start or stop, got {action!r}")
        return self.status()

    def start(self, speed: float, clockwise: bool) -> None:
        was_tracking = self.tracking
        try:
            self.mount.track(speed, clockwise)
        except MountUnavailable as exc:
            raise WandaError(ErrorCode.MOUNT_ERROR, str(exc)) from None
        if not was_tracking:
            self._tracking_since = time.time()
        self.bus.publish("mount", "status" if was_tracking else "tracking_start", self.status())
        if self._on_tracking is not None:
            self._on_tracking(True)

    async def stop(self) -> None:
        was_tracking = self.tracking
        await asyncio.to_thread(self.mount.stop)  # waits for the mount thread: off the loop
        if was_tracking:
            self.bus.publish("mount", "tracking_stop", self.status())
        if self._on_tracking is not None:
            self._on_tracking(False)

    async def move(self, steps: int, clockwise: bool) -> str:
        """Step the axis ``steps`` times at the fastest rate and return once done: "move_done", or
        "move_stopped" when the mount was stopped meanwhile. A failing mount raises MOUNT_ERROR; a
        cancelled caller stops the move where it is."""
        if self._move_over is not None and not self._move_over.done():
            raise WandaError(ErrorCode.BUSY, "the mount is already moving")
        over: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        try:
            self.mount.move(steps, clockwise)
        except MountUnavailable as exc:
            raise WandaError(ErrorCode.MOUNT_ERROR, str(exc)) from None
        self._move_over = over
        self.bus.publish("mount", "move_start", {**self.status(), "steps": steps, "clockwise": clockwise})
        try:
            ending = await over
        except asyncio.CancelledError:
            self.mount.stop_move()
            raise
        self.bus.publish("mount", ending, self.status())
        return ending

    def hold(self, steps: int) -> float:
        """Leave out the next ``steps`` tracking steps (StepperMount.hold); the seconds it lasts.
        MOUNT_ERROR when the mount is not tracking or has failed."""
        try:
            seconds = self.mount.hold(steps)
        except MountUnavailable as exc:
            raise WandaError(ErrorCode.MOUNT_ERROR, str(exc)) from None
        self.bus.publish("mount", "hold", {**self.status(), "steps": steps, "seconds": round(seconds, 3)})
        return seconds

    def shift(self, seconds: float) -> float:
        """Shift the tracking schedule (StepperMount.shift): a guide pulse; the shift made.
        MOUNT_ERROR when the mount is not tracking or has failed."""
        try:
            return self.mount.shift(seconds)
        except MountUnavailable as exc:
            raise WandaError(ErrorCode.MOUNT_ERROR, str(exc)) from None

    @property
    def move_offset(self) -> int:
        """Where the last move left the axis against tracking alone, in steps the way tracking
        goes (all of a move done, part of a stopped one)."""
        return self.mount.move_offset

    def _heard(self, event: str) -> None:
        """On the loop: what the mount thread said."""
        over = self._move_over
        if event == "mount_error":
            if over is not None and not over.done():
                over.set_exception(WandaError(ErrorCode.MOUNT_ERROR, f"the mount failed: {self.mount.failure}"))
            self._thread_failed()
        elif over is not None and not over.done():
            over.set_result(event)

    def _thread_failed(self) -> None:
        if self._on_tracking is not None:
            self._on_tracking(False)
        self.bus.publish("mount", "mount_error", {**self.status(), "error": self.mount.failure})
