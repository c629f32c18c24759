"""Capture sessions: rapid and timed, names, stop, space, crash recovery, resume, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from helpers import fill, is_reply, mounted_tmpfs, receive_until, wait_until
from live_server import Wanda

from wanda.app import create_app
from wanda.keys import CONTROL, MEASURER, MOUNT, SESSIONS
from wanda.mount import COILS_OFF, SimulatedPins


async def set_exposure(client, seconds: float) -> None:
    response = await client.post("/api/camera/settings", json={"exposure_seconds": seconds})
    assert response.status == 200


async def start(client, **body) -> dict:
    response = await client.post("/api/session/start", json=body)
    payload = await response.json()
    assert response.status == 200, payload
    return payload["data"]


async def finished(client, attempts: int = 400) -> dict:
    await wait_until(lambda: not client.app[SESSIONS].active, attempts=attempts)
    return (await (await client.get("/api/session/status")).json())["data"]


def metadata(folder: Path) -> dict:
    return json.loads((folder / "session_metadata.json").read_text())


def images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*_[0-9][0-9][0-9][0-9].jpg"))


def hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


async def test_a_rapid_session_fills_its_own_folder_and_reports_each_frame(client, config):
    await set_exposure(client, 0.05)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["session"]}})
    await receive_until(ws, is_reply(1))
    data = await start(client, name="M31", total_images=3)
    assert data["session_status"]["status"] == "running" and data["active"] is True
    events = await receive_until(ws, lambda m: m.get("event") == "session_complete")
    names = [m["event"] for m in events if m.get("topic") == "session" and m["event"] != "status"]
    assert names == ["session_start", "session_progress", "session_progress", "session_progress", "session_complete"]
    assert [m["data"]["captured_images"] for m in events if m.get("event") == "session_progress"] == [1, 2, 3]
    complete = events[-1]["data"]  # what a browser shows at the end: the session is over
    assert (complete["status"], complete["active"], complete["running"]) == ("completed", False, False)

    status = await finished(client)
    assert (status["status"], status["active"], status["captured_images"], status["progress"]) == (
        "completed",
        False,
        3,
        100.0,
    )
    folder = config.captures / "M31"
    assert images(folder) == ["light_0001.jpg", "light_0002.jpg", "light_0003.jpg"]
    meta = metadata(folder)
    assert meta["status"] == "completed" and meta["captured_images"] == 3 and meta["mode"] == "rapid"
    assert [f["file"] for f in meta["frames"]] == images(folder)
    assert all(f["exposure_seconds"] == 0.05 and f["gain"] == 8.0 and f["started"] for f in meta["frames"])
    sidecar = json.loads((folder / "light_0002.json").read_text())
    assert sidecar["session"] == "M31" and sidecar["frame"] == 2
    listed = (await (await client.get("/api/sessions")).json())["data"]["sessions"]
    assert listed[0] == {**listed[0], "name": "M31", "status": "completed", "captured_images": 3, "total_images": 3}
    await ws.close()


async def test_a_timed_session_spreads_its_frames_over_the_time(client, config):
    await set_exposure(client, 0.05)
    await start(client, name="timed", total_images=3, total_time_hours=0.9 / 3600)  # a frame every 0.3 s
    status = await finished(client)
    assert status["status"] == "completed" and status["mode"] == "timed"
    # Late only if a frame overran its slot (a busy machine may make one): never for nothing.
    assert status["late"] is (status["lateness_s"] > 0)

    def unix(stamp: str) -> float:
        return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:-1])

    meta = metadata(config.captures / "timed")
    starts = [unix(f["started"]) for f in meta["frames"]]
    # Held back to the schedule: frame k never starts before its slot, k x 0.3 s after the
    # schedule's start (which is after the session's recorded start). A busy machine only makes
    # frames later, so this cannot fail for the machine's sake (times are kept to the millisecond).
    assert all(start >= unix(meta["started"]) + k * 0.3 - 0.002 for k, start in enumerate(starts)), starts


async def test_a_frame_longer_than_its_slot_makes_the_session_late(client, config):
    await set_exposure(client, 0.3)
    await start(client, name="late", total_images=3, total_time_hours=0.3 / 3600)  # 0.1 s slots
    status = await finished(client)
    assert status["status"] == "completed" and status["captured_images"] == 3
    assert status["late"] is True and status["lateness_s"] > 0
    assert metadata(config.captures / "late")["late"] is True


async def test_the_session_stops_only_the_tracking_it_started(client):
    await set_exposure(client, 0.05)
    await start(client, name="tracked", total_images=2, enable_tracking=True)
    await wait_until(lambda: client.app[MOUNT].tracking)
    await finished(client)
    assert client.app[MOUNT].tracking is False

    await client.post("/api/mount/tracking", json={"action": "start"})
    await start(client, name="tracked", total_images=2, enable_tracking=True)
    await finished(client)
    assert client.app[MOUNT].tracking is True  # it was tracking before: left as found


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "total_images": 3}, "name"),
        ({"name": "a/b", "total_images": 3}, "name"),
        ({"name": "a\\b", "total_images": 3}, "name"),
        ({"name": "..", "total_images": 3}, "name"),
        ({"name": ".", "total_images": 3}, "name"),
        ({"name": ".hidden", "total_images": 3}, "name"),
        ({"name": "x" * 65, "total_images": 3}, "name"),
        ({"name": "bell\x07", "total_images": 3}, "name"),
        ({"name": "M31: core", "total_images": 3}, "name"),
        ({"name": "what?", "total_images": 3}, "name"),
        ({"name": "ends with a dot.", "total_images": 3}, "name"),
        ({"name": "ends with a space ", "total_images": 3}, "name"),
        ({"name": 31, "total_images": 3}, "name"),
        ({"total_images": 3}, "name"),
        ({"name": "M31"}, "total_images"),
        ({"name": "M31", "total_images": 0}, "total_images"),
        ({"name": "M31", "total_images": "3"}, "total_images"),
        ({"name": "M31", "total_images": True}, "total_images"),
        ({"name": "M31", "total_images": 3, "total_time_hours": -1}, "total_time_hours"),
        ({"name": "M31", "total_images": 3, "enable_tracking": "yes"}, "enable_tracking"),
        ({"name": "M31", "total_images": 3, "exposure_seconds": 2}, "exposure_seconds"),
        ({"name": "M31", "total_images": 3, "use_current_settings": False, "frame_type": "x"}, "frame_type"),
        ({"name": "M31", "total_images": 3, "colour": "red"}, "colour"),
        ({"name": "M31", "total_images": 3, "enable_tracking": True, "dither": 3}, "dither"),
        ({"name": "M31", "total_images": 3, "enable_tracking": True, "dither": {"every": 2}}, "dither.max_steps"),
        (
            {"name": "M31", "total_images": 3, "enable_tracking": True, "dither": {"every": 0, "max_steps": 2}},
            "dither.every",
        ),
        (
            {"name": "M31", "total_images": 3, "enable_tracking": True, "dither": {"every": 1, "max_steps": 999}},
            "dither.max_steps",
        ),
        (
            {"name": "M31", "total_images": 3, "enable_tracking": True, "dither": {"every": 1, "max_steps": 2, "s": 1}},
            "dither.s",
        ),
        ({"name": "M31", "total_images": 3, "dither": {"every": 1, "max_steps": 2}}, "dither"),  # no tracking
    ],
)
async def test_bad_session_requests_name_the_field(client, config, body, field):
    response = await client.post("/api/session/start", json=body)
    assert response.status == 400
    payload = await response.json()
    assert payload["code"] == "VALIDATION_ERROR" and payload["error"].startswith(f"{field}:")
    assert not payload["error"].removeprefix(f"{field}:").lstrip().startswith(field)  # named once
    assert not config.captures.exists() or not [p for p in config.captures.iterdir() if p.is_dir()]


async def test_a_dithered_session_shifts_the_axis_every_n_frames_and_records_it(make_client, config):
    client = await make_client(mount_step_interval=0.5)  # holds of a step or two last a second
    await set_exposure(client, 0.02)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"id": 1, "action": "subscribe", "params": {"topics": ["session", "mount"]}})
    await receive_until(ws, is_reply(1))
    steps_before = client.app[MOUNT].status()["steps"]
    dither = {"every": 2, "max_steps": 2, "settle_s": 0.1}
    data = await start(client, name="dithered", total_images=5, enable_tracking=True, dither=dither)
    assert data["dither"] == dither
    events = await receive_until(ws, lambda m: m.get("event") == "session_complete")
    frames = metadata(config.captures / "dithered")["frames"]
    shifts = [f["dither"]["steps"] for f in frames]
    assert shifts[0] == shifts[1] == shifts[3] == 0 and shifts[2] != 0 and shifts[4] != 0
    offsets = [f["dither"]["offset_steps"] for f in frames]
    assert offsets == [0, 0, shifts[2], shifts[2], shifts[2] + shifts[4]]
    assert all(abs(offset) <= 2 for offset in offsets)  # each dither goes to an offset within the range
    said = [m["data"] for m in events if m.get("event") == "session_dither"]
    assert [d["dither_steps"] for d in said] == [shifts[2], shifts[4]] and said[-1]["dither_offset_steps"] == offsets[
        -1
    ]
    assert all(d["running"] and d["name"] == "dithered" for d in said)  # the session's status, as every event
    # Each shift went to the mount: a move forward or a hold, as the record says.
    mount_events = [m["event"] for m in events if m.get("topic") == "mount"]
    assert mount_events.count("move_start") == sum(s > 0 for s in shifts)
    assert mount_events.count("hold") == sum(s < 0 for s in shifts)
    assert client.app[MOUNT].status()["steps"] > steps_before
    sidecar = json.loads((config.captures / "dithered" / frames[4]["file"]).with_suffix(".json").read_text())
    assert sidecar["dither_offset_steps"] == offsets[4]


async def test_a_failing_session_listener_does_not_end_the_session(client, config):
    heard = []

    def failing(kind, folder, record):
        heard.append(kind)
        raise RuntimeError("a listener's own trouble")

    client.app[SESSIONS].listeners.append(failing)
    await set_exposure(client, 0.02)
    await start(client, name="heard", total_images=2)
    status = await finished(client)
    assert status["status"] == "completed" and status["captured_images"] == 2
    await wait_until(lambda: heard == ["frame", "frame", "ended"])


async def test_a_name_already_used_gets_a_suffix(client, config):
    await set_exposure(client, 0.01)
    folders = []
    for _ in range(3):
        folders.append((await start(client, name="Orion Nebula é", total_images=1))["folder"])
        await finished(client)
    assert folders == ["Orion Nebula é", "Orion Nebula é_2", "Orion Nebula é_3"]
    assert all(len(images(config.captures / f)) == 1 for f in folders)


async def test_a_session_can_take_its_own_settings_and_frame_type(client, config):
    await set_exposure(client, 0.05)
    await start(
        client,
        name="darks",
        total_images=2,
        use_current_settings=False,
        exposure_seconds=0.1,
        iso=400,
        frame_type="dark",
    )
    await finished(client)
    meta = metadata(config.captures / "darks")
    assert meta["settings"] == {
        "exposure_seconds": 0.1,
        "gain": 4.0,
        "iso": 400.0,
        "frame_type": "dark",
        "file_format": "jpeg",
    }
    assert images(config.captures / "darks") == ["dark_0001.jpg", "dark_0002.jpg"]  # the type names the files
    assert json.loads((config.captures / "darks" / "dark_0001.json").read_text())["frame_type"] == "dark"
    camera = (await (await client.get("/api/camera/status")).json())["data"]
    assert (camera["exposure_seconds"], camera["frame_type"]) == (0.05, "light")  # untouched
    backend = client.app[CONTROL].worker.backend
    assert (backend.exposure_s, backend.gain) == (0.05, 8.0)  # the preview is back on them too


async def test_stopping_mid_exposure_cancels_cleanly(client, config):
    await set_exposure(client, 30)
    await start(client, name="long", total_images=5)
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    busy = await client.post("/api/session/start", json={"name": "other", "total_images": 1})
    assert busy.status == 409 and (await busy.json())["code"] == "SESSION_START_FAILED"
    manual = await client.post("/api/camera/capture")
    assert manual.status == 409 and (await manual.json())["code"] == "CAPTURE_BUSY"

    response = await asyncio.wait_for(client.post("/api/session/stop"), 10)  # not 30 s
    data = (await response.json())["data"]
    assert response.status == 200 and data["status"] == "stopped" and data["active"] is False
    folder = config.captures / "long"
    assert images(folder) == [] and hidden(folder) == []
    meta = metadata(folder)
    assert meta["status"] == "stopped" and meta["frames"] == [] and meta["ended"]
    again = await client.post("/api/session/stop")
    assert again.status == 409 and (await again.json())["code"] == "SESSION_STOP_FAILED"


async def test_an_ended_session_keeps_its_elapsed_time_and_a_deleted_one_says_it_cannot_be_resumed(client, config):
    await set_exposure(client, 30)
    await start(client, name="short night", total_images=5)
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    ended = (await (await client.post("/api/session/stop")).json())["data"]
    assert ended["status"] == "stopped"
    stopped_at = time.monotonic()
    await wait_until(lambda: time.monotonic() - stopped_at > 0.5)  # the clock moved on; the session did not
    later = (await (await client.get("/api/session/status")).json())["data"]
    assert later["elapsed_time"] == ended["elapsed_time"]
    listed = (await (await client.get("/api/sessions")).json())["data"]["sessions"]
    assert [s["folder"] for s in listed] == ["short night"]  # resumable: stopped before its frames
    assert (await client.delete("/api/captures/short night")).status == 200
    response = await client.post("/api/session/resume", json={"name": "short night"})
    body = await response.json()
    assert (response.status, body["code"]) == (409, "SESSION_START_FAILED")
    assert body["error"] == "session 'short night' cannot be resumed: its folder was deleted"
    for outside in ("../" + config.captures.parent.name, "../no such folder"):  # one there, one not: alike
        refused = await client.post("/api/session/resume", json={"name": outside})
        assert (await refused.json())["error"] == f"no interrupted session {outside!r} to resume"
    odd = await client.post("/api/session/resume", json={"name": 5})
    assert (odd.status, (await odd.json())["code"]) == (400, "VALIDATION_ERROR")


async def test_a_session_that_will_not_fit_is_refused(make_client, config):
    client = await make_client(min_free_mb=10**9)  # a reserve no disk has
    response = await client.post("/api/session/start", json={"name": "big", "total_images": 10})
    assert response.status == 409
    payload = await response.json()
    assert payload["code"] == "INSUFFICIENT_SPACE" and "MB" in payload["error"]
    assert not (config.captures / "big").exists()


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "usb", "2m") as disk:
        yield disk


async def test_free_space_falling_below_the_floor_ends_the_session_with_an_error(make_client, small_disk):
    client = await make_client(captures=small_disk / "captures", min_free_mb=1)
    await set_exposure(client, 0.05)
    assert (await client.post("/api/camera/capture")).status == 200  # teaches the size of a frame
    await start(client, name="filling", total_images=5, total_time_hours=2.0 / 3600)  # every 0.4 s
    folder = small_disk / "captures" / "filling"
    await wait_until(lambda: len(images(folder)) >= 1)
    fill(small_disk, leave=512 * 1024)
    status = await finished(client)
    assert status["status"] == "error" and "below the floor" in status["error"]
    meta = metadata(folder)
    assert meta["status"] == "error" and [f["file"] for f in meta["frames"]] == images(folder)
    await wait_until(lambda: client.app[MEASURER].idle)  # its sidecar rewrites are done
    assert hidden(small_disk) == []


async def test_the_space_a_session_needs_is_reckoned_in_its_own_file_format(make_client, small_disk):
    client = await make_client(captures=small_disk / "captures", min_free_mb=0)
    await set_exposure(client, 0.05)
    assert (await client.post("/api/camera/capture")).status == 200  # a JPEG: the camera's format
    fits = await client.post("/api/session/start", json={"name": "fits", "total_images": 2, "file_format": "fits"})
    body = await fits.json()
    assert (fits.status, body["code"]) == (409, "INSUFFICIENT_SPACE"), body  # 2 x 3 MB on a 2 MB disk
    assert client.app[CONTROL].arbiter.holder is None
    jpeg = await client.post("/api/session/start", json={"name": "jpeg", "total_images": 2})
    assert jpeg.status == 200, await jpeg.json()  # the same count of JPEG frames fits
    await finished(client)


async def test_a_cancelled_session_task_leaves_the_camera_on_its_own_settings(client):
    await set_exposure(client, 30)
    await start(client, name="capped", total_images=2, frame_type="dark", use_current_settings=True)
    camera = client.app[CONTROL].worker.backend
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    assert camera.frame_type == "dark"  # the cap is on for the session's frame
    task = client.app[SESSIONS].run.task
    task.cancel()  # as a stop that waited too long does
    await asyncio.wait({task})
    await wait_until(lambda: camera.frame_type == "light")  # the preview is the sky again


async def test_a_full_disk_mid_frame_leaves_no_partial_file(make_client, small_disk):
    client = await make_client(captures=small_disk / "captures", min_free_mb=0)
    await set_exposure(client, 0.05)
    assert (await client.post("/api/camera/capture")).status == 200
    ws = await client.ws_connect("/ws")
    await start(client, name="full", total_images=5, total_time_hours=2.0 / 3600)
    folder = small_disk / "captures" / "full"
    await wait_until(lambda: len(images(folder)) >= 1)
    fill(small_disk, leave=20 * 1024)  # less than one frame
    error = (await receive_until(ws, lambda m: m.get("event") == "session_error"))[-1]
    assert "disk is full" in error["data"]["error"]
    status = await finished(client)
    assert status["status"] == "error"
    meta = metadata(folder)  # parses, and lists exactly the complete images on disk
    assert [f["file"] for f in meta["frames"]] == images(folder)
    await wait_until(lambda: client.app[MEASURER].idle)  # its sidecar rewrites are done
    assert hidden(small_disk) == []
    for name in images(folder):
        assert (folder / name).read_bytes()[-2:] == b"\xff\xd9"  # every image is whole
    await ws.close()


async def test_a_frame_that_does_not_fit_never_shows_and_takes_no_number(make_client, small_disk):
    client = await make_client(captures=small_disk / "captures", min_free_mb=0)
    await set_exposure(client, 0.05)
    first = await client.post("/api/camera/capture")
    assert first.status == 200 and (await first.json())["data"]["files"] == ["light_0001.jpg"]
    # Its JPEG would fit but not its FITS: every part is written before any name shows, so the
    # gallery never lists a JPEG that is then taken back, and the number is not used up.
    assert (await client.post("/api/camera/settings", json={"file_format": "jpeg+fits"})).status == 200
    refused = await client.post("/api/camera/capture")
    assert refused.status == 507, await refused.text()
    await wait_until(lambda: client.app[MEASURER].idle)  # its sidecar rewrites are done
    assert images(small_disk / "captures") == ["light_0001.jpg"] and hidden(small_disk) == []
    assert (await client.post("/api/camera/settings", json={"file_format": "jpeg"})).status == 200
    second = await client.post("/api/camera/capture")
    assert second.status == 200 and (await second.json())["data"]["files"] == ["light_0002.jpg"]


async def test_as_soon_as_the_status_says_a_session_ended_it_is_listed_so_and_the_next_may_start(client):
    await set_exposure(client, 30)
    await start(client, name="first", total_images=1)
    sessions = client.app[SESSIONS]
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    # The ending session's last metadata write is held up, as on a slow USB stick; its status
    # already says "stopped" meanwhile.
    held = sessions.run.writer._lock
    held.acquire()
    try:
        stopping = asyncio.create_task(client.post("/api/session/stop"))
        await wait_until(lambda: sessions.status()["status"] == "stopped")
        assert sessions.active  # still writing
        # Both requests must reach the wait for the ending session's write while it is held (else
        # they would prove nothing): counted where they start to wait.
        waiting = []
        ended = sessions._ended

        async def counted():
            waiting.append(True)
            await ended()

        sessions._ended = counted
        listing = asyncio.create_task(client.get("/api/sessions"))
        starting = asyncio.create_task(
            client.post(
                "/api/session/start",
                json={"name": "second", "total_images": 1, "use_current_settings": False, "exposure_seconds": 0.05},
            )
        )
        await wait_until(lambda: len(waiting) == 2)
        assert not listing.done() and not starting.done()  # both wait for the write, neither answers early
    finally:
        held.release()
    listed = (await (await listing).json())["data"]["sessions"]
    assert [(s["folder"], s["status"]) for s in listed] == [("first", "stopped")]
    second = await starting
    assert second.status == 200, await second.text()
    assert (await stopping).status == 200
    assert metadata(sessions.root / "first")["status"] == "stopped"


async def test_shutdown_mid_session_marks_it_interrupted_and_switches_the_coils_off(aiohttp_client, config):
    pins = SimulatedPins()
    client = await aiohttp_client(create_app(config, pins=pins))
    await set_exposure(client, 30)
    await start(client, name="night", total_images=5, enable_tracking=True)
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    await wait_until(lambda: pins.coils_on)
    await asyncio.wait_for(client.close(), 10)
    meta = metadata(config.captures / "night")
    assert meta["status"] == "interrupted" and meta["frames"] == []
    assert pins.pattern == COILS_OFF and pins.closed
    assert images(config.captures / "night") == [] and hidden(config.captures) == []


# -- crashes: a real `wanda` process, killed ---------------------------------------------------------


def wanda_process(config, tmp_path) -> Wanda:
    """A real `wanda` on the test config's folders, so that the app in the test finds what it left."""
    return Wanda(tmp_path, captures=config.captures, data_dir=config.data_dir)


