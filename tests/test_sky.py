"""The simulated sky obeys exposure, gain, tracking and the frame type, and knows its truth."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from helpers import FakeClock, wait_until

from wanda.astro.catalog import load_catalogue
from wanda.astro.measure import analyse
from wanda.astro.sidereal import SIDEREAL_ARCSEC_PER_S
from wanda.backends.sky import PREVIEW_SIZE, SIDEREAL_RATE, SensorModel, SimulatedSky
from wanda.backends.starfield import star_flux
from wanda.keys import CAMERA, CAPTURES


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
    # The bias level everywhere (no background, gradient or vignetting) with the sensor's floor on
    # it (the columns' pattern, a little dark current), the read noise on it, and the hot pixels'
    # dark current.
    sim = client.app[CAMERA].backend
    floor = sim.defects.floor(0.2, adu_per_e, black, 16, sim.temperature_c)
    assert np.median(dark) == pytest.approx(np.median(floor), abs=10)
    assert abs(np.median(floor) - black) < 20  # 0.2 s at 20 degrees: a few ADU of dark current
    assert np.median(dark[:100, :100]) == pytest.approx(np.median(dark[490:590, 670:770]), abs=10)
    assert _robust_sigma(dark) == pytest.approx(sensor.read_noise_e * adu_per_e, rel=0.1)
    assert (dark[hot.hot_y, hot.hot_x] > black + 10 * sensor.read_noise_e * adu_per_e).mean() > 0.8

    bias = await _capture_fits(client, "bias", 0.2)
    assert analyse(bias.astype(np.uint16), 65535)["star_count"] == 0
    assert np.median(bias) == pytest.approx(black, abs=12)  # and the columns' pattern
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


# -- the real sky: the catalogue through the optic ----------------------------------------------

START = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC: the simulated night's wall clock
M42 = (83.822, -5.391, 0.0)


def catalogue_sky(clock: FakeClock | None = None, **kwargs) -> SimulatedSky:
    clock = clock or FakeClock()
    start = clock.now
    kwargs.setdefault("pointing", M42)
    return SimulatedSky(clock=clock, wall_clock=lambda: START + clock.now - start, **kwargs)


def test_the_real_sky_draws_the_catalogues_stars_where_its_wcs_puts_them():
    """The truth's stars are the catalogue's at the date, at the pixels astropy's WCS gives for the
    truth's pointing; and the analysis finds the bright ones there."""
    sky = catalogue_sky()
    sky.set_tracking(True)
    image = sky.render_luminance(0.5, 4.0).astype(np.uint8)
    truth = sky.truth()
    pointing = truth.pointing
    assert pointing.wcs.ra == pytest.approx(M42[0], abs=0.01) and pointing.wcs.dec == pytest.approx(M42[1], abs=0.01)
    assert pointing.wcs.scale == pytest.approx(18.01, abs=0.01) and pointing.wcs.field == pytest.approx(
        (7.2, 5.4), 0.01
    )
    assert pointing.epoch == pytest.approx(2026.41, abs=0.01)
    # The catalogue's stars, moved to the date.
    catalogue = load_catalogue()
    listed = truth.source_id != 0
    index = {int(s): i for i, s in enumerate(catalogue.source_id)}
    rows = np.array([index[int(s)] for s in truth.source_id[listed]])
    ra, dec = catalogue.positions_at(rows, pointing.epoch)
    assert truth.ra[listed] == pytest.approx(ra) and truth.dec[listed] == pytest.approx(dec)
    assert truth.magnitude[listed] == pytest.approx(catalogue.mag[rows])
    # Every catalogue star in the frame is drawn (the query misses none).
    header = fits.Header()
    for keyword, value, comment in pointing.wcs.fits_cards():
        header[keyword] = (value, comment)
    wcs = WCS(header)
    nearby = catalogue.query(pointing.wcs.ra, pointing.wcs.dec, 5.0)
    near_ra, near_dec = catalogue.positions_at(nearby, pointing.epoch)
    x, y = wcs.all_world2pix(near_ra, near_dec, 0)
    inside = (x >= 0) & (x <= 1439) & (y >= 0) & (y <= 1079)
    assert set(catalogue.source_id[nearby[inside]].tolist()) == set(truth.source_id[listed].tolist())
    assert listed.sum() > 400  # M42's field has 555 stars to G 10
    # Each drawn star where astropy puts it.
    x, y = wcs.all_world2pix(truth.ra, truth.dec, 0)
    assert np.abs(x - truth.x).max() < 1e-6 and np.abs(y - truth.y).max() < 1e-6
    # The analysis finds the stars where the truth says: the measured ones (not saturated; a faint
    # neighbour pulls a few a little).
    found = [star for star in analyse(image, 255)["stars"] if star["hfr"] is not None]
    assert len(found) >= 25
    distance = np.array([np.hypot(truth.x - star["x"], truth.y - star["y"]).min() for star in found])
    assert np.median(distance) < 0.15 and (distance < 0.5).mean() > 0.9  # blends of doubles: the rest


