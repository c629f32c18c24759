"""Polar alignment's geometry (wanda/astro/polar.py) against astropy: refraction as ERFA models
it, the horizon and the pole of the date, the axis a camera was turned about (astropy turning it),
and the knobs' directions in both hemispheres."""

from __future__ import annotations

import math

import erfa
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, SkyOffsetFrame
from astropy.time import Time
from astropy.utils import iers

from wanda.astro import polar
from wanda.astro.catalog import radec_of, unit_vectors
from wanda.astro.projection import attitude

iers.conf.auto_download = False  # offline: the bundled tables are close enough here
iers.conf.auto_max_age = None

WHEN = 1_790_000_000.0  # 2026-09-21
SITE = EarthLocation(lat=52 * u.deg, lon=5 * u.deg, height=0 * u.m)


def astropy_refraction_arcmin(true_altitude: float) -> float:
    """How far astropy (ERFA's refraction model) lifts a direction at ``true_altitude``."""
    time = Time(WHEN, format="unix")
    geometric = AltAz(obstime=time, location=SITE, pressure=0 * u.hPa)
    seen = AltAz(
        obstime=time,
        location=SITE,
        pressure=1010 * u.hPa,
        temperature=10 * u.deg_C,
        relative_humidity=0.0,
        obswl=0.55 * u.micron,
    )
    place = SkyCoord(alt=true_altitude * u.deg, az=20 * u.deg, frame=geometric)
    return float((place.transform_to(seen).alt.deg - true_altitude) * 60)


@pytest.mark.parametrize("altitude", [15.0, 25.0, 35.0, 50.0, 65.0, 80.0])
def test_refraction_is_erfas_model_through_astropy(altitude):
    ours = polar.refraction_arcmin(altitude)
    theirs = astropy_refraction_arcmin(altitude)
    # Saemundsson's formula is fitted to the classic tables, which refract 3-5% more than ERFA's
    # model of dry air at 550 nm: a tenth of an arcminute at 15 degrees, the lowest pole we meet.
    assert ours == pytest.approx(theirs, rel=0.06), (ours, theirs)
    # A direction there is lifted by as much, towards the zenith, its azimuth kept.
    seen = polar.refracted(enu(altitude, 200.0))
    assert polar.alt_az(seen)[0] == pytest.approx(altitude + ours / 60, abs=1e-9)
    assert polar.alt_az(seen)[1] == pytest.approx(200.0, abs=1e-9)
    assert np.linalg.norm(seen) == pytest.approx(1.0)


def test_refraction_scales_with_the_air_and_vanishes_at_the_zenith():
    standard = polar.refraction_arcmin(30.0)
    assert polar.refraction_arcmin(30.0, pressure_hpa=505.0) == pytest.approx(standard / 2)
    assert polar.refraction_arcmin(30.0, temperature_c=-10.0) > standard
    assert polar.refraction_arcmin(90.0) == pytest.approx(0.0, abs=0.01)
    assert polar.refraction_arcmin(0.0) == pytest.approx(29, abs=6)  # about half a degree at the horizon


@pytest.mark.parametrize(("ra", "dec"), [(10.0, 20.0), (120.0, 60.0), (250.0, -10.0), (300.0, 85.0)])
def test_the_horizon_matrix_puts_stars_where_astropy_does(ra, dec):
    matrix = polar.horizon_matrix(WHEN, 52.0, 5.0)
    ours = polar.alt_az(matrix @ unit_vectors(np.array([ra]), np.array([dec]))[0])
    theirs = SkyCoord(ra * u.deg, dec * u.deg).transform_to(
        AltAz(obstime=Time(WHEN, format="unix"), location=SITE, pressure=0 * u.hPa)
    )
    # Aberration (20") and nutation (under 20") are left out: far inside an arcminute.
    assert ours[0] == pytest.approx(theirs.alt.deg, abs=1 / 60)
    assert ((ours[1] - theirs.az.deg + 180) % 360 - 180) * math.cos(math.radians(ours[0])) == pytest.approx(
        0, abs=1 / 60
    )


