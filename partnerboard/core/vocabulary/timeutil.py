"""UTC in the store, aware datetimes in Python.

The store keeps naive ``TIMESTAMP`` values that are always UTC, because that type
means the same thing on DuckDB and PostgreSQL. These helpers are the only place
that converts, so no caller has to remember which side of the boundary it is on.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_db(dt: datetime) -> datetime:
    """Aware datetime -> naive UTC for the store. Naive input is refused, not guessed."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r} has no time zone; pass an aware datetime")
    return dt.astimezone(UTC).replace(tzinfo=None)


def from_db(dt: datetime | None) -> datetime | None:
    """Naive UTC from the store -> aware UTC."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        return dt.astimezone(UTC)
    return dt.replace(tzinfo=UTC)


def epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r} has no time zone; pass an aware datetime")
    return dt.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
