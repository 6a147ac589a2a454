"""Retention: what the store stops keeping once it is old.

Every probe round adds a collector run, so a year of 5-s probes of two partners is
~12 M run rows that say nothing the probes themselves do not. The hourly retention job
(``store:retention``, one process per hour) deletes, older than ``[collection]
keep_runs_days``:

- successful probe-round runs and successful runs that changed no row (nothing points at
  them); each source's latest run is always kept, so freshness and /healthz still know;
- finished run-now requests;
- the collectors' hourly view of each partner's API (``api_hours``): its rules and pages
  look at the last hours, and a year of hourly rows per endpoint would only grow;
- processes silent for a day.

Kept for ever: failed and degraded runs (the history people investigate) and runs that
wrote or quarantined rows (every stored row names the run that last changed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.store import processes, schema
from partnerboard.core.vocabulary import timeutil

runs = schema.collector_runs


@dataclass(frozen=True)
class Pruned:
    runs: int
    requests: int
    processes: int
    api_hours: int = 0


def prune(conn: Connection, *, keep_runs_days: int, now: datetime | None = None) -> Pruned:
    at = now or timeutil.utcnow()
    cutoff = timeutil.to_db(at - timedelta(days=keep_runs_days))
    every, one = runs.alias("every_run"), runs.alias("one_run")  # aliases: no correlation with the DELETE
    last = sa.select(every.c.source, sa.func.max(every.c.started_at).label("at")).group_by(
        every.c.source).subquery()
    latest_ids = sa.select(one.c.id).join(last, sa.and_(one.c.source == last.c.source,
                                                        one.c.started_at == last.c.at))
    idle = sa.or_(runs.c.source.like("probe:%"),
                  sa.and_(runs.c.rows_written == 0, sa.func.coalesce(runs.c.rows_quarantined, 0) == 0))
    gone = conn.execute(runs.delete().where(
        runs.c.started_at < cutoff, runs.c.status == "success", idle,
        runs.c.id.not_in(latest_ids))).rowcount or 0
    rq = schema.run_requests
    requests = conn.execute(rq.delete().where(
        rq.c.status.in_(("done", "failed")), rq.c.requested_at < cutoff)).rowcount or 0
    ah = schema.api_hours
    hours = conn.execute(ah.delete().where(ah.c.hour < cutoff)).rowcount or 0
    return Pruned(gone, requests, processes.prune(conn, now=at), hours)
