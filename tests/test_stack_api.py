"""Live stacking through the API (wanda/stacking.py, wanda/handlers/stack_api.py): the live view of
the simulated sky stacked frame after frame, clouds rejected with their reason, stop and reset, the
WebSocket topic and actions, and the thread that skips to the newest frame when it falls behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import numpy as np
import pytest
from helpers import is_reply, read_part, receive_until, wait_until

from wanda.astro.measure import analyse
from wanda.jpeg import JpegEncoder
from wanda.keys import CAMERA, SESSIONS, STACK, STACK_HUB
from wanda.stack_engine import colour
from wanda.stacking import SavedFrame, SessionFrames, StackWorker


async def state(client) -> dict:
    return (await (await client.get("/api/stack")).json())["data"]


async def test_the_live_view_is_stacked_and_its_noise_falls(client):
    assert (await state(client))["running"] is False and (await state(client))["stacked"] == 0
    await client.post("/api/mount/tracking", json={"action": "start"})
    response = await client.post("/api/stack/start", json={"source": "preview"})
    assert response.status == 200 and (await response.json())["data"]["running"] is True
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 6, attempts=600)
    now = await state(client)
    assert now["source"] == "preview" and (now["width"], now["height"]) == (1440, 1080)
    assert now["last"]["accepted"] is True and now["last"]["matched"] >= 6 and now["last"]["rms"] < 0.5
    assert now["integration_s"] == pytest.approx(now["stacked"] / 30, rel=0.01)  # 1/30 s frames
    assert now["snr_gain"] > 1.5  # six frames or more: the background's noise down by more than 1.5
    assert now["memory_bytes"] == 1440 * 1080 * 3 * 10
    stopped = (await (await client.post("/api/stack/stop")).json())["data"]
    assert stopped["running"] is False and stopped["stacked"] >= 6  # the stack stays
    cleared = (await (await client.post("/api/stack/reset")).json())["data"]
    assert cleared["stacked"] == 0 and cleared["last"] is None


async def test_the_stacking_runs_in_a_process_of_its_own_and_a_killed_one_is_told_and_replaced(client):
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 1, attempts=600)
    pid = client.app[STACK].process_id
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    await wait_until(lambda: client.app[STACK].state.get("error"), attempts=600)
    lost = await state(client)
    assert lost["running"] is False and lost["stacked"] == 0 and "stacking process ended" in lost["error"]
    await client.post("/api/stack/start")  # a new process, a new stack
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 1, attempts=600)
    assert client.app[STACK].process_id not in (None, pid) and "error" not in await state(client)
    await client.post("/api/stack/stop")


async def test_clouds_are_rejected_with_their_reason_and_the_stack_goes_on_after(client):
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 2, attempts=600)
    sky = client.app[CAMERA].backend
    sky.transparency = 0.3  # thin cloud: the stars at a third of their light
    await wait_until(lambda: client.app[STACK].state["rejections"].get("dimmed", 0) >= 2, attempts=600)
    last = client.app[STACK].state["last"]
    assert last["accepted"] is False and last["reason"] == "dimmed" and "clouds" in last["message"]
    sky.transparency = 1.0
    stacked = client.app[STACK].state["stacked"]
    await wait_until(lambda: client.app[STACK].state["stacked"] > stacked, attempts=600)
    await client.post("/api/stack/stop")


async def test_stacking_over_the_websocket(client):
    ws = await client.ws_connect("/ws")
    await receive_until(ws, lambda m: (m.get("topic"), m.get("event")) == ("stack", "status"))
    await ws.send_json({"id": 1, "action": "stack.start", "params": {}})
    assert (await receive_until(ws, is_reply(1)))[-1]["data"]["running"] is True
    frames = await receive_until(ws, lambda m: m.get("topic") == "stack" and m.get("event") == "stack_frame")
    assert frames[-1]["data"]["stacked"] >= 1
    await ws.send_json({"id": 2, "action": "stack.stop"})
    assert (await receive_until(ws, is_reply(2)))[-1]["data"]["running"] is False
    # Another page hears of the stop, and of a reset.
    watcher = await client.ws_connect("/ws")
    await client.post("/api/stack/reset")
    told = await receive_until(watcher, lambda m: (m.get("topic"), m.get("event")) == ("stack", "stack_status"))
    assert told[-1]["data"]["stacked"] == 0 and told[-1]["data"]["running"] is False
    await watcher.close()
    await ws.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "nebula"}, "source"),
        ({"source": {"session": "M42"}}, "source"),
        ({"source": "session", "session": 3}, "session"),
        ({"source": "preview", "session": "M42"}, "session"),
        ({"speed": 1}, "speed"),
    ],
)
async def test_bad_stack_requests_are_refused(client, body, field):
    response = await client.post("/api/stack/start", json=body)
    answer = await response.json()
    assert response.status == 400 and answer["error"].startswith(field), answer


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "session"}, "no session is running"),
        ({"source": "session", "session": "M42"}, "no session 'M42'"),
        ({"source": "session", "session": "../state"}, "no session '../state'"),
    ],
)
async def test_a_session_that_is_not_there_is_not_found(client, body, message):
    response = await client.post("/api/stack/start", json=body)
    answer = await response.json()
    assert response.status == 404 and answer["error"].startswith(message), answer
    assert client.app[STACK].state["running"] is False


async def session_stack_events(client, ws, name: str, **body) -> list[dict]:
    """The stack's events from the start of a stack of session ``name`` until it ends by itself."""
    await ws.send_json({"id": 7, "action": "stack.start", "params": {"source": "session", **body}})
    told = await receive_until(ws, is_reply(7))
    assert told[-1]["data"]["session"] == name
    told += await receive_until(ws, lambda m: m.get("event") == "stack_status" and m["data"].get("done"))
    return [
        m["data"] for m in told if m.get("topic") == "stack" and m.get("event") in ("stack_frame", "stack_rejected")
    ]


