"""The mount: an absolute step schedule, live changes, coils off on every exit, the REST and
WebSocket contract, and the GPIO driver against a fake gpiozero at the library edge."""

from __future__ import annotations

import itertools
import random
import sys
import threading
import time
import types

import pytest
from helpers import is_reply, receive_until, wait_until

from wanda.app import create_app
from wanda.keys import CAMERA, CONFIG, MOUNT
from wanda.mount import COILS_OFF, HALF_STEP_SEQUENCE, GpioPins, SimulatedPins, StepperMount


class VirtualClock:
    """Time that passes only when the mount waits: each wait jumps to the due time, plus a late
    wake-up drawn from ``jitter``. Time stops at ``limit`` (the thread then idles for real)."""

    def __init__(self, jitter=lambda: 0.0):
        self.now = 1000.0
        self.limit = self.now
        self.jitter = jitter

    def __call__(self) -> float:
        return self.now

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        if self.now + timeout > self.limit:
            condition.wait(0.01)
            return
        self.now += timeout + self.jitter()


def step_times(pins: SimulatedPins) -> list[float]:
    return [t for t, pattern in pins.history if pattern != COILS_OFF]


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def mount(clock):
    pins = SimulatedPins(clock=clock)
    mount = StepperMount(pins, interval=2.0, clock=clock, wait=clock.wait, spin=0)
    mount.start()
    yield mount
    mount.close()


async def run_until_steps(mount: StepperMount, clock: VirtualClock, steps: int, interval: float) -> None:
    """Let virtual time run until exactly ``steps`` steps (the first comes at once) are due."""
    clock.limit = clock.now + interval * (steps - 1) + interval / 2
    await wait_until(lambda: mount.steps >= steps, attempts=400)


async def test_steps_follow_an_absolute_schedule_so_late_wakeups_never_add_up(clock, mount):
    rng = random.Random(4)
    clock.jitter = lambda: rng.uniform(0.0, 0.004)  # every wake-up up to 4 ms late
    start = clock.now
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 500, 2.0)
    times = step_times(mount.pins)[:500]
    errors = [t - (start + k * 2.0) for k, t in enumerate(times)]
    assert max(errors) <= 0.004 + 1e-9 and min(errors) >= -1e-9
    # A sleep-after-each-step loop would be ~1 s late by now (500 x 2 ms on average).
    assert errors[-1] <= 0.004
    assert mount.status()["max_timing_error_ms"] <= 4.0 + 1e-6


async def test_the_max_step_error_is_the_last_minutes_and_starts_afresh_with_tracking(clock, mount):
    """The status's "max step error" (max_timing_error_ms, as /api/mount/status gives it): one
    late step must not show for the rest of the night, nor a run of tracking before this one."""

    def late_once(seconds):
        waits = iter([seconds])
        return lambda: next(waits, 0.0)  # the next wake-up that late, then all on time

    clock.jitter = late_once(0.05)
    mount.track(2.0, True)  # step 0 at once, step 1 (at 2 s) 50 ms late
    await run_until_steps(mount, clock, 20, 2.0)  # 38 s: the late step is within the minute
    assert mount.status()["max_timing_error_ms"] == pytest.approx(50.0, abs=0.01)
    clock.limit = clock.now + 15 * 2.0 + 1.0
    await wait_until(lambda: mount.steps >= 35)  # 68 s: the late step is more than a minute ago
    status = mount.status()
    assert status["max_timing_error_ms"] == 0.0 and status["steps"] == 35
    assert status["mean_timing_error_ms"] > 0  # the mean is over every step
    # Late again, then tracking stops and starts: the new run starts with its own max.
    clock.jitter = late_once(0.03)
    clock.limit = clock.now + 2.0 + 1.0
    await wait_until(lambda: mount.steps >= 36)
    assert mount.status()["max_timing_error_ms"] == pytest.approx(30.0, abs=0.01)
    mount.stop()
    assert mount.status()["max_timing_error_ms"] == pytest.approx(30.0, abs=0.01)  # what the last run did
    mount.track(2.0, True)
    assert mount.status()["max_timing_error_ms"] == 0.0
    clock.limit = clock.now + 2 * 2.0 + 1.0
    await wait_until(lambda: mount.steps >= 39)  # its first three steps, on time
    assert mount.status()["max_timing_error_ms"] == 0.0


