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

from wanda.errors import ApiError
from wanda.storage import write_atomic

log = logging.getLogger(__name__)

FRAME_TYPES = ("light", "dark", "flat", "bias")
FILE_FORMATS = ("jpeg",)
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
        data = dataclasses.asdict(self)
        data["iso"] = self.iso
        return data


@dataclass(frozen=True)
class Limits:
    exposure: tuple[float, float]
    gain: tuple[float, float]


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", f"{field}: {message}")


def _number(field: str, value: Any) -> float:
    # bool is an int in Python, but `true` is not an exposure.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(field, f"must be a number, got {json.dumps(value)}")
    return float(value)


def _boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _invalid(field, f"must be true or false, got {json.dumps(value)}")
    return value


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _invalid(field, f"must be one of {', '.join(choices)}, got {json.dumps(value)}")
    return value


def _within(field: str, value: float, low: float, high: float, unit: str = "") -> float:
    if not low <= value <= high:
        raise _invalid(field, f"{value:g}{unit} is outside the limits {low:g}..{high:g}{unit}")
    return value


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

    Raises ApiError: INVALID_REQUEST when the body is not a JSON object, VALIDATION_ERROR naming
    the field for a wrong type, an unknown field or a value outside what the sensor can do.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "the body must be a JSON object")
    unknown = sorted(set(body) - set(SETTABLE))
    if unknown:
        raise _invalid(unknown[0], f"unknown field (settable: {', '.join(SETTABLE)})")
    changes: dict[str, Any] = {}
    if "exposure_seconds" in body:
        exposure = _number("exposure_seconds", body["exposure_seconds"])
        if exposure <= 0:
            raise _invalid("exposure_seconds", "must be > 0")
        changes["exposure_seconds"] = _within("exposure_seconds", exposure, *limits.exposure, unit=" s")
    if "iso" in body:
        iso = _number("iso", body["iso"])
        if iso <= 0:
            raise _invalid("iso", "must be > 0")
        low, high = limits.gain
        changes["gain"] = _within("iso", iso, low * 100, high * 100) / 100
    if "gain" in body:
        gain = _within("gain", _number("gain", body["gain"]), *limits.gain)
        if "gain" in changes and not math.isclose(changes["gain"], gain):
            raise _invalid("iso", f"iso {body['iso']} and gain {gain:g} disagree (iso = gain x 100)")
        changes["gain"] = gain
    if "night_vision_mode" in body:
        changes["night_vision_mode"] = _boolean("night_vision_mode", body["night_vision_mode"])
    if "night_vision_intensity" in body:
        intensity = _number("night_vision_intensity", body["night_vision_intensity"])
        changes["night_vision_intensity"] = _within("night_vision_intensity", intensity, *NIGHT_VISION_LIMITS)
    if "save_raw" in body:
        changes["save_raw"] = _boolean("save_raw", body["save_raw"])
    if "skip_frames" in body:
        skip = body["skip_frames"]
        if isinstance(skip, bool) or not isinstance(skip, int):
            raise _invalid("skip_frames", f"must be a whole number, got {json.dumps(skip)}")
        changes["skip_frames"] = int(_within("skip_frames", skip, 0, MAX_SKIP_FRAMES))
    if "file_format" in body:
        changes["file_format"] = _choice("file_format", body["file_format"], FILE_FORMATS)
    if "frame_type" in body:
        changes["frame_type"] = _choice("frame_type", body["frame_type"], FRAME_TYPES)
    return changes


def load_settings(data_dir: Path, limits: Limits) -> CameraSettings:
    """The saved settings, or the defaults when there are none or they no longer validate."""
    path = data_dir / STATE_FILE
    defaults = CameraSettings()
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
    except ApiError as exc:
        log.warning("ignoring %s: %s", path, exc.message)
        return defaults
    return dataclasses.replace(defaults, **changes)


def save_settings(data_dir: Path, settings: CameraSettings) -> None:
    data = {k: v for k, v in settings.as_dict().items() if k != "iso"}
    data_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(data_dir / STATE_FILE, json.dumps(data, indent=2).encode("utf-8"))