async def _post(session, url, body):
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


@pytest.mark.slow
async def test_a_killed_session_is_interrupted_at_the_next_start_and_resumes(aiohttp_client, config, tmp_path):
    server = wanda_process(config, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with aiohttp.ClientSession() as session:
            await _post(session, server.url + "/api/camera/settings", {"exposure_seconds": 0.2})
            status, _ = await _post(session, server.url + "/api/session/start", {"name": "crash", "total_images": 6})
            assert status == 200
            folder = config.captures / "crash"
            await wait_until(lambda: len(images(folder)) >= 2)
    finally:
        server.kill()
    assert metadata(folder)["status"] == "running"  # what the kill left behind
    taken = images(folder)

    client = await aiohttp_client(create_app(config))
    meta = metadata(folder)
    assert meta["status"] == "interrupted" and [f["file"] for f in meta["frames"]] == taken
    listed = (await (await client.get("/api/sessions")).json())["data"]["sessions"]
    assert listed[0]["status"] == "interrupted"

    response = await client.post("/api/session/resume", json={"name": "crash"})
    assert response.status == 200, await response.json()
    status = await finished(client)
    assert status["status"] == "completed" and status["captured_images"] == 6
    meta = metadata(folder)
    assert meta["status"] == "completed" and len(meta["resumed"]) == 1
    assert [f["file"] for f in meta["frames"]] == images(folder) == [f"light_000{i}.jpg" for i in range(1, 7)]
    again = await client.post("/api/session/resume", json={})
    assert again.status == 409


@pytest.mark.slow
async def test_sigterm_mid_session_exits_cleanly_and_leaves_it_interrupted(config, tmp_path):
    server = wanda_process(config, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with aiohttp.ClientSession() as session:
            await _post(session, server.url + "/api/camera/settings", {"exposure_seconds": 30})
            await _post(
                session, server.url + "/api/session/start", {"name": "term", "total_images": 3, "enable_tracking": True}
            )

            async def capturing() -> bool:
                async with session.get(server.url + "/api/camera/status") as response:
                    return (await response.json())["data"]["capture_status"] == "Capturing"

            await wait_until(capturing)
        assert await asyncio.to_thread(server.stop) == 0  # SIGTERM
        log = server.log_text()
        assert "Traceback" not in log and "session term interrupted" in log
    finally:
        server.kill()
    meta = metadata(config.captures / "term")
    assert meta["status"] == "interrupted" and meta["frames"] == []
    assert images(config.captures / "term") == [] and hidden(config.captures) == []


# -- the session form -------------------------------------------------------------------------


async def test_the_session_form_is_remembered(client, config):
    form = (await (await client.get("/api/session/config")).json())["data"]
    assert form == {
        "name": "",
        "totalImages": 10,
        "enableTracking": False,
        "useCurrentSettings": True,
        "sessionMode": "rapid",
        "totalTimeHours": 1.0,
        "ditherEvery": 0,
        "ditherSteps": 3,
    }
    saved = {
        "name": "M42",
        "totalImages": 40,
        "enableTracking": True,
        "useCurrentSettings": True,
        "sessionMode": "timed",
        "totalTimeHours": 2.5,
        "ditherEvery": 4,
        "ditherSteps": 6,
    }
    response = await client.post("/api/session/config", json=saved)
    assert response.status == 200 and (await response.json())["data"] == saved
    assert json.loads((config.captures / "session_config.json").read_text()) == saved
    assert (await (await client.get("/api/session/config")).json())["data"] == saved


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sessionMode": "timed", "totalTimeHours": 0}, "totalTimeHours"),
        ({"sessionMode": "timed", "totalTimeHours": None}, "totalTimeHours"),
        ({"sessionMode": "slow"}, "sessionMode"),
        ({"totalImages": -1}, "totalImages"),
        ({"enableTracking": "no"}, "enableTracking"),
        ({"ditherEvery": -1}, "ditherEvery"),
        ({"ditherSteps": 0}, "ditherSteps"),
        ({"nombre": "x"}, "nombre"),
    ],
)
async def test_a_bad_session_form_is_refused(client, body, field):
    response = await client.post("/api/session/config", json=body)
    assert response.status == 400
    payload = await response.json()
    assert payload["code"] == "VALIDATION_ERROR" and payload["error"].startswith(f"{field}:")
    assert field not in payload["error"].removeprefix(f"{field}:")  # named once (not "needs totalTimeHours > 0")