async def test_the_half_step_sequence_turns_both_ways(clock, mount):
    mount.track(1.0, True)
    await run_until_steps(mount, clock, 9, 1.0)
    patterns = [p for _, p in mount.pins.history if p != COILS_OFF][:9]
    assert patterns == [HALF_STEP_SEQUENCE[(i + 1) % 8] for i in range(9)]
    mount.track(1.0, False)
    clock.limit = clock.now + 3.5
    await wait_until(lambda: mount.steps >= 12)
    back = [p for _, p in mount.pins.history if p != COILS_OFF][9:12]
    assert back == [HALF_STEP_SEQUENCE[(9 - i) % 8] for i in range(1, 4)]


async def test_a_speed_change_takes_effect_from_the_last_step_without_a_jump(clock, mount):
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 5, 2.0)  # steps at 0, 2, 4, 6, 8
    clock.now += 0.3  # the change arrives between two steps
    mount.track(0.5, True)
    clock.limit = clock.now + 1.25
    await wait_until(lambda: mount.steps >= 8)
    clock.now += 0.1
    mount.track(2.0, False)  # slow down again and turn back
    clock.limit = clock.now + 4.0
    await wait_until(lambda: mount.steps >= 10)
    times = step_times(mount.pins)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)][:9]
    # each change counts from the last step: no burst, no pause, no step lost or doubled
    assert gaps == [2.0, 2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 2.0, 2.0]
    assert mount.status()["speed"] == 2.0 and mount.status()["direction"] is False


async def test_a_change_arriving_after_the_new_interval_steps_at_once(clock, mount):
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 2, 2.0)  # steps at 0 and 2
    clock.now += 0.7
    mount.track(0.5, True)  # the step is already overdue at the new speed: now, then every 0.5 s
    clock.limit = clock.now + 1.2
    await wait_until(lambda: mount.steps >= 5)
    times = step_times(mount.pins)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)][:4] == [2.0, 0.7, 0.5, 0.5]


async def test_stop_close_and_a_dying_thread_switch_the_coils_off(clock, mount):
    mount.track(1.0, True)
    await run_until_steps(mount, clock, 3, 1.0)
    assert mount.pins.coils_on
    mount.stop()
    assert mount.pins.pattern == COILS_OFF and mount.status()["status"] == "Stopped"

    mount.track(1.0, True)
    await run_until_steps(mount, clock, 5, 1.0)
    mount.close()
    assert mount.pins.pattern == COILS_OFF and mount.pins.closed


async def test_a_move_steps_so_many_times_fast_and_tracking_goes_on_with_its_own_schedule(clock, mount):
    heard = []
    mount.listeners.append(heard.append)
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 2, 2.0)  # tracking steps at 0 and 2
    clock.now += 0.5
    mount.move(4, False)  # four steps back, the first at once, 0.1 s apart
    assert mount.status()["moving"] == 4
    clock.limit = clock.now + 0.3 + 1.2 + 0.05
    await wait_until(lambda: mount.steps >= 7)
    times = step_times(mount.pins)
    # The move at 2.5-2.8; tracking's next step at 4, as due: the move took nothing from it.
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)][:6] == [2.0, 0.5, 0.1, 0.1, 0.1, 1.2]
    patterns = [p for _, p in mount.pins.history if p != COILS_OFF]
    assert patterns[2:6] == [HALF_STEP_SEQUENCE[(2 - i) % 8] for i in range(1, 5)]  # the move went back
    assert patterns[6] == HALF_STEP_SEQUENCE[(2 - 4 + 1) % 8]  # and tracking forward from there
    assert heard == ["move_done"] and mount.status()["moving"] == 0 and mount.status()["tracking"]


