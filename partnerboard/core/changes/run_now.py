"""Run now: a page on any board replica asks for a collector run; a collecting process runs it.

The dashboard and the collectors import only the core, never each other, and with
several processes on one PostgreSQL the page and the scheduler are often not even in
the same process. So a request is a row (``run_requests``): the Data page or ``POST
/api/sources/{id}/run`` writes it ``queued``; every collecting process looks for queued
requests of its jobs each second, one of them takes it (``take``: an atomic update),
runs the job on its scheduler's worker thread (same one-run-at-a-time claim as the
schedule, recorded with trigger ``manual``) and marks it ``done`` or ``failed`` with the
run's id. The Data page lists requests queued, running and done. What can be run is
what the collecting processes published (``job_claims``); with none alive, the page
points at ``partnerboard collect --once --source ID``.

A source is one partner's (``source_partners``): a person of one partner runs only that
partner's sources, admins included, and each request is audited under the source's
partner, so the other side's admins never read of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require, require_partner
from partnerboard.core.changes.source_partners import partner_of
from partnerboard.core.config import Config
from partnerboard.core.store import job_claims, processes, schema
from partnerboard.core.vocabulary import timeutil

Outcome = Literal["queued", "already_queued", "already_running"]
rq = schema.run_requests
COLLECTOR_KINDS = ("probe", "statuspage", "source")


class RunNowError(Exception):
    """A run-now request that cannot be honoured; the message is meant for people."""


class RunNowUnavailable(RunNowError):
    """No collecting process is running (none heart-beating in the store)."""


class UnknownSourceError(RunNowError, KeyError):
    """The id names no collector job. The message lists the ids that exist.

    Also a ``KeyError``, like ``Config.source``'s, for callers that expect one."""

    def __init__(self, source: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) or "none configured"
        super().__init__(f"unknown source {source!r} (known: {listed})")
        self.source = source
        self.known = tuple(known)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class RunNowResult:
    source: str
    outcome: Outcome
    message: str


_MESSAGES: dict[Outcome, str] = {
    "queued": "{source}: queued; a collecting process starts it in a moment and it is listed "
              "under collector runs with trigger manual",
    "already_queued": "{source}: already queued; it starts in a moment",
    "already_running": "{source}: already running; that run is listed under collector runs "
                       "(one run per source at a time)",
}


def available(conn: Connection) -> bool:
    """A collecting process (``serve`` or ``collect``) is alive to carry a request out."""
    return conn.execute(processes.live_ids().limit(1)).first() is not None


def sources(conn: Connection) -> list[str]:
    """The collector jobs the collecting processes published; empty when none is alive."""
    return _published(conn) if available(conn) else []


def _published(conn: Connection) -> list[str]:
    jc = schema.job_claims
    return list(conn.execute(sa.select(jc.c.job_id).where(jc.c.kind.in_(COLLECTOR_KINDS))
                             .order_by(jc.c.job_id)).scalars())


def runnable(conn: Connection, config: Config, reader: User) -> list[str]:
    """The published sources ``reader`` may run: their own partner's, or all for a person
    of both partners (what the Data page offers)."""
    return [s for s in sources(conn) if reader.partner_id in (None, partner_of(config, s))]


def request(source: str, *, actor: User | None, conn: Connection, config: Config,
            ip: str | None = None) -> RunNowResult:
    """Queue a run of ``source``, recorded with trigger ``manual``, and return at once.

    The one door every caller goes through (Data page, ``POST /api/sources/{id}/run``):
    the admin check and the partner check are here, so a forged request meets them too;
    the request is written to the audit log in the same transaction, under the source's
    partner.

    Raises :class:`access.Forbidden` below admin or for another partner's source,
    :class:`RunNowUnavailable` when no collecting process is alive and
    :class:`UnknownSourceError` for an id no job has."""
    require(actor, "run_now")
    assert actor is not None
    if not available(conn):
        raise RunNowUnavailable(
            "run now needs a collecting process (`partnerboard serve` or `partnerboard collect`) "
            "on this store; none is running. From a shell: `partnerboard collect --once --source ID`")
    known = _published(conn)  # availability was just checked
    if source not in known:
        raise UnknownSourceError(source, known)
    owner = partner_of(config, source)
    require_partner(actor, owner, "run the sources")
    pending = conn.execute(sa.select(rq.c.status).where(
        rq.c.source == source, rq.c.status.in_(("queued", "running")))).scalars().all()
    if "running" in pending or job_claims.running(conn, source):
        outcome: Outcome = "already_running"
    elif pending:
        outcome = "already_queued"
    else:
        outcome = "queued"
        conn.execute(rq.insert().values(
            id=str(uuid.uuid4()), source=source, requested_by=actor.email,
            requested_at=timeutil.to_db(timeutil.utcnow()), status="queued"))
    audit.record(conn, actor.email, "run_now", partner=owner, target=source, detail=outcome, ip=ip)
    return RunNowResult(source, outcome, _MESSAGES[outcome].format(source=source))


def recent(conn: Connection, limit: int = 20) -> list[dict]:
    """The latest requests, newest first: for the Data page."""
    q = sa.select(rq).order_by(rq.c.requested_at.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


# --- the collecting process's side -------------------------------------------------------

def take(conn: Connection, owner: str, jobs: Sequence[str], *, now: datetime | None = None) -> list[dict]:
    """Queued requests for ``jobs``, now ``running`` under ``owner``: each one is taken by
    exactly one process (the update re-checks ``status = 'queued'``)."""
    at = timeutil.to_db(now or timeutil.utcnow())
    queued = conn.execute(sa.select(rq.c.id, rq.c.source).where(
        rq.c.status == "queued", rq.c.source.in_(list(jobs))).order_by(rq.c.requested_at)).all()
    taken = []
    for row in queued:
        done = conn.execute(rq.update().where(rq.c.id == row.id, rq.c.status == "queued").values(
            status="running", claimed_by=owner, started_at=at)).rowcount
        if done == 1:
            taken.append({"id": row.id, "source": row.source})
    return taken


def give_back(conn: Connection, request_id: str) -> None:
    """Not run after all (the job was busy elsewhere): queued again for the next look."""
    conn.execute(rq.update().where(rq.c.id == request_id, rq.c.status == "running").values(
        status="queued", claimed_by=None, started_at=None))


def finish(conn: Connection, request_id: str, *, run_id: str | None, ok: bool) -> None:
    conn.execute(rq.update().where(rq.c.id == request_id).values(
        status="done" if ok else "failed", run_id=run_id,
        finished_at=timeutil.to_db(timeutil.utcnow())))


def requeue_stale(conn: Connection, *, now: datetime | None = None) -> int:
    """Requests taken by a process that died before running them go back to the queue."""
    return conn.execute(rq.update().where(
        rq.c.status == "running", rq.c.claimed_by.not_in(processes.live_ids(now))).values(
        status="queued", claimed_by=None, started_at=None)).rowcount or 0
