"""The simulated mount's real axis (wanda/backends/sky.py, starfield.py): a misaligned axis turns
the field about itself, not the pole; tracking then drifts the field as the geometry of a tilted
axis says; the knobs turn the whole mount; the configuration builds it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import FakeClock

from wanda.astro import polar
from wanda.astro.catalog import load_catalogue, unit_vectors
from wanda.astro.measure import analyse
from wanda.backends.sky import SimulatedSky
from wanda.config import ConfigError, load_config

START = 1_790_000_000.0  # 2026-09-21
LATITUDE, LONGITUDE = 48.0, 11.0


def misaligned_sky(clock: FakeClock, polar_error=(40.0, -25.0), pointing=(40.0, 55.0, 0.0), **kwargs) -> SimulatedSky:
    start = clock.now
    sky = SimulatedSky(
        clock=clock,
        wall_clock=lambda: START + clock.now - start,
        pointing=pointing,
        latitude=LATITUDE,
        longitude=LONGITUDE,
        polar_error=polar_error,
        **kwargs,
    )
    sky.open()
    return sky


def seen(sky: SimulatedSky) -> tuple[np.ndarray, float]:
    """Render a short frame: the camera's attitude in the ground (east, north, up) and its time."""
    sky.render_luminance(0.1, 4.0)
    pointing = sky.truth().pointing
    assert pointing is not None
    return polar.attitude_in_ground(pointing.wcs.attitude, pointing.unix, LATITUDE, LONGITUDE), pointing.unix


def test_turning_the_ra_axis_turns_the_field_about_the_mounts_axis_not_the_pole():
    clock = FakeClock()
    sky = misaligned_sky(clock)
    sky.follow_mount(3.523, tracking_clockwise=True, periodic_error_arcsec=0.0)
    first, _ = seen(sky)
    sky.turn_ra_by_hand(-20.0)
    clock.now += 30.0  # the Earth turns meanwhile: the ground frame takes it out
    second, _ = seen(sky)
    axis, turned = polar.axis_of_attitudes([first, second], polar.pole(LATITUDE))
    assert turned == pytest.approx(20.0, abs=0.01)
    error = polar.polar_error(axis, LATITUDE)
    assert (error.alt_arcmin, error.az_arcmin) == pytest.approx((40.0, -25.0), abs=0.01)
    # The centre kept its distance from the mount's axis, and not from the pole.
    distances = [math.degrees(math.acos(a[2] @ axis)) for a in (first, second)]
    assert distances[0] == pytest.approx(distances[1], abs=1e-6)
    to_pole = [math.degrees(math.acos(a[2] @ polar.pole(LATITUDE))) for a in (first, second)]
    assert abs(to_pole[0] - to_pole[1]) > 0.1


# Aligned to the refracted pole, the mount's axis is 1' above the Earth's: its camera drifts a little
# over the catalogue's sky (and holds the sky the air shows, near the pole); on the Earth's pole
# it holds the catalogue's sky still.
ON_THE_POLE = (-polar.refraction_arcmin(LATITUDE), 0.0)


@pytest.mark.parametrize("error", [(40.0, -25.0), (0.0, 0.0), ON_THE_POLE])
def test_a_tracking_mount_drifts_as_far_as_its_tilt_says(error):
    """Tracking perfectly (no stepper sawtooth) for ten minutes, the centre moves by the Earth's
    angle times |(pole - axis) x centre|: nothing for a mount on the Earth's pole."""
    clock = FakeClock()
    sky = misaligned_sky(clock, polar_error=error, step_interval_s=None)
    sky.set_tracking(True)
    sky.render_luminance(0.1, 4.0)
    before = sky.truth().pointing
    clock.now += 600.0
    sky.render_luminance(0.1, 4.0)
    after = sky.truth().pointing
    assert before is not None and after is not None
    centre = [unit_vectors(np.array([p.wcs.ra]), np.array([p.wcs.dec]))[0] for p in (before, after)]
    moved = math.degrees(math.acos(min(1.0, float(centre[0] @ centre[1])))) * 60
    # The expected drift, in the ground frame where the pole is fixed.
    ground = polar.horizon_matrix(before.unix, LATITUDE, LONGITUDE)
    axis = polar.misaligned_axis(LATITUDE, *error)
    angle = math.radians(600 * 360.98564736629 / 86400)
    expected = math.degrees(angle * np.linalg.norm(np.cross(polar.pole(LATITUDE) - axis, ground @ centre[0]))) * 60
    assert moved == pytest.approx(expected, rel=0.01, abs=0.01)
    if error == ON_THE_POLE:
        assert moved < 0.01
    elif error == (40.0, -25.0):
        assert moved > 1.0  # a misaligned mount's field drifts by minutes of arc in ten minutes


