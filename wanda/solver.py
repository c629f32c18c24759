"""Plate solving: where the camera points, from the stars it sees, offline.

The solver is astrometry.net's ``solve-field`` (Debian's ``astrometry.net``) with the Tycho-2 index
files of Debian's ``astrometry-data-tycho2-*`` packages, run as a subprocess on a star list that WANDA
measured itself (x, y, flux: the analysis already finds the stars), never on an image. Why this one
(bench/solve.py, on star lists of the real sky at 54 pointings an optic): with the one 36 MB package
``astrometry-data-tycho2-10-19`` it solved every 1440x1080 preview field of a 16, 50 and 135 mm lens
on the HQ camera, within 0.25 px, 0.05° of roll and 0.04% of scale, in 0.05 s with a scale hint
(0.2-0.3 s blind, at most 10 s). cedar-solve (tetra3, pip) solves in 5 ms but ships a database for
10-30° fields only (the 16 mm lens; 60-80% of 50 mm fields), pins numpy < 2 and Pillow < 9, and runs
in-process, where a solve that runs long cannot be ended.

- ``PlateSolver.solve`` takes the stars in array pixels (0-based, row 0 at the top, as
  wanda/astro/measure.py finds them), the image size and optional hints (a pixel-scale range, a
  position and radius), and returns a ``Solution`` or a ``SolveFailure`` whose ``reason`` says why
  (``Failure``): too few stars, no index for this scale, timed out, not solved, cancelled, no solver
  installed, the solver failed. It never raises for a failed solve.
- Each solve runs ``solve-field`` in its own session (process group) and temporary directory; a
  timeout or a ``cancel`` event kills the whole group (solve-field and its astrometry-engine) and
  waits for it, and so does an exception in the calling thread. The solver keeps no state between
  solves but the list of index files it read once, so solves may run on any thread; one solve at a
  time is the caller's business.
- ``index_packages`` says which Debian index packages a field needs and whether they are installed
  (for ``wanda doctor`` and scripts/setup.sh).

Conventions. The WCS is the FITS one for the pixel coordinates given, 1-based: a saved FITS frame
(row 0 first) can take ``Wcs.fits_cards()`` as they are. The reference pixel is the image centre
(``--crpix-center``), so ``crval`` is the centre. ``roll`` is the position angle of the frame's top
edge (towards row 0, up on the screen), east of north, in [0, 360): 0 when north is up; an
unmirrored sky (east to the left of north) has ``mirrored`` False. Coordinates are J2000 (ICRS).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from wanda.storage.fits import card_value

log = logging.getLogger(__name__)

SOLVE_FIELD = "solve-field"
DEFAULT_INDEX_DIRS = (Path("/usr/share/astrometry"),)  # Debian's, and where /etc/astrometry.cfg points
SYSTEM_CONFIG = Path("/etc/astrometry.cfg")
INSTALL_SOLVER = "sudo apt install astrometry.net astrometry-data-tycho2-10-19"

# Fewer never solve: on clean lists of the brightest N stars (50 and 135 mm, scale hint) 5 solved
# none, 6 a third, 8 most (80-95%), 10 or more 90-100% (measured).
MIN_STARS = 6
MAX_STARS = 150  # the brightest this many go to the solver (enough for every field of the bench)
DEFAULT_TIMEOUT = 30.0  # seconds, wall clock
# The fit after the match: linear (a TAN projection). astrometry.net's default, 2, adds a SIP
# polynomial, which on 20-100 matched stars of a camera lens fits noise: roll errors up to 0.17° and a
# few solutions 2-6 px off (bench/solve.py); order 1 keeps every one within 0.3 px and 0.05°.
TWEAK_ORDER = 1
# astrometry-engine looks for quads from this share of the image's shorter side (its default is 0.1)
# up to its diagonal. Small quads in a wide field let its fit run off (a 16 mm field solved 20 px
# off by quads of a quarter of its size); from 0.25 every bench field solved within 0.3 px.
QUAD_SIZE_MIN = 0.25
QUAD_SIZE_FRACTION_HIGH = 1.0
# An index is *needed* for a field when its quads are this share of the field's shorter side: the
# quads that solve a field (measured by bench/solve.py: 10-19 alone solves 2.7° x 2.0° fields,
# whose most useful quads are index 10's and 11's, 60'-120').
NEEDED_QUAD_FRACTION = (0.5, 1.0)

# Debian's Tycho-2 index packages: the quad diameters (arcmin) of each index file they ship, by
# INDEXID. An index file is known by its INDEXID, not its name, so the same series fetched by hand
# (index-4110.fits, ...) counts as installed too.
TYCHO2_INDEXES: dict[int, tuple[float, float]] = {
    4107: (22, 30),
    4108: (30, 44),
    4109: (44, 60),
    4110: (60, 85),
    4111: (85, 120),
    4112: (120, 170),
    4113: (170, 240),
    4114: (240, 340),
    4115: (340, 480),
    4116: (480, 680),
    4117: (680, 1000),
    4118: (1000, 1400),
    4119: (1400, 2000),
}
TYCHO2_PACKAGES: dict[str, tuple[int, ...]] = {
    "astrometry-data-tycho2-07": (4107,),
    "astrometry-data-tycho2-08": (4108,),
    "astrometry-data-tycho2-09": (4109,),
    "astrometry-data-tycho2-10-19": tuple(range(4110, 4120)),
}
PACKAGE_SIZES_MB = {  # installed, Debian 12
    "astrometry-data-tycho2-07": 137,
    "astrometry-data-tycho2-08": 77,
    "astrometry-data-tycho2-09": 40,
    "astrometry-data-tycho2-10-19": 36,
}

FITS_BLOCK = 2880
FITS_CARD = 80
KILL_WAIT = 2.0  # seconds to wait for a killed solver's processes to be gone
MAX_HEADER_BLOCKS = 100  # an index file's header, HISTORY and all, is a few blocks


class Failure(StrEnum):
    """Why a solve gave no solution (the value is what an API says)."""

    TOO_FEW_STARS = "too_few_stars"
    NO_INDEX = "no_index"  # no index file for this field's scale is installed
    TIMED_OUT = "timed_out"
    NOT_SOLVED = "not_solved"  # the solver looked everywhere it could and found no match
    CANCELLED = "cancelled"
    NO_SOLVER = "no_solver"  # solve-field is not installed
    SOLVER_ERROR = "solver_error"  # it ran and failed (the message has its last words)


@dataclass(frozen=True)
class ScaleHint:
    """The pixel scale's range, arcseconds per pixel."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high and math.isfinite(self.high)):
            raise ValueError(f"a scale range is 0 < low <= high, not {self.low}..{self.high}")

    @classmethod
    def around(cls, scale: float, tolerance: float = 0.1) -> ScaleHint:
        """``scale`` give or take ``tolerance`` (a share: 0.1 is ±10%)."""
        return cls(scale * (1 - tolerance), scale * (1 + tolerance))


