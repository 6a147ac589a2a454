"""Time arithmetic in SQL that reads the same on DuckDB and PostgreSQL.

The store keeps naive UTC timestamps (``timeutil``); these expressions are how every
query turns them into seconds or bounds them by a period, so the health math, the KPI
engine, the funnel and the SLA checks cannot drift apart on, say, a half-open range.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from partnerboard.core.vocabulary import timeutil


def epoch(col: sa.ColumnElement) -> sa.ColumnElement:
    """Seconds since 1970 as a float (``extract(epoch ...)`` exists on both databases)."""
    return sa.cast(sa.extract("epoch", col), sa.Float)


def elapsed(earlier: sa.ColumnElement, later: sa.ColumnElement, unit_s: float = 1.0) -> sa.ColumnElement:
    """``later − earlier`` in units of ``unit_s`` seconds (86400: days, 3600: hours)."""
    return (epoch(later) - epoch(earlier)) / unit_s


def within(col: sa.ColumnElement, start: datetime, end: datetime) -> sa.ColumnElement:
    """``start <= col < end`` for aware bounds: periods are half-open."""
    return sa.and_(col >= timeutil.to_db(start), col < timeutil.to_db(end))