@pytest.mark.parametrize(("clockwise", "move_steps"), [(True, 4 + 1), (False, 4 - 1)])
async def test_tracking_steps_due_under_a_move_are_taken_on_by_it(clock, mount, clockwise, move_steps):
    """A move of 4 from 3.85 s, 0.1 s a step, while tracking steps every 2 s: the tracking step due
    at 4 s is one more step of a move the way tracking goes, one fewer of a move against it; the
    axis ends 4 steps from where tracking alone would have it, and tracking goes on at 6 s."""
    heard = []
    mount.listeners.append(heard.append)
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 2, 2.0)  # tracking steps at 0 and 2
    clock.now = 1003.85
    mount.move(4, clockwise)
    clock.limit = 1006.05
    await wait_until(lambda: mount.steps >= 2 + move_steps + 1)
    times = [round(t - 1000, 6) for t in step_times(mount.pins)]
    assert times[2 : 2 + move_steps] == [round(3.85 + 0.1 * k, 6) for k in range(move_steps)]
    assert times[2 + move_steps] == 6.0  # tracking's step, on its schedule
    # The coils' pattern after the move tells the axis's position: 2 +5 or 2 -3 half steps, which
    # is 4 from the 3 steps tracking alone would have made by 4 s.
    patterns = [p for _, p in mount.pins.history if p != COILS_OFF]
    position = 2 + (move_steps if clockwise else -move_steps)
    assert patterns[1 + move_steps] == HALF_STEP_SEQUENCE[position % 8]
    assert heard == ["move_done"]


async def test_a_move_cannot_outrun_tracking_as_fast_as_it_and_a_stopped_one_says_how_far_it_went(clock, mount):
    mount.track(0.15, True)  # tracking at 0.15 s a step: a move at 0.1 s could never get ahead
    with pytest.raises(Exception, match="too fast for a move"):
        mount.move(5, True)
    mount.move(3, False)  # against tracking it can: tracking's steps only shorten it
    mount.stop()
    mount.track(2.0, True)
    clock.limit = clock.now + 0.25
    mount.move(10, True)
    await wait_until(lambda: mount.steps >= 3)
    mount.track(0.1, True)  # tracking as fast as the move now: the move ends where it is
    assert mount.status()["moving"] == 0
    made = mount.move_offset
    assert 1 <= made < 10 and mount.status()["speed"] == 0.1


async def test_a_hold_leaves_out_so_many_tracking_steps_with_the_coils_on(clock, mount):
    with pytest.raises(Exception, match="only while it tracks"):
        mount.hold(2)  # at rest there is nothing to hold back
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 2, 2.0)  # steps at 0 and 2
    assert mount.hold(3) == pytest.approx(6.0)  # three steps of 2 s
    clock.limit = clock.now + 2.0 + 6.0 + 2.0 + 0.5
    await wait_until(lambda: mount.steps >= 4)
    times = step_times(mount.pins)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)][:3] == [2.0, 8.0, 2.0]  # 3 steps left out
    assert mount.pins.pattern != COILS_OFF and mount.status()["max_timing_error_ms"] == 0  # held, not late
    assert [p for _, p in mount.pins.history].count(COILS_OFF) == 0
    with pytest.raises(ValueError):
        mount.hold(0)


async def test_a_shift_moves_the_tracking_steps_later_or_earlier_for_a_guide_pulse(clock, mount):
    with pytest.raises(Exception, match="not tracking"):
        mount.shift(0.5)  # a guide pulse at rest has no steps to move
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 2, 2.0)  # steps at 0 and 2
    mount.shift(0.5)  # east: the axis falls behind by half a second of sky
    clock.limit = clock.now + 2.5 + 0.1
    await wait_until(lambda: mount.steps >= 3)
    mount.shift(-1.5)  # west: the next step comes 1.5 s early
    clock.limit = clock.now + 2.0 - 1.5 + 2.0 + 0.1
    await wait_until(lambda: mount.steps >= 5)
    times = step_times(mount.pins)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)][:4] == [2.0, 2.5, 0.5, 2.0]
    assert mount.status()["max_timing_error_ms"] == 0  # moved on the schedule, not late


