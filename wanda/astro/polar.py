"""Polar alignment's geometry: where a mount's RA axis points, from plate solutions, and how far
and which way to turn its altitude and azimuth knobs to bring it onto the refracted pole.

Frames. Solutions are ICRS (J2000). ``horizon_matrix`` takes ICRS vectors to the site's horizon
at an instant: east, north, up (the *ground*, which turns with the Earth). A mount's axis is fixed
in the ground while its knobs are left alone, and the RA axis turns the camera about it; so the
camera's attitudes from solutions taken at different times, each carried into the ground with its
own time (and lifted by refraction, below), differ by rotations about the axis alone, whatever
tracking did meanwhile.
``axis_of_attitudes`` finds it from two attitudes (the whole attitude, not only the centre, as a
solve gives it) or more. Turning a knob turns the base, axis and camera together, so a later
solution carries the axis along: ``moved_axis`` (the axis never needs measuring again).

Refraction. The air lifts every star by the refraction at its altitude, so a solver, matching the
stars it sees to their catalogue places, gives the attitude of a camera pointed lower than the real
one by the refraction at its line of sight (the field's altitude, not the axis's: the two ends of a
turn are lifted by different amounts, which a 15° turn would magnify fourfold into the axis).
``physical_attitude`` lifts each solved attitude back by the refraction at its line of sight, so
the axis comes out as the mount physically points; it must point at the refracted pole (the pole's
altitude plus the refraction there, about which the apparent sky turns). Refraction is
Saemundsson's formula (Meeus, Astronomical Algorithms 16.4) for a standard atmosphere, scaled by
pressure and temperature; the tests check it against astropy's (ERFA's) model, which refracts
3-5% less (dry air at 550 nm). The simulated sky at a site draws its stars lifted by the same
formula. The pole is the mean pole of the date (precession, IAU 2006): nutation moves it by under
20" and is left out, as is aberration (the whole sky by under 21").

Errors are signed as the observer meets them: altitude positive when the axis points above the
pole, azimuth positive when it points east of it, both in minutes of arc on the sky (the azimuth
difference times the cosine of the pole's altitude). Raising the altitude knob turns the mount
about the horizontal line across its axis's azimuth; turning the azimuth knob turns it about the
vertical (``knob_rotation``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from wanda.astro.catalog import StarCatalogue, radec_of, unit_vectors
from wanda.astro.projection import ARCSEC_PER_RADIAN
from wanda.astro.sidereal import julian_epoch, local_sidereal_time, precession_matrix, rotation_z

STANDARD_PRESSURE_HPA = 1010.0
STANDARD_TEMPERATURE_C = 10.0
UP = np.array([0.0, 0.0, 1.0])
# refined_attitude's last pass leaves out stars further off than this many times the median
# residual (and than the floor, in pixels).
CLIP_MEDIANS = 3.0
CLIP_FLOOR_PX = 0.5


def refraction_arcmin(
    true_altitude: ArrayLike,
    pressure_hpa: float = STANDARD_PRESSURE_HPA,
    temperature_c: float = STANDARD_TEMPERATURE_C,
) -> Any:
    """How far refraction lifts a direction at ``true_altitude`` (degrees; a number or an array),
    in arcminutes (Saemundsson 1986; 0' at the zenith, 29' at the horizon, nothing below -1°)."""
    h = np.maximum(np.asarray(true_altitude, float), -1.0)
    lift = 1.02 / np.tan(np.radians(h + 10.3 / (h + 5.11)))
    lift = np.maximum(lift, 0.0) * (pressure_hpa / 1010.0) * (283.0 / (273.0 + temperature_c))
    return float(lift) if lift.ndim == 0 else lift


def apparent_altitude(true_altitude: float, **atmosphere: float) -> float:
    """Degrees: where a direction at ``true_altitude`` appears."""
    return true_altitude + refraction_arcmin(true_altitude, **atmosphere) / 60.0


def refracted(enu: np.ndarray, **atmosphere: float) -> np.ndarray:
    """Directions (east-north-up unit vectors, (3,) or (N, 3)) where the air shows them: each turned
    towards the zenith by the refraction at its altitude."""
    v = np.atleast_2d(enu)
    up = np.clip(v[:, 2], -1.0, 1.0)
    lift = np.radians(refraction_arcmin(np.degrees(np.arcsin(up)), **atmosphere) / 60.0)
    towards_zenith = np.stack((-up * v[:, 0], -up * v[:, 1], 1.0 - up * v[:, 2]), axis=1)
    norm = np.linalg.norm(towards_zenith, axis=1)
    towards_zenith /= np.where(norm > 1e-12, norm, 1.0)[:, None]  # at the zenith nothing moves
    seen = v * np.cos(lift)[:, None] + towards_zenith * np.sin(lift)[:, None]
    return seen.reshape(np.shape(enu))


def enu_of_hour_angle_frame(latitude: float) -> np.ndarray:
    """The matrix from the equatorial frame of the meridian (x towards hour angle 0 on the equator,
    y towards hour angle -6h, that is east; z the pole) to east, north, up at ``latitude``."""
    phi = math.radians(latitude)
    s, c = math.sin(phi), math.cos(phi)
    return np.array([[0.0, 1.0, 0.0], [-s, 0.0, c], [c, 0.0, s]])


def horizon_matrix(unix: float, latitude: float, longitude: float) -> np.ndarray:
    """The matrix taking ICRS unit vectors to east, north, up at the site at ``unix``."""
    lst = local_sidereal_time(unix, longitude)
    return enu_of_hour_angle_frame(latitude) @ rotation_z(-lst) @ precession_matrix(julian_epoch(unix))


def pole(latitude: float) -> np.ndarray:
    """The celestial pole above the horizon (the north pole for latitudes >= 0), east-north-up."""
    z = np.array([0.0, 0.0, 1.0 if latitude >= 0 else -1.0])
    return enu_of_hour_angle_frame(latitude) @ z


def alt_az(vector: np.ndarray) -> tuple[float, float]:
    """True altitude and azimuth (north through east), degrees, of an east-north-up vector."""
    east, north, up = (float(v) for v in vector / np.linalg.norm(vector))
    return math.degrees(math.asin(max(-1.0, min(1.0, up)))), math.degrees(math.atan2(east, north)) % 360.0


def rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """The matrix turning vectors by ``angle_deg`` about ``axis`` (right-handed; Rodrigues)."""
    k = axis / np.linalg.norm(axis)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    a = math.radians(angle_deg)
    return np.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * (cross @ cross)


def knob_rotation(direction: np.ndarray, raise_deg: float, azimuth_deg: float) -> np.ndarray:
    """The base's turn that raises ``direction`` (a mount's axis) by ``raise_deg`` of altitude,
    about the horizontal line across its azimuth (the altitude knob), then turns it ``azimuth_deg``
    of azimuth (north through east) about the vertical (the azimuth knob)."""
    horizontal = np.array([direction[0], direction[1], 0.0])
    if np.linalg.norm(horizontal) < 1e-12:  # at the zenith any horizontal line will do
        horizontal = np.array([0.0, 1.0, 0.0])
    pivot = np.cross(horizontal, UP)  # raising a direction turns it about horizontal x up
    # Turning about the vertical by +a moves north towards the west: azimuth grows with -a.
    return rotation(UP, -azimuth_deg) @ rotation(pivot, raise_deg)


def refined_attitude(
    attitude: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    size: tuple[int, int],
    scale: float,
    catalogue: StarCatalogue,
    epoch: float,
    *,
    seen_through: Callable[[np.ndarray], np.ndarray] | None = None,
    match_px: tuple[float, ...] = (10.0, 3.0),
    min_matches: int = 8,
) -> tuple[np.ndarray, int]:
    """A solved attitude (rows: image right, down, line of sight; ICRS) fitted again to every
    star of the frame (``x``, ``y``: array pixels) that lies near a catalogue star where the
    attitude puts it, and the number of stars of the last fit (0: none made, the attitude as given). The solver fits its WCS to the few stars of its index
    (a dozen in some fields: roll errors of tens of arcseconds); the catalogue has the frame's every
    bright star. Each pass matches within its radius of ``match_px`` and fits the rotation
    (Kabsch's) that best maps the catalogue's directions onto the stars' lines of sight at
    ``scale`` (arcsec per pixel); a last pass fits again without the stars left far off (CLIP_*).
    ``seen_through`` maps the catalogue's directions to where the camera sees them (the air's
    refraction, each star by its own altitude): the fit is then where the camera physically points,
    which lifting a solve by the refraction at its centre gets only to tens of arcseconds low in the
    sky (the refraction changes across the field, and the matched stars are not centred on it). A
    mirrored field's improper attitude stays improper. A pass that pairs fewer than ``min_matches``
    ends the fitting with the last fit's attitude."""
    width, height = size
    per_pixel = scale / ARCSEC_PER_RADIAN
    radius = math.degrees(math.hypot(width, height) / 2 * per_pixel) * 1.05
    ra, dec = radec_of(attitude[2])
    known = unit_vectors(*catalogue.positions_at(catalogue.query(float(ra), float(dec), radius), epoch))
    if seen_through is not None:
        known = seen_through(known)
    stars = np.stack((np.asarray(x, float), np.asarray(y, float)), axis=1)
    offsets = stars - np.array([(width - 1) / 2, (height - 1) / 2])  # from the centre, pixels

    def lines_of_sight(per_pixel: float) -> np.ndarray:
        seen = np.concatenate((offsets * per_pixel, np.ones((len(stars), 1))), axis=1)
        return seen / np.linalg.norm(seen, axis=1)[:, None]

    seen = lines_of_sight(per_pixel)
    handed = 1.0 if np.linalg.det(attitude) > 0 else -1.0
    stars_of, entries = np.empty(0, int), np.empty(0, int)
    fitted = 0  # stars in the last fit made
    for reach in (*match_px, None):
        if reach is None:  # a last pass without the stars the fit leaves far off (blends, clipped tops)
            residual = np.linalg.norm(seen[stars_of] - known[entries] @ attitude.T, axis=1) / per_pixel
            keep = residual <= max(CLIP_FLOOR_PX, CLIP_MEDIANS * float(np.median(residual)))
            stars_of, entries = stars_of[keep], entries[keep]
        else:
            stars_of, entries = _pairs(attitude, known, stars, per_pixel, size, reach)
        if len(stars_of) < min_matches:
            break
        for _ in range(2):  # the rotation, then the scale the stars say (a solve's is the field's mean), again
            # seen_i = A @ sky_i: A = V diag(1, 1, d) U^T from the SVD of sum(sky_i seen_i^T) = U S V^T.
            u, _, vt = np.linalg.svd(known[entries].T @ seen[stars_of])
            d = np.sign(np.linalg.det(vt.T @ u.T)) * handed
            attitude = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
            camera = known[entries] @ attitude.T
            tangent = camera[:, :2] / camera[:, 2:3]  # where the fit puts them, radians from the centre
            measured = offsets[stars_of]
            per_pixel = float(np.sum(tangent * measured) / np.sum(measured * measured))
            seen = lines_of_sight(per_pixel)
        fitted = len(stars_of)
    return attitude, fitted


