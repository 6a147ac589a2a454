"""The outbox: every notification is a row before it is a message.

``enqueue`` writes a notification for a receiver in the caller's transaction (the one
that records the alert's change of state), so what must be told survives any crash.
Alerts of one partner and rule that change within ``group_wait_seconds`` join the same
pending notification: one message for an outage of ten endpoints. A sender ``claim``-s
due notifications for a while (a lease: a sender killed mid-delivery leaves a claim that
simply runs out, or is released at once by the next process that owns the database),
then marks each ``delivered`` (the
receiver answered 2xx) or ``retry``-es it later with backoff, until
``give_up_after_hours`` marks it ``undeliverable``. Each row keeps one idempotency key for
all its attempts: delivery is at least once, and a receiver can drop repeats.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.store import processes, schema
from partnerboard.core.vocabulary import timeutil

nt = schema.notifications
# Longer than the longest delivery attempt (a receiver's timeout_seconds is at most 120 s),
# so a live sender never has its notification taken from under it.
LEASE = timedelta(seconds=150)
MAX_BACKOFF_S = 600.0


def enqueue(conn: Connection, config: Config, *, receiver_id: str, kind: str, group_key: str,
            alert: dict[str, Any], now: datetime) -> str:
    """Add ``alert`` to the pending notification of its group for this receiver, or start
    one, due after ``group_wait_seconds``. Returns the notification's id."""
    at = timeutil.to_db(now)
    pending = conn.execute(sa.select(nt.c.id, nt.c.alerts).where(
        nt.c.receiver_id == receiver_id, nt.c.kind == kind, nt.c.group_key == group_key,
        nt.c.status == "pending", nt.c.attempts == 0, nt.c.due_at > at)).first()
    if pending is not None:
        alerts = json.loads(pending.alerts)
        if all(a["fingerprint"] != alert["fingerprint"] for a in alerts):
            alerts.append(alert)
            conn.execute(nt.update().where(nt.c.id == pending.id).values(
                alerts=json.dumps(alerts, default=str)))
        return pending.id
    nid = str(uuid.uuid4())
    due = now + timedelta(seconds=config.alerts.group_wait_seconds if kind != "test" else 0)
    conn.execute(nt.insert().values(
        id=nid, receiver_id=receiver_id, idempotency_key=f"pb-{uuid.uuid4().hex}", kind=kind,
        group_key=group_key, alerts=json.dumps([alert], default=str), status="pending", attempts=0,
        created_at=at, due_at=timeutil.to_db(due)))
    return nid


def enqueue_message(conn: Connection, *, receiver_id: str, kind: str, group_key: str, payload: dict[str, Any],
                    now: datetime) -> str:
    """A notification that is not an alert (a review pack): its own row, due now, never
    grouped with another. ``payload`` is what the message says (stored in ``alerts``)."""
    nid = str(uuid.uuid4())
    conn.execute(nt.insert().values(
        id=nid, receiver_id=receiver_id, idempotency_key=f"pb-{uuid.uuid4().hex}", kind=kind,
        group_key=group_key, alerts=json.dumps([payload], default=str), status="pending", attempts=0,
        created_at=timeutil.to_db(now), due_at=timeutil.to_db(now)))
    return nid


