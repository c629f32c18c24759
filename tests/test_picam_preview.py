"""Backend selection and the picamera2 preview path, with a fake `picamera2` module installed at
the library edge (no camera is attached to these machines)."""

from __future__ import annotations

import dataclasses
import sys
import threading
import types

import numpy as np
import pytest
from helpers import read_part

from wanda.app import create_app
from wanda.camera import CameraUnavailable, create_backend
from wanda.config import Config
from wanda.picam import Picamera2Backend
from wanda.sky import SimulatedSky


class FakeRequest:
    def __init__(self, camera):
        self.camera = camera
        self.released = False

    def make_array(self, name):
        assert name == "main"
        width, height = self.camera.configuration["main"]["size"]
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[..., 0] = 200  # blue in picamera2's "RGB888" byte order (B, G, R)
        return pixels

    def get_metadata(self):
        return {"ExposureTime": self.camera.controls["ExposureTime"], "AnalogueGain": self.camera.controls["AnalogueGain"]}

    def release(self):
        self.released = True


IMX477_INFO = {"Model": "imx477", "Location": 2, "Num": 0, "Id": "/base/soc/i2c0mux/i2c@1/imx477@1a"}


class FakePicamera2:
    """The parts of picamera2's API the preview path uses, as picamera2 reports them."""

    cameras: list[dict] = []
    instances: list[FakePicamera2] = []

    def __init__(self, camera_num=0):
        self.camera_num = camera_num
        self.camera_controls = {"ExposureTime": (114, 694422939, 20000), "AnalogueGain": (1.0, 22.26, 1.0)}
        self.controls: dict = {}
        self.configuration = None
        self.started = False
        self.closed = False
        self.requests: list[FakeRequest] = []
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info():
        return FakePicamera2.cameras

    def create_preview_configuration(self, main, controls):
        return {"main": dict(main), "controls": dict(controls)}

    def configure(self, configuration):
        self.configuration = configuration
        self.controls.update(configuration["controls"])

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True

    def set_controls(self, controls):
        self.controls.update(controls)

    def capture_request(self):
        assert self.started, "capture_request on a stopped camera"
        request = FakeRequest(self)
        self.requests.append(request)
        return request


@pytest.fixture
def fake_picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    FakePicamera2.instances = []
    FakePicamera2.cameras = [IMX477_INFO]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_picam_auto_chooses_picamera2_when_it_lists_a_camera(fake_picamera2, caplog):
    caplog.set_level("INFO")
    backend = create_backend(Config(camera="auto"))
    assert isinstance(backend, Picamera2Backend)
    assert "picamera2 lists 1 camera(s): imx477" in caplog.text


def test_picam_auto_falls_back_to_the_sky_when_no_camera_is_listed(fake_picamera2, caplog):
    caplog.set_level("INFO")
    fake_picamera2.cameras = []
    backend = create_backend(Config(camera="auto"))
    assert isinstance(backend, SimulatedSky)
    assert "simulated sky, because picamera2 lists no camera" in caplog.text


def test_picam_requested_without_a_camera_is_a_clear_error(fake_picamera2):
    fake_picamera2.cameras = []
    with pytest.raises(CameraUnavailable, match="picamera2 lists no camera"):
        create_backend(Config(camera="picamera2"))


def test_picam_preview_sets_astro_controls_and_reads_bgr_frames(fake_picamera2):
    backend = Picamera2Backend()
    backend.open()
    (camera,) = fake_picamera2.instances
    assert camera.configuration["main"] == {"size": (1440, 1080), "format": "RGB888"}
    assert camera.controls["AeEnable"] is False and camera.controls["AwbEnable"] is False
    assert backend.exposure_limits == (114e-6, 694422939e-6)
    backend.set_controls(exposure_s=0.5, gain=100.0)
    assert camera.controls["ExposureTime"] == 500000
    assert camera.controls["AnalogueGain"] == 22.26  # clamped to what the sensor reports
    assert camera.controls["FrameDurationLimits"] == (500000, 500000)
    frame = backend.capture_preview(threading.Event(), 30)
    assert frame.pixel_format == "BGR" and frame.pixels.shape == (1080, 1440, 3)
    assert frame.exposure_s == 0.5 and frame.gain == 22.26
    assert all(request.released for request in camera.requests)
    backend.close()
    assert camera.closed


async def test_picam_frames_reach_a_viewer_through_the_app(fake_picamera2, aiohttp_client, config):
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    response = await client.get("/stream")
    headers, jpeg = await read_part(response.content)
    from wanda.jpeg import JpegEncoder

    pixels = JpegEncoder().decode(jpeg)
    # The fake's bytes were B=200: decoded as RGB the frame must be blue, not red.
    assert pixels[..., 2].mean() > 150 and pixels[..., 0].mean() < 50
    assert (await (await client.get("/state")).json())["data"]["backend"] == "picamera2"


async def test_picam_still_through_the_api_records_what_the_sensor_applied(fake_picamera2, aiohttp_client, config):
    client = await aiohttp_client(create_app(dataclasses.replace(config, camera="auto")))
    response = await client.post("/api/camera/settings", json={"exposure_seconds": 0.25, "iso": 400})
    assert response.status == 200
    body = await (await client.post("/api/camera/capture")).json()
    assert body["success"] is True, body
    data = body["data"]
    assert data["exposure_seconds"] == 0.25 and data["gain"] == 4.0
    (camera,) = fake_picamera2.instances
    assert camera.controls["AeEnable"] is False and camera.controls["ExposureTime"] == 250000
    saved = config.captures / data["file"]
    assert saved.is_file() and saved.read_bytes()[:2] == b"\xff\xd8"