def test_the_real_skys_brightness_follows_the_magnitudes_exposure_and_gain():
    sky = catalogue_sky(fillers=False)
    sky.set_tracking(True)
    image = sky.render_luminance(0.5, 2.0, 0.0, bits=16).copy()
    truth = sky.truth()
    star = _isolated_star(sky, min_snr=30, max_peak_adu=20000)
    x, y = truth.x[star], truth.y[star]
    measured = _star_flux(image, x, y)
    expected = star_flux(truth.magnitude[star], 50.0) * 0.5 * 2.0 / SensorModel().e_per_adu_at_unity * 16
    assert measured == pytest.approx(expected, rel=0.1)
    assert _star_flux(sky.render_luminance(1.0, 2.0, 0.0, bits=16), x, y) == pytest.approx(2 * measured, rel=0.1)
    # A longer lens at the same f-ratio gathers more light: 135 mm, (135/50)^2 as much a star.
    assert star_flux(np.array(5.0), 135.0) / star_flux(np.array(5.0), 50.0) == pytest.approx(2.7**2)
    # The brightest saturate the preview at its default settings, as on a real night.
    preview = sky.render_luminance(1 / 30, 8.0)
    assert preview.max() == 255


def test_the_idle_mount_lets_the_sky_turn_at_the_sidereal_rate_about_the_pole():
    """RA of the date at the centre grows 15.04" a second while the hour angle holds; near the pole
    the stars turn about it (no single pixel shift moves them), where the projection says."""
    clock = FakeClock()
    sky = catalogue_sky(clock, pointing=(40.0, 80.0, 30.0), longitude=5.0)  # no latitude: no refraction
    sky.render_luminance(0.001, 8)
    before = sky.truth()
    clock.advance(600.0)
    sky.render_luminance(0.001, 8)
    after = sky.truth()
    turned = (after.pointing.ra_of_date - before.pointing.ra_of_date) * 3600
    assert turned == pytest.approx(600 * SIDEREAL_ARCSEC_PER_S, rel=1e-6)
    assert after.pointing.dec_of_date == pytest.approx(before.pointing.dec_of_date, abs=1e-9)
    assert after.pointing.hour_angle == pytest.approx(before.pointing.hour_angle, abs=1e-6)
    # The camera keeps its roll to the north (the mount turns it about the pole with the sky).
    assert after.pointing.wcs.roll == pytest.approx(before.pointing.wcs.roll, abs=0.1)
    both = np.intersect1d(before.source_id[before.source_id != 0], after.source_id[after.source_id != 0])
    assert len(both) > 100
    where = {int(s): i for i, s in enumerate(after.source_id)}
    was = {int(s): i for i, s in enumerate(before.source_id)}
    moved_x = np.array([after.x[where[s]] - before.x[was[s]] for s in both.tolist()])
    moved_y = np.array([after.y[where[s]] - before.y[was[s]] for s in both.tolist()])
    assert np.ptp(moved_x) > 20 or np.ptp(moved_y) > 20  # a rotation, not a translation
    # Each star's new place is the projection of its RA/Dec through the new pointing.
    x, y, _ = after.pointing.wcs.sky_to_pixel(after.ra, after.dec)
    assert np.abs(x - after.x).max() < 1e-6 and np.abs(y - after.y).max() < 1e-6


