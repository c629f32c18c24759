"""The deep-sky catalogue (wanda/astro/deepsky.py) against its source read another way: pyongc's
own object API for names and places, astropy for separations."""

from __future__ import annotations

import math

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from pyongc import ongc

from wanda.astro.deepsky import DeepSky


@pytest.fixture(scope="module")
def deepsky() -> DeepSky:
    return DeepSky.load()


@pytest.mark.parametrize(
    ("query", "designation", "source_name"),
    [
        ("M31", "M31", "NGC0224"),
        ("m 031", "M31", "NGC0224"),
        ("NGC224", "M31", "NGC0224"),
        ("ngc 0224", "M31", "NGC0224"),
        ("Andromeda  Galaxy", "M31", "NGC0224"),
        ("M45", "M45", "Mel022"),
        ("pleiades", "M45", "Mel022"),
        ("Orion Nebula", "M42", "NGC1976"),
        ("NGC 7000", "NGC 7000", "NGC7000"),
        ("IC434", "IC 434", "IC0434"),
    ],
)
def test_an_object_is_found_by_any_of_its_names_where_pyongc_puts_it(deepsky, query, designation, source_name):
    found = deepsky.find(query)
    assert found is not None and (found.designation, found.name) == (designation, source_name)
    truth = ongc.get(source_name)  # pyongc's own reading of the same catalogue
    ra, dec = (math.degrees(a) for a in truth.rad_coords)
    assert found.ra == pytest.approx(ra, abs=1e-9) and found.dec == pytest.approx(dec, abs=1e-9)


def test_every_messier_object_but_the_disputed_m102_is_there(deepsky):
    missing = [number for number in range(1, 111) if deepsky.find(f"M{number}") is None]
    assert missing == [102]  # OpenNGC does not decide which galaxy Messier saw
    assert deepsky.find("no such thing") is None
    assert deepsky.find("NGC 99999") is None


def test_the_objects_in_a_field_are_listed_nearest_first_with_astropys_separations(deepsky):
    centre = SkyCoord(83.82 * u.deg, -5.39 * u.deg)
    inside = deepsky.within(centre.ra.deg, centre.dec.deg, 1.0)
    names = [item.designation for item, _ in inside]
    assert names[:2] == ["M42", "M43"] and "NGC 1977" in names
    separations = [separation for _, separation in inside]
    assert separations == sorted(separations) and separations[-1] <= 1.0
    for item, separation in inside:
        truth = centre.separation(SkyCoord(item.ra * u.deg, item.dec * u.deg)).deg
        assert separation == pytest.approx(truth, abs=1e-6)
    # Across RA 0 and near the pole too: a brute-force check against astropy.
    for ra, dec in ((359.5, 30.0), (0.0, 89.0)):
        listed = {item.name for item, _ in deepsky.within(ra, dec, 3.0)}
        every = SkyCoord([o.ra for o in deepsky.objects] * u.deg, [o.dec for o in deepsky.objects] * u.deg)
        truth = every.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg <= 3.0
        assert listed == {o.name for o, near in zip(deepsky.objects, truth, strict=True) if near}


def test_a_search_box_gets_messier_objects_first(deepsky):
    assert [o.designation for o in deepsky.search("M4")][:3] == ["M4", "M40", "M41"]
    assert deepsky.search("Andromeda Galaxy")[0].designation == "M31"
    typed = deepsky.search("ngc")  # a catalogue's name in lower case, still being typed
    assert typed and all(o.ngc for o in typed)


# SIMBAD's J2000 places (epoch 2000) and motions of three named stars: a catalogue other than the
# Hipparcos 2 file the names are placed from. (ra, dec, pm_ra_cosdec, pm_dec mas/yr, parallax mas,
# radial velocity km/s)
SIMBAD = {
    "Vega": (279.23473479, 38.78368896, 200.94, 286.23, 130.23, -20.60),
    "Betelgeuse": (88.79293899, 7.40706399, 27.54, 11.30, 6.55, 21.91),
    "Sirius": (101.28715533, -16.71611586, -546.01, -1223.07, 379.21, -5.50),
}


@pytest.mark.parametrize("name", sorted(SIMBAD))
def test_a_named_star_is_found_by_name_at_its_place_of_the_date_as_astropy_moves_simbads(name):
    from astropy.time import Time

    epoch = 2026.9
    found = DeepSky.load(epoch=epoch).find(name.lower())
    assert found is not None and (found.designation, found.type) == (name, "star")
    ra, dec, pm_ra, pm_dec, parallax, rv = SIMBAD[name]
    moved = SkyCoord(
        ra * u.deg,
        dec * u.deg,
        pm_ra_cosdec=pm_ra * u.mas / u.yr,
        pm_dec=pm_dec * u.mas / u.yr,
        distance=(1000 / parallax) * u.pc,
        radial_velocity=rv * u.km / u.s,
        obstime=Time(2000.0, format="jyear"),
    ).apply_space_motion(new_obstime=Time(epoch, format="jyear"))
    assert SkyCoord(found.ra * u.deg, found.dec * u.deg).separation(moved).arcsec < 1.0
    assert found.magnitude < 1.5


def test_named_stars_by_their_other_name_and_hipparcos_number_and_in_a_field(deepsky):
    assert deepsky.find("Hadar") is deepsky.find("Agena") and deepsky.find("Hadar").common_names
    assert deepsky.find("HIP 91262").designation == "Vega"
    belt = {o.designation for o, _ in deepsky.within(84.05, -1.2, 2.0) if o.type == "star"}
    assert {"Alnitak", "Alnilam", "Mintaka"} <= belt
