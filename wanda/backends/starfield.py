"""The catalogue's sky as the simulated camera sees it: real stars at a pointing, turning with the
Earth unless the mount holds them.

The camera sits on an equatorial mount. Its attitude is fixed at the start (pointing RA/Dec and
roll, J2000) and from then on turns by the *turn*: the seconds of sidereal time the sky has moved
past the camera. An idle mount turns by one second a second (the RA at the centre grows 15.04" a
second and the field rotates about the pole, as the projection shows near it); a tracking mount
holds it apart from its steps (wanda/backends/sky.py keeps the turn). Every frame projects the
stars from the turn, never moves pixels: a star near the pole draws an arc, one on the equator a
line.

Without a site the mount turns the camera about the pole of the date (precession from J2000 to
the start's date). At one, its axis is a real one (``set_base``: the turn of its base by the
altitude and azimuth knobs, wanda/astro/polar.py; on the refracted pole, or off it), fixed to the
ground, while the Earth turns the ground about the pole: in the ground frame (the equator of the
date at the start, which turns with the Earth) the camera is ``K R(axis z of the base, mount's
turn) c0``, and the sky sees it turned by the Earth's angle since the start. The mount's turn is
the Earth's angle less the sky's turn, so the attitude needs both: ``attitude(turn, earth)``. A
tracking mount then holds the field only near its axis; elsewhere it drifts in declination and
rotates slowly, as a real misaligned mount's does. The Earth's angle is taken at the middle of each
exposure: within one, only the mount's turn is drawn as a trail.

At a site (``latitude``) the stars are seen through the air: each is drawn lifted towards the
zenith by the refraction at its altitude (wanda/astro/polar.py), as a real camera sees them. The
truth's WCS is then where the camera physically points; a plate solver finds one lower by the
refraction at the centre, and a star's pixel is the projection of its refracted place.

Stars: the catalogue (wanda/astro/catalog.py, to G 10) within a cap around the line of sight,
moved by their proper motion to the date, plus faint *filler* stars from G 10 to 13 so that long
exposures are not cut off at the catalogue's limit. Fillers are random (seeded), never in any
catalogue, so a plate solver cannot use them; they are drawn per patch of about a square degree,
as many as the catalogue's G 9-10 stars there say the sky holds, so the Milky Way stays richer than
the galactic pole, and a patch's fillers stay where they are while the field moves over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from wanda.astro.catalog import MAG_LIMIT, StarCatalogue, load_catalogue, radec_of, unit_vectors
from wanda.astro.polar import enu_of_hour_angle_frame, horizon_matrix, refracted
from wanda.astro.projection import TanWcs, attitude, project, wcs_of
from wanda.astro.sidereal import (
    SIDEREAL_DEG_PER_S,
    altitude,
    julian_epoch,
    local_sidereal_time,
    precession_matrix,
    rotation_z,
)

# A G = 0 star through a 50 mm f/1.8 camera lens (28 mm of aperture) gives the IMX477 about 5
# million electrons a second (1000 photons/s/cm2/A over the unfiltered band, 6 cm2, a third of
# them detected); the sky of SensorModel (6 e-/s a pixel) is then a dark site's 21 mag/arcsec2.
# Lenses are taken at the same f-ratio: a star's light grows with the aperture, so with the focal
# length squared, while the sky per pixel does not change.
ZERO_POINT_E_PER_S = 5.0e6
REFERENCE_FOCAL_MM = 50.0
FILLER_FAINTEST = 13.0
FILLER_SLOPE = 0.38  # log10 of the growth of star counts per magnitude beyond G 10
PATCH_DEG = 1.0  # filler patches: bands of declination this high, cut into cells about as wide


def star_flux(magnitude: np.ndarray, focal_length_mm: float) -> np.ndarray:
    """Electrons a second from stars of G ``magnitude`` through a lens of ``focal_length_mm``."""
    return ZERO_POINT_E_PER_S * (focal_length_mm / REFERENCE_FOCAL_MM) ** 2 * 10 ** (-0.4 * np.asarray(magnitude))


@dataclass(frozen=True)
class SkyPointing:
    """Where a frame looked: its WCS (ICRS), and the sky of the date at the site."""

    wcs: TanWcs
    epoch: float  # Julian year of the exposure (proper motions are applied to it)
    unix: float  # the middle of the exposure's light, Unix seconds
    turn_s: float  # seconds of sidereal time the sky has turned past the camera since the start
    ra_of_date: float  # the centre in the mean equator of the start's date, degrees
    dec_of_date: float
    lst: float  # local sidereal time at the site's longitude, degrees
    hour_angle: float  # of the centre, degrees (west positive): constant while the mount is idle
    altitude: float | None  # of the centre, degrees; None without a site latitude


@dataclass(frozen=True)
class FieldStars:
    """The stars near the frame: catalogue stars first, then fillers (``source_id`` 0)."""

    ra: np.ndarray  # ICRS degrees at the observation's date
    dec: np.ndarray
    mag: np.ndarray
    source_id: np.ndarray  # Gaia DR3 source_id, -HIP, or 0 for a filler
    xyz: np.ndarray  # unit vectors of ra/dec
    flux_e_per_s: np.ndarray


class CatalogueSky:
    """Stars of the catalogue around a pointing that turns with the sky. Not thread-safe: the
    camera thread alone uses it (as it uses the backend)."""

    def __init__(
        self,
        *,
        ra: float,
        dec: float,
        roll: float,
        scale: float,
        size: tuple[int, int],
        focal_length_mm: float,
        start_unix: float,
        latitude: float | None = None,
        longitude: float | None = None,
        seed: int = 1,
        fillers: bool = True,
        loader: Callable[[], StarCatalogue] = load_catalogue,
    ):
        self.scale = float(scale)
        self.size = size
        self.focal_length_mm = float(focal_length_mm)
        self.start_unix = float(start_unix)
        self.epoch = julian_epoch(start_unix)
        self.latitude = latitude
        self.longitude = 0.0 if longitude is None else float(longitude)
        self.seed = seed
        self.fillers = fillers
        self._loader = loader
        self._catalogue: StarCatalogue | None = None
        # The attitude at the start, in ICRS and in the equator of the date it turns about.
        self._precession = precession_matrix(self.epoch)
        self.start_attitude = attitude(ra, dec, roll)
        self._start_of_date = self.start_attitude @ self._precession.T
        # A misaligned mount's base (``set_base``): None while the mount is aligned. The camera on
        # the base's RA axis at the start (rows) keeps its place on the base when the knobs turn.
        self._base: np.ndarray | None = None
        self._camera_on_base = self._start_of_date
        half_diagonal = math.hypot(*size) / 2 * self.scale / 3600
        # Stars are taken from a cap wider than the frame, and taken again only when the line of
        # sight has left the middle of it: a few milliseconds every several minutes of drift.
        self._frame_radius = half_diagonal
        self._cap_radius = min(1.5 * half_diagonal + 0.5, 90.0)
        self._cap_centre: np.ndarray | None = None
        self._stars: FieldStars | None = None

    # -- the catalogue ------------------------------------------------------------------------

    def load(self) -> None:
        """Read the catalogue (once per process) and take the stars around the start."""
        self.stars_near(self.attitude(0.0))

    @property
    def catalogue(self) -> StarCatalogue:
        if self._catalogue is None:
            self._catalogue = self._loader()
        return self._catalogue

    def stars_near(self, matrix: np.ndarray) -> FieldStars:
        """The stars of the cap around the line of sight of ``matrix``, taken again if it moved
        too far from the last cap's centre."""
        boresight = matrix[2]
        margin = self._cap_radius - self._frame_radius
        if self._stars is None or self._cap_centre is None or _angle(boresight, self._cap_centre) > margin / 2:
            self._stars = self._query(boresight)
            self._cap_centre = boresight
        return self._stars

    def _query(self, boresight: np.ndarray) -> FieldStars:
        catalogue = self.catalogue
        ra0, dec0 = (float(v) for v in radec_of(boresight))
        # Proper motion moves a star less than a degree in centuries: the cap is wide enough.
        indices = catalogue.query(ra0, dec0, self._cap_radius)
        ra, dec = catalogue.positions_at(indices, self.epoch)
        mag = catalogue.mag[indices]
        ids = catalogue.source_id[indices]
        if self.fillers:
            f_ra, f_dec, f_mag = self._fillers(ra0, dec0)
            ra, dec = np.concatenate((ra, f_ra)), np.concatenate((dec, f_dec))
            mag = np.concatenate((mag, f_mag.astype(np.float32)))
            ids = np.concatenate((ids, np.zeros(len(f_ra), np.int64)))
        return FieldStars(
            ra=ra,
            dec=dec,
            mag=mag,
            source_id=ids,
            xyz=unit_vectors(ra, dec),
            flux_e_per_s=star_flux(mag, self.focal_length_mm),
        )

    def _fillers(self, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random stars from G 10 to 13 in the patches the cap touches (see the module docstring)."""
        counts = _patch_counts(self.catalogue)
        radius = self._cap_radius
        ras, decs, mags = [], [], []
        growth = 10**FILLER_SLOPE
        per_bright = sum(growth**k for k in range(1, round(FILLER_FAINTEST - MAG_LIMIT) + 1))
        for band in range(max(0, math.floor((dec0 - radius + 90) / PATCH_DEG)), _bands()):
            low = band * PATCH_DEG - 90
            if low > dec0 + radius:
                break
            cells = _cells(band)
            widest = max(abs(low), abs(low + PATCH_DEG))
            reach = 180.0 if widest >= 89.9 or abs(dec0) + radius >= 90 else radius / math.cos(math.radians(widest))
            if reach >= 180:
                columns = range(cells)
            else:
                first = math.floor((ra0 - reach) / 360 * cells)
                columns = range(first, math.floor((ra0 + reach) / 360 * cells) + 1)
            for column in {c % cells for c in columns}:
                expected = counts[band][column] * per_bright
                rng = np.random.default_rng((self.seed, band, column))
                n = rng.poisson(expected)
                if n == 0:
                    continue
                ras.append((column + rng.random(n)) * 360 / cells)
                sin_low, sin_high = math.sin(math.radians(low)), math.sin(math.radians(low + PATCH_DEG))
                decs.append(np.degrees(np.arcsin(rng.uniform(sin_low, sin_high, n))))
                # N(<m) grows as 10^(slope m): invert the distribution's CDF between 10 and 13.
                u = rng.random(n)
                span = 10 ** (FILLER_SLOPE * (FILLER_FAINTEST - MAG_LIMIT)) - 1
                mags.append(MAG_LIMIT + np.log10(1 + u * span) / FILLER_SLOPE)
        if not ras:
            return np.empty(0), np.empty(0), np.empty(0)
        return np.concatenate(ras), np.concatenate(decs), np.concatenate(mags)

    # -- the turning sky ----------------------------------------------------------------------

    def set_base(self, base: np.ndarray, *, at_start: bool = False) -> None:
        """The mount's base turned by ``base`` (the knobs, a rotation in the ground frame: the
        equator of the date at the start) from where an aligned mount's stands; the camera turns
        with it. ``at_start``: the base as the mount was set up, the start's pointing being the
        camera's on it."""
        if at_start:
            self._camera_on_base = self._start_of_date @ base
        self._base = base

    @property
    def ground_of_date(self) -> np.ndarray:
        """The matrix from the ground frame to east, north, up at the site (the start's sidereal
        time and the latitude): needs the site."""
        if self.latitude is None:
            raise ValueError("the ground needs the site's latitude")
        lst = local_sidereal_time(self.start_unix, self.longitude)
        return enu_of_hour_angle_frame(self.latitude) @ rotation_z(-lst)

    def attitude(self, turn_s: float, earth_s: float = 0.0) -> np.ndarray:
        """The camera's attitude (ICRS) after the sky turned ``turn_s`` seconds past it, ``earth_s``
        seconds of the Earth's turn after the start (which only a misaligned mount needs)."""
        if self._base is None:
            turned = self._start_of_date @ rotation_z(turn_s * SIDEREAL_DEG_PER_S).T
        else:
            earth = rotation_z(earth_s * SIDEREAL_DEG_PER_S)
            mount = rotation_z((turn_s - earth_s) * SIDEREAL_DEG_PER_S)
            turned = self._camera_on_base @ mount.T @ self._base.T @ earth.T
        return turned @ self._precession

    def positions(
        self, turns: Sequence[float], earth_s: float = 0.0
    ) -> tuple[FieldStars, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The stars of the cap, the indices of those that may touch the frame at any of ``turns``
        (the Earth's turn ``earth_s``), and the pixel positions of these at each turn (in the same
        order for every turn)."""
        matrices = [self.attitude(t, earth_s) for t in turns]
        stars = self.stars_near(matrices[0])
        # Only stars near the frame are projected: a cheap cut on the angle to the line of sight.
        cos_reach = math.cos(math.radians(min(self._frame_radius * 1.05 + 0.05, 89.0)))
        near = stars.xyz @ matrices[0][2] >= cos_reach
        for matrix in matrices[1:]:
            near |= stars.xyz @ matrix[2] >= cos_reach
        indices = np.flatnonzero(near)
        xyz = stars.xyz[indices]
        if self.latitude is not None:  # at a site the air lifts every star by its refraction
            ground = horizon_matrix(self.start_unix + earth_s, self.latitude, self.longitude)
            xyz = refracted(xyz @ ground.T) @ ground
        placed = []
        for matrix in matrices:
            x, y, _ = project(matrix, xyz, self.scale, self.size)
            placed.append((x, y))
        return stars, indices, placed

    def pointing(self, turn_s: float, unix: float) -> SkyPointing:
        """The truth about the frame at ``turn_s``, exposed at ``unix``."""
        matrix = self.attitude(turn_s, unix - self.start_unix)
        of_date = matrix @ self._precession.T
        ra_date, dec_date = (float(v) for v in radec_of(of_date[2]))
        lst = local_sidereal_time(unix, self.longitude)
        return SkyPointing(
            wcs=wcs_of(matrix, self.scale, self.size),
            epoch=julian_epoch(unix),
            unix=unix,
            turn_s=turn_s,
            ra_of_date=ra_date,
            dec_of_date=dec_date,
            lst=lst,
            hour_angle=(lst - ra_date) % 360.0,
            altitude=None if self.latitude is None else altitude(ra_date, dec_date, self.latitude, lst),
        )


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b)))))


def _bands() -> int:
    return round(180 / PATCH_DEG)


def _cells(band: int) -> int:
    """Cells in a band of declination: about PATCH_DEG wide at its middle."""
    middle = band * PATCH_DEG - 90 + PATCH_DEG / 2
    return max(1, round(360 / PATCH_DEG * math.cos(math.radians(middle))))


_counts_cache: dict[int, list[np.ndarray]] = {}


def _patch_counts(catalogue: StarCatalogue) -> list[np.ndarray]:
    """The catalogue's stars of G 9 to 10 in each filler patch (counted once per catalogue)."""
    key = id(catalogue)
    if key not in _counts_cache:
        faint = (catalogue.mag >= MAG_LIMIT - 1) & (catalogue.mag < MAG_LIMIT)
        ra, dec = catalogue.ra[faint], catalogue.dec[faint]
        cells = np.array([_cells(b) for b in range(_bands())])
        first = np.concatenate(([0], np.cumsum(cells)[:-1]))  # each band's first patch
        band = np.clip(((dec + 90) / PATCH_DEG).astype(np.int64), 0, _bands() - 1)
        column = np.minimum((ra / 360 * cells[band]).astype(np.int64), cells[band] - 1)
        counts = np.bincount(first[band] + column, minlength=int(cells.sum()))
        _counts_cache[key] = [counts[f : f + n] for f, n in zip(first, cells, strict=True)]
    return _counts_cache[key]