async def test_a_dithered_sessions_frames_are_stacked_as_they_land_and_their_shifts_follow_the_mount(
    make_client, config
):
    # A step of 1 s of sidereal motion: dithers of a few steps move the sky by pixels.
    client = await make_client(mount_step_interval=1.0)
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})
    # The truth: how fast the sky drifts past the camera while the mount stands (a still says).
    still = (await (await client.post("/api/camera/capture", json={})).json())["data"]
    drift = json.loads((config.captures / still["sidecar"]).read_text())["camera"]["drift_px_per_s"]
    step_px = drift * 1.0  # one step makes up for a second of it
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["stack"]}})
    await receive_until(ws, is_reply(1))
    session = {"name": "M42", "total_images": 7, "enable_tracking": True, "file_format": "fits"}
    dither = {"every": 1, "max_steps": 3, "settle_s": 0}
    response = await client.post(
        "/api/session/start", json={**session, "use_current_settings": False, "dither": dither}
    )
    assert response.status == 200, await response.json()
    await wait_until(lambda: client.app[SESSIONS].run.captured >= 2, attempts=600)  # some frames already in
    events = await session_stack_events(client, ws, "M42")
    frames = json.loads((config.captures / "M42" / "session_metadata.json").read_text())["frames"]
    assert [e["last"]["file"] for e in events] == [f["file"] for f in frames]  # every frame, in order
    assert all(e["last"]["accepted"] for e in events) and events[-1]["stacked"] == 7 and events[-1]["skipped"] == 0
    assert events[-1]["integration_s"] == pytest.approx(7 * 0.05)
    # The registered shifts follow the mount's dither offsets: one pixel vector per step.
    offsets = np.array([f["dither"]["offset_steps"] for f in frames], float)
    shifts = np.array([e["last"]["shift"] for e in events])
    per_step, *_ = np.linalg.lstsq(offsets[:, None], shifts, rcond=None)
    along = per_step[0] / np.hypot(*per_step[0])  # the RA axis's direction in the frame
    assert np.abs(offsets).max() >= 1 and step_px > 0.3  # the dithers moved the sky by pixels
    # By so many steps, and nothing else did but the stepper's sawtooth (between its steps the sky
    # drifts by up to one: a frame's phase in it against the first's) and registration's error.
    residual = np.hypot(*(shifts - offsets[:, None] * step_px * along).T)
    assert residual.max() < step_px + 0.15, (offsets, shifts, step_px)
    state = client.app[STACK].state
    assert state["running"] is False and state["source"] == "session" and state["waiting"] == 0
    # A finished session is stacked again from its folder, all of it.
    await client.post("/api/stack/reset")
    again = await session_stack_events(client, ws, "M42", session="M42")
    assert len(again) == 7 and again[-1]["stacked"] == 7
    await ws.close()


async def test_a_jpeg_session_is_stacked_and_a_preview_stack_gives_way_to_it(client, config):
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 1, attempts=600)
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})
    response = await client.post("/api/session/start", json={"name": "quick", "total_images": 3})
    assert response.status == 200
    await wait_until(lambda: not client.app[SESSIONS].active, attempts=600)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["stack"]}})
    await receive_until(ws, is_reply(1))
    events = await session_stack_events(client, ws, "quick", session="quick")
    assert [e["last"]["file"] for e in events] == ["light_0001.jpg", "light_0002.jpg", "light_0003.jpg"]
    assert events[-1]["stacked"] == 3  # the preview's stack was cleared for the session's
    assert (await state(client))["done"] is True
    # A reset of a stopped stack clears it; a start takes the session's frames again.
    cleared = (await (await client.post("/api/stack/reset")).json())["data"]
    assert (cleared["stacked"], cleared["running"], cleared["done"]) == (0, False, False)
    again = await session_stack_events(client, ws, "quick", session="quick")
    assert [e["stacked"] for e in again] == [1, 2, 3]
    await ws.close()