def claim(conn: Connection, *, worker: str, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """Due notifications, now held by ``worker`` for ``LEASE``: pending ones whose time has
    come, and ones whose sender's lease ran out (it died or hung mid-delivery) or whose
    sender's process stopped heart-beating (``processes``: with several processes on one
    PostgreSQL, a killed sender's messages go out again within ``STALE_AFTER_S``, not
    after the lease). On PostgreSQL the claiming UPDATE re-checks ``due`` on each row it
    waited for, so two senders never hold one notification."""
    at = timeutil.to_db(now)
    due = sa.or_(sa.and_(nt.c.status == "pending", nt.c.due_at <= at),
                 sa.and_(nt.c.status == "sending", nt.c.claimed_until < at),
                 # held by a process that stopped heart-beating: no need to wait out its lease
                 sa.and_(nt.c.status == "sending", nt.c.claimed_by.in_(processes.dead_ids(now))))
    rows = conn.execute(sa.select(nt).where(due).order_by(nt.c.due_at).limit(limit)).mappings().all()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    conn.execute(nt.update().where(nt.c.id.in_(ids), due).values(
        status="sending", claimed_by=worker, claimed_until=timeutil.to_db(now + LEASE)))
    held = conn.execute(sa.select(nt).where(nt.c.id.in_(ids), nt.c.claimed_by == worker,
                                            nt.c.status == "sending")).mappings().all()
    return [dict(r) | {"alerts": json.loads(r["alerts"])} for r in held]


def release_claims(conn: Connection) -> int:
    """Free every claim at once: for a process that knows it is the only sender (it owns
    the DuckDB file), so what a killed predecessor held is sent now, not when its lease
    runs out. Returns how many were held."""
    return conn.execute(nt.update().where(nt.c.status == "sending").values(
        status="pending", claimed_by=None, claimed_until=None)).rowcount or 0


def delivered(conn: Connection, notification_id: str, *, status: int, now: datetime) -> None:
    conn.execute(nt.update().where(nt.c.id == notification_id).values(
        status="delivered", delivered_at=timeutil.to_db(now), attempts=nt.c.attempts + 1,
        last_status=status, last_error=None, claimed_until=None))


def retry(conn: Connection, config: Config, notification_id: str, *, status: int, error: str,
          now: datetime, retry_after_s: float | None = None) -> str:
    """Not accepted: try again after a backoff (5 s, 10 s, 20 s ... at most 10 min, with
    jitter; later if the receiver asked for it with Retry-After), or give up once it has
    waited ``give_up_after_hours``. Returns the new status."""
    row = conn.execute(sa.select(nt.c.attempts, nt.c.created_at).where(nt.c.id == notification_id)).one()
    attempts = (row.attempts or 0) + 1
    waited = now - timeutil.from_db(row.created_at)
    if waited > timedelta(hours=config.alerts.give_up_after_hours):
        state, due = "undeliverable", now
    else:
        state = "pending"
        delay = min(MAX_BACKOFF_S, 5.0 * 2 ** (attempts - 1)) * (0.75 + 0.5 * random.random())
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_BACKOFF_S))
        due = now + timedelta(seconds=delay)
    conn.execute(nt.update().where(nt.c.id == notification_id).values(
        status=state, attempts=attempts, last_status=status, last_error=error[:1000],
        due_at=timeutil.to_db(due), claimed_until=None, claimed_by=None))
    return state


def undeliverable(conn: Connection, notification_id: str, *, error: str, now: datetime) -> None:
    """No attempt can succeed (its receiver is no longer configured): stop trying, say why."""
    conn.execute(nt.update().where(nt.c.id == notification_id).values(
        status="undeliverable", last_status=0, last_error=error[:1000], due_at=timeutil.to_db(now),
        claimed_until=None, claimed_by=None))


def recent(conn: Connection, *, receiver_ids: list[str] | None = None, limit: int = 200) -> pd.DataFrame:
    """Notifications newest first (``receiver_ids``: only these), for the Alerts page."""
    q = sa.select(nt.c.id, nt.c.receiver_id, nt.c.kind, nt.c.group_key, nt.c.alerts, nt.c.status,
                  nt.c.attempts, nt.c.created_at, nt.c.delivered_at, nt.c.last_status, nt.c.last_error,
                  nt.c.idempotency_key).order_by(nt.c.created_at.desc()).limit(limit)
    if receiver_ids is not None:
        q = q.where(nt.c.receiver_id.in_(receiver_ids))
    return pd.DataFrame(conn.execute(q).mappings().all(),
                        columns=["id", "receiver_id", "kind", "group_key", "alerts", "status", "attempts",
                                 "created_at", "delivered_at", "last_status", "last_error",
                                 "idempotency_key"])


def next_due(conn: Connection, now: datetime | None = None) -> datetime | None:
    """When a sender next has something to claim: the earliest pending notification's due
    time, the earliest lease of one being sent running out, or now if a dead process held
    one. A read: a sender asks this
    first and takes the write lock only when something is due."""
    pending = conn.execute(sa.select(sa.func.min(nt.c.due_at)).where(nt.c.status == "pending")).scalar()
    held = conn.execute(sa.select(sa.func.min(nt.c.claimed_until)).where(nt.c.status == "sending")).scalar()
    found = [timeutil.from_db(t) for t in (pending, held) if t is not None]
    at = now or timeutil.utcnow()
    orphaned = conn.execute(sa.select(nt.c.id).where(
        nt.c.status == "sending", nt.c.claimed_by.in_(processes.dead_ids(at))).limit(1)).first()
    if orphaned is not None:  # its sender's process died: due now, whatever its lease says
        found.append(at)
    return min(found) if found else None
