"""What each source has covered: the difference between *no data* and 0.

A KPI over a period says 0 only when its sources have read that period and found
nothing. Before a source's coverage begins (before its first record, or before the
explicit start of a backfill or of ``incremental.start``), or when a partner has no
source for a table the KPI needs at all, the KPI is *no data*, and so is every delta
against it. A year-ago period before the first collected refund is not "0 PLN of
refunds".

Each successful run extends its source's coverage (``extend``, in the run's own
transaction): down to the explicit lower bound it asked from, or else to the earliest
record it delivered, or, for a source that delivered nothing at all, to the run's own
start. A store without coverage rows for a table (data loaded some other way) falls
back to the table's earliest record for the partner.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

cov = schema.source_coverage


def record_time(resource: str, row: dict[str, Any], tz: ZoneInfo) -> datetime | None:
    """When a mapped record happened, in UTC: its time column, a day's local midnight."""
    value = row.get(schema.RECORD_TIME[resource])
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.min, tz).astimezone(UTC)
    return None


def extend(conn: Connection, *, source: str, partner_id: str, resource: str, run_id: str,
           explicit_from: datetime | None, earliest: datetime | None, started: datetime) -> None:
    """Widen ``source``'s coverage with what one successful run read."""
    reach = explicit_from or earliest or started
    current = conn.execute(sa.select(cov.c.covered_from).where(cov.c.source == source)).scalar()
    now = timeutil.to_db(timeutil.utcnow())
    if current is None:
        conn.execute(cov.insert().values(source=source, partner_id=partner_id, resource=resource,
                                         covered_from=timeutil.to_db(reach), run_id=run_id, updated_at=now))
    elif timeutil.to_db(reach) < current:
        conn.execute(cov.update().where(cov.c.source == source).values(
            covered_from=timeutil.to_db(reach), run_id=run_id, updated_at=now))


def covered_from(conn: Connection, partner_ids: list[str], tz: ZoneInfo) -> dict[tuple[str, str], datetime]:
    """(partner, table) -> from when its data is complete (aware UTC). Stored coverage
    first; tables of these partners with data but no coverage rows fall back to their
    earliest record."""
    found: dict[tuple[str, str], datetime] = {}
    for partner_id, resource, earliest in conn.execute(
            sa.select(cov.c.partner_id, cov.c.resource, sa.func.min(cov.c.covered_from))
            .where(cov.c.partner_id.in_(partner_ids)).group_by(cov.c.partner_id, cov.c.resource)):
        found[(partner_id, resource)] = timeutil.from_db(earliest)
    for resource, table in schema.RESOURCE_TABLES.items():
        missing = [p for p in partner_ids if (p, resource) not in found]
        if not missing:
            continue
        column = table.c[schema.RECORD_TIME[resource]]
        for partner_id, earliest in conn.execute(
                sa.select(table.c.partner_id, sa.func.min(column))
                .where(table.c.partner_id.in_(missing)).group_by(table.c.partner_id)):
            if earliest is None:
                continue
            if isinstance(earliest, datetime):
                found[(partner_id, resource)] = timeutil.from_db(earliest)
            else:  # a local day: from its midnight in the partnership's zone
                found[(partner_id, resource)] = datetime.combine(earliest, time.min, tz).astimezone(UTC)
    return found


UPLOAD_PREFIX = "upload:"


def uploaded(conn: Connection, partner_ids: list[str]) -> set[tuple[str, str]]:
    """(partner, table) that people imported by upload (a source of its own, named
    ``upload:<partner>:<table>``): covered even though no configured source reads it."""
    return {(r.partner_id, r.resource) for r in conn.execute(
        sa.select(cov.c.partner_id, cov.c.resource).where(cov.c.partner_id.in_(partner_ids),
                                                          cov.c.source.like(f"{UPLOAD_PREFIX}%")).distinct())}
