"""UTC times as the index stores them."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def isoformat(dt: datetime | None) -> str | None:
    """A stored time as the JSON APIs and reports show it: ISO 8601 in UTC with its offset, e.g.
    ``2026-12-02T05:03:44.123456+00:00`` (None stays None)."""
    return None if dt is None else as_utc(dt).isoformat()
