"""The projection, sidereal time and precession, against astropy (an independent implementation)
and published examples; the named pointings of the simulated sky."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import FK5, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from wanda.astro.catalog import radec_of, unit_vectors
from wanda.astro.projection import TanWcs, arcsec_per_pixel, attitude, pointing_of, project
from wanda.astro.sidereal import (
    SIDEREAL_ARCSEC_PER_S,
    altitude,
    gmst,
    julian_epoch,
    local_sidereal_time,
    precession_matrix,
)
from wanda.astro.targets import MESSIER, resolve_pointing

# Pointings across the sky: the equator, the default, mid-latitudes, the pole's neighbourhood,
# the south, RA around 0; rolls all round.
POINTINGS = [
    (83.822, -5.391, 0.0),
    (10.685, 41.269, 33.0),
    (200.0, 89.5, 250.0),
    (300.0, -70.0, 350.0),
    (0.3, 12.0, 91.0),
]


def astropy_wcs(wcs: TanWcs) -> WCS:
    header = fits.Header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, wcs.width, wcs.height
    for keyword, value, comment in wcs.fits_cards():
        header[keyword] = (value, comment)
    return WCS(header)


@pytest.mark.parametrize(("ra", "dec", "roll"), POINTINGS)
@pytest.mark.parametrize("scale", [18.01, 6.67, 56.3])  # 50, 135 and 16 mm lenses on the HQ camera
def test_the_projection_is_astropys_tan_wcs(ra, dec, roll, scale):
    """Pixels from sky positions and back agree with astropy reading our FITS cards, across the
    frame and beyond it, to a millionth of a pixel."""
    ours = TanWcs(ra, dec, roll, scale, 1440, 1080)
    theirs = astropy_wcs(ours)
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-200, 1640, 500), rng.uniform(-200, 1280, 500)
    sky_ra, sky_dec = ours.pixel_to_sky(x, y)
    their_ra, their_dec = theirs.all_pix2world(x, y, 0)  # origin 0: the array's pixels
    separation = SkyCoord(sky_ra * u.deg, sky_dec * u.deg).separation(SkyCoord(their_ra * u.deg, their_dec * u.deg))
    assert separation.arcsec.max() < 1e-5
    px, py, front = ours.sky_to_pixel(sky_ra, sky_dec)
    their_x, their_y = theirs.all_world2pix(sky_ra, sky_dec, 0)
    assert front.all()
    assert np.abs(px - their_x).max() < 1e-6 and np.abs(py - their_y).max() < 1e-6
    assert np.abs(px - x).max() < 1e-6 and np.abs(py - y).max() < 1e-6
    # The camera's attitude says the same as the WCS.
    ax, ay, _ = project(attitude(ra, dec, roll), unit_vectors(sky_ra, sky_dec), scale, (1440, 1080))
    assert np.abs(ax - their_x).max() < 1e-6 and np.abs(ay - their_y).max() < 1e-6
    assert pointing_of(ours.attitude) == pytest.approx((ra, dec, roll % 360), abs=1e-9)


def test_at_roll_0_north_is_up_and_east_is_left_and_roll_turns_up_towards_east():
    wcs = TanWcs(83.822, -5.391, 0.0, 18.0, 1440, 1080)
    cx, cy = wcs.reference_pixel
    x, y, _ = wcs.sky_to_pixel(np.array([83.822, 83.922]), np.array([-5.291, -5.391]))
    assert (x[0], y[0]) == pytest.approx((cx, cy - 0.1 * 3600 / 18.0), abs=0.05)  # north: up
    assert x[1] < cx - 19 and y[1] == pytest.approx(cy, abs=0.1)  # east: left
    turned = TanWcs(83.822, -5.391, 90.0, 18.0, 1440, 1080)
    x, y, _ = turned.sky_to_pixel(np.array([83.922]), np.array([-5.391]))
    assert y[0] < cy - 19 and x[0] == pytest.approx(cx, abs=0.1)  # up is east at roll 90


def test_behind_the_camera_is_not_in_front():
    wcs = TanWcs(83.822, -5.391, 0.0, 18.0, 1440, 1080)
    _, _, front = wcs.sky_to_pixel(np.array([83.822 + 180, 83.822]), np.array([5.391, -5.391]))
    assert front.tolist() == [False, True]


def test_the_hq_cameras_preview_through_a_50_mm_lens_sees_7_by_5_degrees_at_18_arcsec():
    preview_pixel = 1.55 * 4056 / 1440
    scale = arcsec_per_pixel(50.0, preview_pixel)
    assert scale == pytest.approx(18.01, abs=0.01)
    assert TanWcs(0, 0, 0, scale, 1440, 1080).field == pytest.approx((7.2, 5.4), abs=0.01)


def test_radec_round_trips_through_vectors_at_the_pole_and_ra_0():
    ra, dec = np.array([0.0, 359.9999, 123.4, 0.0]), np.array([0.0, -12.0, 90.0, -90.0])
    back_ra, back_dec = radec_of(unit_vectors(ra, dec))
    assert back_dec == pytest.approx(dec, abs=1e-9)
    assert back_ra[:2] == pytest.approx(ra[:2], abs=1e-9)


# -- time and the turning sky -------------------------------------------------------------------


def unix(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("when", "hours"),
    [
        # Meeus, Astronomical Algorithms, examples 12.a and 12.b; the J2000 epoch itself.
        (unix(1987, 4, 10), 13 + 10 / 60 + 46.3668 / 3600),
        (unix(1987, 4, 10, 19, 21), 8 + 34 / 60 + 57.0896 / 3600),
        (unix(2000, 1, 1, 12), 18.697374558),
    ],
)
def test_greenwich_sidereal_time_is_meeus(when, hours):
    assert gmst(when) == pytest.approx(hours * 15, abs=0.1 / 3600 * 15)  # a tenth of a second


def test_the_sky_turns_15_041_arcsec_a_second_and_local_time_follows_the_longitude():
    start = unix(2026, 3, 1, 22)
    turned = (gmst(start + 3600) - gmst(start)) % 360 * 3600
    assert turned / 3600 == pytest.approx(SIDEREAL_ARCSEC_PER_S, rel=1e-7)
    assert SIDEREAL_ARCSEC_PER_S == pytest.approx(15.0411, abs=1e-4)
    assert local_sidereal_time(start, 5.0) == pytest.approx((gmst(start) + 5.0) % 360)


@pytest.mark.parametrize("epoch", [1991.25, 2026.5, 2050.0])
def test_precession_is_astropys_fk5(epoch):
    """J2000 directions in the mean equator of ``epoch``, against astropy's FK5 precession (the
    same IAU 2006 angles): a few milliarcseconds at most."""
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 50), np.degrees(np.arcsin(rng.uniform(-1, 1, 50)))
    ours_ra, ours_dec = radec_of(unit_vectors(ra, dec) @ precession_matrix(epoch).T)
    theirs = SkyCoord(ra * u.deg, dec * u.deg, frame=FK5(equinox="J2000")).transform_to(
        FK5(equinox=Time(epoch, format="jyear"))
    )
    separation = SkyCoord(ours_ra * u.deg, ours_dec * u.deg).separation(SkyCoord(theirs.ra, theirs.dec))
    assert separation.arcsec.max() < 0.01


def test_julian_epochs_and_altitude():
    assert julian_epoch(unix(2000, 1, 1, 12)) == pytest.approx(2000.0)
    assert julian_epoch(unix(2016, 1, 1, 12)) == pytest.approx(2016.0, abs=1e-3)
    # On the meridian a star culminates at 90 - |latitude - dec|; the pole stands at the latitude.
    assert altitude(100.0, 20.0, 52.0, 100.0) == pytest.approx(58.0)
    assert altitude(0.0, 90.0, 52.0, 123.0) == pytest.approx(52.0)
    assert altitude(100.0, 20.0, 52.0, 280.0) == pytest.approx(-(90 - 52 - 20))  # lower culmination


# -- named pointings ------------------------------------------------------------------------


def test_pointings_by_name_or_degrees():
    assert resolve_pointing("M42", None) == MESSIER["M42"]
    assert resolve_pointing(" m 31 ", None) == MESSIER["M31"]
    assert resolve_pointing("83.82", -5.39) == (83.82, -5.39)
    assert resolve_pointing(10.5, 41.0) == (10.5, 41.0)
    # The table agrees with astropy's parsing of the objects' sexagesimal positions.
    m42 = SkyCoord("05h35m17.3s -05d23m28s")
    assert math.hypot(MESSIER["M42"][0] - m42.ra.deg, MESSIER["M42"][1] - m42.dec.deg) < 0.002


@pytest.mark.parametrize(
    ("ra", "dec", "words"),
    [
        ("Vega", None, "neither degrees nor a known name"),
        ("M42", 10.0, "leave sim_dec out"),
        ("83.8", None, "needs sim_dec"),
        ("400", 0.0, "outside 0..360"),
        ("10", 91.0, "outside -90..90"),
    ],
)
def test_bad_pointings_say_what_is_wrong(ra, dec, words):
    with pytest.raises(ValueError, match=words):
        resolve_pointing(ra, dec)
