"""The session form as the page saves it (the original backend's ``session_config.json`` in the
captures folder): its checks, and reading and writing it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from wanda.errors import WandaError
from wanda.sessions.checks import CONFIG_FILE, MAX_DITHER_STEPS, MAX_IMAGES, _count, _hours
from wanda.storage.disk import write_atomic
from wanda.validate import boolean, invalid, json_object, known_fields, whole, within

log = logging.getLogger(__name__)

CONFIG_DEFAULTS = {
    "name": "",
    "totalImages": 10,
    "enableTracking": False,
    "useCurrentSettings": True,
    "sessionMode": "rapid",
    "totalTimeHours": 1.0,
    "ditherEvery": 0,  # frames between dithers; 0: none
    "ditherSteps": 3,  # at most, each way
}


def parse_session_config(body: Any) -> dict[str, Any]:
    known_fields(json_object(body), CONFIG_DEFAULTS)
    form = dict(CONFIG_DEFAULTS)
    if "name" in body:
        if not isinstance(body["name"], str) or len(body["name"]) > 64:
            raise invalid("name", "must be a string of at most 64 characters")
        form["name"] = body["name"]
    if "totalImages" in body:
        form["totalImages"] = _count("totalImages", body["totalImages"])
    for key in ("enableTracking", "useCurrentSettings"):
        if key in body:
            form[key] = boolean(key, body[key])
    if "sessionMode" in body:
        if body["sessionMode"] not in ("rapid", "timed"):
            raise invalid("sessionMode", "must be rapid or timed")
        form["sessionMode"] = body["sessionMode"]
    if "totalTimeHours" in body:
        form["totalTimeHours"] = (
            None if body["totalTimeHours"] is None else _hours("totalTimeHours", body["totalTimeHours"])
        )
    if "ditherEvery" in body:
        form["ditherEvery"] = int(within("ditherEvery", whole("ditherEvery", body["ditherEvery"]), 0, MAX_IMAGES))
    if "ditherSteps" in body:
        form["ditherSteps"] = int(within("ditherSteps", whole("ditherSteps", body["ditherSteps"]), 1, MAX_DITHER_STEPS))
    if form["sessionMode"] == "timed" and not form["totalTimeHours"]:
        raise invalid("totalTimeHours", "a timed session needs more than 0 hours")
    return form


def load_session_config(root: Path) -> dict[str, Any]:
    try:
        saved = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
        return parse_session_config(saved)
    except FileNotFoundError:
        return dict(CONFIG_DEFAULTS)
    except (OSError, ValueError, WandaError) as exc:
        log.warning("ignoring %s: %s", root / CONFIG_FILE, getattr(exc, "message", exc))
        return dict(CONFIG_DEFAULTS)


def save_session_config(root: Path, form: dict[str, Any]) -> None:
    os.makedirs(root, exist_ok=True)
    write_atomic(root / CONFIG_FILE, json.dumps(form, indent=2).encode("utf-8"))