async def test_an_early_shift_never_makes_the_motor_burst(clock, mount):
    mount.track(2.0, True)
    await run_until_steps(mount, clock, 1, 2.0)  # the first step, at once
    assert mount.shift(-5.0) == pytest.approx(-1.9)  # cut short: the next step 0.1 s after the last
    clock.limit = clock.now + 0.1 + 2.0 + 0.05
    await wait_until(lambda: mount.steps >= 3)
    times = step_times(mount.pins)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)][:2] == [0.1, 2.0]
    assert mount.shift(-10.0) == pytest.approx(-1.9)  # however long the pulse: one step, 0.1 s on
    assert mount.next_due() + 2.0 > clock.now  # and the step after it is not due yet


async def test_a_move_from_rest_ends_with_the_coils_off_and_stop_ends_a_move(clock, mount):
    heard = []
    mount.listeners.append(heard.append)
    mount.move(3, True)
    clock.limit = clock.now + 0.25
    await wait_until(lambda: mount.steps >= 3 and not mount.pins.coils_on)
    assert heard == ["move_done"] and not mount.status()["tracking"]
    mount.move(100, True)
    with pytest.raises(Exception, match="already moving"):
        mount.move(1, True)
    clock.limit = clock.now + 0.45
    await wait_until(lambda: mount.steps >= 8)
    mount.stop()
    assert heard == ["move_done", "move_stopped"] and mount.pins.pattern == COILS_OFF
    assert mount.status()["moving"] == 0
    clock.limit = clock.now + 5.0
    mount.track(2.0, True)  # the next command starts from a clean schedule
    await wait_until(lambda: mount.steps >= 9)


class FailingPins(SimulatedPins):
    """A driver whose pin write fails once (a GPIO error), then works again."""

    def __init__(self, clock, fail_at: int):
        super().__init__(clock=clock)
        self.calls = 0
        self.fail_at = fail_at

    def set(self, pattern):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("GPIO write failed")
        super().set(pattern)


async def test_a_dying_mount_thread_switches_the_coils_off_and_says_so(clock):
    pins = FailingPins(clock, fail_at=4)
    mount = StepperMount(pins, interval=1.0, clock=clock, wait=clock.wait, spin=0)
    failures = []
    mount.listeners.append(failures.append)
    mount.start()
    mount.track(1.0, True)
    clock.limit = clock.now + 10
    await wait_until(lambda: not mount.alive)
    assert pins.pattern == COILS_OFF
    assert failures == ["mount_error"]
    assert mount.status()["status"].startswith("Error: OSError")
    mount.close()


# -- through the app ---------------------------------------------------------------------------


@pytest.fixture
async def app_client(aiohttp_client, config):
    pins = SimulatedPins()
    client = await aiohttp_client(create_app(config, pins=pins))
    client.pins = pins
    return client


async def test_mount_status_has_the_original_fields_and_the_new_ones(app_client):
    data = (await (await app_client.get("/api/mount/status")).json())["data"]
    assert {"status", "tracking", "direction", "speed"} <= set(data)
    assert (data["status"], data["tracking"], data["direction"], data["speed"]) == ("Stopped", False, True, 3.523)
    assert data["steps"] == 0 and "timing_error_ms" in data


