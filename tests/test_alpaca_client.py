"""ASCOM's own Python client (alpyca) drives a live `wanda` as an Alpaca camera and telescope: the
properties, exposures downloaded as ImageBytes and as JSON against the FITS copy WANDA saved of the
same exposure, an abort, tracking, guide pulses, the errors of the specification, the password."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from alpaca.camera import Camera, CameraStates, SensorType
from alpaca.exceptions import (
    AlpacaRequestException,
    InvalidOperationException,
    InvalidValueException,
    NotConnectedException,
    NotImplementedException,
    ValueNotSetException,
)
from alpaca.telescope import GuideDirections, Telescope
from astropy.io import fits
from helpers import wait_for
from live_server import Wanda

pytestmark = pytest.mark.slow


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("alpaca")
    discovery = {"WANDA_ALPACA_DISCOVERY_PORT": str(free_udp_port())}
    with Wanda(root, args=["--alpaca-save", "on", "--latitude", "52", "--longitude", "5"], env=discovery) as wanda:
        yield wanda


def test_discovery_on_the_loopback_answers_with_the_port_wanda_serves_on(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(b"alpacadiscovery1", ("127.0.0.1", int(server.extra_env["WANDA_ALPACA_DISCOVERY_PORT"])))
        answer, _ = sock.recvfrom(1024)
    assert json.loads(answer) == {"AlpacaPort": server.port}


def address(server: Wanda, credentials: str = "") -> str:
    return f"{credentials}127.0.0.1:{server.port}"


def connected(device):
    device.Connect()
    wait_for(lambda: not device.Connecting, what="Connecting to end")
    assert device.Connected
    return device


def expose(camera: Camera, seconds: float, light: bool = True) -> None:
    camera.StartExposure(seconds, light)
    wait_for(lambda: camera.ImageReady, timeout=30, what="the image")


def test_alpyca_reads_the_cameras_properties(server):
    camera = Camera(address(server), 0)
    with pytest.raises(NotConnectedException):
        _ = camera.CameraState
    connected(camera)
    assert camera.InterfaceVersion == 4 and camera.Name == "WANDA camera"
    assert (camera.CameraXSize, camera.CameraYSize) == (1440, 1080)  # the simulated sky's frame
    assert camera.SensorType == SensorType.Monochrome and camera.MaxADU == 65535
    assert (camera.GainMin, camera.GainMax) == (100, 1600)
    assert camera.PixelSizeX == pytest.approx(1.55 * 4056 / 1440, abs=0.001) and camera.ReadoutModes == ["Full frame"]
    assert camera.ExposureMin == pytest.approx(0.0001) and camera.ExposureMax == pytest.approx(230)
    assert camera.CCDTemperature == pytest.approx(20.0)
    assert camera.CameraState == CameraStates.cameraIdle and camera.CanAbortExposure
    assert camera.SupportedActions == []
    with pytest.raises(NotImplementedException):
        _ = camera.CoolerOn
    with pytest.raises(NotImplementedException):
        _ = camera.BayerOffsetX  # monochrome
    with pytest.raises(ValueNotSetException):
        _ = camera.LastExposureDuration
    with pytest.raises(InvalidOperationException):
        _ = camera.ImageArray
    with pytest.raises(InvalidValueException):
        camera.Gain = 20
    with pytest.raises(InvalidValueException):
        camera.BinX = 8
    camera.Disconnect()


def test_alpyca_exposes_and_downloads_what_wanda_saved(server):
    camera = connected(Camera(address(server), 0))
    camera.BinX, camera.StartX, camera.StartY = 1, 0, 0
    camera.NumX, camera.NumY = camera.CameraXSize, camera.CameraYSize
    camera.Gain = 800
    expose(camera, 0.5)
    assert camera.LastExposureDuration == pytest.approx(0.5)
    as_bytes = np.array(camera.ImageArray)  # alpyca asks for ImageBytes
    assert camera.ImageArrayInfo.TransmissionElementType == 8  # UInt16 on the wire
    as_json = np.array(camera._get("imagearray"))  # alpyca's JSON path
    np.testing.assert_array_equal(as_bytes, as_json)
    saved = fits.getdata(wait_for_file(server.captures / "alpaca" / "light_0001.fits"))
    np.testing.assert_array_equal(as_bytes.T, saved)  # ImageArray[x][y], FITS data[y][x]
    with fits.open(server.captures / "alpaca" / "light_0001.fits") as hdul:
        assert hdul[0].header["EXPTIME"] == pytest.approx(0.5)
        assert hdul[0].header["GAIN"] == pytest.approx(8.0)  # Gain 800 is ISO 800

    camera.BinX = 2
    camera.NumX, camera.NumY = 200, 100
    expose(camera, 0.5, light=False)  # a dark: saved as one
    binned = np.array(camera.ImageArray)
    assert binned.shape == (200, 100)
    assert wait_for_file(server.captures / "alpaca" / "dark_0001.fits").exists()
    camera.Disconnect()


def wait_for_file(path: Path) -> Path:
    wait_for(path.exists, what=str(path))
    return path


def test_alpyca_aborts_an_exposure_and_the_web_page_waits_its_turn(server):
    camera = connected(Camera(address(server), 0))
    camera.StartExposure(60, True)
    wait_for(lambda: camera.CameraState == CameraStates.cameraExposing, what="exposing")
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.post("/api/camera/capture", {})
    body = json.loads(refused.value.read())
    assert refused.value.code == 409 and body["code"] == "CAPTURE_BUSY" and "Alpaca" in body["error"]
    started = time.monotonic()
    camera.AbortExposure()
    wait_for(lambda: camera.CameraState == CameraStates.cameraIdle, what="idle")
    assert time.monotonic() - started < 30  # aborted, not waited out
    assert not camera.ImageReady
    assert server.post("/api/camera/capture", {})["file"]  # the camera is free again
    camera.Disconnect()


def test_alpyca_tracks_and_guides_the_telescope_and_hears_what_it_cannot_do(server):
    telescope = connected(Telescope(address(server), 0))
    assert telescope.CanPulseGuide and telescope.CanSetTracking and not telescope.CanSlew
    assert telescope.SiteLatitude == pytest.approx(52.0) and telescope.SiteLongitude == pytest.approx(5.0)
    assert 0 <= telescope.SiderealTime < 24
    telescope.Tracking = True
    assert telescope.Tracking and server.get("/api/mount/status")["tracking"] is True
    telescope.PulseGuide(GuideDirections.guideWest, 3000)  # 1.5 s of sky: the next step comes early
    assert telescope.IsPulseGuiding
    with pytest.raises(InvalidOperationException):
        telescope.PulseGuide(GuideDirections.guideEast, 500)  # one pulse at a time
    wait_for(lambda: not telescope.IsPulseGuiding, what="the pulse to end")
    with pytest.raises(NotImplementedException):
        telescope.PulseGuide(GuideDirections.guideNorth, 500)
    with pytest.raises(NotImplementedException):
        telescope.SlewToCoordinates(5.5, -5.0)
    with pytest.raises(InvalidValueException):
        telescope.PulseGuide(GuideDirections.guideEast, -5)
    telescope.Tracking = False
    assert not telescope.Tracking
    with pytest.raises(InvalidOperationException):
        telescope.PulseGuide(GuideDirections.guideEast, 500)  # a pulse shifts tracking: none to shift
    telescope.Tracking = True
    server.post("/api/solve", {})
    assert 5.0 < telescope.RightAscension < 6.0 and -7 < telescope.Declination < -3  # M42, as solved
    telescope.Tracking = False
    with pytest.raises(ValueNotSetException):
        _ = telescope.RightAscension  # the sky drifts on: no stale place
    telescope.Disconnect()


def test_alpyca_with_the_password_in_its_address(tmp_path):
    with Wanda(tmp_path, password="darkskies") as server:
        with pytest.raises(AlpacaRequestException):
            _ = Camera(address(server), 0).Connected  # 401
        camera = Camera(address(server, "nina:darkskies@"), 0)
        assert camera.Connected is False and camera.Name == "WANDA camera"
