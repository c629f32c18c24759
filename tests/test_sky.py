"""The simulated sky obeys exposure, gain, tracking and the frame type, and knows its truth."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from astropy.io import fits
from helpers import wait_until

from wanda.astro.measure import analyse
from wanda.backends.sky import PREVIEW_SIZE, SIDEREAL_RATE, SensorModel, SimulatedSky
from wanda.keys import CAMERA, CAPTURES


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _isolated_star(sky: SimulatedSky, *, min_snr: float, max_peak_adu: float) -> int:
    """Index (in the truth) of a star well inside the frame, far from others and not saturated
    in a 16-bit render (``max_peak_adu`` in 16-bit ADU)."""
    truth = sky.truth()
    snr = truth.peak_snr()
    sigma = sky.sigma
    peak_adu = truth.flux_e_per_s * truth.exposure_s / (2 * np.pi * sigma**2) * truth.gain / 2 * 16
    order = np.argsort(-snr)
    for i in order:
        if snr[i] < min_snr:
            break
        if peak_adu[i] > max_peak_adu:
            continue
        x, y = truth.x[i], truth.y[i]
        if not (30 < x < PREVIEW_SIZE[0] - 30 and 30 < y < PREVIEW_SIZE[1] - 30):
            continue
        d2 = (truth.x - x) ** 2 + (truth.y - y) ** 2
        if np.sort(d2)[1] > 40**2:
            return int(i)
    raise AssertionError("no isolated star found")


def _box(image: np.ndarray, x: float, y: float, half: int = 10) -> np.ndarray:
    xi, yi = round(x), round(y)
    return image[yi - half : yi + half + 1, xi - half : xi + half + 1]


def _star_flux(image: np.ndarray, x: float, y: float) -> float:
    box = _box(image, x, y).astype(np.float64)
    background = np.median(_box(image, x, y, 25))
    return float((box - background).sum())


@pytest.fixture
def sky():
    sky = SimulatedSky(fwhm=3.0, seed=7, clock=FakeClock())
    sky.set_tracking(True)
    return sky


def test_a_preview_frame_is_1440x1080_rgb_in_its_interval():
    clock = FakeClock()
    sky = SimulatedSky(clock=clock, wall_clock=lambda: 5e8)
    sky.open()
    wake = threading.Event()
    wake.set()  # a pending wake-up interrupts the wait instead of sleeping
    assert sky.capture_preview(wake, 30) is None
    clock.now += 1.0  # the frame is now due
    frame = sky.capture_preview(threading.Event(), 30)
    assert frame.pixels.shape == (1080, 1440, 4) and frame.pixel_format == "RGBX"
    rgb = frame.pixels[..., :3]
    assert (rgb[..., 0] == rgb[..., 1]).all() and frame.pixels.dtype == np.uint8
    assert sky.frame_interval(30) == pytest.approx(1 / 30)
    sky.set_controls(exposure_s=2.0)
    assert sky.frame_interval(30) == 2.0


def test_brightness_scales_with_exposure_times_gain(sky):
    image = sky.render_luminance(0.5, 2.0, 0.0, bits=16).copy()
    star = _isolated_star(sky, min_snr=15, max_peak_adu=12000)
    truth = sky.truth()
    x, y = truth.x[star], truth.y[star]
    base = _star_flux(image, x, y)
    doubled_exposure = _star_flux(sky.render_luminance(1.0, 2.0, 0.0, bits=16), x, y)
    doubled_gain = _star_flux(sky.render_luminance(0.5, 4.0, 0.0, bits=16), x, y)
    assert doubled_exposure / base == pytest.approx(2.0, rel=0.1)
    assert doubled_gain / base == pytest.approx(2.0, rel=0.1)
    # And the star's flux matches the truth through the sensor model.
    sensor = SensorModel()
    expected = truth.flux_e_per_s[star] * 0.5 * 2.0 / sensor.e_per_adu_at_unity * 16
    assert base == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("fwhm", [2.0, 5.0])
def test_stars_have_the_configured_fwhm(fwhm):
    sky = SimulatedSky(fwhm=fwhm, seed=3, clock=FakeClock())
    sky.set_tracking(True)
    image = sky.render_luminance(0.5, 2.0, 0.0, bits=16).copy()
    star = _isolated_star(sky, min_snr=30, max_peak_adu=30000)
    truth = sky.truth()
    half = int(np.ceil(2.5 * fwhm))  # all the light, little of the noise
    box = _box(image, truth.x[star], truth.y[star], half).astype(np.float64)
    box -= np.median(_box(image, truth.x[star], truth.y[star], 25))
    ys, xs = np.mgrid[0 : box.shape[0], 0 : box.shape[1]]
    total = box.sum()
    cx, cy = (box * xs).sum() / total, (box * ys).sum() / total
    variance = (box * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / total / 2
    # A pixel-integrated Gaussian has variance sigma^2 + 1/12.
    measured_fwhm = 2.3548 * np.sqrt(variance - 1 / 12)
    assert measured_fwhm == pytest.approx(fwhm, rel=0.1)
    assert cx + round(truth.x[star]) - half == pytest.approx(truth.x[star], abs=0.15)


def test_the_field_drifts_at_the_sidereal_rate_unless_tracking():
    clock = FakeClock()
    sky = SimulatedSky(plate_scale=2.0, clock=clock)
    sky.render_luminance(0.01, 8)
    first = sky.truth()
    x0 = dict(zip(first.y.tolist(), first.x.tolist(), strict=True))
    clock.now += 4.0
    sky.render_luminance(0.01, 8)
    moved = sky.truth()
    shifts = [x - x0[y] for x, y in zip(moved.x.tolist(), moved.y.tolist(), strict=True) if y in x0]
    assert np.median(shifts) == pytest.approx(4.0 * SIDEREAL_RATE / 2.0, rel=1e-3)

    sky.set_tracking(True)
    sky.render_luminance(0.01, 8)
    held = sky.truth()
    clock.now += 60.0
    sky.render_luminance(0.01, 8)
    assert np.array_equal(sky.truth().x, held.x)


def test_stars_trail_in_a_long_untracked_exposure():
    clock = FakeClock()
    sky = SimulatedSky(plate_scale=2.0, clock=clock)
    image = sky.render_luminance(4.0, 2.0, 0.0, bits=16).copy()
    truth = sky.truth()
    star = int(np.argmax(np.where((truth.x > 100) & (truth.x < 1300), truth.flux_e_per_s, 0)))
    row = image[round(truth.y[star])].astype(np.float64)
    lit = row > np.median(row) + 0.5 * (row[int(truth.x[star])] - np.median(row))
    trail = 4.0 * SIDEREAL_RATE / 2.0  # 30 pixels
    x = round(truth.x[star])
    assert lit[x - int(trail / 2) + 3 : x + int(trail / 2) - 3].all()


def test_hot_pixels_stand_out_in_a_dark_exposure(sky):
    image = sky.render_luminance(10.0, 4.0, 0.0, bits=16).copy()
    truth = sky.truth()
    background = np.median(image)
    hot = image[truth.hot_y, truth.hot_x]
    assert (hot > background + 200).mean() > 0.8
    assert len(truth.hot_x) >= 10


def test_background_noise_follows_the_sensor_model(sky):
    exposure, gain = 2.0, 4.0
    image = sky.render_luminance(exposure, gain, 0.0, bits=16).copy()
    sensor = SensorModel()
    adu_per_e = gain / sensor.e_per_adu_at_unity * 16
    patch = image[500:600, 700:800].astype(np.float64)
    robust_sigma = 1.4826 * np.median(np.abs(patch - np.median(patch)))  # stars do not move it
    expected = np.sqrt(sensor.sky_e_per_s * exposure + sensor.read_noise_e**2) * adu_per_e
    assert robust_sigma == pytest.approx(expected, rel=0.15)


def test_the_star_field_is_fixed_by_its_seed():
    a = SimulatedSky(seed=11, clock=FakeClock()).truth()
    b = SimulatedSky(seed=11, clock=FakeClock()).truth()
    c = SimulatedSky(seed=12, clock=FakeClock()).truth()
    assert np.array_equal(a.x, b.x) and np.array_equal(a.flux_e_per_s, b.flux_e_per_s)
    assert not np.array_equal(a.x[:10], c.x[:10])
    # A realistic spread: many faint stars, few bright ones, over several magnitudes.
    flux = np.sort(a.flux_e_per_s)
    assert flux[-1] / flux[0] > 1000
    assert (flux > flux[-1] / 100).sum() < (flux < flux[-1] / 100).sum() / 5


def test_shortening_the_exposure_abandons_the_long_frame_under_way():
    """As the Pi backend's restart does: after a 15 s frame was scheduled (a long exposure, or a
    cancelled still), a 50 ms exposure gives a frame at once, not after the 15 s."""
    sky = SimulatedSky()
    asleep = threading.Event()
    asleep.set()
    sky.set_controls(exposure_s=15.0)
    assert sky.capture_preview(asleep, 30) is None  # the 15 s frame is due
    sky.set_controls(exposure_s=0.05)
    give_up = threading.Event()
    timer = threading.Timer(10, give_up.set)  # a bound, in case the 15 s frame is still awaited
    timer.start()
    frame = sky.capture_preview(give_up, 30)
    timer.cancel()
    assert frame is not None and frame.exposure_s == 0.05


# -- frame types: what is in front of the lens ------------------------------------------------------


async def _capture_fits(client, frame_type: str, exposure: float, iso: float = 800) -> np.ndarray:
    """One still of ``frame_type`` through the API, as the FITS file it saved (16-bit linear)."""
    body = {"exposure_seconds": exposure, "iso": iso, "frame_type": frame_type, "file_format": "fits"}
    response = await client.post("/api/camera/settings", json=body)
    assert response.status == 200, await response.text()
    response = await client.post("/api/camera/capture")
    assert response.status == 200, await response.text()
    data = (await response.json())["data"]
    assert data["frame_type"] == frame_type and data["file"].startswith(frame_type)
    with fits.open(client.app[CAPTURES] / data["file"]) as hdus:
        return hdus[0].data.astype(np.float64)


def _robust_sigma(image: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(image - np.median(image))))


async def test_darks_and_bias_frames_are_taken_capped_and_flats_on_an_even_panel(client):
    """A dark is taken with the telescope capped: no stars, no sky background, no vignetting, only
    what the sensor makes by itself; a bias is the shortest exposure's; a flat an even panel."""
    sensor = SensorModel()
    black = sensor.black_level_adu * 16  # in the FITS file's 16-bit units
    adu_per_e = 8 / sensor.e_per_adu_at_unity * 16  # ISO 800
    light = await _capture_fits(client, "light", 0.2)
    assert analyse(light.astype(np.uint16), 65535)["star_count"] > 100
    hot = client.app[CAMERA].backend.truth()  # the sensor's hot pixels, in every frame

    dark = await _capture_fits(client, "dark", 0.2)
    assert analyse(dark.astype(np.uint16), 65535)["star_count"] == 0
    # The bias level everywhere (no background, gradient or vignetting), the read noise on it, and
    # the hot pixels' dark current.
    assert np.median(dark) == pytest.approx(black, abs=10)
    assert np.median(dark[:100, :100]) == pytest.approx(np.median(dark[490:590, 670:770]), abs=10)
    assert _robust_sigma(dark) == pytest.approx(sensor.read_noise_e * adu_per_e, rel=0.1)
    assert (dark[hot.hot_y, hot.hot_x] > black + 10 * sensor.read_noise_e * adu_per_e).mean() > 0.8

    bias = await _capture_fits(client, "bias", 0.2)
    assert analyse(bias.astype(np.uint16), 65535)["star_count"] == 0
    assert np.median(bias) == pytest.approx(black, abs=10)
    assert _robust_sigma(bias) == pytest.approx(sensor.read_noise_e * adu_per_e, rel=0.1)
    # The shortest exposure's: no time for the hot pixels to fill.
    assert np.median(bias[hot.hot_y, hot.hot_x]) < black + 3 * sensor.read_noise_e * adu_per_e

    flat = await _capture_fits(client, "flat", 1 / 30)  # the preview's default exposure and ISO
    assert analyse(flat.astype(np.uint16), 65535)["star_count"] == 0
    centre = np.median(flat[490:590, 670:770])
    assert 0.4 * 65535 < centre < 0.6 * 65535  # about half of full scale
    # Vignetting (the corners get about a fifth less light), and no light-pollution gradient.
    corners = [flat[:60, :60], flat[:60, -60:], flat[-60:, :60], flat[-60:, -60:]]
    assert all(0.7 < (np.median(c) - black) / (centre - black) < 0.9 for c in corners)
    assert np.median(flat[:40, 670:770]) == pytest.approx(np.median(flat[-40:, 670:770]), rel=0.02)
    # Scaled by exposure x gain like the sky: half the exposure, half the light.
    shorter = await _capture_fits(client, "flat", 1 / 60)
    assert np.median(shorter[490:590, 670:770]) - black == pytest.approx((centre - black) / 2, rel=0.05)


