"""Incremental cursors: a record's cursor as an instant, and an instant as a request bound.

Partners write the same instant many ways (``2026-10-01T10:00:00Z``,
``2026-10-01T12:00:00+02:00``, epoch ``1790848800``, a plain date), and we send bounds
in one of them (``Incremental.format``). Anything that compares a record's cursor with
a bound (the watermark, the sliding window of offset paging) compares these parsed
instants, never the text: ``…Z`` and ``…+00:00`` are the same moment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from partnerboard.collectors.mapping import parse_datetime
from partnerboard.collectors.record_paths import dig

from partnerboard.core.config import Incremental


def parse_cursor(value: Any, fmt: str) -> datetime | None:
    """A cursor value (from a record, or a bound we sent) as an aware UTC datetime."""
    if value is None:
        return None
    try:
        if fmt == "date":
            return datetime.combine(date.fromisoformat(str(value)), datetime.min.time(), UTC)
        return parse_datetime(value).astimezone(UTC)
    except (ValueError, OverflowError, TypeError):
        return None


def cursor_value(raw: Any, inc: Incremental) -> datetime | None:
    """A record's cursor as an aware UTC datetime (ISO with offset, epoch or date)."""
    return parse_cursor(dig(raw, inc.cursor_field), inc.format)


def format_cursor(value: datetime, fmt: str) -> str | int:
    """An instant as the request parameter the partner expects."""
    if fmt == "epoch":
        return int(value.timestamp())
    if fmt == "date":
        return value.astimezone(UTC).date().isoformat()
    return value.astimezone(UTC).isoformat()