def test_the_knobs_turn_the_whole_mount_and_the_truth_follows():
    clock = FakeClock()
    sky = misaligned_sky(clock)
    sky.follow_mount(3.523, tracking_clockwise=True, periodic_error_arcsec=0.0)
    before, _ = seen(sky)
    truth = sky.turn_knobs(alt_arcmin=-30.0, az_arcmin=20.0)
    assert (truth.alt_arcmin, truth.az_arcmin) == pytest.approx((10.0, -5.0), abs=0.05)
    after, _ = seen(sky)
    # The camera turned with the base: by about the knobs' turn (30' of altitude, 30' of azimuth).
    moved = math.degrees(math.acos(min(1.0, float(before[2] @ after[2])))) * 60
    assert 25 < moved < 43
    # And the measured axis is the new one: carried by the camera's turn.
    carried = polar.moved_axis(polar.misaligned_axis(LATITUDE, 40.0, -25.0), before, after)
    measured = polar.polar_error(carried, LATITUDE)
    assert (measured.alt_arcmin, measured.az_arcmin) == pytest.approx((truth.alt_arcmin, truth.az_arcmin), abs=0.01)


def test_the_southern_sky_has_its_axis_about_the_south_pole():
    clock = FakeClock()
    start = clock.now
    sky = SimulatedSky(
        clock=clock,
        wall_clock=lambda: START + clock.now - start,
        pointing=(80.0, -60.0, 0.0),
        latitude=-33.0,
        longitude=151.0,
        polar_error=(-20.0, 15.0),
    )
    sky.open()
    truth = sky.polar_truth()
    assert (truth.alt_arcmin, truth.az_arcmin) == pytest.approx((-20.0, 15.0), abs=1e-6)
    assert truth.pole_az == pytest.approx(180.0) and truth.axis_az < 180.0  # east of south: smaller azimuth


def test_a_misaligned_mount_needs_the_real_sky_and_the_site():
    with pytest.raises(ConfigError, match="needs the real sky"):
        load_config({"sim_polar_error_alt": 30.0}, env={})
    with pytest.raises(ConfigError, match="needs the real sky"):
        load_config({"sim_polar_error_az": 30.0, "latitude": 50.0, "longitude": 5.0, "sim_sky": "random"}, env={})
    with pytest.raises(ConfigError, match="sim_polar_error_alt: must be -600..600"):
        load_config({"sim_polar_error_alt": 700.0, "latitude": 50.0, "longitude": 5.0}, env={})
    config = load_config({"sim_polar_error_alt": -12.5, "latitude": 50.0, "longitude": 5.0}, env={})
    assert (config.sim_polar_error_alt, config.sim_polar_error_az) == (-12.5, 0.0)
    with pytest.raises(ValueError, match="needs the real sky"):
        SimulatedSky(clock=FakeClock(), polar_error=(10.0, 0.0))


