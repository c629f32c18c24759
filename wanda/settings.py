"""Camera settings: the frozen record, validation at the edge, and the state file.

The field names are the original backend's (``exposure_seconds``, ``iso``, ``night_vision_mode``,
...) so its scripts keep working; ``gain``, ``file_format`` and ``frame_type`` are new.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wanda.errors import WandaError
from wanda.storage.disk import TEMP_PREFIX, write_atomic
from wanda.validate import boolean, choice, invalid, json_object, known_fields, number, whole, within

log = logging.getLogger(__name__)

FRAME_TYPES = ("light", "dark", "flat", "bias")
FILE_FORMATS = ("jpeg", "fits", "jpeg+fits")
NIGHT_VISION_LIMITS = (1.0, 80.0)
MAX_SKIP_FRAMES = 100
STATE_FILE = "camera_settings.json"


@dataclass(frozen=True)
class CameraSettings:
    exposure_seconds: float = 1 / 30
    gain: float = 8.0
    night_vision_mode: bool = False
    night_vision_intensity: float = 1.0  # digital gain on the preview only
    save_raw: bool = False
    skip_frames: int = 0  # frames to discard before a still (flushes frames taken with old settings)
    file_format: str = "jpeg"
    frame_type: str = "light"

    @property
    def iso(self) -> float:
        return round(self.gain * 100, 6)

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and the status is built for every request.
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        data["iso"] = self.iso
        return data


_FIELDS = dataclasses.fields(CameraSettings)


@dataclass(frozen=True)
class Limits:
    exposure: tuple[float, float]
    gain: tuple[float, float]


SETTABLE = (
    "exposure_seconds",
    "iso",
    "gain",
    "night_vision_mode",
    "night_vision_intensity",
    "save_raw",
    "skip_frames",
    "file_format",
    "frame_type",
)


def parse_changes(body: Any, limits: Limits) -> dict[str, Any]:
    """Validate a settings request body into CameraSettings field changes.

    Raises WandaError: INVALID_REQUEST when the body is not a JSON object, VALIDATION_ERROR naming
    the field (once, at the start: the message goes beside the control that sent it) for a wrong
    type, an unknown field or a value outside what the sensor can do, with the range it can.
    """
    known_fields(json_object(body), SETTABLE)
    changes: dict[str, Any] = {}
    if "exposure_seconds" in body:
        low, high = limits.exposure
        exposure = number("exposure_seconds", body["exposure_seconds"], f"a number of seconds ({low:g}..{high:g} s)")
        if exposure <= 0:  # a sign typed by mistake: say what is wrong with it, not that it is out of range
            raise invalid(
                "exposure_seconds", f"must be positive, got {exposure:g} s (the limits are {low:g}..{high:g} s)"
            )
        changes["exposure_seconds"] = within("exposure_seconds", exposure, low, high, unit=" s")
    if "iso" in body:
        low, high = limits.gain[0] * 100, limits.gain[1] * 100
        iso = number("iso", body["iso"], f"a number from {low:g} to {high:g}")
        changes["gain"] = within("iso", iso, low, high) / 100
    if "gain" in body:
        gain = within("gain", number("gain", body["gain"]), *limits.gain)
        if "gain" in changes and not math.isclose(changes["gain"], gain):
            raise invalid(
                "iso", f"{changes['gain'] * 100:g} disagrees with gain {gain:g} (that gain is {gain * 100:g})"
            )
        changes["gain"] = gain
    if "night_vision_mode" in body:
        changes["night_vision_mode"] = boolean("night_vision_mode", body["night_vision_mode"])
    if "night_vision_intensity" in body:
        intensity = number("night_vision_intensity", body["night_vision_intensity"])
        changes["night_vision_intensity"] = within("night_vision_intensity", intensity, *NIGHT_VISION_LIMITS)
    if "save_raw" in body:
        changes["save_raw"] = boolean("save_raw", body["save_raw"])
    if "skip_frames" in body:
        skip = whole("skip_frames", body["skip_frames"])
        changes["skip_frames"] = int(within("skip_frames", skip, 0, MAX_SKIP_FRAMES))
    if "file_format" in body:
        changes["file_format"] = choice("file_format", body["file_format"], FILE_FORMATS)
    if "frame_type" in body:
        changes["frame_type"] = choice("frame_type", body["frame_type"], FRAME_TYPES)
    return changes


def load_settings(data_dir: Path, limits: Limits) -> CameraSettings:
    """The saved settings, or the defaults when there are none or they no longer validate."""
    path = data_dir / STATE_FILE
    defaults = CameraSettings()
    for leftover in data_dir.glob(f"{TEMP_PREFIX}{STATE_FILE}.*.tmp"):  # a kill while saving
        try:
            leftover.unlink(missing_ok=True)
        except OSError as exc:  # a read-only data disk must not keep the server from starting
            log.warning("cannot remove %s: %s", leftover, exc.strerror or exc)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return defaults
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return defaults
    if isinstance(saved, dict):
        saved.pop("iso", None)  # derived from gain
    try:
        changes = parse_changes(saved, limits)
    except WandaError as exc:
        log.warning("ignoring %s: %s", path, exc.message)
        return defaults
    return dataclasses.replace(defaults, **changes)


def save_settings(data_dir: Path, settings: CameraSettings) -> None:
    data = {k: v for k, v in settings.as_dict().items() if k != "iso"}
    data_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(data_dir / STATE_FILE, json.dumps(data, indent=2).encode("utf-8"))