async def test_half_written_files_from_a_killed_run_are_swept_at_start(aiohttp_client, config):
    folder = config.captures / "old"
    folder.mkdir(parents=True)
    (config.captures / ".light_0009.jpg.4242.1234.tmp").write_bytes(b"half")
    (folder / ".light_0003.jpg.4242.1234.tmp").write_bytes(b"half")
    (folder / ".notes").write_text("not ours: kept")
    await aiohttp_client(create_app(config))
    assert not (config.captures / ".light_0009.jpg.4242.1234.tmp").exists()
    assert not (folder / ".light_0003.jpg.4242.1234.tmp").exists()
    assert (folder / ".notes").exists()


async def test_a_session_killed_after_its_last_frame_is_completed_not_interrupted(make_client, config):
    folder = config.captures / "done"
    folder.mkdir(parents=True)
    for name in ("light_0001.jpg", "light_0002.jpg"):
        (folder / name).write_bytes(b"\xff\xd8 a frame \xff\xd9")
    (folder / "session_metadata.json").write_text(
        json.dumps(
            {
                "name": "done",
                "folder": "done",
                "status": "running",
                "total_images": 2,
                "started": "2026-11-28T01:00:00Z",
                "frames": [{"index": 1, "file": "light_0001.jpg"}, {"index": 2, "file": "light_0002.jpg"}],
                "settings": {"frame_type": "light", "file_format": "jpeg"},
                "ended": None,
            }
        )
    )
    client = await make_client()
    listed = (await (await client.get("/api/sessions")).json())["data"]["sessions"]
    assert [(s["folder"], s["status"]) for s in listed] == [("done", "completed")]
    assert metadata(folder)["status"] == "completed" and metadata(folder)["ended"]
