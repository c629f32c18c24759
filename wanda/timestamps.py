"""Times as files and the API write them: UTC, ISO 8601, milliseconds, a "Z"."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