@pytest.mark.parametrize("mirrored", [False, True])
def test_an_attitude_a_minute_off_is_refitted_to_the_stars_where_the_air_shows_them(mirrored):
    """A solve's attitude 1' off (a solver's fit to a dozen index stars), fitted again to the frame's
    stars that the catalogue has, low in the sky: to the catalogue's places, it is a camera lower by
    the refraction; to the places where the air shows the stars, the truth within seconds of arc."""
    clock = FakeClock()
    sky = misaligned_sky(clock, pointing=(300.0, 20.0, 0.0))  # low in the south-east: 2' of refraction
    sky.set_tracking(True)
    image = sky.render_luminance(0.5, 8.0).astype(np.uint8)
    truth = sky.truth()
    figures = analyse(image, 255)
    x = np.array([s["x"] for s in figures["stars"]])
    y = np.array([s["y"] for s in figures["stars"]])
    exact = truth.pointing.wcs.attitude
    if mirrored:  # a diagonal: the image's x runs the other way
        exact = np.diag([-1.0, 1.0, 1.0]) @ exact
        x = 1439 - x
    off = exact @ polar.rotation(np.array([0.3, -0.5, 0.8]), 1 / 60).T
    ground = polar.horizon_matrix(truth.pointing.unix, LATITUDE, LONGITUDE)
    altitude = polar.alt_az(ground @ exact[2])[0]
    assert 15 < altitude < 35, altitude
    arguments = (off, x, y, (1440, 1080), truth.pointing.wcs.scale, load_catalogue(), truth.pointing.epoch)
    # To the catalogue's places: the attitude of a camera lower by the refraction.
    solved, matched = polar.refined_attitude(*arguments)
    assert matched >= 30 and np.linalg.det(solved) == pytest.approx(np.linalg.det(exact))
    lowered = polar.rotation_angle(solved.T @ exact) * 60
    assert lowered == pytest.approx(polar.refraction_arcmin(altitude), abs=0.15)
    # Lifted at its centre: close, but the refraction changes across the field.
    lifted = polar.physical_attitude(solved @ ground.T) @ ground
    assert polar.rotation_angle(lifted.T @ exact) * 60 < 0.6
    # To the places where the air shows the stars: where the camera points.
    seen, matched = polar.refined_attitude(
        *arguments, seen_through=lambda xyz: polar.refracted(xyz @ ground.T) @ ground
    )
    assert matched >= 30 and np.linalg.det(seen) == pytest.approx(np.linalg.det(exact))
    assert polar.rotation_angle(seen.T @ exact) * 3600 < 10.0


def test_the_simulated_air_lifts_each_star_as_astropy_refracts_it():
    """At a site, the drawn stars sit where their refracted places project; the lift is ERFA's
    within its 3-5% (tests/test_polar_geometry.py), a few pixels at 20 degrees up."""
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    clock = FakeClock()
    sky = misaligned_sky(clock, polar_error=(0.0, 0.0), pointing=(300.0, 20.0, 0.0))
    sky.set_tracking(True)
    sky.render_luminance(0.1, 8.0)
    truth = sky.truth()
    geometric_x, geometric_y, _ = truth.pointing.wcs.sky_to_pixel(truth.ra, truth.dec)
    shift_px = np.hypot(truth.x - geometric_x, truth.y - geometric_y)
    site = EarthLocation(lat=LATITUDE * u.deg, lon=LONGITUDE * u.deg)
    when = Time(truth.pointing.unix, format="unix")
    stars = SkyCoord(truth.ra * u.deg, truth.dec * u.deg)
    plain = stars.transform_to(AltAz(obstime=when, location=site, pressure=0 * u.hPa))
    seen = stars.transform_to(
        AltAz(obstime=when, location=site, pressure=1010 * u.hPa, temperature=10 * u.deg_C, obswl=0.55 * u.micron)
    )
    theirs_px = (seen.alt.deg - plain.alt.deg) * 3600 / truth.pointing.wcs.scale
    assert shift_px.mean() > 3.0  # refraction shows: pixels, not hundredths
    assert shift_px == pytest.approx(theirs_px, rel=0.07, abs=0.05)