def test_the_tracking_mount_holds_the_sky_with_its_steppers_sawtooth():
    """Tracking: between two steps the sky drifts by one step's sidereal motion (3.523 s, 53"),
    then the step takes it back; over minutes it stays where it was."""
    clock = FakeClock()
    sky = catalogue_sky(clock)
    sky.set_tracking(True)  # the first step is now

    def centre_ra() -> float:
        sky.render_luminance(0.0001, 8)
        return sky.truth().pointing.ra_of_date * 3600

    step = 3.523 * SIDEREAL_ARCSEC_PER_S
    clock.advance(0.5)
    first = centre_ra()
    clock.advance(2.5)
    assert centre_ra() - first == pytest.approx(2.5 * SIDEREAL_ARCSEC_PER_S, rel=1e-4)  # drifting
    clock.advance(1.0)  # past the next step at 3.523 s
    assert centre_ra() - first == pytest.approx(3.5 * SIDEREAL_ARCSEC_PER_S - step, rel=1e-4)
    clock.advance(3.523 * 100)  # a hundred steps later, the same phase: the same place
    assert centre_ra() - first == pytest.approx(3.5 * SIDEREAL_ARCSEC_PER_S - step, rel=1e-4)
    # The mount saying it tracks again (a new speed) does not restart the steps.
    sky.set_tracking(True)
    assert centre_ra() - first == pytest.approx(3.5 * SIDEREAL_ARCSEC_PER_S - step, rel=1e-4)
    # Stopping leaves the sky where the last step put it, and it turns on from there.
    sky.set_tracking(False)
    held = centre_ra()
    clock.advance(10.0)
    assert centre_ra() - held == pytest.approx(10 * SIDEREAL_ARCSEC_PER_S, rel=1e-4)


def test_following_a_mount_the_sky_turns_with_its_real_steps_late_ones_and_moves_included():
    """The server's sky hears the mount's steps: each with the sky takes a step's sidereal
    motion off the turn (late steps show late), a move's steps against it add theirs, and a long
    tracked exposure is drawn from a handful of pieces however many steps it spans."""
    clock = FakeClock()
    sky = catalogue_sky(clock, fillers=False)
    stepped = sky.follow_mount(3.523, tracking_clockwise=True, periodic_error_arcsec=0.0)  # tested on its own

    def centre_ra() -> float:
        sky.render_luminance(0.0001, 8)
        return sky.truth().pointing.ra_of_date * 3600

    step = 3.523 * SIDEREAL_ARCSEC_PER_S  # each step is heard a millisecond after it, as it is
    first = centre_ra()
    stepped(clock.now - 0.001, +1)  # tracking starts with a step
    assert centre_ra() - first == pytest.approx(-step, rel=1e-4)
    clock.advance(3.6)  # the next step is 77 ms late: the sky drifted on meanwhile
    assert centre_ra() - first == pytest.approx(3.6 * SIDEREAL_ARCSEC_PER_S - step, rel=1e-4)
    stepped(clock.now - 0.001, +1)
    assert centre_ra() - first == pytest.approx(3.6 * SIDEREAL_ARCSEC_PER_S - 2 * step, rel=1e-4)
    for _ in range(10):  # a move of ten steps against the sky, 0.1 s apart: 530" east
        clock.advance(0.1)
        stepped(clock.now - 0.001, -1)
    assert centre_ra() - first == pytest.approx(4.6 * SIDEREAL_ARCSEC_PER_S + 8 * step, rel=1e-4)

    # A 50 s tracked exposure: 14 steps, one piece of a step's drift (plus the partial ones).
    for _ in range(17):
        clock.advance(3.523)
        stepped(clock.now - 0.001, +1)
    path = sky._path(clock.now, 50.0)
    assert len(path) <= 3 and sum(share for _, _, share in path) == pytest.approx(1.0)
    assert max(b for _, b, _ in path) - min(a for a, _, _ in path) <= 3.523 + 1e-6


