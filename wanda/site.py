"""Where the telescope stands: latitude and longitude, for sidereal time, altitudes and (later)
polar alignment.

From the configuration (`latitude`, `longitude`), or set at the telescope from the observer's
phone (its location, with consent) or typed in the page: a place set so is kept in the data
directory (`site.json`, written atomically) and wins over the configuration until it is set again.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wanda.errors import WandaError
from wanda.storage.disk import write_atomic
from wanda.validate import invalid, json_object, known_fields, number

log = logging.getLogger(__name__)
SITE_FILE = "site.json"
SOURCES = ("config", "device", "typed")


@dataclass(frozen=True)
class Site:
    latitude: float | None  # degrees, north positive; None: not known
    longitude: float | None  # degrees, east positive, -180..180
    source: str | None  # "config", "device" (the phone's location), "typed"

    @property
    def known(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def as_dict(self) -> dict[str, Any]:
        return {"latitude": self.latitude, "longitude": self.longitude, "source": self.source, "known": self.known}


def _longitude(value: float) -> float:
    """-180..180 (a configuration may say 0..360)."""
    return (value + 180.0) % 360.0 - 180.0


def parse_site(body: Any) -> tuple[float, float, str]:
    known_fields(json_object(body), ["latitude", "longitude", "source"])
    for name in ("latitude", "longitude"):
        if name not in body:
            raise invalid(name, "is required (degrees; north and east positive)")
    latitude = number("latitude", body["latitude"], "a number of degrees")
    longitude = number("longitude", body["longitude"], "a number of degrees")
    if not (math.isfinite(latitude) and -90 <= latitude <= 90):
        raise invalid("latitude", f"must be -90..90 degrees, got {latitude:g}")
    if not (math.isfinite(longitude) and -180 <= longitude <= 360):
        raise invalid("longitude", f"must be -180..180 degrees (east positive), got {longitude:g}")
    source = body.get("source", "typed")
    if source not in SOURCES[1:]:
        raise invalid("source", f"must be one of {', '.join(SOURCES[1:])}")
    return latitude, _longitude(longitude), source


class SiteStore:
    """The site in force, and setting it (blocking file I/O: from a thread)."""

    def __init__(self, data_dir: Path, latitude: float | None, longitude: float | None):
        self.path = data_dir / SITE_FILE
        configured = latitude is not None and longitude is not None
        self.configured = Site(
            latitude, _longitude(longitude) if longitude is not None else None, "config" if configured else None
        )
        self.current = self._load() or self.configured

    def _load(self) -> Site | None:
        try:
            data = json.loads(self.path.read_text())
            latitude, longitude, source = parse_site(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, WandaError) as exc:  # a damaged file: the configuration's place
            log.warning("%s is not a site (%s): using the configuration's", self.path, exc)
            return None
        return Site(latitude, longitude, source)

    def set(self, body: Any) -> Site:
        latitude, longitude, source = parse_site(body)
        site = Site(round(latitude, 6), round(longitude, 6), source)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self.path, json.dumps({"latitude": site.latitude, "longitude": site.longitude, "source": source}).encode()
        )
        self.current = site
        return site