async def test_a_start_of_another_source_drops_what_the_last_one_left_waiting(tmp_path):
    published = []
    worker = StackWorker(asyncio.get_running_loop(), lambda event, state: published.append((event, state)))
    made = {name: tmp_path / name for name in ("A", "B")}
    for folder in made.values():
        folder.mkdir()
    frames = {
        name: [SavedFrame(folder / f"light_{k:04d}.fits", float(k), 0.1, 8.0) for k in range(1, 4)]
        for name, folder in made.items()
    }
    worker.start(SessionFrames(made["A"], frames["A"], running=False))  # the thread is not running yet
    assert worker.state["waiting"] == 3 and worker.state["session"] == "A"
    worker.start()  # the live view: A's frames are dropped
    assert worker.state["waiting"] == 0 and worker.state["source"] == "preview"
    worker.start(SessionFrames(made["B"], frames["B"], running=False))
    worker.reset()  # a running session's stack starts over: with what the session lists
    assert worker.state["waiting"] == 0
    worker.reset(SessionFrames(made["B"], frames["B"], running=False))
    assert worker.state["waiting"] == 3 and worker.state["stacked"] == 0
    worker.start_thread()
    try:
        await wait_until(lambda: worker.state.get("done"), attempts=600)
        files = [state["last"]["file"] for event, state in published if event == "stack_rejected"]
        assert files == ["light_0001.fits", "light_0002.fits", "light_0003.fits"]  # B's, none of A's
        assert worker.state["rejections"] == {"unreadable": 3} and worker.state["session"] == "B"
    finally:
        await asyncio.to_thread(worker.close)


async def test_a_session_folder_that_leads_out_of_the_captures_is_not_stacked(client, config, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "session_metadata.json").write_text(json.dumps({"frames": [{"file": "light_0001.fits"}]}))
    config.captures.mkdir(parents=True, exist_ok=True)
    (config.captures / "linked").symlink_to(outside)
    (config.captures / "odd").mkdir()
    os.mkfifo(config.captures / "odd" / "light_0002.fits")  # a read of it would never end
    records = [
        {"file": "../../etc/passwd"},
        {"file": "/etc/passwd"},
        "not a record",
        {"file": "light_0001.fits", "exposure_seconds": [1]},
        {"file": "light_0002.fits"},
    ]
    (config.captures / "odd" / "session_metadata.json").write_text(json.dumps({"frames": records}))
    response = await client.post("/api/stack/start", json={"source": "session", "session": "linked"})
    assert response.status == 404
    started = (await (await client.post("/api/stack/start", json={"source": "session", "session": "odd"})).json())[
        "data"
    ]
    assert started["waiting"] <= 1  # only the frame named in its folder is queued
    await wait_until(lambda: client.app[STACK].state["done"], attempts=600)
    last = client.app[STACK].state["last"]
    assert (
        last["file"] == "light_0002.fits" and last["reason"] == "unreadable" and "not a regular file" in last["message"]
    )


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_a_raw_bayer_mosaic_is_interpolated_to_its_colours(pattern):
    truth = {"R": 200.0, "G": 100.0, "B": 50.0}
    mosaic = np.zeros((8, 8, 1), np.float32)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[dy::2, dx::2, 0] = truth[pattern[k]]
    rgb = colour(mosaic, pattern)
    assert rgb.shape == (8, 8, 3)
    assert rgb[2:6, 2:6].reshape(-1, 3).mean(axis=0) == pytest.approx([200, 100, 50], abs=0.5)
    # A background below zero after a dark stays so (clipping it would lift the stack's sky).
    below = colour(np.full((8, 8, 1), -3.5, np.float32), pattern)
    assert below[2:6, 2:6] == pytest.approx(-3.5, abs=0.01)


