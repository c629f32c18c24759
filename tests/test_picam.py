"""The picamera2 backend, with the fake `picamera2` of fake_picamera2.py installed at the library
edge (no camera is attached to these machines). Run them alone with `pytest -k picam`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import fake_picamera2
import numpy as np
import pytest
from helpers import free_port, read_part, wait_until

from wanda.app import create_app
from wanda.camera import CameraUnavailable, CaptureCancelled, create_backend, probe_picamera2
from wanda.config import Config
from wanda.jpeg import JpegEncoder
from wanda.picam import Picamera2Backend
from wanda.sky import SimulatedSky

TESTS = Path(__file__).parent


@pytest.fixture
def picamera2(monkeypatch):
    fake = fake_picamera2.install(monkeypatch)
    yield fake
    for camera in fake.instances:
        if not camera.closed:
            camera.close()


@pytest.fixture
def backend(picamera2):
    backend = Picamera2Backend(colour_gains=(2.1, 1.8))
    backend.open()
    yield backend
    backend.close()


def the_camera(picamera2) -> fake_picamera2.Picamera2:
    (camera,) = picamera2.instances
    return camera


def still_frames(camera) -> list[dict]:
    return [controls for use_case, controls in camera.control_log if use_case == "still"]


def in_lines(seconds: float) -> float:
    """An exposure as the sensor applies it: in whole lines."""
    return round(seconds * 1e6 / fake_picamera2.LINE_US) * fake_picamera2.LINE_US / 1e6


def is_blue(jpeg: bytes) -> bool:
    pixels = JpegEncoder().decode(jpeg)  # RGB
    return pixels[..., 2].mean() > 150 and pixels[..., 0].mean() < 50


# -- choosing the backend ----------------------------------------------------------------------


def test_picam_auto_chooses_picamera2_when_it_lists_a_camera(picamera2, caplog):
    caplog.set_level("INFO")
    backend = create_backend(Config(camera="auto"))
    assert isinstance(backend, Picamera2Backend)
    assert "picamera2 lists 1 camera(s): imx477" in caplog.text


def test_picam_auto_falls_back_to_the_sky_and_says_why(picamera2, caplog):
    caplog.set_level("INFO")
    picamera2.cameras = []
    backend = create_backend(Config(camera="auto"))
    assert isinstance(backend, SimulatedSky)
    assert "simulated sky, because picamera2 lists no camera" in caplog.text


def test_picam_requested_without_a_camera_is_a_clear_error(picamera2):
    picamera2.cameras = []
    with pytest.raises(CameraUnavailable, match="picamera2 lists no camera.*ribbon cable and dtoverlay"):
        create_backend(Config(camera="picamera2"))


def test_picam_command_without_a_camera_exits_with_one_line(tmp_path):
    # The fake as the `picamera2` package of a separate `wanda` process, with no camera listed.
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("from fake_picamera2 import Picamera2\nPicamera2.cameras = []\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS)])}
    result = subprocess.run(
        [sys.executable, "-m", "wanda", "--camera", "picamera2", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "wanda: error: --camera picamera2: picamera2 lists no camera: check the ribbon cable and "
        "dtoverlay=imx477 in /boot/firmware/config.txt, then reboot"
    )


# -- preview -----------------------------------------------------------------------------------


def test_picam_preview_runs_with_astro_controls_and_gives_bgr_frames(picamera2, backend):
    camera = the_camera(picamera2)
    preview = camera.configurations[-1]
    assert preview["use_case"] == "preview" and preview["main"] == {"size": (1440, 1080), "format": "RGB888"}
    assert backend.exposure_limits == (114e-6, 694422939e-6)
    backend.set_controls(exposure_s=0.05, gain=100.0)
    assert camera.controls["AnalogueGain"] == 22.2608695  # clamped to what the sensor reports
    assert camera.controls["FrameDurationLimits"] == (50000, 50000)  # room for the exposure
    assert camera.controls["AeEnable"] is False and camera.controls["AwbEnable"] is False
    assert camera.controls["ColourGains"] == (2.1, 1.8) and camera.controls["NoiseReductionMode"] == 0
    for _ in range(3):  # the first frame may have started with the old controls
        frame = backend.capture_preview(threading.Event(), 30)
    assert frame.pixel_format == "BGR" and frame.pixels.shape == (1080, 1440, 3)
    assert frame.pixels[..., 0].mean() == fake_picamera2.PREVIEW_BLUE  # B first, as picamera2 gives it
    assert frame.exposure_s == in_lines(0.05) != 0.05  # read back from the metadata
    assert not camera.leaked()


def test_picam_preview_wait_returns_at_once_when_the_worker_is_woken(picamera2, backend):
    camera = the_camera(picamera2)
    backend.capture_preview(threading.Event(), 30)
    backend.set_controls(exposure_s=20.0)  # the next frame takes 20 s
    time.sleep(0.1)
    backend.capture_preview(threading.Event(), 30)  # the last short one, kept by picamera2
    wake = threading.Event()
    threading.Timer(0.2, wake.set).start()
    started = time.monotonic()
    assert backend.capture_preview(wake, 30) is None
    assert time.monotonic() - started < 5  # not the 20 s exposure
    assert not camera.leaked() and not camera._jobs  # the pending job was taken back


async def test_picam_frames_reach_a_viewer_through_the_app(picamera2, aiohttp_client, config):
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    response = await client.get("/stream")
    _, jpeg = await read_part(response.content)
    assert is_blue(jpeg)  # decoded as BGR: a red frame would mean the byte order was missed
    assert (await (await client.get("/state")).json())["data"]["backend"] == "picamera2"


# -- stills ------------------------------------------------------------------------------------


def test_picam_still_is_full_size_with_astro_controls_and_the_preview_comes_back(picamera2, backend):
    camera = the_camera(picamera2)
    backend.set_controls(exposure_s=0.04, gain=2.0)
    image = backend.capture_still(0.3, 4.0, threading.Event())
    still = camera.configurations[-2]
    assert still["use_case"] == "still" and still["main"]["size"] == (4056, 3040) and still["raw"] is None
    (controls,) = still_frames(camera)  # what the sensor ran the still with
    assert controls["AeEnable"] is False and controls["AwbEnable"] is False
    assert controls["ColourGains"] == (2.1, 1.8) and controls["NoiseReductionMode"] == 0
    assert controls["ExposureTime"] == 300000 and controls["FrameDurationLimits"][1] >= 300000
    assert image.pixels.shape == (3040, 4056, 3) and image.pixel_format == "BGR"
    assert (image.exposure_s, round(image.gain, 3)) == (in_lines(0.3), 4.0)
    assert image.metadata["SensorTemperature"] == 31.0 and image.metadata["requested"]["exposure_seconds"] == 0.3
    # Back in the preview, with the preview's own controls (not the still's).
    assert camera.configurations[-1]["use_case"] == "preview" and camera.started
    assert camera.controls["ExposureTime"] == 40000
    frame = backend.capture_preview(threading.Event(), 30)
    assert frame.pixels.shape == (1080, 1440, 3)
    assert not camera.leaked()


def test_picam_still_without_astro_controls_would_be_capped(picamera2):
    """The trap the astro controls avoid, as the fake models libcamera: with auto exposure on the
    sensor runs its own 33 ms, whatever the request asked."""
    camera = picamera2(0)
    camera.configure(camera.create_still_configuration(controls={"ExposureTime": 300000}))
    camera.start()
    request = camera.capture_request()
    assert request.get_metadata()["ExposureTime"] == fake_picamera2.AUTO_EXPOSURE_US
    request.release()


def test_picam_still_clamps_exposure_and_gain_to_camera_controls(picamera2, monkeypatch):
    limits = {**fake_picamera2.imx477_controls(), "ExposureTime": (114, 200000, 20000)}  # 0.2 s at most
    monkeypatch.setattr(fake_picamera2, "imx477_controls", lambda: limits)
    backend = Picamera2Backend()
    backend.open()
    image = backend.capture_still(5.0, 80.0, threading.Event())
    backend.close()
    (controls,) = still_frames(the_camera(picamera2))
    assert controls["ExposureTime"] == 200000 and controls["AnalogueGain"] == 22.2608695
    assert image.exposure_s == in_lines(0.2)


def test_picam_applied_exposure_is_recorded_and_a_mismatch_logged(picamera2, backend, caplog):
    camera = the_camera(picamera2)
    camera.applied_exposure_us = 150000  # the sensor does something else than asked
    image = backend.capture_still(0.3, 2.0, threading.Event())
    assert image.exposure_s == 0.15
    assert "applied exposure 0.15s instead of the requested 0.3s" in caplog.text
    caplog.clear()
    camera.applied_exposure_us = None
    backend.capture_still(0.3, 2.0, threading.Event())
    assert "instead of the requested" not in caplog.text  # line rounding is no mismatch


def test_picam_preview_comes_back_after_a_failed_still(picamera2, backend):
    camera = the_camera(picamera2)
    camera.still_error = RuntimeError("Failed to start camera: Device or resource busy")
    with pytest.raises(RuntimeError, match="Device or resource busy"):
        backend.capture_still(0.2, 2.0, threading.Event())
    assert camera.configurations[-1]["use_case"] == "preview" and camera.started
    frame = backend.capture_preview(threading.Event(), 30)
    assert frame.pixels.shape == (1080, 1440, 3)
    assert not camera.leaked()


def test_picam_long_exposure_is_cancelled_and_the_preview_comes_back(picamera2, backend):
    camera = the_camera(picamera2)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(CaptureCancelled):
        backend.capture_still(60.0, 2.0, cancel)
    assert time.monotonic() - started < 5
    assert [c["use_case"] for c in camera.configurations[-2:]] == ["still", "preview"]
    assert not still_frames(camera)  # the 60 s frame never completed
    frame = backend.capture_preview(threading.Event(), 30)
    assert frame.pixels.shape == (1080, 1440, 3)
    assert not camera.leaked() and not camera._jobs


def test_picam_shortening_a_long_preview_exposure_does_not_wait_for_the_frame_under_way(picamera2, backend):
    camera = the_camera(picamera2)
    backend.set_controls(exposure_s=60.0)
    time.sleep(0.1)  # a 60 s frame is now being exposed
    backend.set_controls(exposure_s=0.05)
    started = time.monotonic()
    frame = backend.capture_preview(threading.Event(), 30)
    assert time.monotonic() - started < 5 and frame.exposure_s == in_lines(0.05)
    assert camera.started and not camera.leaked()


def test_picam_stalled_camera_is_a_clear_error_not_a_hang(picamera2, backend, monkeypatch):
    monkeypatch.setattr("wanda.picam.MODE_SWITCH_MARGIN_S", 0.5)
    camera = the_camera(picamera2)
    camera.stalled = True
    with pytest.raises(CameraUnavailable, match="no frame within .* ribbon cable"):
        backend.capture_still(0.1, 2.0, threading.Event())
    assert camera.configurations[-1]["use_case"] == "preview" and not camera._jobs


# -- through the API ---------------------------------------------------------------------------


async def test_picam_still_through_the_api_writes_jpeg_dng_and_what_the_sensor_applied(
    picamera2, aiohttp_client, config
):
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto", colour_gains=(2.5, 1.5))))
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.25, "iso": 400, "save_raw": True})
    assert response.status == 200
    body = await (await client.post("/api/camera/capture")).json()
    assert body["success"] is True, body
    data = body["data"]
    assert (data["exposure_seconds"], round(data["gain"], 3)) == (in_lines(0.25), 4.0)
    assert data["file"] == "light_0001.jpg" and data["raw_file"] == "light_0001.dng"
    camera = the_camera(picamera2)
    assert camera.configurations[-2]["raw"] == {"size": (4056, 3040), "format": "SRGGB12"}  # unpacked
    (controls,) = still_frames(camera)
    assert controls["ColourGains"] == (2.5, 1.5) and controls["AeEnable"] is False
    assert (config.captures / "light_0001.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert (config.captures / "light_0001.dng").read_bytes()[:4] == b"II*\x00"
    sidecar = json.loads((config.captures / "light_0001.json").read_text())
    assert sidecar["raw"] == "dng" and sidecar["width"] == 4056
    assert sidecar["camera"]["ExposureTime"] == round(in_lines(0.25) * 1e6)  # as the sensor reported it
    assert sidecar["camera"]["requested"] == {"exposure_seconds": 0.25, "gain": 4.0}
    assert not [p for p in config.captures.iterdir() if p.name.startswith(".")]  # no temporaries left
    listing = (await (await client.get("/api/captures")).json())["data"]
    assert {"light_0001.jpg", "light_0001.dng"} <= set(listing["files"])


async def test_picam_cancel_through_the_api_writes_nothing_and_viewers_keep_frames(picamera2, aiohttp_client, config):
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 120})).status == 200
    capture = asyncio.create_task(client.post("/api/camera/capture"))
    await wait_until(lambda: the_camera(picamera2).configurations[-1]["use_case"] == "still")
    cancelled = await (await client.post("/api/camera/capture/cancel")).json()
    assert cancelled["data"]["cancelled"] is True
    response = await capture
    assert response.status == 409 and (await response.json())["code"] == "CAPTURE_CANCELLED"
    assert not list(config.captures.glob("capture_*"))
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.05})).status == 200
    stream = await client.get("/stream")
    for _ in range(3):
        _, jpeg = await read_part(stream.content)
    assert is_blue(jpeg)
    assert not the_camera(picamera2).leaked()


# -- tuning and the hardware encoder -------------------------------------------------------------


def test_picam_tuning_file_by_name_path_or_a_clear_error(picamera2, tmp_path):
    backend = Picamera2Backend(tuning_file="imx477_scientific.json")
    backend.open()
    assert picamera2.instances[-1].tuning["scientific"] is True
    backend.close()
    path = tmp_path / "mine.json"
    path.write_text('{"version": 2.0, "mine": true}')
    backend = Picamera2Backend(tuning_file=str(path))
    backend.open()
    assert picamera2.instances[-1].tuning == {"version": 2.0, "mine": True}
    backend.close()
    with pytest.raises(CameraUnavailable, match="tuning file imx478.json was not found.*/usr/share/libcamera"):
        Picamera2Backend(tuning_file="imx478.json").open()


def test_picam_hardware_encoder_only_where_there_is_one(picamera2):
    backend = Picamera2Backend(preview_encoder="auto")
    backend.open()
    assert backend.encodes_preview is False  # the fake starts as a Pi 5 (PiSP): no hardware JPEG
    backend.close()
    with pytest.raises(CameraUnavailable, match="no hardware JPEG encoder"):
        Picamera2Backend(preview_encoder="hardware").open()
    fake_picamera2.PLATFORM[0] = fake_picamera2.Platform.VC4
    backend = Picamera2Backend(preview_encoder="software")
    backend.open()
    assert backend.encodes_preview is False  # asked for
    backend.close()


async def test_picam_hardware_mjpeg_on_a_pi4_streams_while_watched_and_pauses_for_stills(
    picamera2, aiohttp_client, config
):
    fake_picamera2.PLATFORM[0] = fake_picamera2.Platform.VC4
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="picamera2")))
    camera = the_camera(picamera2)
    assert not camera.encoding  # nobody watches: the encoder does not run
    response = await client.get("/stream")
    for _ in range(3):
        _, jpeg = await read_part(response.content)
    assert is_blue(jpeg) and camera.encoding
    assert (await client.post("/api/camera/settings", json={"exposure_seconds": 0.1})).status == 200
    body = await (await client.post("/api/camera/capture")).json()
    assert body["success"] is True, body
    assert camera.encoders_started == 2  # stopped for the mode switch, started again after
    _, jpeg = await read_part(response.content)  # and frames flow again
    state = (await (await client.get("/state")).json())["data"]
    assert state["frames_encoded"] >= 4 and state["encodes"] == 0  # all by the hardware, none by us
    response.close()
    await wait_until(lambda: not camera.encoding)  # the last viewer left: the encoder stops


def test_picam_numpy_mismatch_names_its_fix(monkeypatch):
    module = types.ModuleType("picamera2")

    def compiled_against_another_numpy(name):
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")

    module.__getattr__ = compiled_against_another_numpy
    monkeypatch.setitem(sys.modules, "picamera2", module)
    probe = probe_picamera2()
    assert not probe.ok and "numpy" in probe.reason and "pip uninstall -y numpy" in probe.fix


async def test_picam_fits_holds_the_raw_bayer_mosaic_with_its_pattern_and_temperature(picamera2, aiohttp_client, config):
    from astropy.io import fits

    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.2, "file_format": "fits"})
    assert response.status == 200
    data = (await (await client.post("/api/camera/capture")).json())["data"]
    assert data["files"] == ["light_0001.fits"]
    camera = the_camera(picamera2)
    assert camera.configurations[-2]["raw"]["format"] == "SRGGB12"
    with fits.open(config.captures / "light_0001.fits") as hdus:
        header, mosaic = hdus[0].header, hdus[0].data
        assert header["BAYERPAT"] == "RGGB" and header["CCD-TEMP"] == 31.0
        assert header["INSTRUME"] == "Raspberry Pi camera (imx477)" and header["XPIXSZ"] == 1.55
        assert header["EXPTIME"] == in_lines(0.2)
        assert mosaic.shape == (3040, 4056) and mosaic.dtype == np.uint16
        assert mosaic[0, 0] == 1000 and mosaic[0, 1] == 256  # red, then green: RGGB as read out
    assert not camera.leaked()


# -- issue 14: what picamera2's and libcamera's own behaviour means for the backend ----------------


def test_picam_fake_reports_placeholder_limits_until_a_mode_is_configured(picamera2):
    camera = picamera2()
    assert camera.camera_controls["ExposureTime"][1] == 66666  # libcamera's placeholder
    camera.configure(camera.create_still_configuration())
    assert camera.camera_controls["ExposureTime"][1] == 694422939
    camera.close()


def test_picam_long_exposures_are_not_capped_at_the_placeholder_66_ms(picamera2, backend):
    """Reading camera_controls before the first configure gave 66.7 ms as the longest exposure:
    every long exposure, the telescope's whole point, was clamped to it."""
    camera = the_camera(picamera2)
    assert backend.exposure_limits[1] > 600  # the IMX477's 694 s, read after configuring
    backend.set_controls(exposure_s=200.0)
    assert backend.exposure_s == 200.0
    assert camera.controls["ExposureTime"] == 200_000_000
    # Not clamped to a range read in another mode: libcamera clamps it to the mode in use.
    assert camera.controls["FrameDurationLimits"] == (200_000_000, 200_000_000)
