"""Exactly one process runs each scheduled job, however many run the schedule.

Every ``serve``/``collect`` process keeps the whole schedule, and every firing first
claims its job here: one atomic ``UPDATE`` that succeeds only if the job's latest run
started at least ``min_gap`` ago (0.9 of its interval for a scheduled firing, 0 for a
run asked for by a person) and has finished, or belongs to a process that stopped
heart-beating. On PostgreSQL a concurrent claim of the same row waits for the first
and then re-checks the condition (READ COMMITTED), so one of them wins; the others
skip that firing. The process that won keeps winning (its firings come first in its
phase); when it dies, the next process to fire takes the job over, within one interval
if the dead one was between runs, within ``STALE_AFTER_S`` more if it died mid-run.

Like Alertmanager's cluster mode without gossip: the database is the one thing every
replica already shares.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.store import processes, schema
from partnerboard.core.vocabulary import timeutil

jc = schema.job_claims
NEVER = datetime(1970, 1, 1)
SCHEDULED_GAP = 0.9  # of the interval: a scheduled firing within this of the last run is a duplicate


def publish(engine: Engine, jobs: list[tuple[str, str, float]]) -> None:
    """Make sure each (job id, kind, interval) has its row, so the first claim is an UPDATE
    like every other; also what a board replica lists as runnable sources."""
    if not jobs:
        return
    with engine.begin() as conn:
        for job_id, kind, interval in jobs:
            stmt = pg_insert(jc).values(job_id=job_id, kind=kind, interval_s=interval, owner=None,
                                        started_at=NEVER, finished_at=NEVER)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["job_id"], set_={"kind": stmt.excluded.kind,
                                                 "interval_s": stmt.excluded.interval_s}))


def claim(engine: Engine, job_id: str, owner: str, *, min_gap_s: float,
          now: datetime | None = None) -> bool:
    """True if ``owner`` may run ``job_id`` now (and has recorded that it does)."""
    at = now or timeutil.utcnow()
    with engine.begin() as conn:
        done = _take(conn, job_id, owner, min_gap_s, at)
        if not done and conn.execute(sa.select(jc.c.job_id).where(jc.c.job_id == job_id)).first() is None:
            # Not published (a scheduler started on its own): its first claim creates the row.
            conn.execute(pg_insert(jc).values(job_id=job_id, kind="task", interval_s=min_gap_s,
                                              owner=None, started_at=NEVER, finished_at=NEVER)
                         .on_conflict_do_nothing())
            done = _take(conn, job_id, owner, min_gap_s, at)
    return done == 1


def _take(conn: Connection, job_id: str, owner: str, min_gap_s: float, at: datetime) -> int:
    return conn.execute(jc.update().where(
        jc.c.job_id == job_id,
        jc.c.started_at <= timeutil.to_db(at - timedelta(seconds=min_gap_s)),
        sa.or_(jc.c.finished_at.is_not(None), jc.c.owner.is_(None),
               jc.c.owner.not_in(processes.live_ids(at))),
    ).values(owner=owner, started_at=timeutil.to_db(at), finished_at=None)).rowcount or 0


def release(engine: Engine, job_id: str, owner: str, *, now: datetime | None = None) -> None:
    """The run ended: the job may be claimed again (by anyone, after the gap)."""
    with engine.begin() as conn:
        conn.execute(jc.update().where(jc.c.job_id == job_id, jc.c.owner == owner).values(
            finished_at=timeutil.to_db(now or timeutil.utcnow())))


def running(conn: Connection, job_id: str, *, now: datetime | None = None) -> bool:
    """A live process is running ``job_id`` at this moment."""
    row = conn.execute(sa.select(jc.c.owner, jc.c.finished_at).where(jc.c.job_id == job_id)).first()
    if row is None or row.finished_at is not None or row.owner is None:
        return False
    alive = conn.execute(processes.live_ids(now).where(schema.processes.c.id == row.owner)).first()
    return alive is not None


def listed(conn: Connection) -> list[dict]:
    """Every published job: who ran it last, when, whether it is running."""
    out = []
    for row in conn.execute(sa.select(jc).order_by(jc.c.job_id)).mappings():
        started = row["started_at"] if row["started_at"] != NEVER else None
        finished = row["finished_at"] if row["finished_at"] not in (None, NEVER) else None
        out.append({"id": row["job_id"], "kind": row["kind"], "interval_s": row["interval_s"],
                    "owner": row["owner"], "last_started_at": _iso(started),
                    "last_finished_at": _iso(finished),
                    "running": row["finished_at"] is None})
    return out


def _iso(dt: datetime | None) -> str | None:
    aware = timeutil.from_db(dt)
    return aware.isoformat() if aware else None
