"""Silences: "we know; don't tell us again until ..." for a rule, a partner, a subject.

A silence matches an alert when each field it names (rule, partner, subject: an
endpoint, source or KPI) equals the alert's; a silence that names nothing silences
everything, which is refused. While one matches, the alert is recorded but nobody is
told; when the silence ends and the alert is still firing, it is told then. Editors and
admins create and end silences; a person of one partner silences only that partner's
alerts. Every change is audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require, require_partner
from partnerboard.core.config import Config
from partnerboard.core.config.alerts import RULES
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil

si = schema.silences


class SilenceError(ValueError):
    """A silence that cannot be created; the message names the field and the fix."""


def create(conn: Connection, config: Config, actor: User | None, *, until: datetime, reason: str,
           rule: str | None = None, partner_id: str | None = None, subject: str | None = None,
           now: datetime | None = None, ip: str | None = None) -> str:
    require(actor, "annotate")  # editors and admins
    assert actor is not None
    now = now or timeutil.utcnow()
    reason = reason.strip()
    if not reason:
        raise SilenceError("reason is empty: say why, e.g. 'partner is migrating, ticket PAY-123'")
    if rule is not None and rule not in RULES:
        raise SilenceError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    if partner_id is not None:
        config.partner(partner_id)  # names the known ones
    if rule is None and partner_id is None and subject is None:
        raise SilenceError("a silence must name a rule, a partner or a subject; it would silence everything")
    if until.tzinfo is None:
        raise SilenceError("until needs a time zone")
    if until <= now:
        raise SilenceError("until is in the past; a silence ends in the future")
    if until - now > timedelta(days=90):
        raise SilenceError("a silence lasts at most 90 days; make a new one when it ends")
    require_partner(actor, partner_id, "silence the alerts")
    sid = str(uuid.uuid4())
    row = text_input.fit(si, dict(
        id=sid, rule=rule, partner_id=partner_id, subject=subject, starts_at=timeutil.to_db(now),
        ends_at=timeutil.to_db(until), reason=reason, created_by=actor.email,
        created_at=timeutil.to_db(now)), error=SilenceError)
    conn.execute(si.insert().values(**row))
    subject, reason = row["subject"], row["reason"]
    audit.record(conn, actor.email, "silence.create", partner=partner_id, target=sid,
                 detail=f"rule={rule or 'any'} partner={partner_id or 'both'} subject={subject or 'any'} "
                        f"until={until.isoformat()}: {reason}", ip=ip)
    return sid


def expire(conn: Connection, actor: User | None, silence_id: str, *, now: datetime | None = None,
           ip: str | None = None) -> bool:
    require(actor, "annotate")
    assert actor is not None
    now = now or timeutil.utcnow()
    text_input.lookup(silence_id, "silence id", error=SilenceError)
    row = conn.execute(sa.select(si).where(si.c.id == silence_id)).first()
    if row is None or row.expired_at is not None or timeutil.from_db(row.ends_at) <= now:
        return False
    require_partner(actor, row.partner_id, "end the silences")
    conn.execute(si.update().where(si.c.id == silence_id).values(
        expired_at=timeutil.to_db(now), expired_by=actor.email))
    audit.record(conn, actor.email, "silence.expire", partner=row.partner_id, target=silence_id, ip=ip)
    return True


def active(conn: Connection, now: datetime) -> list[sa.Row]:
    at = timeutil.to_db(now)
    return conn.execute(sa.select(si).where(si.c.starts_at <= at, si.c.ends_at > at,
                                            si.c.expired_at.is_(None))).all()


def matching(silences: list[sa.Row], *, rule: str, partner_id: str | None,
             subject: str | None) -> sa.Row | None:
    for s in silences:
        if ((s.rule is None or s.rule == rule) and (s.partner_id is None or s.partner_id == partner_id)
                and (s.subject is None or s.subject == subject)):
            return s
    return None


def listing(conn: Connection, *, now: datetime) -> pd.DataFrame:
    """Silences newest first, with their state (scheduled, active, ended). Silences are
    shared: one partner's silence changes what both sides hear, so both see it."""
    q = sa.select(si).order_by(si.c.created_at.desc()).limit(200)
    df = pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in si.columns])
    if not df.empty:
        at = timeutil.to_db(now)
        df["state"] = ["ended" if r.expired_at is not None or r.ends_at <= at else
                       "active" if r.starts_at <= at else "scheduled" for r in df.itertuples()]
    else:
        df["state"] = pd.Series(dtype=str)
    return df
