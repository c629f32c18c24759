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
from helpers import free_port, read_part, wait_for, wait_until

from wanda.app import create_app
from wanda.backends import CameraUnavailable, CaptureCancelled
from wanda.backends.choose import create_backend, probe_picamera2
from wanda.backends.picam import Picamera2Backend
from wanda.backends.sky import SimulatedSky
from wanda.config import Config
from wanda.jpeg import JpegEncoder
from wanda.keys import ALPACA

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


def preview_until(backend, exposure_s: float, frames: int = 12):
    """Preview frames until one was exposed as asked: controls set while the camera runs ride on
    the next request picamera2 queues, behind those already queued."""
    for _ in range(frames):
        frame = backend.capture_preview(threading.Event(), 30)
        if frame.exposure_s == in_lines(exposure_s):
            return frame
    raise AssertionError(f"no preview frame of {exposure_s} s in {frames} (last {frame.exposure_s} s)")


def in_force(camera) -> dict:
    """The controls the sensor ran the last completed frame with."""
    return camera.control_log[-1][1]


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


@pytest.mark.slow  # a `wanda` process of its own
def test_picam_command_without_a_camera_exits_with_one_line(tmp_path):
    # The fake as the `picamera2` package of a separate `wanda` process, with no camera listed.
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("from fake_picamera2 import Picamera2\nPicamera2.cameras = []\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wanda",
            "--camera",
            "picamera2",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
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
    frame = preview_until(backend, 0.05)
    controls = in_force(camera)
    assert controls["AnalogueGain"] == 22.2608695  # clamped to what the sensor reports
    assert controls["FrameDurationLimits"] == (50000, 55000)  # room for the exposure and 22 lines
    assert controls["ExposureTimeMode"] == controls["AnalogueGainMode"] == 1  # manual
    assert "AeEnable" not in controls and "AwbEnable" not in controls  # fixed values suffice
    assert controls["ColourGains"] == (2.1, 1.8) and controls["NoiseReductionMode"] == 0
    assert frame.pixel_format == "BGR" and frame.pixels.shape == (1080, 1440, 3)
    assert frame.pixels[..., 0].mean() == fake_picamera2.PREVIEW_BLUE  # B first, as picamera2 gives it
    assert frame.exposure_s == in_lines(0.05) != 0.05  # read back from the metadata
    assert not camera.leaked()


def test_picam_preview_wait_returns_at_once_when_the_worker_is_woken(picamera2, backend):
    camera = the_camera(picamera2)
    backend.capture_preview(threading.Event(), 30)
    backend.set_controls(exposure_s=20.0)
    wait_for(lambda: (camera.exposing_us or 0) > 19_000_000, timeout=10)  # a 20 s frame is under way
    wake = threading.Event()
    threading.Timer(0.2, wake.set).start()
    started = time.monotonic()
    short_ones = 0  # frames that ended before the long one, which picamera2 keeps for us
    while backend.capture_preview(wake, 30) is not None:
        short_ones += 1
        assert short_ones <= 4
    assert time.monotonic() - started < 5  # not the 20 s exposure
    assert not camera.leaked() and not camera._jobs  # the pending job was taken back


async def test_picam_frames_reach_a_viewer_through_the_app(picamera2, aiohttp_client, config):
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    response = await client.get("/stream")
    _, jpeg = await read_part(response.content)
    assert is_blue(jpeg)  # decoded as BGR: a red frame would mean the byte order was missed
    assert (await (await client.get("/state")).json())["data"]["backend"] == "picamera2"
    camera = (await (await client.get("/api/health")).json())["data"]["camera"]
    assert camera["model"] == "imx477" and camera["platform"] == "pisp" and camera["preview_encoder"] == "software"
    assert camera["tuning_file"] is None and camera["exposure_limits_s"][1] > 600


# -- stills ------------------------------------------------------------------------------------


def test_picam_still_is_full_size_with_astro_controls_and_the_preview_comes_back(picamera2, backend):
    camera = the_camera(picamera2)
    backend.set_controls(exposure_s=0.04, gain=2.0)
    image = backend.capture_still(0.3, 4.0, threading.Event())
    still = camera.configurations[-2]
    assert still["use_case"] == "still" and still["main"]["size"] == (4056, 3040) and still["raw"] is None
    (controls,) = still_frames(camera)  # what the sensor ran the still with
    assert controls["ExposureTimeMode"] == 1 and "AeEnable" not in controls and "AwbEnable" not in controls
    assert controls["ColourGains"] == (2.1, 1.8) and controls["NoiseReductionMode"] == 0
    assert controls["ExposureTime"] == 300000 and controls["FrameDurationLimits"][1] >= 300000 + 22 * 30
    assert image.pixels.shape == (3040, 4056, 3) and image.pixel_format == "BGR"
    assert (image.exposure_s, round(image.gain, 3)) == (in_lines(0.3), 4.0)
    assert image.metadata["SensorTemperature"] == 31.0 and image.metadata["requested"]["exposure_seconds"] == 0.3
    # Back in the preview, with the preview's own controls (not the still's).
    assert camera.configurations[-1]["use_case"] == "preview" and camera.started
    frame = preview_until(backend, 0.04)
    assert frame.pixels.shape == (1080, 1440, 3)
    assert not camera.leaked()


def test_picam_still_clamps_exposure_and_gain_to_camera_controls(picamera2, monkeypatch):
    full = {**fake_picamera2.IMX477_MODES[-1], "exposure_us": (114, 200000)}  # 0.2 s at most
    monkeypatch.setattr(fake_picamera2, "IMX477_MODES", [*fake_picamera2.IMX477_MODES[:-1], full])
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
    wait_for(lambda: (camera.exposing_us or 0) > 59_000_000, timeout=10)
    backend.set_controls(exposure_s=0.05)
    started = time.monotonic()
    frame = backend.capture_preview(threading.Event(), 30)
    assert time.monotonic() - started < 5 and frame.exposure_s == in_lines(0.05)
    assert camera.started and not camera.leaked()


def test_picam_stalled_camera_is_a_clear_error_not_a_hang(picamera2, backend, monkeypatch):
    monkeypatch.setattr("wanda.backends.picam.MODE_SWITCH_MARGIN_S", 0.5)
    camera = the_camera(picamera2)
    camera.stalled = True
    with pytest.raises(CameraUnavailable, match="no frame within .* ribbon cable"):
        backend.capture_still(0.1, 2.0, threading.Event())
    assert camera.configurations[-1]["use_case"] == "preview" and not camera._jobs


# -- through the API ---------------------------------------------------------------------------


async def test_the_alpaca_camera_on_a_pi_is_the_hq_cameras_bayer_mosaic(picamera2, aiohttp_client, config):
    """An Alpaca client sees the sensor as picamera2 delivers it: 4056 x 3040 of 12-bit values in
    the order the HQ camera's flips make of its RGGB (BGGR), and gets that mosaic, unbinned."""
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    camera = "/api/v1/camera/0"

    async def get(member: str):
        body = await (await client.get(f"{camera}/{member}")).json()
        assert body["ErrorNumber"] == 0, body
        return body["Value"]

    assert (await client.put(f"{camera}/connected", data={"Connected": "true"})).status == 200
    properties = ("cameraxsize", "cameraysize", "sensortype", "bayeroffsetx", "bayeroffsety", "maxadu", "maxbinx")
    assert [await get(name) for name in properties] == [4056, 3040, 2, 1, 1, 4095, 1]  # BGGR: red at (1, 1)
    assert await get("sensorname") == "IMX477" and await get("pixelsizex") == 1.55
    binned = await (await client.put(f"{camera}/binx", data={"BinX": "2"})).json()
    assert binned["ErrorNumber"] == 0x401  # a binned mosaic would mix its colours
    started = await (await client.put(f"{camera}/startexposure", data={"Duration": "0.01", "Light": "true"})).json()
    assert started["ErrorNumber"] == 0
    await wait_until(lambda: client.app[ALPACA].devices["camera"].image_ready, attempts=400)
    response = await client.get(f"{camera}/imagearray", headers={"Accept": "application/imagebytes"})
    data = await response.read()
    mosaic = np.frombuffer(data[44:], dtype="<u2").reshape(4056, 3040).T
    assert (mosaic[1::2, 1::2] == fake_picamera2.RAW_RED).all()  # the sensor's values, not shifted to 16 bits
    assert mosaic[0, 0] >= fake_picamera2.RAW_BLUE and mosaic.max() <= 4095
    assert await get("ccdtemperature") == 31.0  # as the still's metadata reported it


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
    # A Pi 5's 16-bit samples, in the order the sensor delivers flipped for its 180 degree mounting.
    assert camera.configurations[-2]["raw"] == {"size": (4056, 3040), "format": "SBGGR16"}
    (controls,) = still_frames(camera)
    assert controls["ColourGains"] == (2.5, 1.5) and controls["ExposureTimeMode"] == 1
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
    # The preview goes on: a request may be in the camera thread's hands this instant. A leaked one
    # stays out for good; one in use is released within a frame.
    await wait_until(lambda: not the_camera(picamera2).leaked())


# -- tuning and the hardware encoder -------------------------------------------------------------


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


@pytest.fixture
def dpc_parameter(tmp_path, monkeypatch):
    """The imx477 driver's dpc_enable parameter, as a file both the backend and the fake read."""
    path = tmp_path / "dpc_enable"
    path.write_text("0\n")
    monkeypatch.setattr("wanda.backends.picam.SENSOR_DPC_PARAMETER", path)
    fake_picamera2.DPC_PARAMETER[0] = path
    return path


@pytest.mark.parametrize("platform", ["VC4", "PISP"])
async def test_picam_fits_holds_the_sensors_12_bit_mosaic_on_a_pi_4_and_a_pi_5(
    picamera2, aiohttp_client, config, dpc_parameter, platform
):
    """A Pi 5 delivers the raw frame as 16-bit samples (SRGGB16, values shifted up by 4, black
    level 4096): the FITS data and black level are the sensor's 12-bit ones on both."""
    from astropy.io import fits

    fake_picamera2.PLATFORM[0] = fake_picamera2.Platform[platform]
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.2, "file_format": "fits"})
    assert response.status == 200
    data = (await (await client.post("/api/camera/capture")).json())["data"]
    assert data["files"] == ["light_0001.fits"]
    camera = the_camera(picamera2)
    assert camera.configurations[-2]["raw"]["format"] == {"VC4": "SBGGR12", "PISP": "SBGGR16"}[platform]
    with fits.open(config.captures / "light_0001.fits") as hdus:
        header, mosaic = hdus[0].header, hdus[0].data
        assert header["BAYERPAT"] == "BGGR" and header["CCD-TEMP"] == 31.0
        assert header["INSTRUME"] == "Raspberry Pi camera (imx477)" and header["XPIXSZ"] == 1.55
        assert header["EXPTIME"] == in_lines(0.2)
        assert (header["BITDEPTH"], header["DATAMAX"], header["BLKLEVEL"]) == (12, 4095, 256)
        assert header["SENSDPC"] == "off"
        assert mosaic.shape == (3040, 4056) and mosaic.dtype == np.uint16
        blue = fake_picamera2.RAW_BLUE + 200  # (the fake's blue sites say the exposure in ms)
        assert (mosaic[0, 0], mosaic[0, 1], mosaic[1, 1]) == (blue, 256, 1000)  # B G / G R, green at the black level
        assert mosaic.max() == 4095  # the hot pixel the sensor's correction would have removed
    sidecar = json.loads((config.captures / "light_0001.json").read_text())
    assert sidecar["sensor"] == {"bit_depth": 12, "black_level": 256, "defective_pixel_correction": "off"}
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
    assert camera.sent[-1]["ExposureTime"] == 200_000_000
    # Not clamped to a range read in another mode: libcamera clamps it to the mode in use.
    assert camera.sent[-1]["FrameDurationLimits"] == (200_000_000, 202_000_000)
    wait_for(lambda: (camera.exposing_us or 0) > 199_000_000, timeout=10)  # and the sensor runs it


