"""The frame hub on its own, in a loop of the test's and with a clock of the test's: who gets which
frame, who waits, what closing ends, and the rates /state reports. Nothing here waits on real time."""

from __future__ import annotations

import asyncio

import pytest
from helpers import FakeClock, turns_until

from wanda.frames import BOUNDARY, Frame, FrameHub, RateMeter, Viewer, multipart_part


def frame(seq: int) -> Frame:
    jpeg = b"\xff\xd8" + bytes([seq % 256]) * 10 + b"\xff\xd9"
    return Frame(seq, 1_700_000_000.0 + seq, 1440, 1080, jpeg, multipart_part(jpeg, 1_700_000_000.0 + seq, seq))


async def waiting_for(hub: FrameHub, seq: int, count: int = 1) -> list[asyncio.Task]:
    """``count`` tasks awaiting a frame after ``seq``, each already parked in the hub."""
    tasks = [asyncio.create_task(hub.next_after(seq)) for _ in range(count)]
    await turns_until(lambda: hub.waiting == count)
    return tasks


# -- the multipart part -----------------------------------------------------------------------------


def test_a_part_carries_its_length_timestamp_and_sequence_around_the_jpeg():
    jpeg = b"\xff\xd8jpeg\xff\xd9"
    part = multipart_part(jpeg, 1234.5, 42)
    head, body = part.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n") == [
        f"--{BOUNDARY}".encode(),
        b"Content-Type: image/jpeg",
        f"Content-Length: {len(jpeg)}".encode(),
        b"X-Timestamp: 1234.500000",
        b"X-Sequence: 42",
    ]
    assert body == jpeg + b"\r\n"


# -- next_after: the newest frame, shared, never a queue -------------------------------------------------


async def test_a_newer_frame_is_handed_out_at_once():
    hub = FrameHub()
    hub.publish(frame(1))
    assert await hub.next_after(0) is hub.latest
    assert hub.waiting == 0


async def test_a_slow_viewer_gets_the_newest_frame_not_the_ones_it_missed():
    hub = FrameHub()
    for seq in (1, 2, 3):
        hub.publish(frame(seq))
    assert (await hub.next_after(0)).seq == 3
    assert hub.published == 3


async def test_one_publish_wakes_every_waiting_viewer_with_the_same_frame():
    hub = FrameHub()
    hub.publish(frame(1))
    tasks = await waiting_for(hub, 1, count=3)
    published = frame(2)
    hub.publish(published)
    got = await asyncio.gather(*tasks)
    assert all(f is published for f in got)  # the very object: no copy, no encode per viewer
    assert hub.waiting == 0