def test_following_a_mount_a_preview_frame_has_the_steps_made_during_its_exposure():
    """A preview is drawn once its exposure has ended: a move's steps that came during it are in
    it (a frame drawn ahead would put the stars where they were before the move)."""
    clock = FakeClock()
    sky = catalogue_sky(clock, fillers=False)
    stepped = sky.follow_mount(3.523, tracking_clockwise=True)
    sky.set_controls(exposure_s=0.05)

    class MoveDuringTheExposure:
        """The camera thread's wait for the frame: ten steps against the sky come meanwhile."""

        def wait(self, timeout: float) -> bool:
            clock.advance(timeout)
            for k in range(10):  # at the exposure's start: the whole exposure sees the moved sky
                stepped(clock.now - 0.0499 + k * 0.0001, -1)
            return False

    sky.render_luminance(0.0001, 8)
    start_ra = sky.truth().pointing.ra_of_date
    frame = sky.capture_preview(MoveDuringTheExposure(), 30)
    assert frame is not None
    moved = (sky.truth().pointing.ra_of_date - start_ra) * 3600
    assert moved == pytest.approx(10 * 3.523 * SIDEREAL_ARCSEC_PER_S, rel=0.03)


def test_a_tracked_exposure_longer_than_a_step_spreads_the_light_over_the_step():
    """Every star of a 10 s tracked exposure is smeared over one step (53", 2.9 px at 18"/px)
    along the RA direction: at roll 0 along x."""
    sky = catalogue_sky(fillers=False)
    sky.set_tracking(True)
    image = sky.render_luminance(10.0, 1.0, bits=16).copy()
    truth = sky.truth()
    star = _isolated_star(sky, min_snr=50, max_peak_adu=40000)
    box = _box(image, truth.x[star], truth.y[star], 8).astype(np.float64)
    box -= np.median(_box(image, truth.x[star], truth.y[star], 25))
    ys, xs = np.mgrid[0 : box.shape[0], 0 : box.shape[1]]
    total = box.sum()
    cx, cy = (box * xs).sum() / total, (box * ys).sum() / total
    var_x = (box * (xs - cx) ** 2).sum() / total
    var_y = (box * (ys - cy) ** 2).sum() / total
    step_px = 3.523 * SIDEREAL_RATE * np.cos(np.radians(M42[1])) / sky.plate_scale
    assert var_x - var_y == pytest.approx(step_px**2 / 12, rel=0.25)  # a uniform smear's variance
    assert cx + round(truth.x[star]) - 8 == pytest.approx(truth.x[star], abs=0.2)  # the truth is its middle


def test_stars_trail_along_ra_in_a_long_untracked_exposure_of_the_real_sky():
    sky = catalogue_sky(fillers=False)
    image = sky.render_luminance(30.0, 1.0, bits=16).copy()
    truth = sky.truth()
    trail = 30 * SIDEREAL_RATE * np.cos(np.radians(M42[1])) / sky.plate_scale  # 25 px
    inside = (truth.x > 100) & (truth.x < 1340) & (truth.y > 50) & (truth.y < 1030)
    star = int(np.argmax(np.where(inside, truth.flux_e_per_s, 0)))
    row = image[round(truth.y[star])].astype(np.float64)
    x = round(truth.x[star])
    lit = row > np.median(row) + 0.3 * (row[x] - np.median(row))
    assert lit[x - int(trail / 2) + 3 : x + int(trail / 2) - 3].all()
    assert not lit[x + int(trail / 2) + 6] and not lit[x - int(trail / 2) - 6]


def test_proper_motion_moves_barnards_star_between_dates():
    """Barnard's star, 10.3" a year north: 20 years apart, 206" or 11 pixels of the default optic."""
    barnard = 4472832130942575872

    def where(year: float) -> tuple[float, float]:
        clock = FakeClock()
        start = (year - 1970) * 365.25 * 86400
        sky = SimulatedSky(pointing=(269.45, 4.7, 0.0), clock=clock, wall_clock=lambda: start, fillers=False)
        sky.set_tracking(True)
        sky.render_luminance(0.01, 8)
        truth = sky.truth()
        (i,) = np.flatnonzero(truth.source_id == barnard)
        return truth.x[i], truth.y[i]

    (x0, y0), (x1, y1) = where(2016.0), where(2036.0)
    assert x1 - x0 == pytest.approx(0, abs=1.5)  # -0.8"/yr in RA
    assert y0 - y1 == pytest.approx(20 * 10.33 / 18.01, abs=0.3)  # north is up