@pytest.mark.parametrize(
    ("body", "speed", "direction"),
    [
        ({"action": "start"}, 3.523, True),
        ({"action": "start", "speed": 0.01, "direction": "ccw"}, 0.1, False),
        ({"action": "start", "speed": 50, "direction": "Clockwise"}, 10.0, True),
        ({"action": "start", "speed": 1, "direction": False}, 1.0, False),
        ({"action": "start", "direction": "counterclockwise"}, 3.523, False),
    ],
)
async def test_tracking_start_clamps_speed_and_reads_every_direction(app_client, body, speed, direction):
    response = await app_client.post("/api/mount/tracking", json=body)
    assert response.status == 200
    data = (await response.json())["data"]
    assert (data["tracking"], data["speed"], data["direction"], data["status"]) == (True, speed, direction, "Tracking")
    await wait_until(lambda: app_client.pins.coils_on)
    stopped = (await (await app_client.post("/api/mount/tracking", json={"action": "stop"})).json())["data"]
    assert stopped["tracking"] is False and stopped["coils_on"] is False
    assert app_client.pins.pattern == COILS_OFF


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"action": "spin"}, "INVALID_ACTION", "start or stop"),
        ({}, "INVALID_ACTION", "start or stop"),
        ({"action": "start", "speed": "fast"}, "VALIDATION_ERROR", "speed"),
        ({"action": "start", "speed": True}, "VALIDATION_ERROR", "speed"),
        ({"action": "start", "direction": "up"}, "VALIDATION_ERROR", "direction"),
        ({"action": "start", "direction": 1}, "VALIDATION_ERROR", "direction"),
        ({"action": "start", "rate": 1}, "VALIDATION_ERROR", "rate"),
        ([1], "INVALID_REQUEST", "JSON object"),
    ],
)
async def test_bad_tracking_requests_are_refused(app_client, body, code, words):
    response = await app_client.post("/api/mount/tracking", json=body)
    assert response.status == 400
    payload = await response.json()
    assert payload["code"] == code and words in payload["error"]
    assert (await (await app_client.get("/api/mount/status")).json())["data"]["tracking"] is False


async def test_the_sky_turns_with_the_mounts_real_steps(app_client):
    """Each step with the sky (the configured tracking direction) takes one step's worth of
    sidereal motion off the sky's turn, each step against it adds one; time adds the rest."""
    sky = app_client.app[CAMERA].backend
    mount = app_client.app[MOUNT].mount
    step_s = app_client.app[CONFIG].mount_step_interval
    assert sky.tracking is False
    before, turn_before = time.monotonic(), sky._offset_at(time.monotonic())
    assert sky._offset_at(before + 100.0) == pytest.approx(turn_before + 100.0)  # idle: it drifts
    await app_client.post("/api/mount/tracking", json={"action": "start", "speed": 0.1})
    assert sky.tracking is True
    await wait_until(lambda: mount.steps >= 4)
    await app_client.post("/api/mount/tracking", json={"action": "stop"})
    with_sky = mount.steps
    now = time.monotonic()
    gears = sky._axis._error  # the gears' periodic error, a function of the net steps
    assert sky._offset_at(now) == pytest.approx(turn_before + (now - before) - with_sky * step_s + gears(with_sky))
    await app_client.post("/api/mount/tracking", json={"action": "start", "speed": 0.1, "direction": "ccw"})
    await wait_until(lambda: mount.steps >= with_sky + 3)
    await app_client.post("/api/mount/tracking", json={"action": "stop"})
    against = mount.steps - with_sky
    now = time.monotonic()
    net = with_sky - against
    assert sky._offset_at(now) == pytest.approx(turn_before + (now - before) - net * step_s + gears(net))


async def test_mount_over_the_websocket(app_client):
    ws = await app_client.ws_connect("/ws")
    await receive_until(ws, lambda m: (m.get("topic"), m.get("event")) == ("mount", "status"))
    await ws.send_json({"id": 1, "action": "mount.track", "params": {"action": "start", "speed": 0.5}})
    messages = await receive_until(ws, is_reply(1))
    assert messages[-1]["ok"] is True and messages[-1]["data"]["speed"] == 0.5
    assert "tracking_start" in {m.get("event") for m in messages}
    await ws.send_json({"id": 2, "action": "mount.track", "params": {"action": "stop"}})
    await receive_until(ws, lambda m: m.get("event") == "tracking_stop")
    await ws.send_json({"id": 3, "action": "mount.status"})
    reply = (await receive_until(ws, is_reply(3)))[-1]
    assert reply["data"]["tracking"] is False
    await ws.close()