async def test_a_stack_that_falls_behind_skips_to_the_newest_frame_and_counts_them():
    published = []
    worker = StackWorker(asyncio.get_running_loop(), lambda event, state: published.append((event, state)))
    worker.start()
    pixels = np.zeros((60, 80, 4), np.uint8)
    for timestamp in range(5):  # the thread is not running: each frame replaces the one waiting
        worker.offer(pixels, "RGBX", float(timestamp), 0.1, 8.0)
    assert worker.skipped == 4
    worker.start_thread()
    try:
        assert published[0][0] == "stack_status" and published[0][1]["running"] is True  # the start, told
        await wait_until(lambda: any(event == "stack_rejected" for event, _ in published))
        event, latest = published[-1]
        assert event == "stack_rejected" and latest["last"]["timestamp"] == 4.0  # the newest, taken
        assert latest["skipped"] == 4 and latest["last"]["reason"] == "too_few_stars"
    finally:
        worker.close()


async def test_the_stack_is_streamed_stretched_and_a_late_viewer_sees_it_at_once(client):
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    stream = await client.get("/stream", params={"source": "stack"})
    assert stream.status == 200
    _, jpeg = await read_part(stream.content)
    pixels = JpegEncoder().decode(jpeg)
    assert pixels.shape == (1080, 1440, 3)
    # Stretched: the sky's background lifted to about a quarter of the range, and stars in it.
    grey = pixels.mean(axis=2)
    assert 30 < np.median(grey) < 110 and analyse(grey.astype(np.uint8), 255)["star_count"] > 20
    stream.close()
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 2, attempts=600)
    await client.post("/api/stack/stop")
    # Stopped: nothing new is stacked, yet a new viewer is shown the stack as it stands.
    late = await client.get("/stream", params={"source": "stack"})
    _, jpeg = await read_part(late.content)
    assert JpegEncoder().decode(jpeg).shape == (1080, 1440, 3)
    late.close()
    # Reset: the stack that was is not shown to anybody who comes after.
    assert client.app[STACK_HUB].latest is not None
    await client.post("/api/stack/reset")
    assert client.app[STACK_HUB].latest is None
    bad = await client.get("/stream", params={"source": "elsewhere"})
    assert bad.status == 400 and (await bad.json())["error"].startswith("source: ")


async def test_saving_writes_a_float_fits_with_the_integration_and_a_stretched_jpeg(client, config):
    from astropy.io import fits

    nothing = await client.post("/api/stack/save")
    assert (nothing.status, (await nothing.json())["code"]) == (404, "NOT_FOUND")
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 3, attempts=600)
    await client.post("/api/stack/stop")
    response = await client.post("/api/stack/save")
    saved = (await response.json())["data"]
    assert response.status == 200 and saved["file"] == "stacks/stack_0001.jpg"
    assert saved["fits"] == "stacks/stack_0001.fits"
    # The stack as it stood when saved (a frame under way at the stop may have joined it).
    sidecar = json.loads((config.captures / "stacks" / "stack_0001.json").read_text())
    assert sidecar["kind"] == "stack" and sidecar["stacked"] >= 3
    with fits.open(config.captures / saved["fits"]) as hdus:
        header, data = hdus[0].header, hdus[0].data
        assert header["BITPIX"] == -32 and data.shape == (3, 1080, 1440)
        assert header["NCOMBINE"] == sidecar["stacked"]
        assert header["EXPTIME"] == pytest.approx(sidecar["stacked"] / 30, abs=1e-4)  # 1/30 s frames
        assert np.isfinite(data[:, 200:-200, 200:-200]).all()  # covered by every frame
    jpeg = (config.captures / saved["file"]).read_bytes()
    assert JpegEncoder().decode(jpeg).shape == (1080, 1440, 3)
    listed = (await (await client.get("/api/captures", params={"folder": "stacks"})).json())["data"]
    assert "stack_0001.jpg" in str(listed)
    # The gallery shows the float FITS too (scaled to its largest value).
    preview = await client.get(saved["fits_url"], params={"preview": "1", "stretch": "auto"})
    assert preview.status == 200 and preview.content_type == "image/jpeg"
    again = (await (await client.post("/api/stack/save")).json())["data"]
    assert again["file"] == "stacks/stack_0002.jpg"  # a save never overwrites one


async def test_frames_of_another_exposure_are_rejected_until_a_reset(client):
    await client.post("/api/mount/tracking", json={"action": "start"})
    await client.post("/api/stack/start")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 2, attempts=600)
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})
    await wait_until(lambda: client.app[STACK].state["rejections"].get("settings_changed", 0) >= 1, attempts=600)
    last = client.app[STACK].state["last"]
    assert last["reason"] == "settings_changed" and "reset" in last["message"]
    await client.post("/api/stack/reset")
    await wait_until(lambda: client.app[STACK].state["stacked"] >= 1, attempts=600)
    assert client.app[STACK].state["integration_s"] == pytest.approx(0.05 * client.app[STACK].state["stacked"])
    await client.post("/api/stack/stop")