# 2. The tuning file


@pytest.fixture
def tuning_dirs(tmp_path, monkeypatch):
    """libcamera's tuning file directories, with the HQ camera's scientific tuning in each Pi's."""
    for platform in ("vc4", "pisp"):
        directory = tmp_path / "ipa" / platform
        directory.mkdir(parents=True)
        (directory / "imx477_scientific.json").write_text(
            json.dumps({"version": 2.0, "target": platform, "scientific": True})
        )
    monkeypatch.setattr("wanda.backends.picam.TUNING_DIRS", (str(tmp_path / "ipa" / "{platform}"),))
    return tmp_path / "ipa"


def test_picam_fake_ignores_a_tuning_given_after_libcamera_started(picamera2, tuning_dirs):
    """What made WANDA's tuning file a no-op: picamera2 only sets the variable, which libcamera
    has read already if anything listed the cameras before."""
    path = str(tuning_dirs / "pisp" / "imx477_scientific.json")
    picamera2.global_camera_info()  # starts libcamera's camera manager with the default tuning
    camera = picamera2(0, tuning=path)
    assert camera.tuning_in_use is None
    camera.close()  # the last camera: the manager goes, and the next one reads the variable again
    camera = picamera2(0, tuning=path)
    assert camera.tuning_in_use == path and camera.tuning["scientific"] is True
    camera.close()


