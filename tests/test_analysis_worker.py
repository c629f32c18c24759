"""The analysis thread on its own, with a clock of the test's: when it is wanted, which offered
frames it takes (and copies), what it delivers to the loop, and that a bad frame does not end it.
The thread runs for real; the test waits for its results, never for a time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from helpers import FakeClock, wait_until

from wanda.analysis import AnalysisWorker

INTERVAL = 0.5


class Copies(np.ndarray):
    """Pixels that count how often they are copied (the camera thread's cost of an offer)."""

    count = 0

    def copy(self, *args, **kwargs):
        Copies.count += 1
        return super().copy(*args, **kwargs)


def starfield(seed: int = 1, shape=(240, 320), stars: int = 12) -> np.ndarray:
    """A grey RGB frame: sky at about 40 with noise, and Gaussian stars."""
    rng = np.random.default_rng(seed)
    image = 40 + 2 * rng.standard_normal(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in zip(rng.uniform(20, shape[1] - 20, stars), rng.uniform(20, shape[0] - 20, stars), strict=True):
        image += 150 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    grey = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2).view(Copies)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def worker(clock):
    """A worker whose results are collected; its thread is started by the tests that need it."""
    published: list[dict] = []
    worker = AnalysisWorker(asyncio.new_event_loop(), published.append, interval=INTERVAL, clock=clock)
    worker.published = published
    Copies.count = 0
    yield worker
    worker.stop()
    worker._loop.close()


@pytest.fixture
async def running(clock):
    """A worker on the test's loop with its thread running."""
    published: list[dict] = []
    worker = AnalysisWorker(asyncio.get_running_loop(), published.append, interval=INTERVAL, clock=clock)
    worker.published = published
    Copies.count = 0
    worker.start()
    yield worker
    await asyncio.to_thread(worker.stop)
    assert not worker._thread.is_alive()


# -- wanted: who asks for the analysis ------------------------------------------------------------------


def test_nobody_asking_means_not_wanted_and_offers_cost_nothing(worker):
    assert not worker.wanted
    worker.offer(starfield(), "RGB", 1.0)
    assert Copies.count == 0 and worker._slot is None


def test_the_first_listener_wakes_the_camera_and_the_last_one_leaving_stops_the_work(worker):
    woken = []
    worker.set_camera_wake(lambda: woken.append(True))
    worker.set_listeners(1)
    worker.set_listeners(2)  # wanted already: no second wake
    assert worker.wanted and len(woken) == 1
    worker.set_listeners(0)
    assert not worker.wanted


def test_a_poll_holds_the_analysis_for_its_time_by_the_clock(worker, clock):
    woken = []
    worker.set_camera_wake(lambda: woken.append(True))
    worker.hold(5.0)  # GET /api/analysis
    assert worker.wanted and len(woken) == 1
    clock.advance(3.0)
    worker.hold(5.0)  # polled again: held longer, the camera is awake already
    assert len(woken) == 1
    clock.advance(4.9)
    assert worker.wanted
    clock.advance(0.2)  # 5 s after the last poll
    assert not worker.wanted


def test_a_stretched_stream_viewer_wants_the_analysis(clock):
    viewers = [0]
    worker = AnalysisWorker(
        asyncio.new_event_loop(), lambda r: None, clock=clock, stretch_demand=lambda: viewers[0] > 0
    )
    try:
        assert not worker.wanted
        viewers[0] = 1
        assert worker.wanted
    finally:
        worker._loop.close()


# -- offer: a copy only when one is due --------------------------------------------------------------------


def test_a_frame_is_copied_at_most_once_per_interval_of_the_clock(worker, clock):
    worker.set_listeners(1)
    frame = starfield()
    worker.offer(frame, "RGB", 1.0)  # the first is due at once
    assert Copies.count == 1
    for _ in range(4):  # the camera's next frames, 0.1 s apart: not due
        clock.advance(0.1)
        worker.offer(frame, "RGB", 1.0)
    assert Copies.count == 1
    clock.advance(0.1)  # half a second after the first
    worker.offer(frame, "RGB", 1.0)
    assert Copies.count == 2
    worker.interval = 0.0  # as often as frames come
    worker.offer(frame, "RGB", 1.0)
    assert Copies.count == 3


def test_the_frame_taken_is_a_copy_the_camera_may_overwrite(worker):
    worker.set_listeners(1)
    buffer = starfield()
    worker.offer(buffer, "RGB", 123.0)
    buffer[:] = 0  # the camera reuses its buffer for the next frame
    pixels, pixel_format, timestamp = worker._slot
    result = worker.analyse_frame(pixels, pixel_format, timestamp)
    assert result["median"] > 30 and result["star_count"] >= 5 and result["timestamp"] == 123.0


# -- the thread ---------------------------------------------------------------------------------------------


async def test_an_offered_frame_is_analysed_and_delivered_in_the_loop(running, clock):
    running.set_listeners(1)
    result = asyncio.ensure_future(running.next_result())
    running.offer(starfield(), "RGB", 1_700_000_000.5)
    result = await asyncio.wait_for(result, 30)  # the bound only fails a thread that never answers
    assert result is running.latest and running.published == [result] and running.analysed == 1
    assert result["timestamp"] == 1_700_000_000.5
    assert result["star_count"] >= 5 and len(result["histogram"]["luminance"]) == 256
    # Its auto-stretch is ready for the stretched stream: an 8-bit table, built once.
    table = running.stretch_table()
    assert table.dtype == np.uint8 and table.shape == (256,) and running.stretch_table() is table


async def test_a_frame_that_cannot_be_analysed_does_not_end_the_thread(running, clock, caplog):
    running.set_listeners(1)
    running.offer(starfield()[..., :2], "RGB", 1.0)  # two channels: the analysis raises
    await wait_until(lambda: running._slot is None)  # the thread took it
    clock.advance(INTERVAL)
    result = asyncio.ensure_future(running.next_result())
    running.offer(starfield(seed=2), "RGB", 2.0)
    result = await asyncio.wait_for(result, 30)  # the bound only fails a thread that died
    assert result["timestamp"] == 2.0 and running.published == [result] and running.analysed == 1
    assert "analysing a frame failed" in caplog.text


async def test_stop_ends_the_thread_even_with_a_frame_waiting(running):
    running.set_listeners(1)
    running.offer(starfield(), "RGB", 1.0)
    await asyncio.to_thread(running.stop)
    assert not running._thread.is_alive()
