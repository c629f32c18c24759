"""Times as files and the API write them: UTC, ISO 8601, milliseconds, a "Z"."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> float:
    """Unix seconds of an ISO 8601 time as utc_iso writes it (a time without a zone is UTC, as in
    FITS); ValueError for anything else."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
