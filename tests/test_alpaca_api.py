"""The Alpaca API over raw HTTP: the envelope, transaction numbers, the case rules, the 400s, the
ASCOM error numbers, ImageBytes, the telescope, the password and discovery (docs/alpaca.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import threading

import numpy as np
import pytest
from astropy.io import fits
from helpers import wait_until

from wanda.alpaca.camera import CameraState, Frame, cut
from wanda.backends.sky import SimulatedSky
from wanda.keys import ALPACA, CONTROL, MOUNT, SOLVE

CAMERA = "/api/v1/camera/0"
TELESCOPE = "/api/v1/telescope/0"


async def get(client, path: str, **params) -> dict:
    response = await client.get(path, params={k: str(v) for k, v in params.items()})
    assert response.status == 200, await response.text()
    return await response.json()


async def put(client, path: str, **form) -> dict:
    response = await client.put(path, data={k: str(v) for k, v in form.items()})
    assert response.status == 200, await response.text()
    return await response.json()


def value(body: dict):
    assert body["ErrorNumber"] == 0, body
    return body["Value"]


async def connected(client, device: str = CAMERA) -> None:
    assert (await put(client, f"{device}/connect"))["ErrorNumber"] == 0


async def exposed(client, duration: float = 0.05, light: bool = True) -> None:
    """Start an exposure and wait until its image is ready."""
    assert (await put(client, f"{CAMERA}/startexposure", Duration=duration, Light=light))["ErrorNumber"] == 0
    for _ in range(400):
        if value(await get(client, f"{CAMERA}/imageready")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the image never became ready")


async def test_management_lists_the_camera_and_the_telescope_with_lasting_unique_ids(make_client):
    client = await make_client()
    assert value(await get(client, "/management/apiversions", ClientTransactionID=7)) == [1]
    description = value(await get(client, "/management/v1/description"))
    assert description["ServerName"] == "WANDA" and description["ManufacturerVersion"]
    devices = value(await get(client, "/management/v1/configureddevices"))
    assert sorted((d["DeviceType"], d["DeviceNumber"]) for d in devices) == [("Camera", 0), ("Telescope", 0)]
    ids = {d["DeviceType"]: d["UniqueID"] for d in devices}
    assert len(set(ids.values())) == 2
    again = await make_client()  # the same state directory: the same devices to a client
    assert {d["DeviceType"]: d["UniqueID"] for d in value(await get(again, "/management/v1/configureddevices"))} == ids
    page = await client.get("/setup")
    assert page.status == 200 and ids["Camera"] in await page.text()
    assert (await client.get("/setup/v1/telescope/0/setup")).status == 200


async def test_transaction_ids_are_echoed_and_the_servers_increase(client):
    first = await get(client, f"{CAMERA}/connected", ClientID=42, ClientTransactionID=1001)
    second = await get(client, f"{CAMERA}/connected", ClientTransactionID=1002)
    assert (first["ClientTransactionID"], second["ClientTransactionID"]) == (1001, 1002)
    assert second["ServerTransactionID"] > first["ServerTransactionID"] > 0
    assert first["ErrorNumber"] == 0 and first["ErrorMessage"] == "" and first["Value"] is False
    assert (await get(client, f"{CAMERA}/connected"))["ClientTransactionID"] == 0  # none given
    ack = await put(client, f"{CAMERA}/connected", Connected="True", ClientTransactionID=77)
    assert ack["ClientTransactionID"] == 77 and "Value" not in ack  # a PUT has no value


async def test_get_parameters_match_in_any_case_and_put_fields_exactly(client):
    assert (await get(client, f"{CAMERA}/connected", clienttransactionid=5))["ClientTransactionID"] == 5
    assert (await get(client, f"{CAMERA}/connected", CLIENTTRANSACTIONID=6))["ClientTransactionID"] == 6
    wrong = await client.put(f"{CAMERA}/connected", data={"connected": "true"})
    assert wrong.status == 400 and "spelt Connected" in await wrong.text()
    # A transaction number in the wrong case is not trusted: it reads as absent.
    ack = await put(client, f"{CAMERA}/connected", Connected="true", clienttransactionid=9)
    assert ack["ClientTransactionID"] == 0 and value(await get(client, f"{CAMERA}/connected")) is True


@pytest.mark.parametrize(
    ("method", "path", "params", "words"),
    [
        ("GET", "/api/v1/camera/1/connected", {}, "camera 0 only"),
        ("GET", "/api/v1/focuser/0/connected", {}, "no device type"),
        ("GET", "/api/v1/camera/x/connected", {}, "camera 0 only"),
        ("GET", f"{CAMERA}/nosuchthing", {}, "not a member"),
        ("GET", "/api/v1/camera/0/Connected", {}, "lower case"),
        ("GET", f"{CAMERA}/connected", {"ClientTransactionID": "abc"}, "unsigned 32-bit"),
        ("GET", f"{CAMERA}/connected", {"ClientID": "-1"}, "unsigned 32-bit"),
        ("GET", f"{CAMERA}/connected", {"ClientTransactionID": str(2**32)}, "unsigned 32-bit"),
        ("PUT", f"{CAMERA}/connected", {"Connected": "maybe"}, "True or False"),
        ("PUT", f"{CAMERA}/connected", {}, "Connected is missing"),
        ("PUT", f"{TELESCOPE}/pulseguide", {"Direction": "east", "Duration": "100"}, "not an integer"),
        ("PUT", f"{TELESCOPE}/pulseguide", {"Direction": "2", "Duration": "1_000"}, "not an integer"),
        ("PUT", f"{TELESCOPE}/pulseguide", {"Direction": "\u0662", "Duration": "100"}, "not an integer"),
        ("GET", f"{CAMERA}/connected", {"ClientTransactionID": "x" * 5000}, "..."),
        ("GET", "/setup/v1/camera/7/setup", {}, "camera 0 only"),
    ],
)
async def test_malformed_requests_are_400_with_a_reason(client, method, path, params, words):
    await connected(client, TELESCOPE)  # a connected device's members read their parameters
    if method == "GET":
        response = await client.get(path, params=params)
    else:
        response = await client.put(path, data=params)
    assert response.status == 400
    assert words in await response.text()


@pytest.mark.parametrize(
    ("headers", "body", "words"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"}, b"Connected=true", "UTF-8"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"Connected=tr\xffue", "cannot be read"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"Connected=%ff", "cannot be read"),
        ({"Content-Type": "multipart/form-data; boundary=xx"}, b"garbage", "form"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"&".join([b"a=1"] * 100), "cannot be read"),
    ],
)
async def test_a_form_that_cannot_be_read_is_400_not_a_traceback(client, headers, body, words):
    response = await client.put(f"{CAMERA}/connected", data=body, headers=headers)
    assert response.status == 400 and words in await response.text()


async def test_a_form_that_never_arrives_is_let_go_like_any_body(make_client):
    client = await make_client(body_timeout=0.5)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"PUT /api/v1/camera/0/connected HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nC"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)  # answered, not held open
    assert b" 408 " in status_line
    writer.close()


async def test_a_put_must_be_a_form_and_a_member_its_verb(client):
    response = await client.put(f"{CAMERA}/connected", json={"Connected": True})
    assert response.status == 400 and "form" in await response.text()
    assert (await client.get(f"{CAMERA}/startexposure")).status == 405
    assert (await client.put(f"{CAMERA}/camerastate", data={})).status == 405


async def test_a_device_not_connected_answers_0x407_but_tells_who_it_is(client):
    assert (await get(client, f"{CAMERA}/camerastate"))["ErrorNumber"] == 0x407
    assert value(await get(client, f"{CAMERA}/interfaceversion")) == 4
    assert value(await get(client, f"{TELESCOPE}/name")) == "WANDA mount"
    await connected(client)
    assert value(await get(client, f"{CAMERA}/camerastate")) == CameraState.IDLE
    assert (await put(client, f"{CAMERA}/disconnect"))["ErrorNumber"] == 0
    assert value(await get(client, f"{CAMERA}/connected")) is False


async def test_the_ascom_error_numbers(client):
    await connected(client)
    await connected(client, TELESCOPE)
    not_implemented = [
        await get(client, f"{CAMERA}/cooleron"),
        await put(client, f"{CAMERA}/stopexposure"),
        await get(client, f"{CAMERA}/bayeroffsetx"),  # the simulated sky is monochrome
        await put(client, f"{TELESCOPE}/slewtocoordinates", RightAscension=5, Declination=0),
        await put(client, f"{TELESCOPE}/rightascensionrate", RightAscensionRate=0.1),
        await put(client, f"{TELESCOPE}/commandblind", Command="x", Raw="false"),
        await put(client, f"{TELESCOPE}/pulseguide", Direction=0, Duration=100),  # north: no Dec motor
    ]
    assert [b["ErrorNumber"] for b in not_implemented] == [0x400] * len(not_implemented)
    assert "declination motor" in not_implemented[-1]["ErrorMessage"]
    invalid = [
        await put(client, f"{CAMERA}/gain", Gain=5),
        await put(client, f"{CAMERA}/binx", BinX=9),
        await put(client, f"{CAMERA}/numx", NumX=0),
        await put(client, f"{CAMERA}/startexposure", Duration=-1, Light=True),
        await put(client, f"{TELESCOPE}/trackingrate", TrackingRate=2),
        await put(client, f"{TELESCOPE}/pulseguide", Direction=7, Duration=100),
    ]
    assert [b["ErrorNumber"] for b in invalid] == [0x401] * len(invalid), invalid
    not_set = [
        await get(client, f"{CAMERA}/lastexposureduration"),
        await get(client, f"{TELESCOPE}/rightascension"),  # nothing solved yet
        await get(client, f"{TELESCOPE}/sitelatitude"),  # no site configured
        await get(client, f"{TELESCOPE}/siderealtime"),
    ]
    assert [b["ErrorNumber"] for b in not_set] == [0x402] * len(not_set)
    invalid_operation = [
        await get(client, f"{CAMERA}/imagearray"),  # nothing taken yet
        await put(client, f"{TELESCOPE}/pulseguide", Direction=2, Duration=100),  # not tracking
    ]
    assert [b["ErrorNumber"] for b in invalid_operation] == [0x40B] * 2
    assert (await put(client, f"{CAMERA}/action", Action="x", Parameters=""))["ErrorNumber"] == 0x40C
    for body in not_implemented + invalid + not_set + invalid_operation:
        assert body["ErrorMessage"] and "Value" not in body


async def test_the_cameras_properties(client):
    await connected(client)
    backend = client.app[CONTROL].worker.backend
    width, height = backend.preview_size
    expected = {
        "cameraxsize": width,
        "cameraysize": height,
        "numx": width,
        "numy": height,
        "binx": 1,
        "maxbinx": 4,
        "sensortype": 0,
        "maxadu": 65535,
        "pixelsizex": backend.pixel_size_um,
        "exposuremin": backend.exposure_limits[0],
        "exposuremax": backend.exposure_limits[1],
        "gainmin": 100,
        "gainmax": 1600,
        "gain": round(client.app[CONTROL].settings.gain * 100),
        "readoutmodes": ["Full frame"],
        "ccdtemperature": 20.0,
        "canabortexposure": True,
        "canstopexposure": False,
        "imageready": False,
        "percentcompleted": 0,
    }
    assert {name: value(await get(client, f"{CAMERA}/{name}")) for name in expected} == expected
    state = {item["Name"]: item["Value"] for item in value(await get(client, f"{CAMERA}/devicestate"))}
    assert state["CameraState"] == 0 and state["ImageReady"] is False and "TimeStamp" in state


async def test_an_exposure_as_json_and_imagebytes_with_binning_and_a_subframe(client):
    await connected(client)
    await exposed(client, duration=0.2)
    assert value(await get(client, f"{CAMERA}/camerastate")) == CameraState.IDLE
    assert value(await get(client, f"{CAMERA}/percentcompleted")) == 100
    assert value(await get(client, f"{CAMERA}/lastexposureduration")) == pytest.approx(0.2)
    assert value(await get(client, f"{CAMERA}/lastexposurestarttime")).count(":") == 2
    response = await client.get(f"{CAMERA}/imagearray", params={"ClientTransactionID": "31"})
    body = json.loads(await response.read())
    assert (body["Type"], body["Rank"], body["ClientTransactionID"], body["ErrorNumber"]) == (2, 2, 31, 0)
    full = np.array(body["Value"], dtype=np.int64).T  # Value[x][y]: columns first
    width, height = client.app[CONTROL].worker.backend.preview_size
    assert full.shape == (height, width) and full.max() > 1000  # stars, not a blank frame

    response = await client.get(
        f"{CAMERA}/imagearray", params={"ClientTransactionID": "32"}, headers={"Accept": "application/imagebytes"}
    )
    assert response.content_type == "application/imagebytes"
    data = await response.read()
    header = struct.unpack("<iiIIiiiiiii", data[:44])
    assert header[:5] == (1, 0, 32, header[3], 44) and header[3] > body["ServerTransactionID"]
    assert header[5:] == (2, 8, 2, width, height, 0)  # Int32 image, UInt16 on the wire, rank 2
    pixels = np.frombuffer(data[44:], dtype="<u2").reshape(width, height).T
    np.testing.assert_array_equal(pixels, full)  # the same image both ways

    # Bin 2 and a subframe: the mean of each 2x2 block of the same place in a new frame.
    for name, number in (("BinX", 2), ("StartX", 10), ("StartY", 20), ("NumX", 100), ("NumY", 50)):
        assert (await put(client, f"{CAMERA}/{name.lower()}", **{name: number}))["ErrorNumber"] == 0
    assert value(await get(client, f"{CAMERA}/biny")) == 2  # binning is symmetric
    await exposed(client, duration=0.2)
    binned = np.array(value(await get(client, f"{CAMERA}/imagearray")), dtype=np.int64).T
    assert binned.shape == (50, 100)
    assert value(await get(client, f"{CAMERA}/imagearrayvariant")) == binned.T.tolist()
    # Too big a subframe for bin 2 is refused when the exposure starts.
    await put(client, f"{CAMERA}/numx", NumX=width)
    refused = await put(client, f"{CAMERA}/startexposure", Duration=0.1, Light=True)
    assert refused["ErrorNumber"] == 0x401 and "wider than the sensor" in refused["ErrorMessage"]


async def test_an_image_asked_for_as_imagebytes_fails_in_json(client):
    await connected(client)
    response = await client.get(f"{CAMERA}/imagearray", headers={"Accept": "application/imagebytes"})
    assert response.content_type == "application/json"  # as ASCOM's servers answer a failure
    body = await response.json()
    assert body["ErrorNumber"] == 0x40B and "start an exposure" in body["ErrorMessage"]


async def test_abort_ends_an_exposure_and_keeps_nothing(client):
    await connected(client)
    assert (await put(client, f"{CAMERA}/startexposure", Duration=30, Light=True))["ErrorNumber"] == 0
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    assert value(await get(client, f"{CAMERA}/camerastate")) == CameraState.EXPOSING
    again = await put(client, f"{CAMERA}/startexposure", Duration=1, Light=True)
    assert again["ErrorNumber"] == 0x40B and "already" in again["ErrorMessage"]
    assert (await put(client, f"{CAMERA}/abortexposure"))["ErrorNumber"] == 0
    assert value(await get(client, f"{CAMERA}/camerastate")) == CameraState.IDLE
    assert value(await get(client, f"{CAMERA}/imageready")) is False
    assert client.app[CONTROL].arbiter.holder is None  # the camera is free again
    assert (await put(client, f"{CAMERA}/abortexposure"))["ErrorNumber"] == 0  # harmless when idle


async def test_abort_before_the_camera_exposes_ends_it_at_once_and_keeps_nothing(client):
    await connected(client)
    control = client.app[CONTROL]
    # A settings change in flight holds the camera's settings (as a slow disk would): the exposure
    # waits for it, and an abort meanwhile must not wait the exposure out.
    async with control._settings_lock:
        assert (await put(client, f"{CAMERA}/startexposure", Duration=30, Light=True))["ErrorNumber"] == 0
        assert (await put(client, f"{CAMERA}/abortexposure"))["ErrorNumber"] == 0
    assert value(await get(client, f"{CAMERA}/camerastate")) == CameraState.IDLE
    assert value(await get(client, f"{CAMERA}/imageready")) is False
    assert control.arbiter.holder is None and control.exposure is None


async def test_alpaca_and_the_web_page_take_the_camera_one_at_a_time(client):
    await connected(client)
    assert (await put(client, f"{CAMERA}/startexposure", Duration=30, Light=True))["ErrorNumber"] == 0
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    refused = await client.post("/api/camera/capture", json={})
    body = await refused.json()
    assert refused.status == 409 and body["code"] == "CAPTURE_BUSY" and "an Alpaca client" in body["error"]
    cancel = await (await client.post("/api/camera/capture/cancel", json={})).json()  # the page's Cancel
    assert cancel["data"]["cancelled"] is False and "an Alpaca client has the camera" in cancel["message"]
    session = await client.post("/api/session/start", json={"name": "m42", "total_images": 2})
    assert session.status == 409 and "an Alpaca client" in (await session.json())["error"]
    status = await (await client.get("/api/camera/status")).json()
    assert status["data"]["capture_status"] == "Capturing"  # the page shows the camera exposing
    await put(client, f"{CAMERA}/abortexposure")

    session = await client.post(
        "/api/session/start",
        json={"name": "m42", "total_images": 2, "use_current_settings": False, "exposure_seconds": 5},
    )
    assert session.status == 200, await session.text()
    refused = await put(client, f"{CAMERA}/startexposure", Duration=0.1, Light=True)
    assert refused["ErrorNumber"] == 0x40B and "session 'm42'" in refused["ErrorMessage"]
    assert (await client.post("/api/session/stop", json={})).status == 200
    await wait_until(lambda: client.app[CONTROL].arbiter.holder is None)

    capture = asyncio.create_task(client.post("/api/camera/capture", json={}))
    await wait_until(lambda: client.app[CONTROL].exposure is not None)
    refused = await put(client, f"{CAMERA}/startexposure", Duration=0.1, Light=True)
    assert refused["ErrorNumber"] == 0x40B and "a capture" in refused["ErrorMessage"]
    assert (await capture).status == 200


async def test_a_dark_is_taken_capped_at_the_clients_gain_and_the_page_keeps_its_camera(make_client, config):
    client = await make_client(alpaca_save=True)
    await connected(client)
    control = client.app[CONTROL]
    page = (control.settings.exposure_seconds, control.settings.gain)
    await put(client, f"{CAMERA}/gain", Gain=1600)
    await exposed(client, duration=0.5, light=True)
    light = np.array(value(await get(client, f"{CAMERA}/imagearray")))
    await exposed(client, duration=0.5, light=False)
    dark = np.array(value(await get(client, f"{CAMERA}/imagearray")))
    bright = np.median(light) + 20000
    assert (light > bright).sum() > 10 * max(1, (dark > bright).sum())  # stars; capped, a few hot pixels
    saved = config.captures / "alpaca"
    await wait_until(lambda: (saved / "dark_0001.fits").exists())
    for name, frame_type in (("light_0001.fits", "light"), ("dark_0001.fits", "dark")):
        header = fits.getheader(saved / name)
        assert (header["GAIN"], header["EXPTIME"], header["IMAGETYP"].lower()) == (16.0, 0.5, f"{frame_type} frame")
    backend = control.worker.backend  # the page's live view is back on its own settings
    assert (backend.frame_type, backend.exposure_s, backend.gain) == ("light", *page)


def test_binning_is_the_mean_of_each_block_of_the_subframe():
    full = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    part = cut(full, Frame(binning=2, start_x=1, start_y=2, num_x=3, num_y=2))
    expected = full[4:8, 2:8].reshape(2, 2, 3, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(part, np.rint(expected).astype(np.uint16))
    np.testing.assert_array_equal(cut(full, Frame(1, 3, 1, 5, 4)), full[1:5, 3:8])


class LateSky(SimulatedSky):
    """A camera whose frame is already read out when a cancel comes: the still returns whole."""

    def __init__(self):
        super().__init__(seed=3)
        self.release = threading.Event()
        self.cancel_seen: threading.Event | None = None

    def capture_still(self, exposure_s, gain, cancel, skip_frames=0, *, raw=False, dng=False):
        self.cancel_seen = cancel
        self.release.wait(30)
        return super().capture_still(0.001, gain, threading.Event(), raw=raw)


async def test_an_abort_as_the_still_comes_back_keeps_nothing(make_client):
    sky = LateSky()
    client = await make_client(camera=sky)
    await connected(client)
    assert (await put(client, f"{CAMERA}/startexposure", Duration=1, Light=True))["ErrorNumber"] == 0
    await wait_until(lambda: sky.cancel_seen is not None)
    abort = asyncio.create_task(put(client, f"{CAMERA}/abortexposure"))
    await wait_until(lambda: sky.cancel_seen.is_set())  # asked to stop: too late, the frame is read
    sky.release.set()
    assert (await abort)["ErrorNumber"] == 0
    assert value(await get(client, f"{CAMERA}/imageready")) is False
    assert value(await get(client, f"{CAMERA}/camerastate")) == CameraState.IDLE


async def test_the_telescope_tracks_guides_and_knows_where_it_points(make_client):
    client = await make_client(latitude=52.0, longitude=5.0)
    await connected(client, TELESCOPE)
    for name, expected in (("canpulseguide", True), ("canslew", False), ("cansync", False), ("canpark", False)):
        assert value(await get(client, f"{TELESCOPE}/{name}")) is expected
    assert value(await get(client, f"{TELESCOPE}/trackingrates")) == [0]
    assert value(await get(client, f"{TELESCOPE}/canmoveaxis", Axis=0)) is False
    assert value(await get(client, f"{TELESCOPE}/sitelatitude")) == 52.0
    assert 0 <= value(await get(client, f"{TELESCOPE}/siderealtime")) < 24

    assert value(await get(client, f"{TELESCOPE}/tracking")) is False
    await put(client, f"{TELESCOPE}/tracking", Tracking=True)
    assert client.app[MOUNT].tracking and value(await get(client, f"{TELESCOPE}/tracking")) is True
    mount = await (await client.get("/api/mount/status")).json()
    assert mount["data"]["tracking"] is True  # the page sees what the client did

    stepper = client.app[MOUNT].mount
    telescope = client.app[ALPACA].devices["telescope"]

    async def pulse(direction: int, milliseconds: int) -> float:
        """Right after a step (the next is seconds away), a pulse: how far it moved the next step."""
        steps = stepper.steps
        await wait_until(lambda: stepper.steps > steps, attempts=400)
        due = stepper.next_due()
        assert (await put(client, f"{TELESCOPE}/pulseguide", Direction=direction, Duration=milliseconds))[
            "ErrorNumber"
        ] == 0
        assert value(await get(client, f"{TELESCOPE}/ispulseguiding")) is True
        return stepper.next_due() - due

    assert await pulse(3, 2000) == pytest.approx(-1.0)  # west, 2 s at 0.5 x sidereal: a second early
    busy = await put(client, f"{TELESCOPE}/pulseguide", Direction=2, Duration=2000)
    assert busy["ErrorNumber"] == 0x40B and "under way" in busy["ErrorMessage"]  # one pulse at a time
    await wait_until(lambda: not telescope.pulse_guiding, attempts=400)
    assert await pulse(2, 3000) == pytest.approx(1.5)  # east: later
    await wait_until(lambda: not telescope.pulse_guiding, attempts=400)
    assert await pulse(3, 10_000) == pytest.approx(0.1 - 3.523, abs=0.01)  # cut short: 0.1 s after the last step
    too_long = await put(client, f"{TELESCOPE}/pulseguide", Direction=2, Duration=10_001)
    assert too_long["ErrorNumber"] == 0x401

    # Where it points: the newest solution while it holds (solved while the mount tracks).
    solve = client.app[SOLVE]
    assert (await get(client, f"{TELESCOPE}/rightascension"))["ErrorNumber"] == 0x402
    response = await client.post("/api/solve", json={})
    assert response.status == 200, await response.text()
    solution, _ = solve.solution
    assert value(await get(client, f"{TELESCOPE}/rightascension")) == pytest.approx(solution.ra / 15)
    assert value(await get(client, f"{TELESCOPE}/declination")) == pytest.approx(solution.dec)
    assert value(await get(client, f"{TELESCOPE}/equatorialsystem")) == 2  # J2000
    state = {item["Name"]: item["Value"] for item in value(await get(client, f"{TELESCOPE}/devicestate"))}
    assert state["RightAscension"] == pytest.approx(solution.ra / 15) and state["Tracking"] is True
    await put(client, f"{TELESCOPE}/tracking", Tracking=False)
    assert not client.app[MOUNT].tracking
    stale = await get(client, f"{TELESCOPE}/rightascension")  # the sky drifts on: no stale place
    assert stale["ErrorNumber"] == 0x402 and "while the mount tracks" in stale["ErrorMessage"]

    # Tracking on keeps the speed and direction the page set (a southern site turns the other way),
    # and a mount already tracking is left as it is.
    await client.post("/api/mount/tracking", json={"action": "start", "speed": 2.0, "direction": "ccw"})
    since = client.app[MOUNT].tracking_since
    await put(client, f"{TELESCOPE}/tracking", Tracking=True)
    assert client.app[MOUNT].tracking_since == since
    await client.post("/api/mount/tracking", json={"action": "stop"})
    await put(client, f"{TELESCOPE}/tracking", Tracking=True)
    mount = (await (await client.get("/api/mount/status")).json())["data"]
    assert (mount["tracking"], mount["speed"], mount["direction"]) == (True, 2.0, False)
    await put(client, f"{TELESCOPE}/tracking", Tracking=False)


async def test_with_a_password_alpaca_asks_for_basic_and_discovery_still_answers(make_client):
    client = await make_client(password="dark skies")
    refused = await client.get(f"{CAMERA}/connected")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    basic = base64.b64encode(b"nina:dark skies").decode()
    answer = await client.get(f"{CAMERA}/connected", headers={"Authorization": f"Basic {basic}"})
    assert answer.status == 200 and (await answer.json())["Value"] is False
    wrong = base64.b64encode(b"nina:light skies").decode()
    assert (await client.get(f"{CAMERA}/connected", headers={"Authorization": f"Basic {wrong}"})).status == 401
    bearer = await client.get("/management/apiversions", headers={"Authorization": "Bearer dark skies"})
    assert bearer.status == 200
    listing = await client.get("/management/v1/configureddevices")
    assert listing.status == 401 and listing.headers["WWW-Authenticate"].startswith("Basic")
    connect = await client.put(
        f"{CAMERA}/connected", data={"Connected": "true"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert connect.status == 200 and (await connect.json())["ErrorNumber"] == 0
    page = await client.get("/api/camera/status")  # WANDA's own API: no Basic challenge for browsers
    assert page.status == 401 and "WWW-Authenticate" not in page.headers
    setup = await client.get("/setup", allow_redirects=False)  # a page for browsers: to the login page
    assert setup.status == 302 and setup.headers["Location"] == "/login" and "WWW-Authenticate" not in setup.headers
    assert await discover(client.app[ALPACA].discovery_port) == {"AlpacaPort": client.app[ALPACA].http_port}


async def discover(port: int, question: bytes = b"alpacadiscovery1") -> dict:
    """Ask the discovery responder on the loopback (never a broadcast) and read its answer."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        await loop.sock_sendto(sock, question, ("127.0.0.1", port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
    return json.loads(data)


async def test_discovery_answers_the_question_with_the_port_and_ignores_anything_else(make_client):
    client = await make_client(alpaca_port=11111)
    server = client.app[ALPACA]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        await loop.sock_sendto(sock, b"hello", ("127.0.0.1", server.discovery_port))
        await loop.sock_sendto(sock, b"alpacadiscovery1", ("127.0.0.1", server.discovery_port))
        answer = json.loads(await asyncio.wait_for(loop.sock_recv(sock, 1024), 10))
    assert answer == {"AlpacaPort": 11111}
    # The first datagram was no question: one answer in all.
    assert server.responder is not None and server.responder.answered == 1


async def test_discovery_can_be_switched_off(make_client):
    client = await make_client(alpaca_discovery=False)
    assert client.app[ALPACA].discovery_port is None