@dataclass(frozen=True)
class PositionHint:
    """The field's centre is within ``radius`` degrees of RA/Dec (degrees, J2000). Only with a
    ScaleHint: the solver widens the radius by the field's half-diagonal."""

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        if not (-90 <= self.dec <= 90 and math.isfinite(self.ra) and 0 < self.radius <= 180):
            raise ValueError(f"not a position hint: RA {self.ra}, Dec {self.dec}, radius {self.radius}")


@dataclass(frozen=True)
class IndexFile:
    path: Path
    index_id: int
    quad_low: float  # quad diameters it holds, arcmin
    quad_high: float


@dataclass(frozen=True)
class Wcs:
    """The solver's world coordinate system: TAN, with SIP distortion when it fitted one.
    FITS pixel coordinates (1-based); ``sip`` holds the A_/B_/AP_/BP_ cards as the solver wrote them."""

    crval: tuple[float, float]  # RA, Dec of the reference pixel, degrees
    crpix: tuple[float, float]
    cd: tuple[tuple[float, float], tuple[float, float]]  # degrees per pixel
    image_size: tuple[int, int]
    sip: dict[str, float] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Arcseconds per pixel (at the reference pixel)."""
        (a, b), (c, d) = self.cd
        return math.sqrt(abs(a * d - b * c)) * 3600

    @property
    def mirrored(self) -> bool:
        """True when the sky is seen mirrored in array coordinates (rows going down): a diagonal."""
        (a, b), (c, d) = self.cd
        return a * d - b * c < 0

    @property
    def roll(self) -> float:
        """Position angle of the frame's top edge (towards row 0), degrees east of north, [0, 360)."""
        (_, b), (_, d) = self.cd
        return math.degrees(math.atan2(-b, -d)) % 360

    def _sip(self, prefix: str, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du, dv = np.zeros_like(u), np.zeros_like(v)
        for axis, out in (("A" if prefix == "" else "AP", du), ("B" if prefix == "" else "BP", dv)):
            order = int(self.sip.get(f"{axis}_ORDER", 0))
            for p in range(order + 1):
                for q in range(order + 1 - p):
                    coefficient = self.sip.get(f"{axis}_{p}_{q}", 0.0)
                    if coefficient:
                        out += coefficient * u**p * v**q
        return du, dv

    def pixel_to_sky(self, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (degrees) of array pixels (0-based, as the stars were given)."""
        u = np.asarray(x, dtype=float) + 1 - self.crpix[0]
        v = np.asarray(y, dtype=float) + 1 - self.crpix[1]
        du, dv = self._sip("", u, v)
        u, v = u + du, v + dv
        (a, b), (c, d) = self.cd
        xi = np.radians(a * u + b * v)
        eta = np.radians(c * u + d * v)
        ra0, dec0 = np.radians(self.crval[0]), np.radians(self.crval[1])
        denominator = np.cos(dec0) - eta * np.sin(dec0)
        ra = ra0 + np.arctan2(xi, denominator)
        dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denominator))
        return np.degrees(ra) % 360, np.degrees(dec)

    def sky_to_pixel(self, ra: ArrayLike, dec: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Array pixels (0-based) of RA, Dec (degrees); NaN for points 90° or more from the centre."""
        ra_r = np.radians(np.asarray(ra, dtype=float)) - np.radians(self.crval[0])
        dec_r = np.radians(np.asarray(dec, dtype=float))
        dec0 = np.radians(self.crval[1])
        cos_c = np.sin(dec0) * np.sin(dec_r) + np.cos(dec0) * np.cos(dec_r) * np.cos(ra_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos_c = np.where(cos_c > 0, cos_c, np.nan)
            xi = np.degrees(np.cos(dec_r) * np.sin(ra_r) / cos_c)
            eta = np.degrees((np.cos(dec0) * np.sin(dec_r) - np.sin(dec0) * np.cos(dec_r) * np.cos(ra_r)) / cos_c)
        (a, b), (c, d) = self.cd
        determinant = a * d - b * c
        u = (d * xi - b * eta) / determinant
        v = (-c * xi + a * eta) / determinant
        du, dv = self._sip("P", u, v)
        return u + du + self.crpix[0] - 1, v + dv + self.crpix[1] - 1

    def scaled_to(self, width: int, height: int) -> Wcs | None:
        """The same field in pixels of another size (a full-size still of the solved preview: the
        same sensor area, binned differently); None when the shapes differ or distortion terms
        would need rescaling too."""
        if (width, height) == self.image_size:
            return self
        factor = width / self.image_size[0]
        if self.sip or abs(height / self.image_size[1] - factor) > 0.01 * factor:
            return None
        # FITS pixel centres: pixel 1 spans 0.5..1.5, so the edges, not the centres, scale.
        crpix = ((self.crpix[0] - 0.5) * factor + 0.5, (self.crpix[1] - 0.5) * factor + 0.5)
        (a, b), (c, d) = self.cd
        return Wcs(self.crval, crpix, ((a / factor, b / factor), (c / factor, d / factor)), (width, height))

    def fits_cards(self) -> list[tuple[str, Any, str]]:
        """The cards a FITS frame of this image carries (keyword, value, comment)."""
        projection = "TAN-SIP" if self.sip else "TAN"
        cards: list[tuple[str, Any, str]] = [
            ("WCSAXES", 2, "plate solution: astrometry.net"),
            ("CTYPE1", f"RA---{projection}", "gnomonic projection"),
            ("CTYPE2", f"DEC--{projection}", ""),
            ("CUNIT1", "deg", ""),
            ("CUNIT2", "deg", ""),
            ("EQUINOX", 2000.0, ""),
            ("RADESYS", "ICRS", "the Tycho-2 catalogue's frame"),
            ("CRVAL1", self.crval[0], "RA of the reference pixel, degrees"),
            ("CRVAL2", self.crval[1], "Dec of the reference pixel, degrees"),
            ("CRPIX1", self.crpix[0], "reference pixel (the image centre)"),
            ("CRPIX2", self.crpix[1], ""),
            ("CD1_1", self.cd[0][0], "degrees per pixel"),
            ("CD1_2", self.cd[0][1], ""),
            ("CD2_1", self.cd[1][0], ""),
            ("CD2_2", self.cd[1][1], ""),
        ]
        for key, value in self.sip.items():
            cards.append((key, int(value) if key.endswith("ORDER") else value, ""))
        return cards

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Wcs:
        """The inverse of ``to_dict`` (a solve result's ``wcs``)."""
        (a, b), (c, d) = data["cd"]
        return cls(
            crval=(float(data["crval"][0]), float(data["crval"][1])),
            crpix=(float(data["crpix"][0]), float(data["crpix"][1])),
            cd=((float(a), float(b)), (float(c), float(d))),
            image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
            sip={str(k): float(v) for k, v in data.get("sip", {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "crval": list(self.crval),
            "crpix": list(self.crpix),
            "cd": [list(row) for row in self.cd],
            "image_size": list(self.image_size),
            "sip": dict(self.sip),
        }


@dataclass(frozen=True)
class Solution:
    ra: float  # of the image centre, degrees, J2000
    dec: float
    roll: float  # degrees, see the module's conventions
    scale: float  # arcseconds per pixel
    width_deg: float  # the field's size
    height_deg: float
    mirrored: bool
    matched: int  # stars matched to the catalogue
    stars: int  # stars given to the solver
    index: str  # the index file that solved it
    seconds: float  # wall clock, subprocess included
    wcs: Wcs
    wcs_file: bytes = field(default=b"", repr=False)  # the solver's .wcs file as it wrote it
    ok = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "ra": self.ra,
            "dec": self.dec,
            "roll": self.roll,
            "scale": self.scale,
            "width_deg": self.width_deg,
            "height_deg": self.height_deg,
            "mirrored": self.mirrored,
            "matched": self.matched,
            "stars": self.stars,
            "index": self.index,
            "seconds": self.seconds,
            "wcs": self.wcs.to_dict(),
        }


@dataclass(frozen=True)
class SolveFailure:
    reason: Failure
    message: str  # for a human: what happened and, where there is one, what to do
    seconds: float = 0.0
    stars: int = 0
    ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": False, "reason": str(self.reason), "message": self.message, "seconds": self.seconds}


SolveResult = Solution | SolveFailure


# -- FITS, the little the solver's files need -----------------------------------------------------


def _fits_card(keyword: str, value: Any = None) -> bytes:
    if value is None:
        text = f"{keyword:<8}"
    elif isinstance(value, bool):
        text = f"{keyword:<8}= {'T' if value else 'F':>20}"
    elif isinstance(value, int):
        text = f"{keyword:<8}= {value:>20}"
    else:
        text = f"{keyword:<8}= '{value:<8}'"
    return text.ljust(FITS_CARD).encode("ascii")


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % FITS_BLOCK)


def xylist_bytes(x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> bytes:
    """A FITS binary table of X, Y, FLUX (float64), the xylist solve-field reads."""
    primary = b"".join(_fits_card(*c) for c in (("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)))
    cards = [
        ("XTENSION", "BINTABLE"),
        ("BITPIX", 8),
        ("NAXIS", 2),
        ("NAXIS1", 24),
        ("NAXIS2", int(x.size)),
        ("PCOUNT", 0),
        ("GCOUNT", 1),
        ("TFIELDS", 3),
    ]
    for number, name in enumerate(("X", "Y", "FLUX"), start=1):
        cards += [(f"TTYPE{number}", name), (f"TFORM{number}", "D")]
    table = b"".join(_fits_card(*c) for c in cards)
    rows = np.empty(x.size, dtype=[("x", ">f8"), ("y", ">f8"), ("flux", ">f8")])
    rows["x"], rows["y"], rows["flux"] = x, y, flux
    return b"".join(
        (
            _pad(primary + _fits_card("END"), b" "),
            _pad(table + _fits_card("END"), b" "),
            _pad(rows.tobytes(), b"\0"),
        )
    )


def read_fits_headers(data: bytes, count: int | None = None) -> list[dict[str, Any]]:
    """The headers of the HDUs of a FITS file (the first ``count``, or all), each as a dict of its
    valued cards (the first of a repeated keyword). Only what the solver's files need: the data of
    each HDU is skipped by its NAXISn, BITPIX, PCOUNT and GCOUNT."""
    headers: list[dict[str, Any]] = []
    offset = 0
    while offset + FITS_BLOCK <= len(data) and (count is None or len(headers) < count):
        header: dict[str, Any] = {}
        ended = False
        while not ended:
            if offset + FITS_BLOCK > len(data):
                raise ValueError("a FITS header ends early")
            block = data[offset : offset + FITS_BLOCK].decode("ascii", "replace")
            offset += FITS_BLOCK
            for start in range(0, FITS_BLOCK, FITS_CARD):
                text = block[start : start + FITS_CARD]
                keyword = text[:8].strip()
                if keyword == "END":
                    ended = True
                    break
                if text[8:10] == "= " and keyword not in header:
                    header[keyword] = card_value(text[10:])
        if not headers and header.get("SIMPLE") is not True:
            raise ValueError("not a FITS file")
        headers.append(header)
        naxis = int(header.get("NAXIS", 0))
        values = math.prod(int(header.get(f"NAXIS{n}", 0)) for n in range(1, naxis + 1)) if naxis else 0
        per_value = abs(int(header.get("BITPIX", 8))) // 8
        size = per_value * int(header.get("GCOUNT", 1)) * (values + int(header.get("PCOUNT", 0)))
        offset += size + (-size % FITS_BLOCK)
    return headers


def wcs_from_header(header: dict[str, Any]) -> Wcs:
    """The Wcs of a solver's .wcs header (ValueError when it is not a TAN one)."""
    if not str(header.get("CTYPE1", "")).startswith("RA---TAN"):
        raise ValueError(f"not a TAN WCS: CTYPE1 {header.get('CTYPE1')!r}")
    try:
        number = {key: float(header[key]) for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD2_2")}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the WCS lacks {exc}") from None
    sip = {
        key: float(value)
        for key, value in header.items()
        if re.fullmatch(r"(A|B|AP|BP)_(ORDER|\d+_\d+)", key) and isinstance(value, int | float)
    }
    return Wcs(
        crval=(number["CRVAL1"], number["CRVAL2"]),
        crpix=(number["CRPIX1"], number["CRPIX2"]),
        cd=(
            (number["CD1_1"], float(header.get("CD1_2", 0.0))),
            (float(header.get("CD2_1", 0.0)), number["CD2_2"]),
        ),
        image_size=(int(header.get("IMAGEW", 0)), int(header.get("IMAGEH", 0))),
        # A linear fit (--tweak-order 1) still writes SIP cards, all zero: no distortion to carry.
        sip=sip if str(header["CTYPE1"]).endswith("-SIP") and _distorted(sip) else {},
    )


def _distorted(sip: dict[str, float]) -> bool:
    """Whether SIP cards hold any distortion term (not the orders, not zeros)."""
    return any(value != 0.0 for key, value in sip.items() if not key.endswith("ORDER"))


# -- index files ----------------------------------------------------------------------------------


def system_index_dirs(config: Path = SYSTEM_CONFIG) -> list[Path]:
    """Where astrometry.net's own configuration looks for index files, then Debian's place."""
    dirs: list[Path] = []
    try:
        for line in config.read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "add_path":
                dirs.append(Path(words[1]))
    except OSError:
        pass
    for default in DEFAULT_INDEX_DIRS:
        if default not in dirs:
            dirs.append(default)
    return dirs


def read_index(path: Path) -> IndexFile | None:
    """An index file's id and quad sizes from its primary header; None when it is not one."""
    try:
        with path.open("rb") as file:
            head = b""
            for _ in range(MAX_HEADER_BLOCKS):
                block = file.read(FITS_BLOCK)
                head += block
                if len(block) < FITS_BLOCK or any(
                    block[start : start + 8] == b"END     " for start in range(0, FITS_BLOCK, FITS_CARD)
                ):
                    break
        header = read_fits_headers(head, count=1)[0]
    except (OSError, ValueError, IndexError):
        return None
    try:
        lower, upper = float(header["SCALE_L"]), float(header["SCALE_U"])
        index_id = int(header["INDEXID"])
    except (KeyError, TypeError, ValueError):
        return None
    radians_to_arcmin = 180 / math.pi * 60
    return IndexFile(path, index_id, lower * radians_to_arcmin, upper * radians_to_arcmin)


def find_indexes(dirs: Iterable[Path]) -> list[IndexFile]:
    found: list[IndexFile] = []
    seen: set[Path] = set()
    for directory in dirs:
        try:
            paths = sorted(directory.iterdir())
        except OSError:
            continue
        for path in paths:
            if path.suffix != ".fits" or path.resolve() in seen:
                continue
            index = read_index(path)
            if index is not None:
                seen.add(path.resolve())
                found.append(index)
    return found


def quad_range(width: int, height: int, scale: ScaleHint, low_fraction: float = QUAD_SIZE_MIN) -> tuple[float, float]:
    """The quad diameters (arcmin) astrometry-engine looks for in such a field: the indexes that
    overlap this range are the ones it loads."""
    low = low_fraction * min(width, height) * scale.low / 60
    high = QUAD_SIZE_FRACTION_HIGH * math.hypot(width, height) * scale.high / 60
    return low, high


@dataclass(frozen=True)
class IndexPackage:
    package: str
    quads: tuple[float, float]  # arcmin, of the package's index files together
    size_mb: int
    needed: bool  # for the field asked about
    installed: bool


def index_packages(scale: float, width: int, height: int, dirs: Iterable[Path] | None = None) -> list[IndexPackage]:
    """Debian's Tycho-2 index packages for a field of ``width`` x ``height`` pixels at ``scale``
    arcseconds per pixel: which it needs (its quads of NEEDED_QUAD_FRACTION of the shorter side)
    and which are installed (all their index files found in ``dirs``, by INDEXID)."""
    have = {index.index_id for index in find_indexes(system_index_dirs() if dirs is None else dirs)}
    side = min(width, height) * scale / 60  # arcmin
    low, high = NEEDED_QUAD_FRACTION[0] * side, NEEDED_QUAD_FRACTION[1] * side
    packages = []
    for package, ids in TYCHO2_PACKAGES.items():
        quads = (TYCHO2_INDEXES[ids[0]][0], TYCHO2_INDEXES[ids[-1]][1])
        needed = any(TYCHO2_INDEXES[i][0] < high and TYCHO2_INDEXES[i][1] > low for i in ids)
        packages.append(IndexPackage(package, quads, PACKAGE_SIZES_MB[package], needed, set(ids) <= have))
    return packages


def missing_packages(scale: float, width: int, height: int, dirs: Iterable[Path] | None = None) -> list[str]:
    """The index packages this field needs and that are not installed (empty: all is there)."""
    return [p.package for p in index_packages(scale, width, height, dirs) if p.needed and not p.installed]


def _covering_packages(low: float, high: float) -> list[str]:
    return [
        package
        for package, ids in TYCHO2_PACKAGES.items()
        if any(TYCHO2_INDEXES[i][0] <= high and TYCHO2_INDEXES[i][1] >= low for i in ids)
    ]


# -- the solver -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Solved:
    header: dict[str, Any]  # of the .wcs file
    wcs_file: bytes
    matched: int
    index: str


class PlateSolver:
    """astrometry.net's solve-field on star lists. Safe to call from several threads (each solve
    has its own process and directory), though one at a time is what a Pi can afford.

    ``index_dirs``: where the index files are (astrometry.net's own configuration's by default);
    ``in_parallel``: astrometry-engine tries all the indexes that fit at once (its ``inparallel``),
    which evens out blind solves (largest first is fast for wide fields and slow for narrow ones);
    ``uniformize``: solve-field's spreading of the stars over boxes, off (see ``command``)."""

    def __init__(
        self,
        index_dirs: Sequence[Path] | None = None,
        *,
        solve_field: str = SOLVE_FIELD,
        min_stars: int = MIN_STARS,
        max_stars: int = MAX_STARS,
        timeout: float = DEFAULT_TIMEOUT,
        tweak_order: int = TWEAK_ORDER,
        in_parallel: bool = True,
        uniformize: int = 0,
        quad_size_min: float = QUAD_SIZE_MIN,
    ) -> None:
        self.index_dirs = list(index_dirs) if index_dirs is not None else system_index_dirs()
        self.solve_field = solve_field
        self.min_stars = min_stars
        self.max_stars = max_stars
        self.timeout = timeout
        self.tweak_order = tweak_order
        self.in_parallel = in_parallel
        self.uniformize = uniformize
        self.quad_size_min = quad_size_min
        self._indexes: list[IndexFile] | None = None
        self._lock = threading.Lock()

    def indexes(self) -> list[IndexFile]:
        """The index files found (read once, on first use)."""
        with self._lock:
            if self._indexes is None:
                self._indexes = find_indexes(self.index_dirs)
            return self._indexes

    def solve(
        self,
        x: ArrayLike,
        y: ArrayLike,
        flux: ArrayLike,
        width: int,
        height: int,
        *,
        scale: ScaleHint | None = None,
        position: PositionHint | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> SolveResult:
        """Solve a star list: ``x``, ``y`` array pixels (0-based) in a ``width`` x ``height`` image,
        ``flux`` to rank them (the brightest ``max_stars`` are used). Blocks until solved, failed,
        ``timeout`` seconds passed or ``cancel`` is set."""
        if position is not None and scale is None:
            raise ValueError("a position hint needs a scale hint (the field's size widens its radius)")
        started = time.monotonic()
        xs, ys, fluxes = (np.asarray(a, dtype=float).ravel() for a in (x, y, flux))
        if not (xs.size == ys.size == fluxes.size):
            raise ValueError(f"x, y and flux differ in length: {xs.size}, {ys.size}, {fluxes.size}")
        if width < 1 or height < 1:
            raise ValueError(f"not an image size: {width} x {height}")
        keep = np.isfinite(xs) & np.isfinite(ys) & np.isfinite(fluxes)
        keep &= (xs > -0.5) & (xs < width - 0.5) & (ys > -0.5) & (ys < height - 0.5)
        xs, ys, fluxes = xs[keep], ys[keep], fluxes[keep]
        order = np.argsort(-fluxes, kind="stable")[: self.max_stars]
        xs, ys, fluxes = xs[order], ys[order], fluxes[order]
        stars = int(xs.size)

        def failure(reason: Failure, message: str) -> SolveFailure:
            return SolveFailure(reason, message, time.monotonic() - started, stars)

        if stars < self.min_stars:
            return failure(Failure.TOO_FEW_STARS, f"{stars} stars found; solving needs at least {self.min_stars}")
        executable = shutil.which(self.solve_field)
        if executable is None:
            return failure(Failure.NO_SOLVER, f"{self.solve_field} is not installed: {INSTALL_SOLVER}")
        indexes = self.indexes()
        if not indexes:
            dirs = ", ".join(str(d) for d in self.index_dirs) or "nowhere"
            return failure(Failure.NO_INDEX, f"no astrometry.net index files in {dirs}: {INSTALL_SOLVER}")
        if scale is not None:
            low, high = quad_range(width, height, scale, self.quad_size_min)
            usable = [i for i in indexes if i.quad_low <= high and i.quad_high >= low]
            if not usable:
                packages = _covering_packages(low, high)
                remedy = f"sudo apt install {' '.join(packages)}" if packages else "no Debian package has one"
                return failure(
                    Failure.NO_INDEX,
                    f"no index for {scale.low:.3g}-{scale.high:.3g}\"/px (quads of {low:.0f}'-{high:.0f}'"
                    f" in this field): {remedy}",
                )
            indexes = usable
        limit = self.timeout if timeout is None else timeout
        with tempfile.TemporaryDirectory(prefix="wanda-solve-", ignore_cleanup_errors=True) as work:
            result = self._run(
                executable, Path(work), xs, ys, fluxes, width, height, indexes, scale, position, limit, cancel
            )
        if not isinstance(result, _Solved):
            return failure(*result)
        try:
            wcs = wcs_from_header(result.header)
        except ValueError as exc:
            return failure(Failure.SOLVER_ERROR, f"the solver's WCS cannot be read: {exc}")
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        ra, dec = wcs.pixel_to_sky(centre_x, centre_y)
        seconds = time.monotonic() - started
        return Solution(
            ra=float(ra),
            dec=float(dec),
            roll=wcs.roll,
            scale=wcs.scale,
            width_deg=width * wcs.scale / 3600,
            height_deg=height * wcs.scale / 3600,
            mirrored=wcs.mirrored,
            matched=result.matched,
            stars=stars,
            index=result.index,
            seconds=seconds,
            wcs=wcs,
            wcs_file=result.wcs_file,
        )

    def command(
        self,
        executable: str,
        work: Path,
        width: int,
        height: int,
        scale: ScaleHint | None,
        position: PositionHint | None,
        limit: float,
    ) -> list[str]:
        command = [
            executable,
            "--config", str(work / "astrometry.cfg"),
            "--dir", str(work),
            "--temp-dir", str(work),
            "--no-plots",
            "--overwrite",
            "--width", str(width),
            "--height", str(height),
            "--x-column", "X",
            "--y-column", "Y",
            "--sort-column", "FLUX",
            "--crpix-center",
            "--quad-size-min", f"{self.quad_size_min:g}",
            # The list is WANDA's own: no bleed trails to remove, and both steps run python3 scripts
            # that cost 0.8 s of a hinted solve's 1.1 s (measured).
            "--no-remove-lines",
            "--uniformize", str(self.uniformize),
            "--cpulimit", str(max(1, math.ceil(limit))),
            "--new-fits", "none",
            "--index-xyls", "none",
            "--rdls", "none",
            "--match", "none",
            "--solved", str(work / "solved"),
            "--wcs", str(work / "stars.wcs"),
            "--corr", str(work / "stars.corr"),
        ]  # fmt: skip
        command += ["--tweak-order", str(self.tweak_order)] if self.tweak_order > 0 else ["--no-tweak"]
        if scale is not None:
            command += ["--scale-units", "arcsecperpix", "--scale-low", f"{scale.low:.6g}"]
            command += ["--scale-high", f"{scale.high:.6g}"]
        if position is not None and scale is not None:
            # astrometry.net wants every star of a quad within the radius: widen it by the field's
            # half-diagonal, so that the hint says where the centre is, as the caller means it.
            radius = min(180.0, position.radius + math.hypot(width, height) / 2 * scale.high / 3600)
            command += ["--ra", f"{position.ra:.6f}", "--dec", f"{position.dec:.6f}", "--radius", f"{radius:.6g}"]
        return [*command, str(work / "stars.xyls")]

    def _run(
        self,
        executable: str,
        work: Path,
        x: np.ndarray,
        y: np.ndarray,
        flux: np.ndarray,
        width: int,
        height: int,
        indexes: list[IndexFile],
        scale: ScaleHint | None,
        position: PositionHint | None,
        limit: float,
        cancel: threading.Event | None,
    ) -> _Solved | tuple[Failure, str]:
        """Run solve-field in ``work``: the WCS header, the stars matched and the index, or why not."""
        (work / "stars.xyls").write_bytes(xylist_bytes(x + 1, y + 1, flux))  # FITS pixels are 1-based
        config = [f"cpulimit {max(1, math.ceil(limit))}", *(f"index {i.path}" for i in indexes)]
        if self.in_parallel:
            config.append("inparallel")
        (work / "astrometry.cfg").write_text("\n".join(config) + "\n")
        command = self.command(executable, work, width, height, scale, position, limit)
        deadline = time.monotonic() + limit
        with (work / "log").open("wb") as output:
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                    start_new_session=True,  # its own process group: a kill reaches astrometry-engine too
                )
            except OSError as exc:
                return Failure.NO_SOLVER, f"{executable} cannot run: {exc}"
            try:
                while True:
                    try:
                        process.wait(timeout=0.05)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if cancel is not None and cancel.is_set():
                        return Failure.CANCELLED, "the solve was cancelled"
                    if time.monotonic() > deadline:
                        return Failure.TIMED_OUT, f"no solution within {limit:g} s"
            finally:
                _kill_group(process)
        text = (work / "log").read_text(errors="replace")
        if not (work / "solved").exists():
            if process.returncode != 0:
                last = " | ".join([line for line in text.splitlines() if line.strip()][-3:])
                return Failure.SOLVER_ERROR, f"{Path(executable).name} failed ({process.returncode}): {last}"
            if "CPU time limit reached" in text:
                return Failure.TIMED_OUT, f"no solution within the solver's CPU limit of {math.ceil(limit)} s"
            hints = " with these hints" if scale is not None or position is not None else ""
            return Failure.NOT_SOLVED, f"no match among {x.size} stars{hints}"
        try:
            wcs_file = (work / "stars.wcs").read_bytes()
            header = read_fits_headers(wcs_file)[0]
            corr = read_fits_headers((work / "stars.corr").read_bytes())
            matched = int(corr[1].get("NAXIS2", 0)) if len(corr) > 1 else 0
        except (OSError, ValueError) as exc:
            return Failure.SOLVER_ERROR, f"the solver's output cannot be read: {exc}"
        found = re.search(r"solved with index (\S+?)\.?$", text, re.MULTILINE)
        return _Solved(header, wcs_file, matched, found.group(1) if found else "")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """End solve-field and everything it started (its session's process group), reap it, and wait
    (briefly) until none of the group still runs, so that its directory can go. Once solve-field
    has ended by itself nothing of it is left: it waits for its astrometry-engine."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()
    deadline = time.monotonic() + KILL_WAIT
    while _group_running(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_running(group: int) -> bool:
    """Whether a process of this process group still runs (zombies do not: they wait to be reaped
    by whoever adopted them). Linux's /proc."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == group and fields[0] not in (b"Z", b"X"):
            return True
    return False
