"""The deep sky by name and by place: OpenNGC (Messier, NGC, IC and addenda such as the
Pleiades), as the `pyongc` package ships it in its SQLite file, and the named bright stars
(wanda/astro/named_stars.py: "Vega", "Betelgeuse", as type "star", their Hipparcos number as the
catalogue name).

Read once (one query, a tenth of a second: pyongc's own object-by-object API takes seconds for
all 14,000) into arrays, then:

- ``find("M31")``, ``find("NGC 224")``, ``find("andromeda galaxy")``: an object by any of its
  names (Messier, NGC and IC numbers with or without spaces and zeros, common names);
- ``within(ra, dec, radius)``: the objects in a field, nearest first, for what a solved frame
  contains.

Duplicated and nonexistent records are left out. Coordinates are J2000 degrees. Pure: no threads;
the caller loads it off the event loop (`load` reads a file).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wanda.astro.named_stars import named_stars
from wanda.astro.sidereal import julian_epoch

TYPES = {
    "*": "star",
    "**": "double star",
    "*Ass": "association of stars",
    "OCl": "open cluster",
    "GCl": "globular cluster",
    "Cl+N": "cluster with nebula",
    "G": "galaxy",
    "GPair": "galaxy pair",
    "GTrpl": "galaxy triplet",
    "GGroup": "group of galaxies",
    "PN": "planetary nebula",
    "HII": "HII region",
    "DrkN": "dark nebula",
    "EmN": "emission nebula",
    "Neb": "nebula",
    "RfN": "reflection nebula",
    "SNR": "supernova remnant",
    "Nova": "nova",
    "Other": "other",
}
LEFT_OUT = ("Dup", "NonEx")  # duplicated records (listed under their first name) and nonexistent objects


@dataclass(frozen=True)
class DeepSkyObject:
    name: str  # the catalogue's: "NGC0224", "IC0434", "Mel022"
    designation: str  # as an observer writes it: "M31", "NGC 7000", "IC 434", "Mel 22"
    type: str  # "galaxy", "open cluster", ...
    ra: float  # J2000, degrees
    dec: float
    magnitude: float | None  # V, else B
    major_arcmin: float | None
    minor_arcmin: float | None
    position_angle: float | None  # degrees, north through east
    constellation: str | None
    common_names: tuple[str, ...]
    messier: int | None
    ngc: str | None  # "NGC 224" for an NGC object, or the NGC cross-reference of another
    ic: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.designation,
            "catalogue_name": self.name,
            "type": self.type,
            "ra": round(self.ra, 6),
            "dec": round(self.dec, 6),
            "magnitude": self.magnitude,
            "size_arcmin": [self.major_arcmin, self.minor_arcmin],
            "position_angle": self.position_angle,
            "constellation": self.constellation,
            "common_names": list(self.common_names),
            "messier": self.messier,
            "ngc": self.ngc,
            "ic": self.ic,
        }


_CATALOGUE_NAME = re.compile(r"^(?P<catalogue>[A-Za-z]+?)\s*0*(?P<number>\d+)\s*(?P<suffix>[A-Za-z_]*(?:\s*NED\d+)?)$")


def _key(text: str) -> str:
    """A name as looked up: "M 031", "m31", "NGC0224", "ngc 224" and "Andromeda  galaxy" each
    become one spelling."""
    text = " ".join(text.strip().split())
    match = _CATALOGUE_NAME.match(text)
    if match:
        return f"{match['catalogue'].upper()}{int(match['number'])}{match['suffix'].replace(' ', '').upper()}"
    return text.casefold()


def _designation(name: str, messier: int | None) -> str:
    if messier is not None:
        return f"M{messier}"
    match = _CATALOGUE_NAME.match(name)
    if match:
        return f"{match['catalogue']} {int(match['number'])}{match['suffix']}"
    return name


def _cross(kind: str, value: str | None) -> str | None:
    """The NGC or IC number another record gives ("0224" -> "NGC 224")."""
    if not value:
        return None
    first = value.split(",")[0].strip()
    match = re.match(r"^0*(\d+)(.*)$", first)
    return f"{kind} {int(match[1])}{match[2]}" if match else f"{kind} {first}"


class DeepSky:
    """OpenNGC in memory: objects by name and by place."""

    def __init__(self, objects: list[DeepSkyObject]):
        self.objects = objects
        self._by_key: dict[str, DeepSkyObject] = {}
        for item in objects:
            names = [item.name, item.designation, *item.common_names]
            if item.messier is not None:
                names.append(f"M{item.messier}")
            for name in filter(None, (item.ngc, item.ic)):
                names.append(name)
            for name in names:
                self._by_key.setdefault(_key(name), item)
        ra = np.radians([o.ra for o in objects])
        dec = np.radians([o.dec for o in objects])
        self._unit = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)

    @classmethod
    def load(cls, path: Path | None = None, *, epoch: float | None = None) -> DeepSky:
        """From pyongc's database (``path``: another copy of it), with the named stars at the
        Julian ``epoch`` (default: now; their proper motions move a few arcseconds a decade)."""
        if path is None:
            from pyongc import ongc  # the package's own copy of OpenNGC

            path = Path(ongc.DBPATH)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT name, type, ra, dec, majax, minax, pa, vmag, bmag, messier, ngc, ic, commonnames, const "
                "FROM objects WHERE ra IS NOT NULL AND dec IS NOT NULL AND type NOT IN (?, ?)",
                LEFT_OUT,
            ).fetchall()
        objects = []
        for name, kind, ra, dec, major, minor, angle, vmag, bmag, messier, ngc, ic, common, const in rows:
            number = int(messier) if messier else None
            objects.append(
                DeepSkyObject(
                    name=name,
                    designation=_designation(name, number),
                    type=TYPES.get(kind, kind),
                    ra=math.degrees(ra),
                    dec=math.degrees(dec),
                    magnitude=vmag if vmag is not None else bmag,
                    major_arcmin=major,
                    minor_arcmin=minor,
                    position_angle=float(angle) if angle is not None else None,
                    constellation=const or None,
                    common_names=tuple(n.strip() for n in (common or "").split(",") if n.strip()),
                    messier=number,
                    ngc=f"NGC {int(name[3:7])}{name[7:]}" if name.startswith("NGC") else _cross("NGC", ngc),
                    ic=f"IC {int(name[2:6])}{name[6:]}" if name.startswith("IC") else _cross("IC", ic),
                )
            )
        return cls(objects + _star_objects(julian_epoch(time.time()) if epoch is None else epoch))

    def find(self, query: str) -> DeepSkyObject | None:
        """The object named ``query`` (any of its names, any spelling), or None."""
        return self._by_key.get(_key(query))

    def search(self, query: str, limit: int = 10) -> list[DeepSkyObject]:
        """Objects whose name or common name starts with ``query`` (for a search box), Messier
        objects first."""
        exact = self.find(query)
        key = _key(query).casefold()  # "ngc" and "NGC1" alike: catalogue keys are upper case
        found = [exact] if exact else []
        for name, item in self._by_key.items():
            if len(found) >= limit:
                break
            if name.casefold().startswith(key) and item not in found:
                found.append(item)
        return sorted(found, key=lambda o: (o is not exact, o.messier is None, o.designation))[:limit]

    def within(self, ra: float, dec: float, radius: float) -> list[tuple[DeepSkyObject, float]]:
        """The objects within ``radius`` degrees of (``ra``, ``dec``), with their separations in
        degrees, nearest first."""
        r, d = math.radians(ra), math.radians(dec)
        centre = np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])
        separation = np.degrees(np.arccos(np.clip(self._unit @ centre, -1.0, 1.0)))
        inside = np.flatnonzero(separation <= radius)
        order = inside[np.argsort(separation[inside])]
        return [(self.objects[i], float(separation[i])) for i in order]


def _star_objects(epoch: float) -> list[DeepSkyObject]:
    """The named stars as objects of the catalogue: found by any of their names or HIP number."""
    return [
        DeepSkyObject(
            name=f"HIP {star.hip}",
            designation=star.names[0],
            type="star",
            ra=star.ra,
            dec=star.dec,
            magnitude=star.magnitude,
            major_arcmin=None,
            minor_arcmin=None,
            position_angle=None,
            constellation=None,
            common_names=star.names[1:],
            messier=None,
            ngc=None,
            ic=None,
        )
        for star in named_stars(epoch)
    ]