def test_filler_stars_are_random_faint_and_stay_put():
    """Fillers (source_id 0) are fainter than the catalogue, differ with the seed, and a patch of
    sky keeps its fillers whichever way the field came to it."""
    a = catalogue_sky(seed=1)
    a.render_luminance(0.01, 8)
    b = catalogue_sky(seed=2)
    b.render_luminance(0.01, 8)
    first, other = a.truth(), b.truth()
    fillers = first.source_id == 0
    assert fillers.sum() > 3000 and (first.magnitude[fillers] >= 10).all() and (first.magnitude[fillers] <= 13).all()
    assert set(first.source_id[~fillers].tolist()) == set(other.source_id[other.source_id != 0].tolist())
    assert not np.array_equal(np.sort(first.ra[fillers])[:50], np.sort(other.ra[other.source_id == 0])[:50])
    # Two caps that overlap have the same fillers where they overlap: the field can move.
    east, west = catalogue_sky(seed=1)._field, catalogue_sky(seed=1, pointing=(M42[0] - 6, M42[1], 0.0))._field
    here, there = east.stars_near(east.attitude(0.0)), west.stars_near(west.attitude(0.0))

    def fillers_around(stars, ra: float, dec: float) -> np.ndarray:
        close = (stars.source_id == 0) & (np.hypot(stars.ra - ra, stars.dec - dec) < 1.0)
        return np.sort(stars.ra[close])

    overlap = fillers_around(here, M42[0] - 3, M42[1])
    assert len(overlap) > 50 and np.array_equal(overlap, fillers_around(there, M42[0] - 3, M42[1]))


# -- what darks, bias frames and flats are for (wanda/backends/defects.py) --------------------


def capped(sky: SimulatedSky, exposure: float, frame_type: str = "dark") -> np.ndarray:
    """A 16-bit frame at gain 1 (long darks at gain 8 would clip in the glowing corner)."""
    sky.set_controls(frame_type=frame_type)
    return sky.render_luminance(exposure, 1.0, bits=16).astype(np.float64)


def test_dark_current_and_amp_glow_grow_with_exposure_and_temperature():
    sky = catalogue_sky(fillers=False)
    glow_box = (slice(0, 40), slice(-40, None))  # the amplifier's corner, top right
    far_box = (slice(500, 580), slice(300, 380))

    def glow(frame: np.ndarray) -> float:
        return float(np.median(frame[glow_box]) - np.median(frame[far_box]))

    short, long = glow(capped(sky, 30.0)), glow(capped(sky, 60.0))
    assert short > 0 and long == pytest.approx(2 * short, rel=0.1)
    sky.temperature_c = 26.0  # six degrees warmer: twice the dark current
    assert glow(capped(sky, 30.0)) == pytest.approx(2 * short, rel=0.1)
    hot = sky.truth()
    warm = capped(sky, 0.5)[hot.hot_y, hot.hot_x]  # short: the hottest would clip in 30 s
    sky.temperature_c = 20.0
    cool = capped(sky, 0.5)[hot.hot_y, hot.hot_x]
    assert np.median(warm) > np.median(cool)


def test_bias_frames_share_the_columns_pattern():
    sky = catalogue_sky(fillers=False)
    first = capped(sky, 0.0001, "bias").mean(axis=0)
    second = capped(sky, 0.0001, "bias").mean(axis=0)
    assert np.corrcoef(first, second)[0, 1] > 0.8  # fixed on the sensor: a master bias removes it
    pattern = sky.defects.bias_columns_adu * 16  # 12-bit ADU in the 16-bit frame
    assert np.corrcoef(first, pattern)[0, 1] > 0.8