async def test_a_mount_failure_is_an_event_and_a_503(aiohttp_client, config):
    pins = FailingPins(clock=time.monotonic, fail_at=2)
    client = await aiohttp_client(create_app(config, pins=pins))
    ws = await client.ws_connect("/ws")
    await client.post("/api/mount/tracking", json={"action": "start", "speed": 0.1})
    for _ in range(20):
        message = await ws.receive_json(timeout=5)
        if message.get("event") == "mount_error":
            break
    assert message["event"] == "mount_error" and "GPIO write failed" in message["data"]["error"]
    assert pins.pattern == COILS_OFF
    response = await client.post("/api/mount/tracking", json={"action": "start"})
    assert response.status == 503 and (await response.json())["code"] == "MOUNT_ERROR"
    assert client.app[MOUNT].status()["status"].startswith("Error")
    await ws.close()


async def test_shutdown_switches_the_coils_off(aiohttp_client, config):
    pins = SimulatedPins()
    client = await aiohttp_client(create_app(config, pins=pins))
    await client.post("/api/mount/tracking", json={"action": "start", "speed": 0.1})
    await wait_until(lambda: pins.coils_on)
    await client.close()
    assert pins.pattern == COILS_OFF and pins.closed


# -- the GPIO driver, at the gpiozero edge ---------------------------------------------------------


class FakeOutputDevice:
    opened: list[FakeOutputDevice] = []

    def __init__(self, pin, pin_factory=None, initial_value=False):
        self.pin = pin
        self.factory = pin_factory
        self.value = int(initial_value)
        self.values = [self.value]
        self.closed = False
        FakeOutputDevice.opened.append(self)

    def __setattr__(self, name, value):
        if name == "value" and hasattr(self, "values"):
            self.values.append(int(value))
        object.__setattr__(self, name, value)

    def close(self):
        self.closed = True


class FakeLGPIOFactory:
    pass


@pytest.fixture
def fake_gpiozero(monkeypatch):
    gpiozero = types.ModuleType("gpiozero")
    gpiozero.OutputDevice = FakeOutputDevice
    pins = types.ModuleType("gpiozero.pins")
    lgpio = types.ModuleType("gpiozero.pins.lgpio")
    lgpio.LGPIOFactory = FakeLGPIOFactory
    for name, module in (("gpiozero", gpiozero), ("gpiozero.pins", pins), ("gpiozero.pins.lgpio", lgpio)):
        monkeypatch.setitem(sys.modules, name, module)
    FakeOutputDevice.opened = []
    return FakeOutputDevice


def test_gpio_pins_drive_the_bcm_pins_through_lgpio(fake_gpiozero):
    pins = GpioPins((23, 24, 25, 8))
    devices = fake_gpiozero.opened
    assert [d.pin for d in devices] == [23, 24, 25, 8]
    assert all(isinstance(d.factory, FakeLGPIOFactory) for d in devices)
    pins.set(HALF_STEP_SEQUENCE[1])
    assert [d.value for d in devices] == [1, 1, 0, 0]
    pins.close()
    assert [d.value for d in devices] == [0, 0, 0, 0] and all(d.closed for d in devices)


def test_gpio_without_gpiozero_is_a_clear_error(monkeypatch):
    from wanda.mount import MountUnavailable

    monkeypatch.setitem(sys.modules, "gpiozero", None)
    with pytest.raises(MountUnavailable, match="python3-gpiozero and python3-lgpio"):
        GpioPins((23, 24, 25, 8))
