"""The audit log: who did what, when, from where, and whether it was allowed.

Entries are written in the same transaction as the change they describe, so the log
cannot claim a change that was rolled back (nor miss one that was committed).
Refusals and failed sign-ins are written on their own: they change nothing else.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core import schema, timeutil
from partnerboard.core.secrets import scrub

a = schema.audit_log


def record(conn: Connection, actor: str, action: str, *, target: str | None = None,
           detail: str | None = None, outcome: str = "ok", ip: str | None = None) -> None:
    """One entry. ``detail`` is scrubbed of anything token-shaped before it is stored."""
    conn.execute(a.insert().values(
        id=str(uuid.uuid4()), at=timeutil.to_db(timeutil.utcnow()), actor=actor[:320], action=action,
        outcome=outcome, target=target, detail=None if detail is None else scrub(detail)[:2000],
        ip=ip))


def entries(conn: Connection, *, since: datetime | None = None, action: str | None = None,
            actor: str | None = None, limit: int = 1000) -> pd.DataFrame:
    """Newest first. Filters are bound parameters."""
    q = sa.select(a.c.at, a.c.actor, a.c.action, a.c.outcome, a.c.target, a.c.detail, a.c.ip)
    if since is not None:
        q = q.where(a.c.at >= timeutil.to_db(since))
    if action:
        q = q.where(a.c.action == action)
    if actor:
        q = q.where(a.c.actor == actor)
    rows = conn.execute(q.order_by(a.c.at.desc()).limit(limit)).mappings().all()
    df = pd.DataFrame(rows, columns=["at", "actor", "action", "outcome", "target", "detail", "ip"])
    if not df.empty:
        df["at"] = pd.to_datetime(df["at"]).dt.tz_localize("UTC")
    return df


def actions(conn: Connection) -> list[str]:
    """The actions the log holds, for a filter: read from the log, so a new kind of entry
    (or a refused API route) is offered without a list to keep in step."""
    return sorted(conn.execute(sa.select(a.c.action).distinct()).scalars())
