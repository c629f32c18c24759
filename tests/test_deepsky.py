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