async def test_the_preview_shows_what_the_frame_type_puts_in_front_of_the_lens(client):
    """Frame type dark means the cap is on: the live view shows the dark too, as a real camera's."""

    async def analysed_after(body: dict) -> dict:
        response = await client.post("/api/camera/settings", json=body)
        assert response.status == 200
        changed = time.time()  # frames read out after this were rendered with the new settings

        async def fresh():
            data = (await (await client.get("/api/analysis")).json())["data"]
            return data if data["timestamp"] > changed else None

        return await wait_until(fresh)

    assert (await analysed_after({"exposure_seconds": 0.05, "frame_type": "light"}))["star_count"] > 100
    assert (await analysed_after({"frame_type": "dark"}))["star_count"] == 0
    assert (await analysed_after({"frame_type": "light"}))["star_count"] > 100


async def test_a_session_of_darks_is_capped_and_the_preview_is_not(client, config):
    """A session's frame type is its own: its darks are capped, and the camera, still on lights,
    shows the sky again after them."""
    await client.post("/api/camera/settings", json={"exposure_seconds": 0.05, "file_format": "fits"})
    response = await client.post(
        "/api/session/start", json={"name": "darks", "total_images": 2, "frame_type": "dark", "file_format": "fits"}
    )
    assert response.status == 200, await response.text()

    async def completed():
        return (await (await client.get("/api/session/status")).json())["data"]["status"] == "completed"

    await wait_until(completed)
    darks = sorted((config.captures / "darks").glob("dark_*.fits"))
    assert len(darks) == 2
    for path in darks:
        with fits.open(path) as hdus:
            assert analyse(hdus[0].data.astype(np.uint16), 65535)["star_count"] == 0
    assert client.app[CAMERA].backend.frame_type == "light"
