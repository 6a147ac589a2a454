"""Request outcomes per source, endpoint and UTC hour: what the collectors met at each
partner's API (``collectors.http`` counts them, ``collectors.sources`` records them).

Written by adding: every run adds its counts to its hour's row in one statement
(``INSERT … ON CONFLICT DO UPDATE SET n = api_hours.n + excluded.n``), so two processes
recording the same hour at once both count, and the lowest headroom of the hour is kept
(``CASE``, which both stores speak, rather than ``least()``, whose NULL handling differs:
PostgreSQL's ignores NULLs, others' return NULL).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

OUTCOMES: tuple[str, ...] = ("2xx", "4xx", "429", "5xx", "timeout", "connection", "malformed_json")
ah = schema.api_hours


def hour_of(when: datetime) -> datetime:
    """The start of ``when``'s UTC hour, as the store keeps times (naive UTC)."""
    return timeutil.to_db(when).replace(minute=0, second=0, microsecond=0)  # type: ignore[union-attr]


def record(conn: Connection, *, source: str, partner_id: str, endpoint: str, when: datetime,
           outcomes: Mapping[str, int], retries: int, min_headroom: float | None,
           rate_limit: int | None) -> None:
    """Add one run's counts of one endpoint to the hour of ``when``."""
    unknown = set(outcomes) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown request outcome(s) {sorted(unknown)}; known: {', '.join(OUTCOMES)}")
    counts = {f"n_{o}": int(outcomes.get(o, 0)) for o in OUTCOMES}
    stmt = pg_insert(ah).values(source=source, endpoint=endpoint, hour=hour_of(when), partner_id=partner_id,
                                **counts, retries=retries, min_headroom=min_headroom, rate_limit=rate_limit,
                                updated_at=timeutil.to_db(timeutil.utcnow()))
    new = stmt.excluded
    lower = sa.and_(new.min_headroom.is_not(None),
                    sa.or_(ah.c.min_headroom.is_(None), new.min_headroom < ah.c.min_headroom))
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["source", "endpoint", "hour"],
        set_={**{c: ah.c[c] + new[c] for c in (*counts, "retries")},
              "min_headroom": sa.case((lower, new.min_headroom), else_=ah.c.min_headroom),
              "rate_limit": sa.case((lower, new.rate_limit), else_=ah.c.rate_limit),
              "partner_id": new.partner_id, "updated_at": new.updated_at}))


def hours(conn: Connection, *, since: datetime, source: str | None = None) -> list[dict]:
    """The stored hours from ``since``'s hour on, oldest first (aware UTC ``hour``)."""
    q = sa.select(ah).where(ah.c.hour >= hour_of(since))
    if source is not None:
        q = q.where(ah.c.source == source)
    rows = conn.execute(q.order_by(ah.c.hour, ah.c.source, ah.c.endpoint)).mappings().all()
    return [{**r, "hour": timeutil.from_db(r["hour"])} for r in rows]


def recent(conn: Connection, now: datetime, *, window: timedelta = timedelta(hours=1)) -> list[dict]:
    """Per source and endpoint, its hours that overlap ``(now - window, now]`` added up
    (whole hours: the last hour is this hour and the one before): ``outcomes`` by name,
    ``requests``, ``retries``, ``min_headroom`` and its ``rate_limit``."""
    out: dict[tuple[str, str], dict] = {}
    for r in hours(conn, since=now - window):
        entry = out.setdefault((r["source"], r["endpoint"]), {
            "source": r["source"], "endpoint": r["endpoint"], "partner_id": r["partner_id"],
            "outcomes": dict.fromkeys(OUTCOMES, 0), "requests": 0, "retries": 0,
            "min_headroom": None, "rate_limit": None, "since": r["hour"]})
        for o in OUTCOMES:
            entry["outcomes"][o] += r[f"n_{o}"]
            entry["requests"] += r[f"n_{o}"]
        entry["retries"] += r["retries"]
        if r["min_headroom"] is not None and (entry["min_headroom"] is None
                                              or r["min_headroom"] < entry["min_headroom"]):
            entry["min_headroom"], entry["rate_limit"] = r["min_headroom"], r["rate_limit"]
    return sorted(out.values(), key=lambda e: (e["source"], e["endpoint"]))