def test_dust_shadows_show_in_flats_as_their_truth_puts_them():
    sky = catalogue_sky(fillers=False)
    flat = capped(sky, 8 / 30, "flat")  # gain 1: eight times the exposure for the panel's level
    black = SensorModel().black_level_adu * 16
    for x, y, radius, depth in sky.defects.model.dust:
        ring = flat[int(y - 0.8 * radius) - 1 : int(y - 0.8 * radius) + 2, int(x) - 2 : int(x) + 3]
        outside = flat[int(y) - 3 : int(y) + 3, int(x + 2.5 * radius) - 3 : int(x + 2.5 * radius) + 3]
        dimming = 1 - (np.median(ring) - black) / (np.median(outside) - black)
        expected = 1 - sky.defects.transmission[int(y - 0.8 * radius), int(x)]
        assert dimming == pytest.approx(expected, abs=0.02) and expected > depth / 2


def test_a_satellite_trail_crosses_a_light_frame_where_the_truth_says():
    sky = catalogue_sky(fillers=False)
    sky.set_tracking(True)
    sky.satellites_per_hour = 3600 * 3  # three a second: at least one crosses (1 in 20 no)
    image = sky.render_luminance(1.0, 8.0, bits=16).astype(np.float64)
    trails = sky.truth().trails
    assert trails
    trail = trails[0]
    t = np.linspace(0.3, 0.7, 40)
    xs, ys = trail.x0 + t * (trail.x1 - trail.x0), trail.y0 + t * (trail.y1 - trail.y0)
    on = (xs >= 2) & (xs < 1438) & (ys >= 2) & (ys < 1078)
    along = image[np.round(ys[on]).astype(int), np.round(xs[on]).astype(int)]
    assert on.sum() > 5 and np.median(along) > np.median(image) + 1000  # far above the sky
    sky.satellites_per_hour = 0
    sky.render_luminance(1.0, 8.0)
    assert sky.truth().trails == ()


def test_passing_clouds_dim_the_stars_for_a_while_and_the_night_is_the_same_each_run():
    from wanda.backends.defects import Clouds

    clouds = Clouds(0.5, seed=3)
    values = np.array([clouds.transparency(t) for t in np.arange(0, 3600, 5.0)])
    assert values.min() < 0.5 and values.max() == 1.0 and 0.1 < (values < 0.99).mean() < 0.8
    assert Clouds(0.5, seed=3).transparency(1234.5) == clouds.transparency(1234.5)
    assert Clouds(0.0, seed=3).transparency(1234.5) == 1.0
    # In the sky: at the cloudiest moment of the first hour, the stars are dimmer.
    clock = FakeClock()
    sky = catalogue_sky(clock, fillers=False, clouds=0.5, seed=3)
    sky.set_tracking(True)
    clear_at, cloudy_at = float(np.argmax(values) * 5.0), float(np.argmin(values) * 5.0)
    light = []
    for at in (clear_at, cloudy_at):
        clock.advance(at - (clock.now - 1000.0))
        light.append(sky.render_luminance(0.5, 8.0, bits=16).astype(np.float64).sum())
    assert light[1] < light[0]


def test_the_gears_periodic_error_follows_the_worms_angle():
    """A sine of the step count: over a worm's turn of tracking the axis runs ahead and behind by
    the peak error, and it comes back where it was."""
    from wanda.backends.axis import SIDEREAL_ARCSEC_PER_S, RaAxis

    perfect = RaAxis(3.523, +1, start=0.0, turn0=0.0)
    geared = RaAxis(3.523, +1, start=0.0, turn0=0.0, periodic_error_arcsec=10.0, worm_period_s=480.0)
    worm_steps = 480.0 / 3.523
    errors = []
    for k in range(1, 300):
        t = k * 3.523
        for axis in (perfect, geared):
            axis.stepped(t, +1)
        errors.append((geared.turn(t + 0.5) - perfect.turn(t + 0.5)) * SIDEREAL_ARCSEC_PER_S)
    errors = np.array(errors)
    assert errors.max() == pytest.approx(10.0, abs=0.1) and errors.min() == pytest.approx(-10.0, abs=0.1)
    expected = 10.0 * np.sin(2 * np.pi * np.arange(1, 300) / worm_steps)
    assert np.allclose(errors, expected, atol=1e-6)
