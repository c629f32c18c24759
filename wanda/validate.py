"""Validation at the edge: each helper checks one value and raises the API's VALIDATION_ERROR
with a message that starts with the field's name (the original backend's contract)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from wanda.errors import ErrorCode, WandaError


def invalid(field: str, message: str) -> WandaError:
    return WandaError(ErrorCode.VALIDATION_ERROR, f"{field}: {message}")


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WandaError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object")
    return body


def known_fields(body: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise invalid(unknown[0], f"unknown field (fields: {', '.join(allowed)})")


def number(field: str, value: Any, what: str = "a number") -> float:
    # bool is an int in Python, but `true` is not an exposure.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, f"must be {what}, got {json.dumps(value)[:40]}")
    try:
        result = float(value)  # an integer of 400 digits does not fit a float
    except OverflowError:
        raise invalid(field, "is far too large") from None
    if not math.isfinite(result):
        raise invalid(field, f"must be {what}, got {value}")
    return result


MAX_WHOLE = 2**53  # beyond this a whole number is not one a client means (and not a float)


def whole(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be a whole number, got {json.dumps(value)[:40]}")
    if abs(value) > MAX_WHOLE:
        raise invalid(field, "is far too large")
    return value


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, f"must be true or false, got {json.dumps(value)}")
    return value


def choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise invalid(field, f"must be one of {', '.join(choices)}, got {json.dumps(value)}")
    return value


def within(field: str, value: float, low: float, high: float, unit: str = "") -> float:
    if not low <= value <= high:
        raise invalid(field, f"{value:g}{unit} is outside the limits {low:g}..{high:g}{unit}")
    return value


def query_whole(query: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    """A whole number from the URL's query (``?limit=50``); ``default`` when it is absent."""
    raw = query.get(field)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and low <= int(raw) <= high):
        raise invalid(field, f"must be a whole number from {low} to {high}, got {raw[:32]!r}")
    return int(raw)