@pytest.mark.parametrize("latitude", [52.0, -33.0])
def test_the_pole_is_the_pole_of_the_date_in_the_sky(latitude):
    """The pole in the ground, carried back to ICRS, is ERFA's mean pole of the date (bias and
    precession, IAU 2006), and within nutation (under 20") of its true pole."""
    ours = polar.horizon_matrix(WHEN, latitude, 5.0).T @ polar.pole(latitude)
    sign = 1 if latitude >= 0 else -1
    jd = Time(WHEN, format="unix").tt.jd
    for matrix, tolerance in ((erfa.pmat06(jd, 0.0), 0.5), (erfa.pnm06a(jd, 0.0), 20.0)):
        truth = sign * matrix[2]  # the third row: the pole of the date in GCRS (ICRS axes)
        assert math.degrees(math.acos(min(1.0, float(ours @ truth)))) * 3600 < tolerance
    assert polar.alt_az(polar.pole(latitude))[0] == pytest.approx(abs(latitude))


def turned_by_astropy(matrix: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """The camera ``matrix`` (rows: its axes) turned ``angle`` degrees about ``axis``, by astropy:
    each axis in a frame centred on ``axis``, read back from one rolled by ``angle``."""
    ra, dec = radec_of(axis)
    centre = SkyCoord(float(ra) * u.deg, float(dec) * u.deg)
    row_ra, row_dec = radec_of(matrix)
    offsets = SkyCoord(row_ra * u.deg, row_dec * u.deg).transform_to(SkyOffsetFrame(origin=centre))
    rolled = SkyCoord(offsets.lon, offsets.lat, frame=SkyOffsetFrame(origin=centre, rotation=-angle * u.deg)).icrs
    return unit_vectors(rolled.ra.deg, rolled.dec.deg)


def jitter(matrix: np.ndarray, arcsec: float, rng: np.random.Generator) -> np.ndarray:
    """A solve's error: a random small turn of the whole attitude."""
    return matrix @ polar.rotation(rng.normal(size=3), arcsec * rng.normal() / 3600).T


@pytest.mark.parametrize("count", [2, 3])
def test_the_axis_of_attitudes_is_the_one_astropy_turned_the_camera_about(count):
    rng = np.random.default_rng(count)
    for _ in range(10):
        axis = unit_vectors(np.array([rng.uniform(0, 360)]), np.array([rng.uniform(-80, 80)]))[0]
        start = attitude(rng.uniform(0, 360), rng.uniform(-60, 60), rng.uniform(0, 360))
        angles = [0.0, 15.0, 30.0][:count]
        attitudes = [jitter(turned_by_astropy(start, axis, a), 2.0, rng) for a in angles]
        found, turned = polar.axis_of_attitudes(attitudes, toward=axis)
        error = math.degrees(math.acos(min(1.0, float(found @ axis)))) * 60
        assert error < 0.5, error  # 2" solves over 15 degrees: a few tenths of an arcminute at most
        assert turned == pytest.approx(angles[-1], abs=0.01)
    # The side asked for: the other end of the same line.
    assert polar.axis_of_attitudes(attitudes, toward=-axis)[0] @ axis < -0.9999


def test_a_turn_of_the_knobs_carries_the_axis_whatever_the_ra_axis_did_meanwhile():
    latitude = 40.0
    axis = polar.misaligned_axis(latitude, 50.0, -30.0)
    camera = attitude(30.0, 20.0, 10.0)  # any attitude in the ground frame
    tracked = camera @ polar.rotation(axis, 3.0).T  # the RA axis turned 3 degrees
    knobs = polar.knob_rotation(axis, -0.5, 0.3)
    moved = tracked @ polar.rotation(axis, 2.0).T @ knobs.T  # more tracking, then the knobs
    assert polar.moved_axis(axis, camera, moved) == pytest.approx(knobs @ axis, abs=1e-12)


@pytest.mark.parametrize("latitude", [-60.0, -33.0, 5.0, 35.0, 52.0, 70.0])
@pytest.mark.parametrize(("alt", "az"), [(30.0, -20.0), (-240.0, 180.0), (3.0, 0.0)])
def test_the_error_of_a_misaligned_axis_is_what_it_was_built_with(latitude, alt, az):
    axis = polar.misaligned_axis(latitude, alt, az)
    error = polar.polar_error(axis, latitude)
    assert (error.alt_arcmin, error.az_arcmin) == pytest.approx((alt, az), abs=1e-6)
    if math.hypot(alt, az) <= 60:  # beyond a degree the sky's curvature shows
        assert error.total_arcmin == pytest.approx(math.hypot(alt, az), rel=0.02)
    # The correction brings it onto the refracted pole, the altitude knob first.
    altitude_knob, both_knobs = polar.correction(axis, latitude)
    assert both_knobs @ axis == pytest.approx(polar.refracted_pole(latitude), abs=1e-12)
    assert polar.alt_az(altitude_knob @ axis)[0] == pytest.approx(polar.alt_az(polar.refracted_pole(latitude))[0])
    assert polar.alt_az(altitude_knob @ axis)[1] == pytest.approx(polar.alt_az(axis)[1])


def enu(alt: float, az: float) -> np.ndarray:
    a, z = math.radians(alt), math.radians(az)
    return np.array([math.cos(a) * math.sin(z), math.cos(a) * math.cos(z), math.sin(a)])


def test_the_knobs_in_the_north_an_axis_high_and_east_goes_down_and_west_to_the_left():
    # At 45 degrees north the pole stands at azimuth 0: an axis 30' higher and 20' of azimuth east.
    # The axis is where the mount physically points; the pole is seen 1' higher than it is.
    error = polar.polar_error(enu(45.5, 20 / 60), 45.0)
    assert error.alt_arcmin == pytest.approx(30 - polar.refraction_arcmin(45.0), abs=1e-6)
    assert error.az_arcmin == pytest.approx(20 * math.cos(math.radians(polar.apparent_altitude(45.0))), abs=1e-6)
    knobs = error.knobs()
    assert knobs["altitude"]["direction"] == "down" and knobs["altitude"]["text"].startswith("lower the axis")
    assert (knobs["azimuth"]["direction"], knobs["azimuth"]["side"]) == ("west", "left")
    low_west = polar.polar_error(enu(43.0, -0.5), 45.0).knobs()
    assert low_west["altitude"]["direction"] == "up" and low_west["altitude"]["text"] == "raise the axis 2.02°"
    assert (low_west["azimuth"]["direction"], low_west["azimuth"]["side"]) == ("east", "right")


@pytest.mark.parametrize(("altitude", "azimuth"), [(20.0, 30.0), (35.0, 180.0), (60.0, 270.0)])
def test_a_solved_attitude_lifted_by_refraction_is_where_the_camera_points(altitude, azimuth):
    """A camera pointing at ``altitude`` sees the star that is really lower by the refraction at
    that lower place: a solve gives that. ``physical_attitude`` lifts it back."""
    # Rows: the camera's axes in east-north-up (attitude() reads east-north-up as x, y, z).
    camera = attitude(90.0 - azimuth, altitude, 40.0)
    assert polar.alt_az(camera[2]) == pytest.approx((altitude, azimuth))
    # The star seen at the centre: the geometric direction whose refracted place is the centre.
    below = altitude
    for _ in range(50):
        below = altitude - polar.refraction_arcmin(below) / 60
    solved = camera @ polar.knob_rotation(camera[2], below - altitude, 0.0).T
    assert polar.rotation_angle(solved.T @ camera) * 60 == pytest.approx(polar.refraction_arcmin(below), rel=1e-3)
    assert polar.rotation_angle(polar.physical_attitude(solved).T @ camera) * 3600 < 0.1


def test_the_knobs_in_the_south_an_axis_east_of_the_pole_goes_west_to_the_right():
    # At 33 south the pole stands at azimuth 180; east of it is the smaller azimuth.
    error = polar.polar_error(enu(32.8, 179.5), -33.0)
    assert error.alt_arcmin < 0 and error.az_arcmin > 0
    knobs = error.knobs()
    assert knobs["altitude"]["direction"] == "up"
    assert (knobs["azimuth"]["direction"], knobs["azimuth"]["side"]) == ("west", "right")
    west = polar.polar_error(enu(33.0, 180.4), -33.0).knobs()["azimuth"]
    assert (west["direction"], west["side"]) == ("east", "left")