def _pairs(
    attitude: np.ndarray, known: np.ndarray, stars: np.ndarray, per_pixel: float, size: tuple[int, int], reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the stars and of the catalogue entries that pair up: each star with the entry
    nearest where ``attitude`` puts it, within ``reach`` pixels, and no entry claimed twice."""
    if len(known) == 0 or len(stars) == 0:
        return np.empty(0, int), np.empty(0, int)
    predicted = known @ attitude.T
    depth = np.where(predicted[:, 2] > 0, predicted[:, 2], np.nan)  # behind the camera: never near
    px = predicted[:, 0] / depth / per_pixel + (size[0] - 1) / 2
    py = predicted[:, 1] / depth / per_pixel + (size[1] - 1) / 2
    distance = np.hypot(stars[:, None, 0] - px[None, :], stars[:, None, 1] - py[None, :])
    distance = np.where(np.isnan(distance), np.inf, distance)
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(stars)), nearest] <= reach
    counts = np.bincount(nearest[close], minlength=len(known))
    keep = close & (counts[nearest] == 1)
    return np.flatnonzero(keep), nearest[keep]


def attitude_in_ground(attitude_icrs: np.ndarray, unix: float, latitude: float, longitude: float) -> np.ndarray:
    """A camera attitude (rows: its axes in ICRS) as rows in east, north, up at ``unix``."""
    return attitude_icrs @ horizon_matrix(unix, latitude, longitude).T


def physical_attitude(solved: np.ndarray, **atmosphere: float) -> np.ndarray:
    """Where a camera really points (rows, east-north-up) whose solve gave the attitude ``solved``
    (rows, east-north-up, from the catalogue's places): lifted by the refraction at its line of
    sight, about the horizontal line across it."""
    altitude, _ = alt_az(solved[2])
    return solved @ knob_rotation(solved[2], refraction_arcmin(altitude, **atmosphere) / 60.0, 0.0).T


def rotation_angle(turn: np.ndarray) -> float:
    """Degrees a rotation matrix turns by."""
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(turn)) - 1.0) / 2.0))))


def axis_of_attitudes(attitudes: Sequence[np.ndarray], toward: np.ndarray) -> tuple[np.ndarray, float]:
    """The axis the camera turned about between ``attitudes`` (rows: its axes, all in the ground
    frame), as the unit vector on the side of ``toward`` (the pole), and the largest angle turned
    from the first (degrees). Two attitudes determine it; more are fitted by least squares: the
    axis is the direction every turn from the first leaves alone (the null vector of the stacked
    turn-minus-identity matrices)."""
    if len(attitudes) < 2:
        raise ValueError("the axis needs two attitudes at least")
    first = attitudes[0]
    turns = [a.T @ first for a in attitudes[1:]]  # column vectors: a_k^T = turn @ first^T
    stacked = np.vstack([turn - np.eye(3) for turn in turns])
    axis = np.linalg.svd(stacked)[2][-1]
    if axis @ toward < 0:
        axis = -axis
    return axis / np.linalg.norm(axis), max(rotation_angle(turn) for turn in turns)


def moved_axis(axis: np.ndarray, then: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Where the mount's ``axis`` (ground) is now, from the camera's attitudes (rows, ground) when
    it was measured and now: whatever the RA axis and the knobs did between, the camera's turn
    carries the axis to its new place (the RA axis's own turns leave it where it is)."""
    moved = now.T @ then @ axis
    return moved / np.linalg.norm(moved)


@dataclass(frozen=True)
class PolarError:
    """A mount axis against the refracted pole: see the module's docstring for the signs."""

    alt_arcmin: float
    az_arcmin: float
    total_arcmin: float  # the angle between the axis and the refracted pole
    axis_alt: float  # degrees, where the axis physically points
    axis_az: float
    pole_alt: float  # degrees, the refracted pole
    pole_az: float
    southern: bool

    def knobs(self) -> dict[str, Any]:
        """Which way to turn each knob, and how far (arcminutes on the sky). Facing the pole from
        behind the mount, west is to the left in the north and to the right in the south."""
        west_side, east_side = ("right", "left") if self.southern else ("left", "right")
        return {
            "altitude": {
                "direction": "down" if self.alt_arcmin > 0 else "up",
                "arcmin": round(abs(self.alt_arcmin), 2),
                "text": f"{'lower' if self.alt_arcmin > 0 else 'raise'} the axis {_amount(self.alt_arcmin)}",
            },
            "azimuth": {
                "direction": "west" if self.az_arcmin > 0 else "east",
                "side": west_side if self.az_arcmin > 0 else east_side,
                "arcmin": round(abs(self.az_arcmin), 2),
                "text": (
                    f"turn the mount {_amount(self.az_arcmin)} "
                    f"{'west' if self.az_arcmin > 0 else 'east'} "
                    f"(to the {west_side if self.az_arcmin > 0 else east_side}, facing the pole)"
                ),
            },
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "alt_error_arcmin": round(self.alt_arcmin, 3),
            "az_error_arcmin": round(self.az_arcmin, 3),
            "total_error_arcmin": round(self.total_arcmin, 3),
            "axis": {"alt": round(self.axis_alt, 5), "az": round(self.axis_az, 5)},
            "pole": {"alt": round(self.pole_alt, 5), "az": round(self.pole_az, 5)},
            "knobs": self.knobs(),
        }


def _amount(arcmin: float) -> str:
    value = abs(arcmin)
    return f"{value / 60:.2f}°" if value >= 60 else f"{value:.1f}'"


def _azimuth_to_sky(pole_altitude: float) -> float:
    """Arcminutes on the sky per arcminute of azimuth near the pole (at least 1e-3: at a pole in
    the zenith azimuth has no meaning)."""
    return max(math.cos(math.radians(pole_altitude)), 1e-3)


def refracted_pole(latitude: float, **atmosphere: float) -> np.ndarray:
    """The pole above the horizon as the air shows it: where a mount's axis must point."""
    return refracted(pole(latitude), **atmosphere)


def polar_error(axis: np.ndarray, latitude: float, **atmosphere: float) -> PolarError:
    """The error of a mount's ``axis`` (east-north-up, as it physically points) at ``latitude``."""
    southern = latitude < 0
    target = refracted_pole(latitude, **atmosphere)
    axis_alt, axis_az = alt_az(axis)
    pole_alt, pole_az = alt_az(target)
    east = east_to_azimuth(latitude, (axis_az - pole_az + 180.0) % 360.0 - 180.0)
    alt_arcmin = (axis_alt - pole_alt) * 60
    az_arcmin = east * 60 * _azimuth_to_sky(pole_alt)
    total = math.degrees(math.acos(max(-1.0, min(1.0, float(axis @ target) / float(np.linalg.norm(axis)))))) * 60
    return PolarError(alt_arcmin, az_arcmin, total, axis_alt, axis_az, pole_alt, pole_az, southern)


def misaligned_axis(latitude: float, alt_arcmin: float, az_arcmin: float, **atmosphere: float) -> np.ndarray:
    """The axis (east-north-up) whose ``polar_error`` is ``alt_arcmin``, ``az_arcmin``: what the
    simulated mount is built with."""
    return knob_rotation(pole(latitude), *knob_turns(latitude, alt_arcmin, az_arcmin, **atmosphere)) @ pole(latitude)


def knob_turns(latitude: float, alt_arcmin: float, az_arcmin: float, **atmosphere: float) -> tuple[float, float]:
    """The knobs' turns from the geometric pole (``knob_rotation``'s degrees of altitude raised and
    of azimuth) that give a ``polar_error`` of ``alt_arcmin``, ``az_arcmin``."""
    pole_alt, _ = alt_az(pole(latitude))
    to_refracted = apparent_altitude(pole_alt, **atmosphere) - pole_alt
    raised, azimuth = knob_steps(latitude, alt_arcmin, az_arcmin, **atmosphere)
    return to_refracted + raised, azimuth


def knob_steps(latitude: float, alt_arcmin: float, az_arcmin: float, **atmosphere: float) -> tuple[float, float]:
    """The knobs' turns (degrees of altitude raised, of azimuth) that move an axis near the pole
    ``alt_arcmin`` up and ``az_arcmin`` east on the sky, as ``polar_error`` counts them."""
    seen_alt = apparent_altitude(alt_az(pole(latitude))[0], **atmosphere)
    return alt_arcmin / 60, east_to_azimuth(latitude, az_arcmin / 60 / _azimuth_to_sky(seen_alt))


def east_to_azimuth(latitude: float, east_deg: float) -> float:
    """Degrees of azimuth of a turn ``east_deg`` towards the east, near the pole: east of the
    south pole is the smaller azimuth."""
    return -east_deg if latitude < 0 else east_deg


def correction(axis: np.ndarray, latitude: float, **atmosphere: float) -> tuple[np.ndarray, np.ndarray]:
    """The base's turns (ground frame) that bring ``axis`` onto the refracted pole: the altitude
    knob's, and then both knobs' (the altitude knob first, then the azimuth knob)."""
    target = refracted_pole(latitude, **atmosphere)
    axis_alt, axis_az = alt_az(axis)
    pole_alt, pole_az = alt_az(target)
    d_az = (pole_az - axis_az + 180.0) % 360.0 - 180.0
    return knob_rotation(axis, pole_alt - axis_alt, 0.0), knob_rotation(axis, pole_alt - axis_alt, d_az)
