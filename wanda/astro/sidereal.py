"""Time and the turning sky: Julian dates, sidereal time, precession, altitude.

Pure functions of Unix time (UTC, taken as UT1: the difference, under a second, moves the sky by
less than 15") and degrees. Precession is IAU 2006's (the one SOFA and astropy use); nutation
(under 20") and aberration (20") are left out: they move the whole field together by about a
pixel of the default optic, which a plate solve absorbs.
"""

from __future__ import annotations

import math

import numpy as np

UNIX_EPOCH_JD = 2440587.5
J2000_JD = 2451545.0
# The Earth turns 360.9856 degrees in a day of 86400 s: the sky moves 15.041" a second.
SIDEREAL_DEG_PER_S = 360.98564736629 / 86400
SIDEREAL_ARCSEC_PER_S = SIDEREAL_DEG_PER_S * 3600


def julian_date(unix: float) -> float:
    return unix / 86400 + UNIX_EPOCH_JD


def julian_epoch(unix: float) -> float:
    """The Julian year (2026.5, ...) of a Unix time: what catalogue epochs are counted in."""
    return 2000.0 + (julian_date(unix) - J2000_JD) / 365.25


def gmst(unix: float) -> float:
    """Greenwich mean sidereal time in degrees [0, 360) (IAU 1982)."""
    days = julian_date(unix) - J2000_JD
    centuries = days / 36525
    degrees = 280.46061837 + 360.98564736629 * days + 0.000387933 * centuries**2 - centuries**3 / 38710000
    return degrees % 360.0


def local_sidereal_time(unix: float, longitude: float) -> float:
    """Local mean sidereal time in degrees at ``longitude`` (degrees, east positive)."""
    return (gmst(unix) + longitude) % 360.0


def rotation_z(angle: float) -> np.ndarray:
    """The matrix that turns vectors by ``angle`` degrees about the z axis (RA grows by it)."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _frame_z(angle: float) -> np.ndarray:
    return rotation_z(angle).T


def _frame_y(angle: float) -> np.ndarray:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def precession_matrix(epoch: float) -> np.ndarray:
    """P such that ``P @ v`` is a J2000 direction ``v`` in the mean equator and equinox of
    ``epoch`` (Julian years): the frame a polar-aligned mount turns in that year. The angles are
    IAU 2006's (Capitaine et al. 2003, P03), as astropy's FK5 and SOFA use."""
    t = (epoch - 2000.0) / 100
    zeta = 2.650545 + 2306.083227 * t + 0.2988499 * t**2 + 0.01801828 * t**3 - 0.000005971 * t**4
    z = -2.650545 + 2306.077181 * t + 1.0927348 * t**2 + 0.01826837 * t**3 - 0.000028596 * t**4
    theta = 2004.191903 * t - 0.4294934 * t**2 - 0.04182264 * t**3 - 0.000007089 * t**4
    return _frame_z(-z / 3600) @ _frame_y(theta / 3600) @ _frame_z(-zeta / 3600)


def altitude(ra: float, dec: float, latitude: float, lst: float) -> float:
    """Altitude in degrees of (``ra``, ``dec``) of the date at ``latitude`` and local sidereal time
    ``lst`` (no refraction)."""
    hour_angle = math.radians(lst - ra)
    phi, delta = math.radians(latitude), math.radians(dec)
    sin_alt = math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_alt))))


def horizontal(ra: float, dec: float, latitude: float, lst: float) -> tuple[float, float]:
    """Altitude and azimuth (north through east) in degrees of (``ra``, ``dec``) of the date at
    ``latitude`` and local sidereal time ``lst`` (no refraction)."""
    hour_angle = math.radians(lst - ra)
    phi, delta = math.radians(latitude), math.radians(dec)
    # East, north and up components of the direction in the observer's horizon frame.
    east = -math.cos(delta) * math.sin(hour_angle)
    north = math.cos(phi) * math.sin(delta) - math.sin(phi) * math.cos(delta) * math.cos(hour_angle)
    up = math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, up)))), math.degrees(math.atan2(east, north)) % 360.0


def of_date(ra: float, dec: float, unix: float) -> tuple[float, float]:
    """A J2000 place (degrees) precessed to the mean equator and equinox of ``unix``'s date."""
    r, d = math.radians(ra), math.radians(dec)
    x, y, z = precession_matrix(julian_epoch(unix)) @ np.array(
        [math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)]
    )
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, z))))
