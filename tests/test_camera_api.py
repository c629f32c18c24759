"""The camera's REST contract: status, settings validation, captures, cancel, the Origin rule."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import read_part, wait_until

from wanda.app import create_app
from wanda.jpeg import JpegEncoder
from wanda.keys import CONTROL, MEASURER

OLD_STATUS_FIELDS = {
    "mode",
    "capture_status",
    "recording",
    "iso",
    "gain",
    "exposure_seconds",
    "night_vision_mode",
    "night_vision_intensity",
    "save_raw",
    "skip_frames",
}


async def test_status_has_the_original_fields_and_the_new_ones(client):
    body = await (await client.get("/api/camera/status")).json()
    assert body["success"] is True and body["message"]
    data = body["data"]
    assert OLD_STATUS_FIELDS <= set(data)
    assert data["file_format"] == "jpeg" and data["frame_type"] == "light"
    assert data["iso"] == pytest.approx(data["gain"] * 100)
    assert data["capture_status"] == "Idle" and data["recording"] is False
    assert data["limits"]["exposure_seconds"] == [0.0001, 230.0]


async def test_settings_apply_and_answer_with_the_applied_values(client):
    response = await client.post(
        "/api/camera/settings",
        json={"exposure_seconds": 0.25000049, "iso": 400, "frame_type": "dark", "save_raw": True, "skip_frames": 2},
    )
    assert response.status == 200
    data = (await response.json())["data"]
    assert data["updates"] == ["exposure_seconds", "frame_type", "iso", "save_raw", "skip_frames"]
    assert data["exposure_seconds"] == 0.25  # the sensor takes whole microseconds
    assert data["iso"] == 400 and data["gain"] == 4.0
    status = (await (await client.get("/api/camera/status")).json())["data"]
    assert (status["exposure_seconds"], status["frame_type"], status["save_raw"]) == (0.25, "dark", True)
    # gain directly, and iso with a gain that agrees
    data = (await (await client.post("/api/camera/settings", json={"gain": 2.5})).json())["data"]
    assert data["iso"] == 250
    response = await client.post("/api/camera/settings", json={"gain": 3, "iso": 300})
    assert response.status == 200


@pytest.mark.parametrize("body", ["[1, 2]", '"exposure"', "5", "null", "{not json", ""])
async def test_a_body_that_is_not_a_json_object_is_invalid_request(client, body):
    response = await client.post("/api/camera/settings", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    payload = await response.json()
    assert payload["success"] is False and payload["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"exposure_seconds": "1"}, "exposure_seconds", "must be a number of seconds (0.0001..230 s)"),
        ({"exposure_seconds": True}, "exposure_seconds", "must be a number"),
        ({"exposure_seconds": 0}, "exposure_seconds", "must be positive, got 0 s"),
        ({"exposure_seconds": -2}, "exposure_seconds", "must be positive, got -2 s"),
        ({"exposure_seconds": 500}, "exposure_seconds", "limits 0.0001..230 s"),
        ({"exposure_seconds": 0.00001}, "exposure_seconds", "limits"),
        ({"iso": 5000}, "iso", "limits 100..1600"),
        ({"iso": 0}, "iso", "limits 100..1600"),
        ({"iso": -400}, "iso", "limits 100..1600"),
        ({"iso": "fast"}, "iso", "a number from 100 to 1600"),
        ({"gain": 0.5}, "gain", "limits 1..16"),
        ({"gain": 2, "iso": 800}, "iso", "800 disagrees with gain 2"),
        ({"night_vision_mode": 1}, "night_vision_mode", "true or false"),
        ({"night_vision_intensity": 81}, "night_vision_intensity", "limits 1..80"),
        ({"night_vision_intensity": 0}, "night_vision_intensity", "limits 1..80"),
        ({"save_raw": "yes"}, "save_raw", "true or false"),
        ({"skip_frames": 1.5}, "skip_frames", "whole number"),
        ({"skip_frames": -1}, "skip_frames", "limits"),
        ({"file_format": "png"}, "file_format", "must be one of jpeg"),
        ({"frame_type": "science"}, "frame_type", "light, dark, flat, bias"),
        ({"shutter": 1}, "shutter", "unknown field"),
    ],
)
async def test_a_bad_value_is_a_validation_error_naming_the_field(client, body, field, words):
    before = (await (await client.get("/api/camera/status")).json())["data"]
    response = await client.post("/api/camera/settings", json=body)
    assert response.status == 400
    payload = await response.json()
    assert payload["code"] == "VALIDATION_ERROR"
    assert payload["error"].startswith(f"{field}:") and words in payload["error"]
    # The field once: the page shows the message beside its control ("iso: iso 800 ..." was seen).
    assert not payload["error"].removeprefix(f"{field}:").lstrip().startswith(field)
    after = (await (await client.get("/api/camera/status")).json())["data"]
    assert after == before  # nothing was applied


async def test_a_negative_exposure_is_told_to_be_positive(client):
    """Typing -1 as the exposure: the answer says it must be positive, not that -1 is outside the
    limits (true, but no help to whoever typed the sign by mistake)."""
    response = await client.post("/api/camera/settings", json={"exposure_seconds": -1})
    payload = await response.json()
    assert response.status == 400 and payload["code"] == "VALIDATION_ERROR"
    assert payload["error"] == "exposure_seconds: must be positive, got -1 s (the limits are 0.0001..230 s)"


async def test_settings_survive_a_restart(aiohttp_client, config):
    first = await aiohttp_client(create_app(config))
    await first.post("/api/camera/settings", json={"exposure_seconds": 0.5, "iso": 1600, "frame_type": "flat"})
    await first.close()
    second = await aiohttp_client(create_app(config))
    status = (await (await second.get("/api/camera/status")).json())["data"]
    assert (status["exposure_seconds"], status["iso"], status["frame_type"]) == (0.5, 1600, "flat")
    assert second.app[CONTROL].worker.backend.exposure_s == 0.5  # applied to the camera, not only shown
    state_files = sorted(p.name for p in config.data_dir.iterdir())
    assert state_files == ["alpaca.json", "camera_settings.json"]  # no temporary left behind
    json.loads((config.data_dir / "camera_settings.json").read_text())


async def test_a_damaged_state_file_falls_back_to_defaults(aiohttp_client, config):
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "camera_settings.json").write_text('{"exposure_seconds": "half"')
    client = await aiohttp_client(create_app(config))
    status = (await (await client.get("/api/camera/status")).json())["data"]
    assert status["exposure_seconds"] == pytest.approx(1 / 30, abs=1e-6)


async def _snapshot_mean(client) -> float:
    response = await client.get("/snapshot")
    return float(JpegEncoder().decode(await response.read()).mean())


async def test_night_vision_brightens_the_preview_only(client):
    dark = await _snapshot_mean(client)
    await client.post("/api/camera/settings", json={"night_vision_mode": True, "night_vision_intensity": 8})
    bright = await _snapshot_mean(client)
    assert bright > 4 * dark
    capture = (await (await client.post("/api/camera/capture")).json())["data"]
    still = JpegEncoder().decode(await (await client.get(capture["url"])).read())
    assert still.mean() < 2 * dark  # the still is the sensor's, not the boosted preview


async def test_a_capture_returns_its_file_and_url_and_numbering_continues(make_client, aiohttp_client, config):
    client = await make_client()
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})
    first = (await (await client.post("/api/camera/capture")).json())["data"]
    assert first["file"] == "light_0001.jpg" and first["url"] == "/api/captures/light_0001.jpg"
    assert first["capture_status"] == "Idle" and first["recording"] is False
    image = await client.get(first["url"])
    assert image.status == 200 and image.content_type == "image/jpeg"
    assert JpegEncoder().decode(await image.read()).shape == (1080, 1440, 3)
    sidecar = json.loads((config.captures / "light_0001.json").read_text())
    assert sidecar["exposure_seconds"] == 0.05 and sidecar["gain"] == 8.0
    assert sidecar["frame_type"] == "light" and sidecar["date_obs"].endswith("Z")
    second = (await (await client.post("/api/camera/capture")).json())["data"]
    assert second["file"] == "light_0002.jpg"
    await wait_until(lambda: client.app[MEASURER].idle)  # its sidecar rewrites are done
    await client.close()

    # After a restart numbering goes on from the highest number on disk; nothing is overwritten.
    (config.captures / "light_0007.jpg").write_bytes(b"someone else's")
    client = await aiohttp_client(create_app(config))
    third = (await (await client.post("/api/camera/capture")).json())["data"]
    assert third["file"] == "light_0008.jpg"
    assert (config.captures / "light_0007.jpg").read_bytes() == b"someone else's"
    await wait_until(lambda: client.app[MEASURER].idle)  # the measurement rewrites the sidecar
    assert not [p for p in config.captures.iterdir() if p.name.startswith(".")]


async def test_a_capture_takes_its_time_off_the_loop_and_streams_resume(client):
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.8})
    stream = await client.get("/stream")
    before, _ = await read_part(stream.content)
    capture = asyncio.create_task(client.post("/api/camera/capture"))
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    # While the sensor exposes, the API answers and says so.
    status = (await (await client.get("/api/camera/status")).json())["data"]
    assert status["capture_status"] == "Capturing" and status["recording"] is True and status["mode"] == "capture"
    assert 0 <= status["exposure"]["elapsed"] <= 0.8
    state = (await (await client.get("/state")).json())["data"]
    assert state["exposing"]["exposure_seconds"] == 0.8
    health = await client.get("/api/health")
    assert health.status == 200
    assert not capture.done()
    response = await capture
    assert response.status == 200
    after, _ = await read_part(stream.content)  # the same stream goes on after the still
    assert int(after["x-sequence"]) > int(before["x-sequence"])
    assert (await (await client.get("/state")).json())["data"]["exposing"] is None


async def test_a_second_capture_while_one_runs_is_409_capture_busy(client):
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.6})
    first = asyncio.create_task(client.post("/api/camera/capture"))
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    second = await client.post("/api/camera/capture")
    assert second.status == 409
    assert (await second.json())["code"] == "CAPTURE_BUSY"
    settings = await client.post("/api/camera/settings", json={"iso": 100})
    assert settings.status == 409 and (await settings.json())["code"] == "CAPTURE_BUSY"
    assert (await first).status == 200


async def test_cancel_aborts_the_exposure_and_writes_nothing(client, config):
    await client.post("/api/camera/settings", json={"exposure_seconds": 30})
    capture = asyncio.create_task(client.post("/api/camera/capture"))
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    cancelled = await (await client.post("/api/camera/capture/cancel")).json()
    assert cancelled["data"] == {"cancelled": True}
    response = await asyncio.wait_for(capture, 10)  # not 30 s: the exposure stopped
    assert response.status == 409
    assert (await response.json())["code"] == "CAPTURE_CANCELLED"
    assert not config.captures.exists() or not list(config.captures.iterdir())
    again = await (await client.post("/api/camera/capture/cancel")).json()
    assert again["data"] == {"cancelled": False}


async def test_capture_takes_no_parameters(client):
    response = await client.post("/api/camera/capture", json={"exposure_seconds": 5})
    assert response.status == 400 and (await response.json())["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [
        (None, (), 200),  # scripts and curl send no Origin
        ("http://evil.example", (), 403),
        ("null", (), 403),
        ("http://evil.example", ("http://evil.example",), 200),
        ("SAME", (), 200),
        ("https://SAME", (), 403),  # another scheme is another origin
    ],
)
async def test_state_changes_from_another_site_are_refused(make_client, origin, allowed, status):
    client = await make_client(allowed_origins=allowed)
    host = f"{client.host}:{client.port}"
    headers = {}
    if origin is not None:
        headers["Origin"] = f"http://{host}" if origin == "SAME" else origin.replace("SAME", host)
    response = await client.post("/api/camera/settings", json={"iso": 200}, headers=headers)
    assert response.status == status
    if status == 403:
        assert (await response.json())["code"] == "FORBIDDEN_ORIGIN"
        gain = (await (await client.get("/api/camera/status")).json())["data"]["gain"]
        assert gain == 8.0  # not applied
    # Reading is allowed from anywhere (the page may embed the stream).
    assert (await client.get("/api/camera/status", headers=headers)).status == 200


async def test_capture_paths_stay_inside_the_capture_directory(client, config, tmp_path):
    (tmp_path / "secret.txt").write_text("not for the web")
    config.captures.mkdir(parents=True, exist_ok=True)
    (config.captures / "link").symlink_to(tmp_path / "secret.txt")
    for path in ("../secret.txt", "%2e%2e/secret.txt", "..%2fsecret.txt", "link", "..\\secret.txt", "/etc/passwd"):
        response = await client.get(f"/api/captures/{path}")
        assert response.status in (400, 404), path
        assert (await response.json())["success"] is False


async def test_exposure_state_is_reported_in_state(client):
    state = (await (await client.get("/state")).json())["data"]
    assert state["exposing"] is None


async def test_numbers_too_large_for_a_float_are_a_validation_error(client):
    response = await client.post(
        "/api/camera/settings",
        data='{"exposure_seconds": 1' + "0" * 400 + "}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "VALIDATION_ERROR"


async def test_a_page_reached_through_a_foreign_name_is_refused(client):
    # DNS rebinding: evil.example re-pointed at this machine makes the page "same origin".
    headers = {"Origin": f"http://evil.example:{client.port}", "Host": f"evil.example:{client.port}"}
    response = await client.post("/api/camera/settings", json={"iso": 200}, headers=headers)
    assert response.status == 403 and (await response.json())["code"] == "FORBIDDEN_ORIGIN"
    local = {"Origin": f"http://localhost:{client.port}", "Host": f"localhost:{client.port}"}
    assert (await client.post("/api/camera/settings", json={"iso": 200}, headers=local)).status == 200


async def test_waiting_viewers_leave_no_waiters_behind(aiohttp_client, config, monkeypatch):
    import dataclasses

    from test_stream import _SilentCamera

    from wanda.handlers import stream
    from wanda.keys import HUB

    # A viewer with no frame coming re-waits every DISCONNECT_POLL_S (to see whether its client
    # left); made short here, so that many re-waits happen at once.
    monkeypatch.setattr(stream, "DISCONNECT_POLL_S", 0.01)
    client = await aiohttp_client(create_app(dataclasses.replace(config), camera=_SilentCamera()))
    hub = client.app[HUB]
    waits = []
    next_after = hub.next_after

    def counted(seq):
        waits.append(seq)
        return next_after(seq)

    hub.next_after = counted  # the viewers' handlers call it
    responses = [await client.get("/stream") for _ in range(3)]
    await wait_until(lambda: len(waits) >= 3 * 10)  # each viewer has re-waited many times
    assert hub.waiting <= 3  # one waiter a viewer at most: the timed-out ones were removed
    for response in responses:
        response.close()


def test_a_job_for_a_camera_that_is_not_running_fails_at_once():
    from wanda.backends import CameraUnavailable
    from wanda.backends.sky import SimulatedSky
    from wanda.camera import CameraWorker
    from wanda.frames import FrameHub

    worker = CameraWorker(SimulatedSky(), None, FrameHub(), asyncio.new_event_loop())
    with pytest.raises(CameraUnavailable):
        worker.submit(lambda backend: None).result(timeout=1)


async def test_a_camera_that_stopped_is_a_clear_503_not_an_internal_error(client):
    from wanda.keys import CAMERA

    await asyncio.to_thread(client.app[CAMERA].stop)
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.5})
    body = await response.json()
    assert response.status == 503 and body["code"] == "CAMERA_UNAVAILABLE", body
    assert "not running" in body["error"]


async def test_the_frames_left_estimate_averages_the_stills_saved_in_the_current_format(client, config):
    async def estimate() -> int:
        return (await (await client.get("/api/storage")).json())["data"]["estimated_frame_bytes"]

    async def capture_size() -> int:
        saved = (await (await client.post("/api/camera/capture")).json())["data"]
        return sum((config.captures / name).stat().st_size for name in saved["files"])

    await client.post("/api/camera/settings", json={"exposure_seconds": 0.001, "file_format": "jpeg"})
    faint = await capture_size()
    await client.post("/api/camera/settings", json={"exposure_seconds": 2.0})
    bright = await capture_size()
    assert faint != bright
    assert await estimate() == (faint + bright) // 2  # the average, not the last one
    await client.post("/api/camera/settings", json={"file_format": "fits"})
    fits = await capture_size()
    assert await estimate() == fits
    await client.post("/api/camera/settings", json={"file_format": "jpeg"})
    assert await estimate() == (faint + bright) // 2  # a FITS frame did not change the JPEG figure
