"""What a session request must be: its name (a folder on FAT, exFAT or ext4 drives), its counts
and hours, and the session form the page saves (the original backend's session_config.json).
Pure checks that raise the API's validation errors."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wanda.errors import ErrorCode, WandaError
from wanda.settings import CameraSettings, parse_changes
from wanda.storage.disk import TEMP_PREFIX
from wanda.validate import boolean, invalid, json_object, known_fields, number, whole, within

if TYPE_CHECKING:
    from wanda.control import CameraControl

CONFIG_FILE = "session_config.json"  # the session form, in the captures folder: not a session's name

MAX_IMAGES = 100_000
MAX_HOURS = 240.0
# Path separators, and what FAT and exFAT USB drives (the usual capture disks) refuse in names.
FORBIDDEN_IN_NAMES = '/\\<>:"|?*'
# A folder name is at most 255 bytes on every filesystem; "_12" may be added when the name is taken.
MAX_NAME_BYTES = 240
# What FAT and exFAT drives (and Windows, which reads them) refuse as a name, with or without an
# extension: a folder named CON cannot be copied off the stick.
FAT_DEVICE_NAMES = frozenset(
    {
        "CON",
        "PRN",
        "AUX",
        "NUL",
        "CONIN$",
        "CONOUT$",
        *(f"COM{i}" for i in "0123456789¹²³"),
        *(f"LPT{i}" for i in "0123456789¹²³"),
    }
)
# A folder named like a frame's file in the captures folder (light_0005.json) would stand where a
# single capture's file goes.
_LIKE_A_FRAME = re.compile(r"^[A-Za-z]+_\d+\.", re.ASCII)


def validate_name(name: Any) -> str:
    """1-64 printable characters, no path separator, not ``.`` or ``..``, not hidden."""
    if not isinstance(name, str):
        raise invalid("name", "must be a string")
    if not 1 <= len(name) <= 64:
        raise invalid("name", "must be 1 to 64 characters")
    if not name.isprintable() or any(c in FORBIDDEN_IN_NAMES for c in name):
        raise invalid("name", f"may hold printable characters only, none of {' '.join(FORBIDDEN_IN_NAMES)}")
    if name in (".", "..") or name.startswith(TEMP_PREFIX):
        raise invalid("name", "may not be . or .. or start with a dot")
    if name != name.rstrip(". "):
        raise invalid("name", "may not end with a dot or a space (USB drives drop them)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise WandaError(
            ErrorCode.NAME_TOO_LONG, f"name: at most {MAX_NAME_BYTES} bytes in UTF-8 (a folder's name on disk)"
        )
    if name.split(".")[0].rstrip().upper() in FAT_DEVICE_NAMES:
        raise WandaError(ErrorCode.RESERVED_NAME, f"name: {name!r} is a device name that USB drives (FAT) cannot hold")
    if _LIKE_A_FRAME.match(name):
        raise WandaError(ErrorCode.RESERVED_NAME, f"name: {name!r} is named like a frame's file (light_0001.jpg)")
    if name.casefold() == CONFIG_FILE:  # FAT and exFAT do not tell the case apart
        raise WandaError(ErrorCode.RESERVED_NAME, f"name: {CONFIG_FILE} is WANDA's own file in the captures folder")
    return name


def _count(field_name: str, value: Any) -> int:
    return int(within(field_name, whole(field_name, value), 1, MAX_IMAGES))


def _hours(field_name: str, value: Any) -> float:
    hours = number(field_name, value, "a number of hours")
    if not 0 < hours <= MAX_HOURS:
        raise invalid(field_name, f"must be above 0 and at most {MAX_HOURS:g}")
    return hours


MAX_DITHER_STEPS = 200  # a dither of more than this is a slew, not a dither
MAX_SETTLE_S = 300.0
DITHER_FIELDS = ("every", "max_steps", "settle_s")


@dataclass(frozen=True)
class Dither:
    """Every ``every`` frames the RA stepper advances by, or holds back for, a random whole number
    of steps up to ``max_steps`` (never none), then the session waits ``settle_s`` before the next
    exposure (wanda/sessions/runner.py)."""

    every: int
    max_steps: int
    settle_s: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_dither(value: Any) -> Dither | None:
    """``{"every": N, "max_steps": K, "settle_s": S}`` (settle_s defaults to 2); null for none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("dither", 'must be an object like {"every": 3, "max_steps": 5, "settle_s": 2}, or null')
    unknown = sorted(set(value) - set(DITHER_FIELDS))
    if unknown:
        raise invalid(f"dither.{unknown[0]}", f"unknown field (dither takes {', '.join(DITHER_FIELDS)})")
    for required in ("every", "max_steps"):
        if required not in value:
            raise invalid(f"dither.{required}", "is required")
    every = int(within("dither.every", whole("dither.every", value["every"]), 1, MAX_IMAGES))
    steps = int(within("dither.max_steps", whole("dither.max_steps", value["max_steps"]), 1, MAX_DITHER_STEPS))
    settle = within("dither.settle_s", number("dither.settle_s", value.get("settle_s", 2.0)), 0, MAX_SETTLE_S, " s")
    return Dither(every, steps, float(settle))


@dataclass(frozen=True)
class SessionRequest:
    name: str
    total_images: int
    total_time_hours: float | None
    enable_tracking: bool
    use_current_settings: bool
    settings: CameraSettings
    object: str | None  # what is observed, for FITS OBJECT
    dither: Dither | None = None


SETTING_FIELDS = ("exposure_seconds", "iso", "gain")  # the camera's, unless use_current_settings
FRAME_FIELDS = ("frame_type", "file_format")  # the session's own, whatever the camera has


START_FIELDS = (
    "name",
    "total_images",
    "use_current_settings",
    "enable_tracking",
    "total_time_hours",
    "object",
    "dither",
    *SETTING_FIELDS,
    *FRAME_FIELDS,
)


def parse_start(body: Any, control: CameraControl) -> SessionRequest:
    known_fields(json_object(body), START_FIELDS)
    if "name" not in body:
        raise invalid("name", "is required")
    if "total_images" not in body:
        raise invalid("total_images", "is required")
    name = validate_name(body["name"])
    total = _count("total_images", body["total_images"])
    hours = body.get("total_time_hours")
    hours = None if hours is None else _hours("total_time_hours", hours)
    use_current = boolean("use_current_settings", body.get("use_current_settings", True))
    tracking = boolean("enable_tracking", body.get("enable_tracking", False))
    given = {k: body[k] for k in SETTING_FIELDS if k in body}
    if use_current and given:
        raise invalid(sorted(given)[0], "use_current_settings is true: leave the camera fields out or set it false")
    given.update({k: body[k] for k in FRAME_FIELDS if k in body})
    settings = dataclasses.replace(control.settings, **parse_changes(given, control.limits))
    if "object" in body:
        target = body["object"]
        if not isinstance(target, str) or not _fits_text(target):
            raise invalid("object", "must be 1 to 68 printable ASCII characters (it goes into FITS headers)")
    else:  # the session's name, when FITS can carry it
        target = name if _fits_text(name) else None
    dither = parse_dither(body.get("dither"))
    return SessionRequest(name, total, hours, tracking, use_current, settings, target, dither)


def _fits_text(text: str) -> bool:
    return 0 < len(text) <= 68 and text.isascii() and text.isprintable()