@pytest.mark.parametrize("platform", ["VC4", "PISP"])
def test_picam_tuning_file_by_name_is_the_one_libcamera_loads(picamera2, tuning_dirs, caplog, platform):
    caplog.set_level("INFO")
    fake_picamera2.PLATFORM[0] = fake_picamera2.Platform[platform]
    backend = create_backend(Config(camera="auto", tuning_file="imx477_scientific.json"))  # lists the cameras
    backend.open()
    camera = the_camera(picamera2)
    expected = tuning_dirs / platform.lower() / "imx477_scientific.json"
    assert camera.tuning_in_use == str(expected) and camera.tuning["target"] == platform.lower()
    assert f"tuning {expected}" in caplog.text
    backend.close()


def test_picam_tuning_file_by_path_or_a_clear_error(picamera2, tmp_path, tuning_dirs):
    path = tmp_path / "mine.json"
    path.write_text('{"version": 2.0, "mine": true}')
    backend = create_backend(Config(camera="picamera2", tuning_file=str(path)))
    backend.open()
    assert the_camera(picamera2).tuning == {"version": 2.0, "mine": True}
    backend.close()
    with pytest.raises(CameraUnavailable, match=f"tuning file imx478.json was not found in {tuning_dirs}"):
        create_backend(Config(camera="auto", tuning_file="imx478.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CameraUnavailable, match="broken.json cannot be read"):
        create_backend(Config(camera="picamera2", tuning_file=str(tmp_path / "broken.json")))


# 3. Manual exposure on every libcamera


def run_still(picamera2, exposure_s: float = 0.5):
    backend = Picamera2Backend(colour_gains=(2.1, 1.8))
    backend.open()
    try:
        backend.set_controls(exposure_s=0.05)
        preview_until(backend, 0.05)
        return backend.capture_still(exposure_s, 2.0, threading.Event())
    finally:
        backend.close()


def test_picam_fake_freezes_a_long_exposure_when_ae_enable_races_it_on_libcamera_0_4(picamera2):
    """libcamera 0.4 and older: met after ExposureTime, AeEnable False freezes the exposure that
    the previous frame's length allowed (the fake meets the exposure controls first, the enables
    last)."""
    fake_picamera2.LIBCAMERA[0] = (0, 4)
    camera = picamera2(0)
    short = {"ExposureTime": 200000, "AnalogueGain": 2.0, "FrameDurationLimits": (200000, 205000)}
    camera.configure(camera.create_preview_configuration(controls=short))
    camera.start()
    camera.capture_request().release()
    camera.stop()
    long = {"ExposureTime": 500000, "AnalogueGain": 2.0, "FrameDurationLimits": (500000, 505000)}
    # Frozen at the longest exposure the preview's frames allowed: 205 ms less 22 lines.
    frozen = (205000 - fake_picamera2.FRAME_INTEGRATION_DIFF_LINES * fake_picamera2.LINE_US) / 1e6
    for extra, expected in (({"AeEnable": False}, frozen), ({}, 0.5)):
        camera.configure(camera.create_still_configuration(controls={**long, **extra}))
        camera.start()
        request = camera.capture_request()
        assert request.get_metadata()["ExposureTime"] / 1e6 == in_lines(expected)
        request.release()
        camera.stop()
        camera.configure(camera.create_preview_configuration(controls=short))
        camera.start()
        camera.capture_request().release()
        camera.stop()
    camera.close()


SUPPORTED = [  # (picamera2, libcamera) as Raspberry Pi OS has paired them
    ((0, 3, 20), (0, 3)),
    ((0, 3, 25), (0, 4)),
    ((0, 3, 26), (0, 5, 0)),  # picamera2 sets the exposure mode on recycled requests only
    ((0, 3, 27), (0, 5, 1)),
    ((0, 3, 36), (0, 7)),
]


@pytest.mark.parametrize(("picamera2_version", "libcamera"), SUPPORTED)
@pytest.mark.parametrize("order", ["enables_last", "sorted"])
def test_picam_a_still_longer_than_the_preview_frame_gets_its_exposure(picamera2, picamera2_version, libcamera, order):
    """With every supported picamera2 and libcamera, in any order of the controls: after a 50 ms
    preview, a 0.5 s still is exposed 0.5 s, and the preview comes back at 50 ms at once."""
    fake_picamera2.PICAMERA2[0] = picamera2_version
    fake_picamera2.LIBCAMERA[0] = libcamera
    fake_picamera2.CONTROL_ORDER[0] = getattr(fake_picamera2, order, sorted)
    backend = Picamera2Backend(colour_gains=(2.1, 1.8))
    backend.open()
    try:
        first = backend.capture_preview(threading.Event(), 30)
        assert first.exposure_s == in_lines(1 / 30)  # from the first frame: the start's controls
        backend.set_controls(exposure_s=0.05)
        preview_until(backend, 0.05)
        image = backend.capture_still(0.5, 2.0, threading.Event())
        after = backend.capture_preview(threading.Event(), 30)
    finally:
        backend.close()
    assert image.exposure_s == in_lines(0.5) and round(image.gain, 3) == 2.0
    assert tuple(image.metadata["ColourGains"]) == (2.1, 1.8)
    assert after.exposure_s == in_lines(0.05)  # not the exposure the preview was created with


def test_picam_fake_sets_the_exposure_mode_from_the_exposure_as_picamera2_does_on_libcamera_0_5(picamera2):
    camera = picamera2(0)
    for exposure, expected in ((300000, 300000), (0, fake_picamera2.AUTO_EXPOSURE_US)):  # 0: automatic
        camera.configure(camera.create_still_configuration(controls={"ExposureTime": exposure}))
        camera.start()
        request = camera.capture_request()
        assert abs(request.get_metadata()["ExposureTime"] - expected) < fake_picamera2.LINE_US
        request.release()
        camera.stop()
    camera.close()


# 4. Too old a picamera2


def test_picam_too_old_a_picamera2_says_how_to_upgrade(monkeypatch, capsys, tmp_path):
    fake_picamera2.install(monkeypatch, fake_picamera2.picamera2_0_3_16())
    probe = probe_picamera2()
    assert not probe.ok
    assert "wait(job, timeout) (0.3.17)" in probe.reason and "cancel_all_and_flush (0.3.20)" in probe.reason
    assert "sudo apt full-upgrade" in probe.fix
    with pytest.raises(CameraUnavailable, match="too old.*sudo apt full-upgrade"):
        create_backend(Config(camera="picamera2"))
    with pytest.raises(CameraUnavailable, match="too old.*sudo apt full-upgrade"):
        Picamera2Backend().open()
    from wanda.doctor import main as doctor

    assert doctor(Config(camera="picamera2", captures=tmp_path, port=free_port())) == 1
    line = next(line for line in capsys.readouterr().out.splitlines() if " picamera2 " in line)
    assert line.startswith("FAIL") and "too old" in line


# 6. A settings change is not lost


def test_picam_preview_keeps_picamera2s_raw_stream_in_the_binned_full_field_mode(picamera2, backend):
    """picamera2 gives a preview a raw stream the size of the main one; the sensor mode is the one
    its score picks for 1440x1080 (with or without the raw stream, as picamera2's source has it)."""
    preview = the_camera(picamera2).configurations[-1]
    assert preview["raw"]["size"] == (2028, 1520)


def test_picam_shortening_a_long_exposure_is_not_lost_to_a_request_recycled_meanwhile(picamera2, backend):
    """Set before the restart, the new exposure rode on a request picamera2 recycled, which the
    stop cancelled: the 60 s exposure survived the restart."""
    camera = the_camera(picamera2)
    backend.set_controls(exposure_s=60.0)
    wait_for(lambda: (camera.exposing_us or 0) > 59_000_000, timeout=10)
    camera.recycle_during_set_controls = True
    backend.set_controls(exposure_s=0.05)
    frame = backend.capture_preview(threading.Event(), 30)
    assert frame.exposure_s == in_lines(0.05)


# 7. The sensor's defective pixel correction


def test_picam_sensor_dpc_is_set_before_the_stream_starts_where_wanda_may(picamera2, dpc_parameter):
    dpc_parameter.write_text("1\n")  # the driver's default
    backend = Picamera2Backend(sensor_dpc=False)
    backend.open()
    assert dpc_parameter.read_text().strip() == "0"
    assert the_camera(picamera2).dpc_at_start is False  # the sensor streams without it
    image = backend.capture_still(0.1, 1.0, threading.Event(), raw=True)
    assert image.sensor_dpc is False and image.linear.max() == 4095  # the hot pixel is kept
    backend.close()


class RootOnlyParameter(type(Path())):
    """A sysfs module parameter of mode 0644 as a user other than root meets it."""

    def write_text(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))


def test_picam_sensor_dpc_that_cannot_be_set_is_recorded_and_explained(picamera2, dpc_parameter, caplog, monkeypatch):
    dpc_parameter.write_text("1\n")
    monkeypatch.setattr("wanda.backends.picam.SENSOR_DPC_PARAMETER", RootOnlyParameter(dpc_parameter))
    backend = Picamera2Backend(sensor_dpc=False)
    backend.open()
    assert "sensor DPC is on, not off as configured" in caplog.text and "modprobe.d" in caplog.text
    image = backend.capture_still(0.1, 1.0, threading.Event(), raw=True)
    assert image.sensor_dpc is True and image.linear.max() < 4095  # the sensor took the hot pixel out
    backend.close()