async def test_a_viewer_that_stops_waiting_leaves_no_waiter_behind():
    hub = FrameHub()
    (cancelled,) = await waiting_for(hub, 0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert hub.waiting == 0
    # A timeout (a viewer checking every second whether its client is still there) is a
    # cancellation too: however often it re-waits, one waiter at most is left.
    for _ in range(5):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await hub.next_after(0)
        assert hub.waiting == 0
    hub.publish(frame(1))  # and a publish finds nobody stale to wake
    assert hub.waiting == 0


async def test_closing_the_hub_ends_every_wait_and_every_later_one():
    hub = FrameHub()
    tasks = await waiting_for(hub, 0, count=2)
    hub.close()
    assert await asyncio.gather(*tasks) == [None, None]
    hub.publish(frame(1))  # a frame still on its way from the camera thread
    assert await hub.next_after(0) is None


async def test_closing_cancels_the_viewers_stuck_writing_and_only_them():
    hub = FrameHub()
    stuck_client = asyncio.Event()  # a client that never takes its frame: never set
    stuck = Viewer("10.0.0.1", "/stream", None)
    waiting = Viewer("10.0.0.2", "/stream", None)

    async def write_forever():
        stuck.writing = True
        await stuck_client.wait()

    stuck.task = asyncio.create_task(write_forever())
    waiting.task = asyncio.create_task(hub.next_after(0))  # between frames, not in a write
    for viewer in (stuck, waiting):
        hub.add_viewer(viewer)
    await turns_until(lambda: stuck.writing and hub.waiting == 1)
    hub.close()
    with pytest.raises(asyncio.CancelledError):
        await stuck.task
    assert await waiting.task is None  # told the stream is over, and left to end it cleanly


async def test_a_pause_ends_when_the_hub_closes():
    hub = FrameHub()
    assert await hub.pause(0) is True
    pausing = asyncio.create_task(hub.pause(3600))
    await asyncio.sleep(0)  # one turn of the loop (no time passes): the pause begins to wait
    hub.close()
    assert await asyncio.wait_for(pausing, 10) is False  # the bound only fails a broken close
    assert await hub.pause(3600) is False  # closed already: no wait at all


# -- demand and viewers --------------------------------------------------------------------------------


def test_the_camera_is_woken_when_the_first_viewer_comes_and_not_for_the_others():
    woken = []
    hub = FrameHub(on_demand=lambda: woken.append(True))
    assert not hub.wants_frames
    first, second = Viewer("a", "/stream", None), Viewer("b", "/video_feed", None)
    hub.add_viewer(first)
    hub.add_viewer(second)
    assert hub.wants_frames and len(woken) == 1
    hub.remove_viewer(first)
    hub.remove_viewer(first)  # twice (a handler's finally after a close): counted out once
    assert hub.wants_frames
    hub.remove_viewer(second)
    assert not hub.wants_frames and hub.viewers == set()
    hub.add_demand()  # a snapshot wants one frame: the camera wakes again
    assert hub.wants_frames and len(woken) == 2
    hub.remove_demand()
    assert not hub.wants_frames


def test_frames_skipped_counts_viewers_present_and_gone():
    hub = FrameHub()
    gone, present = Viewer("a", "/stream", None), Viewer("b", "/stream", None)
    for viewer in (gone, present):
        hub.add_viewer(viewer)
    gone.frames_skipped, present.frames_skipped = 7, 5
    hub.remove_viewer(gone)
    assert hub.frames_skipped == 12
    present.frames_skipped += 1
    assert hub.frames_skipped == 13


def test_a_viewer_describes_its_age_and_rate_by_its_clock():
    clock = FakeClock()
    viewer = Viewer("192.168.1.20", "/stream", 4.0, clock=clock)
    for _ in range(8):  # four frames a second for two seconds
        clock.advance(0.25)
        viewer.meter.tick()
        viewer.frames_sent += 1
    described = viewer.describe()
    assert described["connected_s"] == 2.0
    assert described["fps"] == pytest.approx(4.0, abs=0.5)
    assert {k: described[k] for k in ("client", "path", "fps_limit", "frames_sent", "frames_skipped")} == {
        "client": "192.168.1.20",
        "path": "/stream",
        "fps_limit": 4.0,
        "frames_sent": 8,
        "frames_skipped": 0,
    }
    assert Viewer("a", "/stream", None).id != viewer.id


# -- the rate meter ----------------------------------------------------------------------------------------


def test_a_rate_is_events_per_second_over_the_window():
    clock = FakeClock()
    meter = RateMeter(window=2.0, clock=clock)
    assert meter.rate() == 0.0  # no time has passed: no rate, not a division by zero
    for _ in range(40):  # ten a second for four seconds
        clock.advance(0.1)
        meter.tick()
    assert meter.rate() == pytest.approx(10.0, abs=0.6)
    for _ in range(8):  # then two a second: the window forgets the faster past
        clock.advance(0.5)
        meter.tick()
    assert meter.rate() == pytest.approx(2.0, abs=0.6)


def test_a_young_meter_counts_over_its_age_and_an_idle_one_falls_to_zero():
    clock = FakeClock()
    meter = RateMeter(window=2.0, clock=clock)
    for _ in range(3):
        clock.advance(0.1)
        meter.tick()
    assert meter.rate() == pytest.approx(10.0)  # three in 0.3 s, not three in the 2 s window
    clock.advance(2.5)  # nothing since: the ticks left the window
    assert meter.rate() == 0.0
