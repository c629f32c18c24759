"""The sky on the sensor: the gnomonic (TAN) projection of a camera pointed at (RA, Dec) with a
roll, through an optic of a given scale; as FITS WCS describes it, so that a saved frame's header
and a plate solver speak of the same thing.

Conventions, once for all of WANDA:

- Pixels are the image array's: ``x`` along a row to the right, ``y`` down the rows, 0 the centre
  of the first pixel (FITS counts from 1: CRPIX is one more). The reference pixel is the centre of
  the frame, ((width - 1) / 2, (height - 1) / 2).
- ``roll`` is the position angle of the image's up (towards row 0), from north through east, in
  degrees. At roll 0 north is up and east to the left: the sky as the eye sees it, unmirrored, as a
  camera lens with no mirror or diagonal shows it.
- ``scale`` is seconds of arc per pixel at the reference pixel.

A camera's attitude is a rotation matrix whose rows are its axes in ICRS: image right, image
down, and the line of sight. ``project`` maps unit vectors with it, and gives the same pixels as
``TanWcs.sky_to_pixel`` (the standard coordinates and the CD matrix), which the tests compare with
astropy's WCS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from wanda.astro.catalog import radec_of, unit_vectors

ARCSEC_PER_RADIAN = 180 / math.pi * 3600


def arcsec_per_pixel(focal_length_mm: float, pixel_size_um: float) -> float:
    """The image scale of a pixel of ``pixel_size_um`` behind a focal length of ``focal_length_mm``."""
    return ARCSEC_PER_RADIAN * pixel_size_um * 1e-3 / focal_length_mm


def _east_north(ra: float, dec: float) -> tuple[np.ndarray, np.ndarray]:
    a, d = math.radians(ra), math.radians(dec)
    east = np.array([-math.sin(a), math.cos(a), 0.0])
    north = np.array([-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)])
    return east, north


def attitude(ra: float, dec: float, roll: float) -> np.ndarray:
    """The camera's rotation matrix (rows: image right, image down, line of sight, in ICRS)."""
    east, north = _east_north(ra, dec)
    boresight = unit_vectors(np.array([ra]), np.array([dec]))[0]
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    right = -c * east + s * north
    down = -s * east - c * north
    return np.stack((right, down, boresight))


def pointing_of(matrix: np.ndarray) -> tuple[float, float, float]:
    """(ra, dec, roll) in degrees of a camera attitude (the inverse of ``attitude``)."""
    ra, dec = radec_of(matrix[2])
    east, north = _east_north(float(ra), float(dec))
    right = matrix[0]
    roll = math.degrees(math.atan2(float(right @ north), float(-right @ east))) % 360.0
    return float(ra), float(dec), 0.0 if roll == 360.0 else roll  # -1e-17 % 360 is 360.0


def project(
    matrix: np.ndarray, xyz: np.ndarray, scale: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel x, y of (N, 3) unit vectors seen by a camera of attitude ``matrix``, and whether each
    is in front of it (behind, the projection has no meaning)."""
    camera = xyz @ matrix.T
    depth = camera[:, 2]
    front = depth > 1e-9
    per_radian = ARCSEC_PER_RADIAN / scale
    safe = np.where(front, depth, 1.0)
    x = camera[:, 0] / safe * per_radian + (size[0] - 1) / 2
    y = camera[:, 1] / safe * per_radian + (size[1] - 1) / 2
    return x, y, front


@dataclass(frozen=True)
class TanWcs:
    """A frame's astrometry: where its centre points, its roll and scale, and its size."""

    ra: float  # degrees, ICRS, of the reference pixel (the frame's centre)
    dec: float
    roll: float  # degrees: see the module's docstring
    scale: float  # arcsec per pixel
    width: int
    height: int

    @property
    def reference_pixel(self) -> tuple[float, float]:
        return (self.width - 1) / 2, (self.height - 1) / 2

    @property
    def cd(self) -> np.ndarray:
        """FITS' CD matrix in degrees per pixel: (xi, eta) = CD @ (dx, dy), with xi towards the
        east and eta towards the north, in the array's pixel axes."""
        s = self.scale / 3600
        c, n = math.cos(math.radians(self.roll)), math.sin(math.radians(self.roll))
        return np.array([[-s * c, -s * n], [s * n, -s * c]])

    @property
    def attitude(self) -> np.ndarray:
        return attitude(self.ra, self.dec, self.roll)

    @property
    def field(self) -> tuple[float, float]:
        """Width and height of the field in degrees (at its centre)."""
        return self.width * self.scale / 3600, self.height * self.scale / 3600

    def sky_to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel x, y of sky positions, and whether each is in front of the camera."""
        return project(
            self.attitude, unit_vectors(np.asarray(ra), np.asarray(dec)), self.scale, (self.width, self.height)
        )

    def pixel_to_sky(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (degrees) of pixel positions."""
        cx, cy = self.reference_pixel
        per_pixel = self.scale / ARCSEC_PER_RADIAN
        camera = np.stack(
            ((np.asarray(x, float) - cx) * per_pixel, (np.asarray(y, float) - cy) * per_pixel, np.ones(np.shape(x))),
            axis=-1,
        )
        return radec_of(camera @ self.attitude)

    def fits_cards(self) -> list[tuple[str, Any, str]]:
        """The WCS as FITS cards (keyword, value, comment) for an image of this frame's array."""
        cx, cy = self.reference_pixel
        cd = self.cd
        return [
            ("CTYPE1", "RA---TAN", "gnomonic projection"),
            ("CTYPE2", "DEC--TAN", "gnomonic projection"),
            ("EQUINOX", 2000.0, "equinox of the coordinates"),
            ("RADESYS", "ICRS", "reference frame"),
            ("CRVAL1", self.ra, "RA of the reference pixel, degrees"),
            ("CRVAL2", self.dec, "Dec of the reference pixel, degrees"),
            ("CRPIX1", cx + 1, "reference pixel, x (from 1)"),
            ("CRPIX2", cy + 1, "reference pixel, y (from 1)"),
            ("CUNIT1", "deg", ""),
            ("CUNIT2", "deg", ""),
            ("CD1_1", float(cd[0, 0]), "degrees per pixel"),
            ("CD1_2", float(cd[0, 1]), "degrees per pixel"),
            ("CD2_1", float(cd[1, 0]), "degrees per pixel"),
            ("CD2_2", float(cd[1, 1]), "degrees per pixel"),
        ]


def wcs_of(matrix: np.ndarray, scale: float, size: tuple[int, int]) -> TanWcs:
    """The WCS of a camera attitude."""
    ra, dec, roll = pointing_of(matrix)
    return TanWcs(ra=ra, dec=dec, roll=roll, scale=scale, width=size[0], height=size[1])
